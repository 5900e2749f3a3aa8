"""The published EfficientFormerV2 variants (docs/model.md, Variants) and a tiny config for tests and examples."""

from __future__ import annotations

from efficientformer.models.config import ModelConfig, StageConfig
from efficientformer.models.registry import register

S0 = register(ModelConfig(
    name="efficientformerv2_s0",
    stages=(
        StageConfig(depth=2, width=32, mlp_ratios=(4, 4)),
        StageConfig(depth=2, width=48, mlp_ratios=(4, 4)),
        StageConfig(depth=6, width=96, mlp_ratios=(4, 3, 3, 3, 4, 4), num_attn=2),
        StageConfig(depth=4, width=176, mlp_ratios=(4, 3, 3, 4), num_attn=2),
    ),
    drop_path_rate=0.0,
))

S1 = register(ModelConfig(
    name="efficientformerv2_s1",
    stages=(
        StageConfig(depth=3, width=32, mlp_ratios=(4, 4, 4)),
        StageConfig(depth=3, width=48, mlp_ratios=(4, 4, 4)),
        StageConfig(depth=9, width=120, mlp_ratios=(4, 4, 3, 3, 3, 3, 4, 4, 4), num_attn=2),
        StageConfig(depth=6, width=224, mlp_ratios=(4, 4, 3, 3, 4, 4), num_attn=2),
    ),
    drop_path_rate=0.0,
))

S2 = register(ModelConfig(
    name="efficientformerv2_s2",
    stages=(
        StageConfig(depth=4, width=32, mlp_ratios=(4, 4, 4, 4)),
        StageConfig(depth=4, width=64, mlp_ratios=(4, 4, 4, 4)),
        StageConfig(depth=12, width=144, mlp_ratios=(4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), num_attn=4),
        StageConfig(depth=8, width=288, mlp_ratios=(4, 4, 3, 3, 3, 3, 4, 4), num_attn=4),
    ),
    drop_path_rate=0.02,
))

L = register(ModelConfig(
    name="efficientformerv2_l",
    stages=(
        StageConfig(depth=5, width=40, mlp_ratios=(4, 4, 4, 4, 4)),
        StageConfig(depth=5, width=80, mlp_ratios=(4, 4, 4, 4, 4)),
        StageConfig(depth=15, width=192, mlp_ratios=(4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), num_attn=6),
        StageConfig(depth=10, width=384, mlp_ratios=(4, 4, 4, 3, 3, 3, 3, 4, 4, 4), num_attn=6),
    ),
    drop_path_rate=0.1,
))

# A few-thousand-parameter network with every block type (stride attention, dual-path downsample),
# for tests and quick examples. Not a published model, so hidden from list_models().
TEST = register(ModelConfig(
    name="efficientformerv2_test",
    stages=(
        StageConfig(depth=1, width=8, mlp_ratios=(2,)),
        StageConfig(depth=1, width=16, mlp_ratios=(2,)),
        StageConfig(depth=2, width=24, mlp_ratios=(2, 3), num_attn=1),
        StageConfig(depth=2, width=32, mlp_ratios=(3, 2), num_attn=1),
    ),
    num_classes=10,
    img_size=(64, 64),
    attn_heads=2,
    attn_key_dim=8,
    attn_ratio=2,
    down_attn_key_dim=4,
    down_attn_ratio=2,
    drop_path_rate=0.1,
), public=False)
