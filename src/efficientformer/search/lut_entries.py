"""What a latency table measures: a network's parts ("entries"), each a module built and timed alone (search/lut.py).

A subnet decomposes (`decompose`) into entries, each a module built standalone from
`models.blocks` and timed alone at batch 1:

- `stem`: Stem(in_chans, C1) on the input image;
- `down`: the 3x3 stride-2 downsample before stages 2 and 3 (Cin, Cout, input grid), and
  `down_attn`, the dual-path attention downsample before stage 4;
- `ffn`: the FFN half of a block with its residual, i.e. an FFN-only Block (width, hidden, grid);
- `attn`: the attention half of an attention block with its residual (width, grid; stride 2 in
  stage 3 = stride attention); an attention block costs `attn` + `ffn`;
- `head`: final norm + global pool + head(s) (C4, classes).

Where each part goes and at which grid is the model's own rule (`ModelConfig.downsample_layout`,
`ModelConfig.block_layouts` in models/config.py), so the table cannot disagree with the network.
Entries are keyed by what changes their cost, so a block position is its stage grid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from efficientformer.models.blocks import Attention2d, Attention2dDownsample, Block, Downsample, Mlp, Stem
from efficientformer.models.config import NUM_STAGES, BlockLayout, DownsampleLayout, ModelConfig, StageConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.search.space import SearchSpace

KINDS = ("stem", "down", "down_attn", "ffn", "attn", "head")
# Fields of the base config that change an entry's module (and so must match between table and subnet).
BASE_FIELDS = ("in_chans", "num_classes", "distillation", "attn_heads", "attn_key_dim", "attn_ratio",
               "down_attn", "down_attn_key_dim", "down_attn_ratio")


@dataclass(frozen=True)
class EntrySpec:
    """One measurable piece of a network.

    Args:
        kind: one of KINDS.
        in_dim, out_dim: input and output channels (equal for ffn/attn).
        grid: (rows, cols) of the entry's input.
        hidden: FFN hidden channels (ffn only).
        stride: 2 for stage-3 stride attention (attn only).
    """

    kind: str
    in_dim: int
    out_dim: int
    grid: tuple[int, int]
    hidden: int = 0
    stride: int = 1

    @property
    def key(self) -> str:
        """The table key, e.g. 'ffn:96x384@14x14' or 'attn:96@14x14/s2'."""
        grid = f"@{self.grid[0]}x{self.grid[1]}"
        if self.kind == "ffn":
            return f"ffn:{self.in_dim}x{self.hidden}{grid}"
        if self.kind == "attn":
            return f"attn:{self.in_dim}{grid}/s{self.stride}"
        return f"{self.kind}:{self.in_dim}>{self.out_dim}{grid}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "grid": list(self.grid)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EntrySpec:
        return cls(**{**data, "grid": tuple(data["grid"])})


def _downsample_entry(down: DownsampleLayout) -> EntrySpec:
    return EntrySpec("down_attn" if down.attention else "down", down.in_width, down.out_width, down.grid)


def _block_entries(block: BlockLayout) -> list[EntrySpec]:
    """An attention block costs `attn` + `ffn`, an FFN-only block `ffn`."""
    ffn = EntrySpec("ffn", block.width, block.width, block.grid, hidden=block.hidden)
    if not block.attention:
        return [ffn]
    return [EntrySpec("attn", block.width, block.width, block.grid, stride=block.stride), ffn]


def decompose(config: ModelConfig) -> list[EntrySpec]:
    """The entries whose latencies sum to `config`'s, in network order (the model's own layouts, models/config.py)."""
    entries = [EntrySpec("stem", config.in_chans, config.widths[0], config.img_size)]
    for index in range(NUM_STAGES):
        down = config.downsample_layout(index)
        if down is not None:
            entries.append(_downsample_entry(down))
        for block in config.block_layouts(index):
            entries.extend(_block_entries(block))
    entries.append(EntrySpec("head", config.widths[-1], config.num_classes, config.stage_grids[-1]))
    return entries


def space_entries(space: SearchSpace) -> list[EntrySpec]:
    """Every entry any subnet of `space` can use: each width x ratio x stage grid, each downsample pair.

    Built from the layouts of probe configs (the base with one stage, or two widths, changed), so the
    table places and sizes an entry exactly as `decompose` and the model do.
    """
    base, grids = space.base, space.base.stage_grids
    stages = space.stages
    found: dict[str, EntrySpec] = {}

    def add(entry: EntrySpec) -> None:
        found.setdefault(entry.key, entry)

    def probe(changed: dict[int, StageConfig]) -> ModelConfig:  # base with stage i replaced by changed[i]
        return base.replace(stages=tuple(changed.get(i, stage) for i, stage in enumerate(base.stages)))

    for width in stages[0].widths:
        add(EntrySpec("stem", base.in_chans, width, base.img_size))
    for index in range(1, NUM_STAGES):
        for cin in stages[index - 1].widths:
            for cout in stages[index].widths:
                config = probe({index - 1: StageConfig(1, cin, (1,)), index: StageConfig(1, cout, (1,))})
                add(_downsample_entry(config.downsample_layout(index)))
    for index, stage in enumerate(stages):
        for width in stage.widths:
            attention = len(stage.ratios) if stage.max_attn else 0  # every ratio, with MHSA where the stage has it
            blocks = probe({index: StageConfig(len(stage.ratios), width, stage.ratios, attention)}).block_layouts(index)
            entries = [entry for block in blocks for entry in _block_entries(block)]
            for entry in sorted(entries, key=lambda e: e.kind == "attn"):  # the FFNs first (the build's order)
                add(entry)
    for width in stages[3].widths:
        add(EntrySpec("head", width, base.num_classes, grids[3]))
    return list(found.values())


class _AttentionHalf(nn.Module):
    """`x + ls1 * MHSA(x)` of an attention Block (its FFN half is the `ffn` entry); fuses like the Block."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = self.block
        return x + block.drop_path1(block.ls1(block.token_mixer(x)))


