"""The search space of the paper's fine-grained joint search (docs/search.md) and how subnets map onto it.

    space = DEFAULT_SPACE                      # contains S0, S1, S2 and L
    space.max_config()                         # the supernet's architecture (= L's depths and widths)
    space.validate(get_config("s0"))           # S0 is a point of the space (raises naming the field if not)
    config = space.sample(torch.Generator().manual_seed(0))   # a random subnet, a plain ModelConfig

A subnet *is* a `ModelConfig`: per stage a depth, a width, one FFN ratio per block and the number of
trailing attention blocks (stages 3-4), with every other field (heads, key dims, resolution, classes)
taken from the space's base config. So a found architecture trains, exports and benches like any
variant (`create_model(config)`).

Choices (the paper leaves them open; docs/search.md, "Our choices", and the README):
- widths per stage from a grid (multiples of 8 or 16), ratios from a small set, depth from
  `min_depth..max_depth`, attention blocks from `min_attn..max_attn` (stages 3-4 only);
- the supernet has `max_depth` blocks per stage, and the last `max_attn` of stages 3-4 carry an
  attention mixer. A subnet with `depth` blocks of which the last `num_attn` are attention blocks uses
  supernet blocks `0 .. depth-num_attn-1` for its FFN-only blocks and the last `num_attn` supernet
  blocks for its attention blocks (`block_map`). Dropping an FFN-only block therefore removes the
  last FFN-only block and keeps every attention block on the same weights; turning the first
  attention block into an FFN-only block moves it onto the next front block.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from efficientformer.errors import BadFileError, ConfigError, MissingFileError, UnknownNameError
from efficientformer.models.config import NUM_STAGES, ModelConfig, StageConfig
from efficientformer.models.registry import get as get_config
from efficientformer.utils.jsonarg import is_json_text, looks_like_path, read_json_argument


def _ascending(values: Sequence[float], field: str) -> tuple:
    values = tuple(values)
    if not values or list(values) != sorted(set(values)):
        raise ConfigError(f"{field} must be a non-empty, strictly ascending sequence, got {values!r}")
    return values


@dataclass(frozen=True)
class StageSpace:
    """The choices of one stage.

    Args:
        widths: stage width choices, ascending.
        ratios: FFN expansion ratio choices (hidden = int(width * ratio)), ascending, per block.
        min_depth, max_depth: number of blocks.
        min_attn, max_attn: trailing attention blocks (0 for stages 1-2).
    """

    widths: tuple[int, ...]
    ratios: tuple[float, ...]
    min_depth: int
    max_depth: int
    min_attn: int = 0
    max_attn: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", _ascending(self.widths, "StageSpace.widths"))
        object.__setattr__(self, "ratios", _ascending(self.ratios, "StageSpace.ratios"))
        if min(self.widths) < 1 or any(not isinstance(w, int) for w in self.widths):
            raise ConfigError(f"StageSpace.widths must be positive integers, got {self.widths!r}")
        if min(self.ratios) <= 0:
            raise ConfigError(f"StageSpace.ratios must be positive, got {self.ratios!r}")
        if not 1 <= self.min_depth <= self.max_depth:
            raise ConfigError(f"StageSpace needs 1 <= min_depth <= max_depth, got {self.min_depth}, {self.max_depth}")
        if not 0 <= self.min_attn <= self.max_attn <= self.max_depth:
            raise ConfigError(f"StageSpace needs 0 <= min_attn <= max_attn <= max_depth, got "
                              f"{self.min_attn}, {self.max_attn}, {self.max_depth}")
        if self.min_attn > self.min_depth:
            raise ConfigError(f"StageSpace.min_attn {self.min_attn} exceeds min_depth {self.min_depth}")

    def attn_range(self, depth: int) -> range:
        """Allowed numbers of attention blocks for a stage of `depth` blocks."""
        return range(self.min_attn, min(self.max_attn, depth) + 1)


@dataclass(frozen=True)
class SearchSpace:
    """Four StageSpaces plus the base config that supplies every non-stage field of a subnet.

    Args:
        name: names subnets (`<name>-subnet`) and LUT/search files.
        stages: the four stage spaces.
        base: heads, key dims, img_size, num_classes, distillation, drop path ... of every subnet;
            its own stages are ignored.
    """

    name: str
    stages: tuple[StageSpace, ...]
    base: ModelConfig

    def __post_init__(self) -> None:
        stages = tuple(s if isinstance(s, StageSpace) else StageSpace(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if len(stages) != NUM_STAGES:
            raise ConfigError(f"SearchSpace.stages must have {NUM_STAGES} entries, got {len(stages)}")
        for index in (0, 1):
            if stages[index].max_attn:
                raise ConfigError(f"SearchSpace.stages[{index}].max_attn must be 0: attention exists only in "
                                  f"stages 3-4")
        # The base's own stages are ignored: store the largest subnet's, so that equal spaces compare
        # equal, and validate the base fields (e.g. img_size) against the largest and smallest subnets.
        object.__setattr__(self, "base", self.max_config().replace(name=self.base.name))
        self.min_config()

    # --- building subnets -------------------------------------------------------------------------
    def make_config(self, stages: Sequence[StageConfig], name: str | None = None) -> ModelConfig:
        """A subnet of this space from its four stages (validated)."""
        config = self.base.replace(name=name or f"{self.name}-subnet", stages=tuple(stages))
        self.validate(config)
        return config

    def max_config(self) -> ModelConfig:
        """The largest subnet: every stage at its deepest, widest, highest ratio and most attention blocks."""
        return self.base.replace(name=f"{self.name}-max", stages=tuple(
            StageConfig(depth=s.max_depth, width=s.widths[-1], mlp_ratios=(s.ratios[-1],) * s.max_depth,
                        num_attn=s.max_attn) for s in self.stages))

    def min_config(self) -> ModelConfig:
        """The smallest subnet: shallowest, narrowest, lowest ratio, fewest attention blocks."""
        return self.base.replace(name=f"{self.name}-min", stages=tuple(
            StageConfig(depth=s.min_depth, width=s.widths[0], mlp_ratios=(s.ratios[0],) * s.min_depth,
                        num_attn=s.min_attn) for s in self.stages))

    def sample(self, generator: torch.Generator) -> ModelConfig:
        """A subnet with every choice drawn uniformly (depth, then width, ratios and attention blocks)."""
        def pick(options: Sequence) -> Any:
            return options[int(torch.randint(len(options), (), generator=generator))]

        stages = []
        for space in self.stages:
            depth = pick(range(space.min_depth, space.max_depth + 1))
            width = pick(space.widths)
            ratios = tuple(pick(space.ratios) for _ in range(depth))
            stages.append(StageConfig(depth=depth, width=width, mlp_ratios=ratios,
                                      num_attn=pick(space.attn_range(depth))))
        return self.make_config(stages)

    # --- membership --------------------------------------------------------------------------------
    def violations(self, config: ModelConfig) -> list[str]:
        """Why `config` is not a subnet of this space (empty when it is); each entry names the field."""
        problems = []
        for field in ("attn_heads", "attn_key_dim", "attn_ratio", "down_attn", "down_attn_key_dim",
                      "down_attn_ratio", "in_chans"):
            if getattr(config, field) != getattr(self.base, field):
                problems.append(f"{field} is {getattr(config, field)!r}, the space has {getattr(self.base, field)!r}")
        for index, (stage, space) in enumerate(zip(config.stages, self.stages)):
            where = f"stages[{index}]"
            if not space.min_depth <= stage.depth <= space.max_depth:
                problems.append(f"{where}.depth {stage.depth} not in [{space.min_depth}, {space.max_depth}]")
            if stage.width not in space.widths:
                problems.append(f"{where}.width {stage.width} not in {space.widths}")
            bad = [ratio for ratio in stage.mlp_ratios if ratio not in space.ratios]
            if bad:
                problems.append(f"{where}.mlp_ratios {bad} not in {space.ratios}")
            if stage.num_attn not in space.attn_range(stage.depth):
                allowed = space.attn_range(stage.depth)
                problems.append(f"{where}.num_attn {stage.num_attn} not in [{allowed.start}, {allowed.stop - 1}]")
        return problems

    def contains(self, config: ModelConfig) -> bool:
        """Whether `config` is a subnet of this space."""
        return not self.violations(config)

    def validate(self, config: ModelConfig) -> None:
        """Raise ValueError naming every field of `config` that is outside the space."""
        problems = self.violations(config)
        if problems:
            raise ConfigError(f"{config.name} is not in search space {self.name!r}: {'; '.join(problems)}")

    def block_map(self, stage_index: int, depth: int, num_attn: int) -> tuple[int, ...]:
        """Supernet block index of each block of a stage with `depth` blocks, the last `num_attn` attention.

        FFN-only blocks take the supernet's first blocks, attention blocks its last ones (module docstring).
        """
        max_depth = self.stages[stage_index].max_depth
        return tuple(range(depth - num_attn)) + tuple(range(max_depth - num_attn, max_depth))

    # --- other sizes, serialisation ----------------------------------------------------------------
    def replace_base(self, **overrides: Any) -> SearchSpace:
        """The same choices with base fields changed, e.g. `num_classes=10, img_size=(64, 64)`."""
        return dataclasses.replace(self, base=self.base.replace(**overrides))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        base = self.base.to_dict()
        del base["stages"]
        return {"name": self.name, "stages": [dataclasses.asdict(s) for s in self.stages], "base": base}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Inverse of `to_dict`."""
        unknown = set(data) - {"name", "stages", "base"}
        if unknown:
            raise ConfigError(f"unknown SearchSpace key(s): {', '.join(sorted(unknown))}")
        stages = tuple(StageSpace(**{**s, "widths": tuple(s["widths"]), "ratios": tuple(s["ratios"])})
                       for s in data["stages"])
        # The base's stages are ignored (replaced by the largest subnet's); any valid placeholder will do.
        placeholder = [{"depth": 1, "width": 1, "mlp_ratios": [1]}] * NUM_STAGES
        base = ModelConfig.from_dict({**data["base"], "stages": placeholder})
        return cls(name=data["name"], stages=stages, base=base)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> SearchSpace:
        """Parse JSON text, or read it from a file path (`utils.jsonarg`: the one rule; errors name the file)."""
        data, path = read_json_argument(text_or_path, "search space")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            if path is None:
                raise ConfigError(f"invalid search space JSON: {error}") from None
            raise BadFileError(f"invalid search space in {path}: {error}") from None


