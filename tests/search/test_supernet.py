"""The supernet: subnets extracted as plain models give the supernet's outputs; published variants are subnets."""

from __future__ import annotations

import pytest
import torch

from efficientformer.factory import load_model
from efficientformer.models import get_config
from efficientformer.models.blocks import Attention2d, Block, Mlp
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.models.summary import param_count
from efficientformer.search.elastic import ElasticAttention2d, ElasticBatchNorm2d, ElasticMlp
from efficientformer.search.space import DEFAULT_SPACE, TINY_SPACE
from efficientformer.search.supernet import (
    Supernet,
    load_subnet_weights,
    load_supernet,
    read_space,
    recalibrate_bn,
    save_supernet,
)
from efficientformer.weights.checkpoint import save_checkpoint
from support import randomize_, sample_input

pytestmark = pytest.mark.usefixtures("one_thread")


PUBLISHED_PARAMS = {"s0": 3_600_256, "s1": 6_185_560, "s2": 12_710_112, "l": 26_322_288}


@pytest.fixture(scope="module")
def tiny_supernet():
    torch.manual_seed(0)
    return randomize_(Supernet(TINY_SPACE)).eval()


def _subnets(supernet, count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [supernet.largest(), supernet.smallest()] + [supernet.sample(generator) for _ in range(count)]


def test_extract_matches_the_active_subnet(tiny_supernet):
    x = sample_input(2, 64, 64)
    configs = _subnets(tiny_supernet, 6)
    outputs = []
    for config in configs:
        tiny_supernet.set_active(config)
        assert tiny_supernet.active == config
        with torch.no_grad():
            expected = tiny_supernet(x)
            model = tiny_supernet.extract(config)
            got = model(x)
        assert type(model) is EfficientFormerV2 and model.config == config and not model.training
        assert sum(p.numel() for p in model.parameters()) == param_count(config)
        assert not any("Elastic" in type(m).__name__ for m in model.modules())
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        outputs.append(expected)
    # The subnets really differ (the test would pass trivially if set_active did nothing).
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3


def test_extract_leaves_the_supernet_as_it_was(tiny_supernet):
    largest, smallest = tiny_supernet.largest(), tiny_supernet.smallest()
    tiny_supernet.set_active(largest)
    x = sample_input(1, 64, 64)
    with torch.no_grad():
        before = tiny_supernet(x)
        model = tiny_supernet.extract(smallest)
        assert tiny_supernet.active == largest  # extracting another subnet does not switch to it
        torch.testing.assert_close(tiny_supernet(x), before, rtol=0, atol=0)
    assert model.config == smallest
    with pytest.raises(ValueError, match="num_classes"):
        tiny_supernet.extract(smallest.replace(num_classes=smallest.num_classes + 1))
    assert tiny_supernet.active == largest


def test_max_subnet_state_dict_is_a_plain_max_model(tiny_supernet):
    torch.manual_seed(3)
    fresh = Supernet(TINY_SPACE).state_dict()
    torch.manual_seed(3)
    reference = EfficientFormerV2(TINY_SPACE.max_config()).state_dict()
    assert fresh.keys() == reference.keys() and all(torch.equal(fresh[k], reference[k]) for k in fresh)  # same init
    plain = EfficientFormerV2(TINY_SPACE.max_config()).eval()
    plain.load_state_dict(tiny_supernet.state_dict(), strict=True)
    tiny_supernet.set_active(tiny_supernet.largest())
    x = sample_input(2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), tiny_supernet(x), rtol=0, atol=1e-5)


