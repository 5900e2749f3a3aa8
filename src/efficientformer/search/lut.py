"""Latency lookup table (SPEC 5.1, 5.3): per-entry latencies measured on this machine, summed per subnet.

    table = build_lut(TINY_SPACE, "torch-fused", img_size=64, path="lut.json")   # resumable
    table = LatencyTable.load("lut.json")
    table.predict(config)                                                         # ms, sum of entries

A subnet decomposes (`decompose`) into entries, each a module built standalone from
`models.blocks` and timed alone at batch 1:

- `stem`: Stem(in_chans, C1) on the input image;
- `down`: the 3x3 stride-2 downsample before stages 2 and 3 (Cin, Cout, input grid), and
  `down_attn`, the dual-path attention downsample before stage 4;
- `ffn`: the FFN half of a block with its residual, i.e. an FFN-only Block (width, hidden, grid);
- `attn`: the attention half of an attention block with its residual (width, grid; stride 2 in
  stage 3 = stride attention); an attention block costs `attn` + `ffn`;
- `head`: final norm + global pool + head(s) (C4, classes).

Entries are keyed by what changes their cost, so a block position is its stage grid. Runtimes:
`torch-eager` (eval mode), `torch-fused` (`models.fuse`: BN/scales folded) and `onnxruntime`
(each entry exported alone, fused, static batch 1, CPU provider). Timing is `bench.timing`'s one
harness, entries interleaved in chunks; after every chunk the JSON file is rewritten atomically,
so a killed build resumes where it stopped and never re-measures a finished entry.

Additivity is checked by `lut_validate.validate_lut`; what the sum misses per network (framework
dispatch, cache effects) can optionally be fitted as one constant `overhead_ms` on calibration networks
(`lut_validate.calibrate_overhead`), which `predict` adds.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from efficientformer.bench.timing import time_interleaved
from efficientformer.models.blocks import Attention2d, Attention2dDownsample, Block, Downsample, Mlp, Stem
from efficientformer.models.config import ModelConfig, StageConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.search.runtimes import RUNTIMES, clock_function, make_runner, runtime_versions
from efficientformer.search.space import SearchSpace
from efficientformer.utils.io import atomic_write
from efficientformer.utils.machine import cpu_name, machine_line
from efficientformer.utils.progress import progress_bar

FORMAT = "efficientformer-lut/1"
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


def decompose(config: ModelConfig) -> list[EntrySpec]:
    """The entries whose latencies sum to `config`'s, in network order."""
    widths, grids = config.widths, config.stage_grids
    entries = [EntrySpec("stem", config.in_chans, widths[0], config.img_size)]
    for index, stage in enumerate(config.stages):
        if index:
            kind = "down_attn" if index == 3 and config.down_attn else "down"
            entries.append(EntrySpec(kind, widths[index - 1], widths[index], grids[index - 1]))
        for block in range(stage.depth):
            if stage.is_attention_block(block):
                entries.append(EntrySpec("attn", stage.width, stage.width, grids[index], stride=2 if index == 2 else 1))
            entries.append(EntrySpec("ffn", stage.width, stage.width, grids[index], hidden=stage.hidden_width(block)))
    entries.append(EntrySpec("head", widths[3], config.num_classes, grids[3]))
    return entries


def space_entries(space: SearchSpace) -> list[EntrySpec]:
    """Every entry any subnet of `space` can use: each width x ratio x stage grid, each downsample pair."""
    base, grids = space.base, space.base.stage_grids
    stages = space.stages
    found: dict[str, EntrySpec] = {}

    def add(entry: EntrySpec) -> None:
        found.setdefault(entry.key, entry)

    for width in stages[0].widths:
        add(EntrySpec("stem", base.in_chans, width, base.img_size))
    for index in (1, 2, 3):
        kind = "down_attn" if index == 3 and base.down_attn else "down"
        for cin in stages[index - 1].widths:
            for cout in stages[index].widths:
                add(EntrySpec(kind, cin, cout, grids[index - 1]))
    for index, stage in enumerate(stages):
        for width in stage.widths:
            for ratio in stage.ratios:
                add(EntrySpec("ffn", width, width, grids[index], hidden=int(width * ratio)))
            if stage.max_attn:
                add(EntrySpec("attn", width, width, grids[index], stride=2 if index == 2 else 1))
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


@dataclass
class LatencyTable:
    """Measured entries (key -> median ms) plus the header saying where and how they were measured."""

    header: dict[str, Any]
    entries: dict[str, dict[str, Any]]
    path: Path | None = None

    @property
    def runtime(self) -> str:
        return self.header["runtime"]

    @property
    def overhead_ms(self) -> float:
        """The fitted per-network constant (0 until `calibrate_overhead` ran)."""
        return float(self.header.get("overhead", {}).get("ms", 0.0))

    def _where(self) -> str:
        return f"latency table {self.path}" if self.path else "the latency table"

    def check_config(self, config: ModelConfig) -> None:
        """Raise when `config` differs from the table in a field the entries were built with."""
        base = self.header["base"]
        for name in BASE_FIELDS:
            if getattr(config, name) != base[name]:
                raise ValueError(f"{config.name}.{name} is {getattr(config, name)!r} but {self._where()} was measured "
                                 f"with {base[name]!r}")
        if list(config.img_size) != list(self.header["img_size"]):
            raise ValueError(f"{config.name} is built for img_size {list(config.img_size)} but {self._where()} was "
                             f"measured at {self.header['img_size']}")

    def breakdown(self, config: ModelConfig) -> list[tuple[str, float]]:
        """(key, ms) per entry of `config`; a missing entry is an error that names it."""
        self.check_config(config)
        rows = []
        for entry in decompose(config):
            if entry.key not in self.entries:
                raise KeyError(f"{self._where()} has no entry {entry.key!r} (needed by {config.name}); build the "
                               f"table for a space that contains it")
            rows.append((entry.key, float(self.entries[entry.key]["median_ms"])))
        return rows

    def sum_ms(self, config: ModelConfig) -> float:
        """Sum of the entries of `config` (without the overhead)."""
        return sum(ms for _, ms in self.breakdown(config))

    def predict(self, config: ModelConfig) -> float:
        """Predicted latency (ms) of `config`: sum of its entries plus the fitted overhead."""
        return self.sum_ms(config) + self.overhead_ms

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({**self.header, "entries": self.entries}))  # a deep copy

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the JSON atomically (to `path`, default where it was loaded from)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("LatencyTable.save needs a path")
        with atomic_write(target) as handle:
            handle.write(json.dumps(self.to_dict(), indent=1).encode())
        self.path = target
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read a table written by `build_lut` (errors name the file and the field)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as error:
            raise FileNotFoundError(f"cannot read latency table {path}: {error}") from None
        except ValueError as error:
            raise ValueError(f"latency table {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a latency table (format {FORMAT!r} expected)")
        for field in ("runtime", "img_size", "threads", "base", "entries"):
            if field not in data:
                raise ValueError(f"latency table {path} has no {field!r} field")
        entries = data.pop("entries")
        return cls(header=data, entries=entries, path=path)


