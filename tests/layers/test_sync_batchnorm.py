"""SyncBatchNorm2d and its autograd function, in one process: the conversion, and the maths against F.batch_norm."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from efficientformer.layers import SyncBatchNorm2d, convert_sync_batchnorm
from efficientformer.layers.sync_batchnorm import SyncBatchNormFunction


def test_conversion_keeps_parameters_and_outside_a_group_is_plain_batch_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4, affine=False))
    reference = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4, affine=False))
    reference.load_state_dict(model.state_dict())
    weight = model[1].weight
    assert convert_sync_batchnorm(model) is model
    assert type(model[1]) is SyncBatchNorm2d and model[1].weight is weight  # same tensors, in place
    assert type(model[2]) is nn.BatchNorm2d  # without affine parameters it is left alone
    x = torch.randn(5, 3, 6, 6)
    assert torch.allclose(model.train()(x), reference.train()(x), atol=1e-6)
    assert torch.allclose(model[1].running_mean, reference[1].running_mean, atol=1e-7)
    assert model.state_dict().keys() == reference.state_dict().keys()


@pytest.fixture
def one_process_group(tmp_path):
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group of its own")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_the_function_matches_batch_norm_forward_backward_and_running_statistics(one_process_group):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    weight = torch.randn(3, requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    mean, var = torch.zeros(3), torch.ones(3)
    out = SyncBatchNormFunction.apply(x, weight, bias, mean, var, 1e-5, 0.1)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, weight, bias), grad)

    x2, weight2, bias2 = (t.detach().clone().requires_grad_() for t in (x, weight, bias))
    mean2, var2 = torch.zeros(3), torch.ones(3)
    expected = F.batch_norm(x2, mean2, var2, weight2, bias2, training=True, momentum=0.1, eps=1e-5)
    want = torch.autograd.grad(expected, (x2, weight2, bias2), grad)
    assert torch.allclose(out, expected, atol=1e-5)
    for name, a, b in zip(("x", "weight", "bias"), got, want):
        assert torch.allclose(a, b, atol=1e-4), name
    assert torch.allclose(mean, mean2, atol=1e-6) and torch.allclose(var, var2, atol=1e-5)  # unbiased running var