def test_subnet_weights_load_back_into_the_supernet():
    """Warm start: a plain subnet's weights (e.g. released L into the paper space) go into the shared slices."""
    supernet = randomize_(Supernet(TINY_SPACE), seed=1).eval()
    config = _subnets(supernet, 3, seed=5)[-1]
    trained = randomize_(supernet.extract(config), seed=2)
    load_subnet_weights(supernet, trained)
    x = sample_input(2, 64, 64)
    supernet.set_active(config)
    with torch.no_grad():
        torch.testing.assert_close(supernet(x), trained(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="not in search space"):
        load_subnet_weights(supernet, EfficientFormerV2(get_config("efficientformerv2_test").replace(
            stages=(*config.stages[:3], config.stages[3].__class__(depth=1, width=40, mlp_ratios=(2,))))))


def test_warm_start_from_a_checkpoint_at_another_resolution_and_class_count(tmp_path):
    source = randomize_(Supernet(TINY_SPACE), seed=4)
    config = _subnets(source, 1, seed=8)[-1]
    path = save_checkpoint(source.extract(config), tmp_path / "subnet.safetensors")  # 10 classes, 64 px
    target = Supernet(TINY_SPACE.replace_base(num_classes=5, img_size=(96, 96)))
    head = target.head.weight.detach().clone()
    loaded = load_subnet_weights(target, path)
    assert loaded.num_classes == 5 and loaded.img_size == (96, 96) and loaded.widths == config.widths
    assert torch.equal(target.head.weight, head)  # another class count: the heads are left alone
    key = "stages.0.blocks.0.mlp.fc1.conv.weight"
    width, hidden = config.widths[0], config.stages[0].hidden_width(0)
    assert torch.equal(target.state_dict()[key][:hidden, :width], source.state_dict()[key][:hidden, :width])
    assert config.stages[3].num_attn > 0  # so the last supernet block of stage 4 was loaded
    table = target.stages[3].blocks[-1].token_mixer.attention_biases  # resampled 2x2 -> 3x3 grid
    assert table.shape == (2, 9) and table.abs().sum() > 0


def test_freeze_returns_the_plain_block_at_the_active_sizes():
    mlp = randomize_(ElasticMlp(16, 48)).eval()
    mlp.set_active(8, 24)
    frozen = mlp.freeze().eval()
    assert type(frozen) is Mlp and (frozen.dim, frozen.hidden) == (8, 24)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(frozen(x), mlp(x), rtol=0, atol=1e-6)

    attn = randomize_(ElasticAttention2d(32, (4, 4), num_heads=2, key_dim=8, attn_ratio=2, stride=2)).eval()
    attn.set_active(16)
    frozen = attn.freeze().eval()
    assert type(frozen) is Attention2d and frozen.dim == 16 and frozen.stride_conv is not None
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(frozen(x), attn(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"attention width must be an integer in \[1, 32\]"):
        attn.set_active(40)


def test_attention_supernet_block_runs_as_ffn_only(tiny_supernet):
    # Stage 3 of the tiny space: 3 blocks, the last 2 carry attention. depth 3 with 0 attention blocks
    # uses supernet blocks 0, 1, 2, i.e. two attention blocks as FFN-only blocks.
    config = tiny_supernet.largest()
    stages = list(config.stages)
    stages[2] = stages[2].__class__(depth=3, width=stages[2].width, mlp_ratios=stages[2].mlp_ratios, num_attn=0)
    config = TINY_SPACE.make_config(stages).replace(num_classes=config.num_classes)
    tiny_supernet.set_active(config)
    blocks = tiny_supernet.stages[2].blocks
    assert tiny_supernet.stages[2].active_blocks == (0, 1, 2)
    assert blocks[2].token_mixer is not None and not blocks[2].use_attention
    model = tiny_supernet.extract(config)
    assert all(type(b) is Block and b.token_mixer is None for b in model.stages[2].blocks)
    x = sample_input(1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny_supernet(x), rtol=0, atol=1e-5)


def test_set_active_names_what_is_wrong(tiny_supernet):
    config = tiny_supernet.largest()
    with pytest.raises(ValueError, match=r"stages\[3\]\.width 40"):
        stages = (*config.stages[:3], config.stages[3].__class__(depth=1, width=40, mlp_ratios=(2,)))
        tiny_supernet.set_active(config.replace(stages=stages))
    with pytest.raises(ValueError, match="num_classes is 7"):
        tiny_supernet.set_active(config.replace(num_classes=7))


def test_recalibrated_supernet_equals_recalibrated_extracted_model():
    supernet = randomize_(Supernet(TINY_SPACE), seed=3)
    generator = torch.Generator().manual_seed(4)
    batches = [torch.randn(8, 3, 64, 64, generator=generator) * 2 + 0.5 for _ in range(3)]
    config = _subnets(supernet, 2, seed=6)[-1]
    model = supernet.extract(config)
    x = sample_input(2, 64, 64)
    supernet.set_active(config)
    with torch.no_grad():
        before = supernet.eval()(x)
        recalibrate_bn(supernet, batches)
        recalibrate_bn(model, batches)
        after = supernet(x)
        torch.testing.assert_close(model(x), after, rtol=0, atol=1e-5)
    assert (after - before).abs().max() > 1e-3  # the statistics did change
    norm = supernet.stem.conv1.bn
    assert norm.momentum == 0.1 and not norm.training and int(norm.num_batches_tracked) == len(batches)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(supernet, [])


def test_keep_bn_statistics_trains_on_batch_statistics_only(tiny_supernet):
    supernet = randomize_(Supernet(TINY_SPACE), seed=7).train()
    x = sample_input(4, 64, 64)
    norm = supernet.stem.conv1.bn
    assert isinstance(norm, ElasticBatchNorm2d)
    running = norm.running_mean.clone()
    supernet.set_active(supernet.smallest())
    with supernet.keep_bn_statistics():
        supernet(x)
    assert torch.equal(norm.running_mean, running) and norm.update_stats
    supernet(x)
    width = supernet.smallest().widths[0] // 2
    assert not torch.equal(norm.running_mean[:width], running[:width])
    assert torch.equal(norm.running_mean[width:], running[width:])  # channels the subnet does not have


def test_save_and_load_supernet(tmp_path, tiny_supernet):
    path = save_supernet(tiny_supernet, tmp_path / "supernet.safetensors")
    assert read_space(path) == TINY_SPACE
    loaded = load_supernet(path)
    config = _subnets(tiny_supernet, 1, seed=9)[-1]
    x = sample_input(1, 64, 64)
    tiny_supernet.set_active(config)
    loaded.set_active(config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), tiny_supernet(x), rtol=0, atol=0)
    plain = load_model(path)  # the same file is a plain max-config checkpoint
    assert type(plain) is EfficientFormerV2 and plain.config.widths == TINY_SPACE.max_config().widths


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_variants_extract_with_exact_params(name):
    with torch.device("meta"):
        supernet = Supernet(DEFAULT_SPACE)
        model = supernet.extract(get_config(name))
    assert model.config.name == get_config(name).name
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]


def test_s0_from_the_paper_space_matches_the_supernet():
    torch.manual_seed(0)
    supernet = Supernet(DEFAULT_SPACE).eval()
    s0 = get_config("s0")
    supernet.set_active(s0)
    x = sample_input(1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(supernet.extract(s0)(x), supernet(x), rtol=0, atol=1e-5)
