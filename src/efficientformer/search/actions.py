"""The slimming moves of the search (docs/search.md): what each does to a subnet, and which apply.

- `width[s]`: stage s width to the next smaller choice;
- `ratio[s,b]`: block b of stage s to the next smaller FFN ratio;
- `depth[s]`: drop the stage's last FFN-only block (depth - 1);
- `attn[s]`: turn the stage's first attention block into an FFN-only block (num_attn - 1);
- `drop_attn[s]`: drop the stage's first attention block (depth - 1 and num_attn - 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from efficientformer.models.config import ModelConfig, StageConfig
from efficientformer.search.space import SearchSpace

ACTION_KINDS = ("width", "ratio", "depth", "attn", "drop_attn")


@dataclass(frozen=True)
class Action:
    """One slimming move: `kind` (ACTION_KINDS) on stage `stage` (0-based), block `block` for ratios."""

    kind: str
    stage: int
    block: int = -1

    def __str__(self) -> str:
        return f"{self.kind}[{self.stage},{self.block}]" if self.kind == "ratio" else f"{self.kind}[{self.stage}]"


def _with_stage(config: ModelConfig, index: int, stage: StageConfig) -> tuple[StageConfig, ...]:
    return tuple(stage if i == index else s for i, s in enumerate(config.stages))


def apply_action(space: SearchSpace, config: ModelConfig, action: Action) -> ModelConfig | None:
    """`config` after `action`, or None when the action would leave the space."""
    stage, choices = config.stages[action.stage], space.stages[action.stage]
    ratios = list(stage.mlp_ratios)
    if action.kind == "width":
        position = choices.widths.index(stage.width)
        if position == 0:
            return None
        new = dataclasses.replace(stage, width=choices.widths[position - 1])
    elif action.kind == "ratio":
        position = choices.ratios.index(ratios[action.block])
        if position == 0:
            return None
        ratios[action.block] = choices.ratios[position - 1]
        new = dataclasses.replace(stage, mlp_ratios=tuple(ratios))
    elif action.kind == "depth":
        last_ffn = stage.depth - stage.num_attn - 1
        if last_ffn < 0 or stage.depth - 1 < choices.min_depth:
            return None
        del ratios[last_ffn]
        new = StageConfig(depth=stage.depth - 1, width=stage.width, mlp_ratios=tuple(ratios), num_attn=stage.num_attn)
    elif action.kind in ("attn", "drop_attn"):
        if stage.num_attn - 1 < choices.min_attn:
            return None
        if action.kind == "attn":
            new = dataclasses.replace(stage, num_attn=stage.num_attn - 1)
        else:
            if stage.depth - 1 < choices.min_depth:
                return None
            del ratios[stage.depth - stage.num_attn]
            new = StageConfig(depth=stage.depth - 1, width=stage.width, mlp_ratios=tuple(ratios),
                              num_attn=stage.num_attn - 1)
    else:
        raise ValueError(f"unknown action kind {action.kind!r}; known: {', '.join(ACTION_KINDS)}")
    candidate = config.replace(stages=_with_stage(config, action.stage, new))
    return candidate if space.contains(candidate) else None


def frontier(space: SearchSpace, config: ModelConfig) -> list[tuple[Action, ModelConfig]]:
    """Every applicable action with the subnet it leads to, in a fixed order (stage by stage)."""
    moves = []
    for index, stage in enumerate(config.stages):
        actions = [Action("width", index)] + [Action("ratio", index, b) for b in range(stage.depth)]
        actions += [Action("depth", index), Action("attn", index), Action("drop_attn", index)]
        for action in actions:
            candidate = apply_action(space, config, action)
            if candidate is not None:
                moves.append((action, candidate))
    return moves


__all__ = ["ACTION_KINDS", "Action", "apply_action", "frontier"]
