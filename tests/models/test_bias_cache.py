"""The gathered attention-bias cache never serves a stale bias (SPEC 2.6)."""

from __future__ import annotations

import copy

import pytest
import torch

from efficientformer.layers import RelPosBias
from support import sample_input


def attention_modules(model):
    return [m for m in model.modules() if isinstance(m, RelPosBias)]


def eval_logits(model, x):
    with torch.no_grad():
        return model(x)


def reference_logits(model, x):
    """Logits computed by a fresh copy, which has never cached anything."""
    fresh = copy.deepcopy(model)
    for module in attention_modules(fresh):
        module._bias_cache = None
    return eval_logits(fresh.eval(), x)


def test_cache_is_used_in_eval(tiny_model):
    module = attention_modules(tiny_model)[0]
    with torch.no_grad():
        first = module.get_attention_biases()
        assert module.get_attention_biases() is first


def test_not_stale_after_load_state_dict(tiny_model):
    x = sample_input(2, 64, 64)
    before = eval_logits(tiny_model, x)
    state = tiny_model.state_dict()
    for key in state:
        if key.endswith("attention_biases"):
            state[key] = torch.randn_like(state[key])
    tiny_model.load_state_dict(state)  # still in eval mode
    after = eval_logits(tiny_model, x)
    assert not torch.allclose(before, after)
    assert torch.equal(after, reference_logits(tiny_model, x))


def test_not_stale_after_optimizer_step(tiny_model):
    x = sample_input(2, 64, 64)
    eval_logits(tiny_model, x)  # fill the cache
    tables = [m.attention_biases for m in attention_modules(tiny_model)]
    optimizer = torch.optim.SGD(tables, lr=1.0)
    loss = sum(t.sum() for t in tables) + tiny_model(x).sum()  # eval mode, gradients on
    loss.backward()
    optimizer.step()
    after = eval_logits(tiny_model, x)
    assert torch.equal(after, reference_logits(tiny_model, x))


def test_not_stale_after_train_eval_switch(tiny_model):
    x = sample_input(2, 64, 64)
    eval_logits(tiny_model, x)
    tiny_model.train()
    with torch.no_grad():
        for module in attention_modules(tiny_model):
            module.attention_biases.add_(1.0)
    tiny_model.eval()
    assert torch.equal(eval_logits(tiny_model, x), reference_logits(tiny_model, x))


def test_not_stale_after_dtype_change(tiny_model):
    x = sample_input(2, 64, 64)
    eval_logits(tiny_model, x)
    tiny_model.to(torch.float64)
    out = eval_logits(tiny_model, x.double())
    assert out.dtype == torch.float64
    for module in attention_modules(tiny_model):
        assert module.get_attention_biases().dtype == torch.float64


def test_not_stale_after_device_change(tiny_model):
    x = sample_input(2, 64, 64)
    eval_logits(tiny_model, x)
    device = "cuda" if torch.cuda.is_available() else "meta"
    tiny_model.to(device)
    for module in attention_modules(tiny_model):
        assert module.get_attention_biases().device.type == device


def test_not_stale_after_parameter_data_swap(tiny_model):
    x = sample_input(2, 64, 64)
    eval_logits(tiny_model, x)
    for module in attention_modules(tiny_model):
        module.attention_biases.data = torch.randn_like(module.attention_biases)
    assert torch.equal(eval_logits(tiny_model, x), reference_logits(tiny_model, x))


def test_no_cache_while_training_or_with_grad(tiny_model):
    module = attention_modules(tiny_model)[0]
    tiny_model.train()
    module.get_attention_biases()
    assert module._bias_cache is None
    tiny_model.eval()
    bias = module.get_attention_biases()  # grad enabled and the table requires grad
    assert module._bias_cache is None and bias.requires_grad


@pytest.mark.parametrize("grads", [True, False])
def test_backward_through_bias_in_eval_mode_twice(tiny_model, grads):
    x = sample_input(2, 64, 64)
    for _ in range(2):  # a cached graph would fail the second backward
        tiny_model(x).sum().backward()
    assert attention_modules(tiny_model)[0].attention_biases.grad is not None
