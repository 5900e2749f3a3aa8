"""Any allowed input size at run time: the bias tables are resampled exactly as checkpoint loading does."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import efficientformer
from efficientformer.layers import RelPosBias, rel_pos_bias
from efficientformer.models import fuse
from support import randomize_, sample_input

# A 224-built model run at these sizes must equal the same weights loaded into a model built at them.
# The two paths call the same resampling function on the same tensors, so they agree to float rounding.
TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}


def attention_modules(model):
    return [m for m in model.modules() if isinstance(m, RelPosBias)]


def built_at(size, checkpoint, name, features_only):
    model = efficientformer.create_model(name, img_size=size, features_only=features_only).eval()
    report = efficientformer.load_checkpoint(model, checkpoint)
    same_grid = model.config.stage_grids[2] == (14, 14)  # the 1/16 grid of the 224 checkpoint
    assert len(report.resampled) == (0 if same_grid else len(attention_modules(model)))
    return model


def run(model, x):
    with torch.no_grad():
        out = model(x)
    return torch.cat([f.flatten(1) for f in out], 1) if isinstance(out, list) else out


@pytest.mark.parametrize("name,features_only,sizes", [
    ("efficientformerv2_s0", False, [256, (256, 320), 192, 209]),
    ("efficientformerv2_s0", True, [(256, 320)]),
    ("efficientformerv2_l", False, [256]),
    ("efficientformerv2_l", True, [(192, 256)]),
])
def test_run_time_size_equals_model_built_at_that_size(tmp_path, name, features_only, sizes):
    model = randomize_(efficientformer.create_model(name, features_only=features_only)).eval()
    checkpoint = efficientformer.save_checkpoint(model, tmp_path / "weights.safetensors")
    for size in sizes:
        height, width = (size, size) if isinstance(size, int) else size
        x = sample_input(2, height, width)
        expected = run(built_at((height, width), checkpoint, name, features_only), x)
        torch.testing.assert_close(run(model, x), expected, **TOLERANCE)
    assert model.config.img_size == (224, 224)  # the built size stays the default (and the export size)


def test_a_different_resampling_would_fail_the_parity_check(monkeypatch, tmp_path):
    model = randomize_(efficientformer.create_model("efficientformerv2_s0")).eval()
    x = sample_input(1, 256, 256)
    expected = run(built_at((256, 256), efficientformer.save_checkpoint(model, tmp_path / "w.safetensors"),
                            "efficientformerv2_s0", False), x)

    def nearest(table, old_grid, new_grid):
        image = table.reshape(1, table.shape[0], *old_grid)  # (1, H, r0, r1)
        return F.interpolate(image, size=tuple(new_grid), mode="nearest").reshape(table.shape[0], -1)

    monkeypatch.setattr(rel_pos_bias, "resample_bias_table", nearest)
    assert (run(model, x) - expected).abs().max() > 1e-3


def test_cache_fresh_across_sizes_and_after_an_optimizer_step(tiny_model):
    def reference(x):
        return run(copy.deepcopy(tiny_model), x)  # a copy has an empty cache

    small, large = sample_input(2, 64, 64), sample_input(2, 96, 128)
    for x in (small, large, small, large):
        assert torch.equal(run(tiny_model, x), reference(x))
    module = attention_modules(tiny_model)[0]
    assert module.key_grid in module._bias_cache and len(module._bias_cache) == 2  # one entry per grid
    before = run(tiny_model, large)

    tiny_model.train()
    tables = [m.attention_biases for m in attention_modules(tiny_model)]
    optimizer = torch.optim.SGD(tables, lr=0.5)
    tiny_model(large).sum().backward()  # training at the new size: the gradient reaches the built table
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in tables)
    optimizer.step()
    tiny_model.eval()
    after = run(tiny_model, large)
    assert not torch.allclose(before, after)
    assert torch.equal(after, reference(large))
    assert torch.equal(run(tiny_model, small), reference(small))


def test_cache_fresh_after_an_in_place_update_in_eval(tiny_model):
    x = sample_input(1, 96, 96)
    run(tiny_model, x)
    with torch.no_grad():
        for module in attention_modules(tiny_model):
            module.attention_biases.mul_(2.0)  # bumps the version counter, same storage
    assert torch.equal(run(tiny_model, x), run(copy.deepcopy(tiny_model), x))


@pytest.mark.parametrize("size,dim", [((80, 64), "height"), ((64, 112), "width"), ((16, 64), "height")])
def test_impossible_size_states_the_rule(tiny_model, size, dim):
    with pytest.raises(ValueError, match=rf"input {dim} {size[0 if dim == 'height' else 1]} is not supported.*"
                                         r"mod 32 must be 0 or in \[17, 31\]"):
        tiny_model(sample_input(1, *size))


def test_fused_model_runs_at_its_built_size_and_names_it_otherwise(tiny_model):
    fused = fuse(tiny_model)
    x = sample_input(2, 64, 64)
    torch.testing.assert_close(run(fused, x), run(tiny_model, x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"fused model runs only at its built size 64x64"):
        run(fused, sample_input(1, 96, 96))
    assert run(tiny_model, sample_input(1, 96, 96)).shape == (1, 10)  # the original is untouched