def _header(space: SearchSpace, runtime: str, threads: int, warmup: int, repeats: int, clock: str) -> dict[str, Any]:
    base = space.base
    return {"format": FORMAT, "runtime": runtime, "versions": runtime_versions(runtime), "clock": clock,
            "torch": torch.__version__, "python": platform.python_version(), "machine": machine_line(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": threads, "img_size": list(base.img_size),
            "batch_size": 1, "warmup": warmup, "repeats": repeats, "statistic": "median",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "space": space.to_dict(),
            "base": {name: getattr(base, name) for name in BASE_FIELDS}, "complete": False}


# Header fields a resumed build must share with the file it continues.
_RESUME_FIELDS = ("runtime", "clock", "threads", "img_size", "warmup", "repeats", "base")


def _resume(path: Path, header: dict[str, Any]) -> LatencyTable | None:
    if not path.exists():
        return None
    table = LatencyTable.load(path)
    for field in _RESUME_FIELDS:
        if table.header.get(field) != header[field]:
            raise ValueError(f"cannot resume latency table {path}: its {field} is {table.header.get(field)!r}, this "
                             f"build's is {header[field]!r} (use another --output or the same settings)")
    return table


def build_lut(space: SearchSpace, runtime: str = "torch-fused", img_size: int | tuple[int, int] | None = None, *,
              path: str | os.PathLike | None = None, warmup: int = 10, repeats: int = 50, threads: int = 1,
              clock: str = "cpu", chunk: int = 8, progress: bool | None = None,
              on_measured: Callable[[list[EntrySpec]], None] | None = None, entries: Iterable[EntrySpec] | None = None,
              runner: Callable[[nn.Module, torch.Tensor], Callable[[], object]] | None = None,
              timer: Callable[[], float] | None = None) -> LatencyTable:
    """Measure every entry of `space` on `runtime`; resumes from `path` when it holds a partial table.

    Args:
        img_size: input size (default the space's); the space is rebuilt for it.
        path: the JSON file, rewritten atomically after every chunk (None: keep in memory).
        warmup, repeats: bench.timing settings per entry (batch 1).
        threads: torch intra-op threads (and onnxruntime's).
        clock: "cpu" (the calling thread's CPU time: robust on a shared machine, needs threads=1) or
            "wall" (perf_counter: what an idle device shows; any thread count). See runtimes.CLOCKS.
        chunk: entries timed together (interleaved) between two saves.
        on_measured: called with each finished chunk after it is saved (progress hooks, tests).
        entries: measure only these (default `space_entries(space)`).
        runner, timer: `runner(module, input)` -> the timed call, and the clock in seconds (default
            `runtimes.make_runner` on `runtime` and the `clock` timer; tests pass fakes).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if img_size is not None:
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        space = space.replace_base(img_size=size)
    timer = clock_function(clock, threads) if timer is None else timer
    runner = runner or functools.partial(make_runner, runtime=runtime, threads=threads)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        header = _header(space, runtime, threads, warmup, repeats, clock)
        path = Path(path) if path is not None else None
        table = (_resume(path, header) if path is not None else None) or LatencyTable(header, {}, path)
        todo = [e for e in (space_entries(space) if entries is None else entries) if e.key not in table.entries]
        with progress_bar(disable=None if progress is None else not progress) as bar:
            task = bar.add_task(f"LUT {runtime}", total=len(table.entries) + len(todo), completed=len(table.entries))
            for start in range(0, len(todo), chunk):
                batch = todo[start:start + chunk]
                fns = {e.key: runner(build_entry(e, space.base), example_input(e)) for e in batch}
                timings = time_interleaved(fns, warmup=warmup, repeats=repeats, progress=False, clock=timer)
                for entry in batch:
                    timing = timings[entry.key]
                    table.entries[entry.key] = {"median_ms": timing.median_ms, "p90_ms": timing.p90_ms,
                                                "spec": entry.to_dict()}
                if path is not None:
                    table.save(path)
                bar.advance(task, len(batch))
                if on_measured is not None:
                    on_measured(batch)
    finally:
        torch.set_num_threads(previous_threads)
    table.header["complete"] = entries is None
    table.header["date_completed"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if path is not None:
        table.save(path)
    return table


__all__ = ["EntrySpec", "KINDS", "LatencyTable", "ParamCounter", "build_entry", "entry_params", "build_lut", "decompose", "example_input",
           "space_entries"]