def signature(config: ModelConfig) -> str:
    """A short text that identifies a subnet's choices, e.g. 'd2.2.6.4-w32.48.96.176-a0.0.2.2-r4.4|4.4|...'."""
    depths = ".".join(str(s.depth) for s in config.stages)
    widths = ".".join(str(s.width) for s in config.stages)
    attn = ".".join(str(s.num_attn) for s in config.stages)
    ratios = "|".join(".".join(f"{r:g}" for r in s.mlp_ratios) for s in config.stages)
    return f"d{depths}-w{widths}-a{attn}-r{ratios}"


def _paper_space() -> SearchSpace:
    """Widths on grids of 8 (stages 1, 3: 40 and 120 are not multiples of 16) or 16, ratios {2, 3, 4}, L as the max."""
    largest = get_config("efficientformerv2_l")
    return SearchSpace(
        name="efficientformerv2",
        stages=(
            StageSpace(widths=tuple(range(16, 41, 8)), ratios=(2, 3, 4), min_depth=1, max_depth=5),
            StageSpace(widths=tuple(range(32, 81, 16)), ratios=(2, 3, 4), min_depth=1, max_depth=5),
            StageSpace(widths=tuple(range(64, 193, 8)), ratios=(2, 3, 4), min_depth=2, max_depth=15, max_attn=6),
            StageSpace(widths=tuple(range(128, 385, 16)), ratios=(2, 3, 4), min_depth=2, max_depth=10, max_attn=6),
        ),
        base=largest.replace(name="efficientformerv2-space", drop_path_rate=0.0),
    )


