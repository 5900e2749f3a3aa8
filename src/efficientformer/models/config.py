"""Typed, frozen architecture configs: the only thing a model is built from."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from efficientformer.errors import BadFileError, ConfigError
from efficientformer.utils.jsonarg import read_json_argument

NUM_STAGES = 4
STAGE_STRIDES = (4, 8, 16, 32)
# The architecture rules every builder of a network or of its parts follows (the model, the latency
# table's entries, input-size checks): MHSA exists in stages 3-4 only; stage 3's is stride attention
# (halve the 1/16 grid, upsample back); the dual-path attention downsample (`down_attn`) sits before stage 4.
ATTENTION_STAGES = (2, 3)
STRIDE_ATTENTION_STAGE = 2
ATTENTION_DOWNSAMPLE_STAGE = 3


def attention_stride(stage_index: int) -> int:
    """Stride of the MHSA in stage `stage_index` (0-based): 2 in stage 3 (stride attention), else 1."""
    return 2 if stage_index == STRIDE_ATTENTION_STAGE else 1


@dataclass(frozen=True)
class StageConfig:
    """One stage: `depth` blocks of `width` channels; the last `num_attn` blocks add MHSA before the FFN.

    Args:
        depth: number of blocks in the stage.
        width: channels of every block (and output channels of the downsample before it).
        mlp_ratios: FFN expansion ratio of each block (hidden = int(width * ratio)); one per block.
        num_attn: how many of the last blocks are attention + FFN blocks (stages 3 and 4 only).
    """

    depth: int
    width: int
    mlp_ratios: tuple[float, ...]
    num_attn: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp_ratios", tuple(self.mlp_ratios))
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError(f"StageConfig.depth must be a positive integer, got {self.depth!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ConfigError(f"StageConfig.width must be a positive integer, got {self.width!r}")
        if len(self.mlp_ratios) != self.depth:
            raise ConfigError(f"StageConfig.mlp_ratios has {len(self.mlp_ratios)} entries but depth is {self.depth}")
        for ratio in self.mlp_ratios:
            if not ratio > 0 or int(self.width * ratio) < 1:
                raise ConfigError(f"StageConfig.mlp_ratios entries must give at least one hidden channel, "
                                  f"got {ratio!r}")
        if not 0 <= self.num_attn <= self.depth:
            raise ConfigError(f"StageConfig.num_attn must be in [0, depth={self.depth}], got {self.num_attn}")

    def is_attention_block(self, index: int) -> bool:
        """Whether block `index` (0-based) of this stage carries MHSA (the last `num_attn` blocks do)."""
        return index >= self.depth - self.num_attn

    def hidden_width(self, index: int) -> int:
        """FFN hidden channels of block `index`."""
        return int(self.width * self.mlp_ratios[index])


@dataclass(frozen=True)
class DownsampleLayout:
    """The 3x3 stride-2 downsample before stage `stage` (1-3): channels, input grid, attention path or not."""

    stage: int
    in_width: int
    out_width: int
    grid: tuple[int, int]
    attention: bool


@dataclass(frozen=True)
class BlockLayout:
    """Block `index` of stage `stage`: width, FFN hidden channels, token grid, and MHSA (with its stride) or not."""

    stage: int
    index: int
    width: int
    hidden: int
    grid: tuple[int, int]
    attention: bool
    stride: int


@dataclass(frozen=True)
class ModelConfig:
    """A whole EfficientFormerV2 network.

    Args:
        name: registry name, or a descriptive name for a searched architecture.
        stages: the four stages (strides 4, 8, 16, 32).
        num_classes: classifier outputs; 0 returns pooled features.
        img_size: (height, width) the model is built for; an int means square. The relative-position
            bias tables are sized from it.
        in_chans: input channels.
        distillation: add the distillation head `head_dist` (averaged with `head` at eval).
        drop_path_rate: stochastic depth of the last block, linear from 0 over all blocks.
        drop_rate: dropout before the heads.
        layer_scale_init: initial value of the per-channel layer scales.
        attn_heads, attn_key_dim, attn_ratio: MHSA of stages 3-4 (value dim = attn_ratio * key_dim).
        down_attn: use dual-path attention downsampling between stages 3 and 4.
        down_attn_key_dim, down_attn_ratio: its attention (it has `attn_heads` heads).
    """

    name: str
    stages: tuple[StageConfig, ...]
    num_classes: int = 1000
    img_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    distillation: bool = True
    drop_path_rate: float = 0.0
    drop_rate: float = 0.0
    layer_scale_init: float = 1e-5
    attn_heads: int = 8
    attn_key_dim: int = 32
    attn_ratio: int = 4
    down_attn: bool = True
    down_attn_key_dim: int = 16
    down_attn_ratio: int = 4
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        stages = tuple(s if isinstance(s, StageConfig) else StageConfig(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        size = self.img_size
        size = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
        object.__setattr__(self, "img_size", size)
        if len(stages) != NUM_STAGES:
            raise ConfigError(f"ModelConfig.stages must have {NUM_STAGES} entries, got {len(stages)}")
        for index in range(NUM_STAGES):
            if index not in ATTENTION_STAGES and stages[index].num_attn:
                raise ConfigError(f"ModelConfig.stages[{index}].num_attn must be 0: attention exists only in "
                                  f"stages 3 and 4 (indices 2, 3)")
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"ModelConfig.img_size must be a positive int or (height, width), got {self.img_size!r}")
        if self.num_classes < 0:
            raise ConfigError(f"ModelConfig.num_classes must be >= 0, got {self.num_classes}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"ModelConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"ModelConfig.drop_rate must be in [0, 1), got {self.drop_rate}")
        for name in ("attn_heads", "attn_key_dim", "attn_ratio", "down_attn_key_dim", "down_attn_ratio", "in_chans"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        check_img_size(self)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def stage_grids(self) -> tuple[tuple[int, int], ...]:
        """Token grid (rows, cols) of each stage: each stride-2 layer maps n to ceil(n/2)."""
        return tuple((math.ceil(self.img_size[0] / s), math.ceil(self.img_size[1] / s)) for s in STAGE_STRIDES)

    def has_attention_downsample(self, stage_index: int) -> bool:
        """Whether the downsample before stage `stage_index` has the dual-path attention (stage 4, `down_attn`)."""
        return stage_index == ATTENTION_DOWNSAMPLE_STAGE and self.down_attn

    def downsample_layout(self, stage_index: int) -> DownsampleLayout | None:
        """The downsample before stage `stage_index` (None for stage 1, which follows the stem)."""
        if stage_index == 0:
            return None
        widths = self.widths
        return DownsampleLayout(stage_index, widths[stage_index - 1], widths[stage_index],
                                self.stage_grids[stage_index - 1], self.has_attention_downsample(stage_index))

    def block_layouts(self, stage_index: int) -> tuple[BlockLayout, ...]:
        """Every block of stage `stage_index`, in order (the last `num_attn` carry MHSA)."""
        stage, grid = self.stages[stage_index], self.stage_grids[stage_index]
        return tuple(BlockLayout(stage_index, index, stage.width, stage.hidden_width(index), grid,
                                 stage.is_attention_block(index), attention_stride(stage_index))
                     for index in range(stage.depth))

    def replace(self, **overrides: Any) -> ModelConfig:
        """A copy with some fields changed (validated again); an unknown field is a ConfigError naming it."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        data = dataclasses.asdict(self)
        data["img_size"] = list(self.img_size)
        data["stages"] = [{**s, "mlp_ratios": list(s["mlp_ratios"])} for s in data["stages"]]
        if not data["extra"]:
            del data["extra"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; an unknown key is an error that names it."""
        if not isinstance(data, dict):
            raise ConfigError(f"a ModelConfig is a JSON object of its fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown ModelConfig key(s): {', '.join(sorted(unknown))}")
        stage_keys = {f.name for f in dataclasses.fields(StageConfig)}
        stages = []
        for index, stage in enumerate(data.get("stages", ())):
            bad = set(stage) - stage_keys
            if bad:
                raise ConfigError(f"unknown key(s) in stages[{index}]: {', '.join(sorted(bad))}")
            try:
                stages.append(StageConfig(**stage))
            except TypeError as error:  # a missing field, or a value of the wrong type
                raise ConfigError(f"stages[{index}]: {error}") from None
        try:
            return cls(**{**data, "stages": tuple(stages)})
        except TypeError as error:
            raise ConfigError(f"ModelConfig: {error}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> ModelConfig:
        """Parse JSON text, or read it from a file path (`utils.jsonarg`: the one rule; errors name the file)."""
        data, path = read_json_argument(text_or_path, "model config")
        if path is None:
            return cls.from_dict(data)
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as error:
            raise BadFileError(f"invalid model config in {path}: {error}") from error


def check_img_size(config: ModelConfig) -> None:
    """Raise if the architecture cannot be built for `config.img_size` (see `check_input_size`)."""
    check_input_size(config, config.img_size, what="img_size")


def check_input_size(config: ModelConfig, size: tuple[int, int], what: str = "input") -> None:
    """Raise if a model of `config` cannot run on (height, width) `size`, with the rule in the message.

    Stride attention in stage 3 halves the 1/16 grid and upsamples it x2 back, so with attention in
    stage 3 the 1/16 grid ceil(H/16) x ceil(W/16) must be even: H mod 32 in {0} or [17, 31], same for W.
    Without it every size works.
    """
    if config.stages[STRIDE_ATTENTION_STAGE].num_attn == 0:
        return
    stride = STAGE_STRIDES[STRIDE_ATTENTION_STAGE]  # 16
    for dim, value in zip(("height", "width"), size):
        grid = math.ceil(value / stride)
        if grid % 2:
            below = max(32, (value // 32) * 32)
            raise ConfigError(
                f"{what} {dim} {value} is not supported: stride attention in stage 3 needs the 1/16 grid "
                f"ceil({value}/16) = {grid} to be even, i.e. {dim} mod 32 must be 0 or in [17, 31] "
                f"(multiples of 32 always work; nearest: {below} or {below + 32})")