class _HeadOnly(nn.Module):
    """The network's own `forward_head` (final norm, pool, heads; one merged linear once fused)."""

    def __init__(self, model: EfficientFormerV2) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(x)


def build_entry(entry: EntrySpec, base: ModelConfig) -> nn.Module:
    """The standalone eval-mode module of `entry`, with the attention sizes of `base`."""
    if entry.kind == "stem":
        module: nn.Module = Stem(entry.in_dim, entry.out_dim)
    elif entry.kind == "down":
        module = Downsample(entry.in_dim, entry.out_dim)
    elif entry.kind == "down_attn":
        module = Downsample(entry.in_dim, entry.out_dim, Attention2dDownsample(
            entry.in_dim, entry.out_dim, entry.grid, num_heads=base.attn_heads, key_dim=base.down_attn_key_dim,
            attn_ratio=base.down_attn_ratio))
    elif entry.kind == "ffn":
        module = Block(entry.in_dim, Mlp(entry.in_dim, entry.hidden))
    elif entry.kind == "attn":
        mixer = Attention2d(entry.in_dim, entry.grid, num_heads=base.attn_heads, key_dim=base.attn_key_dim,
                            attn_ratio=base.attn_ratio, stride=entry.stride)
        module = _AttentionHalf(Block(entry.in_dim, Mlp(entry.in_dim, 1), mixer))
    elif entry.kind == "head":
        # A one-block-per-stage network whose last width is C4; only its head is run.
        stages = tuple(StageConfig(depth=1, width=entry.in_dim if i == 3 else 8, mlp_ratios=(1,)) for i in range(4))
        config = base.replace(stages=stages, img_size=(entry.grid[0] * 32, entry.grid[1] * 32))
        module = _HeadOnly(EfficientFormerV2(config))
    else:
        raise ValueError(f"unknown LUT entry kind {entry.kind!r}; known: {', '.join(KINDS)}")
    return module.eval()


def entry_params(entry: EntrySpec, base: ModelConfig) -> int:
    """Parameters of the network part `entry` stands for (built on the meta device)."""
    with torch.device("meta"):
        module = build_entry(entry, base)
    if entry.kind == "attn":  # the Block's MHSA and its layer scale; its FFN is the `ffn` entry
        parts: list[nn.Module] = [module.block.token_mixer, module.block.ls1]
    elif entry.kind == "head":
        model = module.model
        parts = [model.norm, model.head] + ([model.head_dist] if model.head_dist is not None else [])
    else:
        parts = [module]
    return sum(p.numel() for part in parts for p in part.parameters())


class ParamCounter:
    """Exact parameter count of a subnet as the sum over its entries; each entry is built once, then cached.

    Equal to `models.summary.param_count(config)` (tested) and much cheaper per call, which matters
    in a search that counts every candidate of every step.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, int] = {}

    def __call__(self, config: ModelConfig) -> int:
        fields = tuple(getattr(config, name) for name in BASE_FIELDS)
        total = 0
        for entry in decompose(config):
            key = (entry.key, fields)
            if key not in self._cache:
                self._cache[key] = entry_params(entry, config)
            total += self._cache[key]
        return total


def example_input(entry: EntrySpec) -> torch.Tensor:
    """A batch-1 random input of the entry's shape (B, C, H, W)."""
    return torch.randn(1, entry.in_dim, *entry.grid)


__all__ = ["BASE_FIELDS", "KINDS", "EntrySpec", "ParamCounter", "build_entry", "decompose", "entry_params",
           "example_input", "space_entries"]
