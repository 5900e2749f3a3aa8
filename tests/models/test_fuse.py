"""fuse(): an inference-only copy with the same logits (SPEC-independent: compares to the unfused model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import efficientformer
from support import randomize_, sample_input


@pytest.mark.parametrize("name", efficientformer.list_models())
def test_fuse_parity_every_variant(name):
    model = randomize_(efficientformer.create_model(name)).eval()
    x = sample_input(2, 224, 224)
    fused = efficientformer.fuse(model)
    with torch.no_grad():
        assert (model(x) - fused(x)).abs().max().item() <= 1e-4


def test_fuse_removes_norms_and_scales(tiny_model):
    fused = efficientformer.fuse(tiny_model)
    kinds = {type(m) for m in fused.modules()}
    assert nn.BatchNorm2d not in kinds
    assert not any(type(m).__name__ in ("LayerScale2d", "DropPath", "ConvNorm", "ConvNormAct") for m in fused.modules())
    assert not any(isinstance(m, nn.Dropout) for m in fused.modules())
    assert not any(n.endswith("attention_biases") for n, _ in fused.named_parameters())
    assert fused.head_dist is None


def test_fuse_leaves_input_model_untouched(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    efficientformer.fuse(tiny_model)
    after = tiny_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("num_classes,distillation", [(0, True), (10, False)])
def test_fuse_heads(tiny_config, num_classes, distillation):
    model = randomize_(efficientformer.create_model(tiny_config, num_classes=num_classes,
                                                   distillation=distillation)).eval()
    x = sample_input(2, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), efficientformer.fuse(model)(x), atol=1e-5)


def test_fuse_channels_last(tiny_model):
    x = sample_input(2, 64, 64)
    fused = efficientformer.fuse(tiny_model, channels_last=True)
    with torch.no_grad():
        out = fused(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(out, tiny_model(x), atol=1e-5)


def test_fuse_features_only(tiny_config):
    model = randomize_(efficientformer.create_model(tiny_config, features_only=True)).eval()
    x = sample_input(1, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), efficientformer.fuse(model)(x)):
            assert torch.allclose(a, b, atol=1e-5)


def test_fused_pre_logits_is_refused(tiny_model):
    fused = efficientformer.fuse(tiny_model)
    with pytest.raises(RuntimeError, match="pre_logits"):
        fused.forward_head(torch.zeros(1, 32, 2, 2), pre_logits=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientformerv2_s0", "efficientformerv2_l"])
def test_compiled_fused_model_parity(name):
    """torch.compile (inductor, freezing) of the fused channels-last model: same logits. Compiling takes ~1 min."""
    model = randomize_(efficientformer.create_model(name)).eval()
    x = sample_input(2, 224, 224)
    compiled = efficientformer.fuse(model, channels_last=True, compile=True)
    with torch.no_grad():
        expected = model(x)
        for _ in range(2):  # the first call compiles, the second runs the cached graph
            assert (compiled(x.contiguous(memory_format=torch.channels_last)) - expected).abs().max().item() <= 1e-4


def test_compiled_model_freezes_its_weights(tiny_model, tiny_config):
    """fuse(compile=True) really freezes: the weights are constants of the compiled graph, so an in-place
    change after the first call is not seen. `torch.compile(options={"freezing": True})` alone leaves
    them as graph inputs in torch 2.13 (the change would show), and no weight packing or conv+GELU
    fusion happens; the output still matches the eager model."""
    compiled = efficientformer.fuse(tiny_model, compile=True)
    x = sample_input(1, *tiny_config.img_size)
    with torch.no_grad():
        expected = tiny_model(x)
    first = compiled(x)
    assert (first - expected).abs().max().item() <= 1e-4
    assert not first.requires_grad  # runs without autograd, as freezing needs
    with torch.no_grad():
        conv = next(m for m in compiled.module.modules() if isinstance(m, nn.Conv2d))
        conv.weight.mul_(3.0)
        changed = compiled.module(x)
    assert (changed - expected).abs().max().item() > 1e-3  # the change matters to the eager module...
    assert torch.equal(compiled(x), first)  # ...but not to the frozen graph
    assert set(compiled.state_dict()) == {f"module.{key}" for key in compiled.module.state_dict()}  # one copy