def _tiny_space() -> SearchSpace:
    """A space of few-thousand-parameter subnets (the `efficientformerv2_test` heads) for tests and demos."""
    test = get_config("efficientformerv2_test")
    return SearchSpace(
        name="tiny",
        stages=(
            StageSpace(widths=(8, 16), ratios=(2, 3), min_depth=1, max_depth=2),
            StageSpace(widths=(16, 24), ratios=(2, 3), min_depth=1, max_depth=2),
            StageSpace(widths=(16, 24, 32), ratios=(2, 3), min_depth=1, max_depth=3, max_attn=2),
            StageSpace(widths=(24, 32, 48), ratios=(2, 3), min_depth=1, max_depth=3, max_attn=2),
        ),
        base=test.replace(name="tiny-space", drop_path_rate=0.0),
    )


DEFAULT_SPACE = _paper_space()
TINY_SPACE = _tiny_space()
SPACES = {"efficientformerv2": DEFAULT_SPACE, "tiny": TINY_SPACE}


def get_space(name_or_path: str | os.PathLike) -> SearchSpace:
    """A named space ('efficientformerv2', 'tiny'), JSON text, or a JSON file: a name first, as for a model
    argument (docs/architecture.md, "How a model argument is resolved")."""
    text = str(name_or_path)
    if text in SPACES:
        return SPACES[text]
    if is_json_text(text) or Path(text).is_file():
        return SearchSpace.from_json(text)
    if looks_like_path(text):
        raise MissingFileError(f"search space file {text} does not exist (known spaces: {', '.join(SPACES)})")
    raise UnknownNameError(f"unknown search space {text!r}: known {', '.join(SPACES)}, or give JSON text or a "
                           f"JSON file")


__all__ = ["DEFAULT_SPACE", "SPACES", "TINY_SPACE", "SearchSpace", "StageSpace", "get_space", "signature"]
