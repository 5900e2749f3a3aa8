"""The project's OpenVINO conversions send no telemetry (and skip its one-second wait); the user's own do as before."""

from __future__ import annotations

import pytest
import torch
from torch import nn

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[openvino]')")
telemetry = pytest.importorskip("openvino_telemetry", reason="no openvino-telemetry: nothing is sent")
sender = pytest.importorskip("openvino_telemetry.utils.sender")

from efficientformer.export.openvino import convert_program  # noqa: E402

pytestmark = pytest.mark.export


@pytest.fixture
def program():
    module, example = nn.Conv2d(3, 4, 1).eval(), torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        return module, example, torch.export.export(module, (example,))


@pytest.fixture
def sent(monkeypatch, program):
    """A user who accepted telemetry (whatever this machine's consent file or CI variable says), with a sender
    that records messages instead of sending them."""
    messages = []
    monkeypatch.setattr(sender.TelemetrySender, "send", lambda self, backend, message: messages.append(message))
    ov.convert_model(program[2])  # the process's telemetry singleton exists from here on
    monkeypatch.setattr(telemetry.Telemetry(), "consent", True)
    messages.clear()
    return messages


def test_our_conversion_sends_nothing_and_the_users_consent_is_kept(program, sent):
    module, example, program = program
    ov.convert_model(program)  # the user's own call: the harness sees OpenVINO's messages
    assert sent, "no telemetry recorded for a plain convert_model: the test cannot see what it checks"
    sent.clear()
    converted = convert_program(module, example)
    assert sent == [] and converted.outputs[0].get_partial_shape().to_shape() == [1, 4, 8, 8]
    ov.convert_model(program)  # the consent check is back as it was
    assert sent
