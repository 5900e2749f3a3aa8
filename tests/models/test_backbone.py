"""Backbone options: out_indices, frozen_stages, norm_eval, forward_intermediates, any input size per batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import efficientformer
from support import randomize_, sample_input


def bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k or "num_batches" in k}


def test_out_indices_select_maps_and_prune_later_stages(tmp_path, tiny_config):
    full = randomize_(efficientformer.create_model(tiny_config, features_only=True)).eval()
    backbone = efficientformer.create_model(tiny_config, features_only=True, out_indices=(1, 2)).eval()
    path = efficientformer.save_checkpoint(full, tmp_path / "full.safetensors")
    report = efficientformer.load_checkpoint(backbone, path)  # the unbuilt stage 4 is ignored, by name
    assert any(k.startswith("stages.3.") for k in report.ignored) and len(backbone.stages) == 3
    x = sample_input(2, 64, 96)
    with torch.no_grad():
        maps, reference = backbone(x), full(x)
    assert len(maps) == 2 and torch.equal(maps[0], reference[1]) and torch.equal(maps[1], reference[2])
    assert [(i["num_chs"], i["reduction"]) for i in backbone.feature_info] == [
        (tiny_config.widths[1], 8), (tiny_config.widths[2], 16)]
    reloaded = efficientformer.load_model(efficientformer.save_checkpoint(backbone, tmp_path / "b.safetensors"))
    assert reloaded.out_indices == (1, 2) and len(reloaded.stages) == 3


@pytest.mark.parametrize("kwargs,match", [
    ({"features_only": True, "out_indices": (4,)}, r"out_indices must be stage indices in \[0, 3\]"),
    ({"features_only": True, "out_indices": (1, 1)}, "repeated stage"),
    ({"out_indices": (1, 2)}, "needs features_only=True"),
    ({"frozen_stages": 5}, r"frozen_stages must be an integer in \[-1, 4\]"),
    ({"features_only": True, "out_indices": (0,), "frozen_stages": 2}, r"in \[-1, 1\]"),
])
def test_bad_backbone_options_are_named(tiny_config, kwargs, match):
    with pytest.raises(ValueError, match=match):
        efficientformer.create_model(tiny_config, **kwargs)


def test_frozen_stages_get_no_gradient_and_keep_their_statistics(tiny_config):
    model = randomize_(efficientformer.create_model(tiny_config, features_only=True, frozen_stages=2)).train()
    frozen = [model.stem, model.stages[0], model.stages[1]]
    assert all(not m.training for f in frozen for m in f.modules())
    assert all(m.training for m in model.stages[2].modules())
    before = [bn_state(m) for m in frozen]
    trained_before = bn_state(model.stages[2])
    model.requires_grad_(True)  # a frozen stage stays frozen even so, once train() runs again
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        sum(f.square().mean() for f in model(sample_input(4, 64, 64))).backward()
        optimizer.step()
    for module, state in zip(frozen, before):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
        assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is not None for p in model.stages[3].parameters())
    assert any(not torch.equal(v, model.stages[2].state_dict()[k]) for k, v in trained_before.items())


def test_norm_eval_keeps_every_batchnorm_still_also_after_syncbn_conversion(tiny_config):
    model = randomize_(efficientformer.create_model(tiny_config, norm_eval=True))
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model).train()
    norms = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert norms and all(not m.training for m in norms)
    assert model.training and model.stages[3].blocks[0].training
    before = bn_state(model)
    model(sample_input(4, 64, 64)).sum().backward()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.stages[0].blocks[0].mlp.fc1.bn.weight.grad is not None  # affine parameters still train


def test_forward_intermediates_follows_timm(tiny_model):
    x = sample_input(2, 64, 64)
    with torch.no_grad():
        final, maps = tiny_model.forward_intermediates(x)
        assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
        assert torch.equal(final, tiny_model.norm(tiny_model.forward_features(x)))
        last_two = tiny_model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [torch.equal(a, b) for a, b in zip(last_two, maps[2:])] == [True, True]
        picked = tiny_model.forward_intermediates(x, indices=[0, -1], norm=True, intermediates_only=True)
        assert torch.equal(picked[0], maps[0]) and torch.equal(picked[1], final)
        early, early_maps = tiny_model.forward_intermediates(x, indices=[1], stop_early=True)
        assert torch.equal(early, maps[1]) and len(early_maps) == 1
    with pytest.raises(ValueError, match="output_fmt must be 'NCHW'"):
        tiny_model.forward_intermediates(x, output_fmt="NHWC")


def test_backbone_takes_a_different_size_every_batch(tiny_config):
    backbone = randomize_(efficientformer.create_model(tiny_config, features_only=True, out_indices=(1, 2, 3),
                                                       frozen_stages=1, norm_eval=True)).train()
    for height, width in ((64, 96), (128, 64), (96, 160)):
        maps = backbone(sample_input(2, height, width))
        assert [tuple(m.shape[-2:]) for m in maps] == [(-(-height // s), -(-width // s)) for s in (8, 16, 32)]
        sum(m.mean() for m in maps).backward()
