"""Key layouts of EfficientFormerV2 checkpoints (docs/checkpoints.md) and conversion between them.

Our state dict uses timm's names, so only the official layout needs renaming. Renaming works on
key prefixes with one table per scope (top level, block, downsample, attention); each table is a
bijection, so the same tables convert both ways.
"""

from __future__ import annotations

import math
import re

import torch

from efficientformer.errors import CheckpointError
from efficientformer.layers.rel_pos_bias import relative_position_index

LAYOUTS = ("ours", "timm", "official")

_TOP = (("patch_embed.0.", "stem.conv1.conv."), ("patch_embed.1.", "stem.conv1.bn."),
        ("patch_embed.3.", "stem.conv2.conv."), ("patch_embed.4.", "stem.conv2.bn."),
        ("dist_head.", "head_dist."), ("norm.", "norm."), ("head.", "head."))
_ATTENTION = tuple(
    pair for name in ("q", "k", "v", "v_local", "stride_conv")
    for pair in ((f"{name}.0.", f"{name}.conv."), (f"{name}.1.", f"{name}.bn."))
) + (("q.local.0.", "q.local."), ("q.proj.0.", "q.proj.conv."), ("q.proj.1.", "q.proj.bn."),
     ("proj.1.", "proj.conv."), ("proj.2.", "proj.bn."), ("talking_head1.", "talking_head1."),
     ("talking_head2.", "talking_head2."), ("attention_biases", "attention_biases"))
_MLP = (("mlp.fc1.", "mlp.fc1.conv."), ("mlp.norm1.", "mlp.fc1.bn."), ("mlp.mid.", "mlp.mid.conv."),
        ("mlp.mid_norm.", "mlp.mid.bn."), ("mlp.fc2.", "mlp.fc2.conv."), ("mlp.norm2.", "mlp.fc2.bn."),
        ("layer_scale_1", "ls1.gamma"), ("layer_scale_2", "ls2.gamma"))
_BLOCK = _MLP + tuple((f"token_mixer.{a}", f"token_mixer.{b}") for a, b in _ATTENTION)
# Official conv downsamples call their parts proj/norm; the one with attention calls them conv/bn.
_DOWNSAMPLE = (("proj.", "conv.conv."), ("norm.", "conv.bn."))
_DOWNSAMPLE_ATTN = (("conv.", "conv.conv."), ("bn.", "conv.bn.")) + tuple((f"attn.{a}", f"attn.{b}")
                                                                        for a, b in _ATTENTION)
_OFFICIAL_NETWORK = re.compile(r"network\.(\d+)\.(.*)")
_OURS_STAGE = re.compile(r"stages\.(\d+)\.(blocks\.(\d+)\.|downsample\.)(.*)")


class LayoutError(CheckpointError, KeyError):
    """A key that belongs to no known layout (a KeyError too, as it always was)."""


def _rename(key: str, table: tuple[tuple[str, str], ...], reverse: bool, where: str) -> str:
    """Swap the longest matching prefix of `key` using `table` (official -> ours, or back)."""
    pairs = [(b, a) for a, b in table] if reverse else table
    for source, target in sorted(pairs, key=lambda p: -len(p[0])):
        if key.startswith(source):
            return target + key[len(source):]
    raise LayoutError(f"unrecognised key {where}{key!r}")


def is_layer_scale(key: str) -> bool:
    return key.endswith(("layer_scale_1", "layer_scale_2", "ls1.gamma", "ls2.gamma"))


def detect_layout(keys) -> str:
    """'official' (patch_embed./network.) or 'timm' (stem./stages.) from a state dict's keys."""
    keys = list(keys)
    if any(k.startswith(("patch_embed.", "network.")) for k in keys):
        return "official"
    if any(k.startswith(("stem.", "stages.")) for k in keys):
        return "timm"
    sample = ", ".join(keys[:5]) or "(no keys)"
    raise LayoutError(f"not an EfficientFormerV2 state dict (first keys: {sample})")


def official_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official state dict to our (timm) names; drop the derived index buffers."""
    out = {}
    for key, tensor in state_dict.items():
        if key.endswith("attention_bias_idxs"):
            continue
        match = _OFFICIAL_NETWORK.fullmatch(key)
        if match is None:
            new_key = _rename(key, _TOP, False, "")
        else:
            index, rest = int(match.group(1)), match.group(2)
            if index % 2 == 0:
                block, _, local = rest.partition(".")
                renamed = _rename(local, _BLOCK, False, f"network.{index}.{block}.")
                new_key = f"stages.{index // 2}.blocks.{block}." + renamed
            else:
                table = _DOWNSAMPLE_ATTN if rest.startswith(("attn.", "conv.", "bn.")) else _DOWNSAMPLE
                new_key = f"stages.{index // 2 + 1}.downsample." + _rename(rest, table, False, f"network.{index}.")
        out[new_key] = tensor.reshape(-1) if is_layer_scale(key) else tensor
    return out


def ours_to_official(state_dict: dict[str, torch.Tensor],
                     grids: dict[str, tuple[int, int]] | None = None) -> dict[str, torch.Tensor]:
    """Rename our (timm) state dict to the official names and regenerate the index buffers.

    Args:
        grids: key grid per attention module prefix (e.g. "stages.2.blocks.4.token_mixer.");
            by default each bias table is taken as square, the only shape the official code builds.
    """
    has_attn_down = {m.group(1) for k in state_dict if (m := re.match(r"stages\.(\d+)\.downsample\.attn\.", k))}
    out = {}
    for key, tensor in state_dict.items():
        match = _OURS_STAGE.fullmatch(key)
        if match is None:
            new_key = _rename(key, _TOP, True, "")
        else:
            stage, rest = int(match.group(1)), match.group(4)
            if match.group(3) is not None:
                new_key = f"network.{2 * stage}.{match.group(3)}." + _rename(rest, _BLOCK, True, key[:-len(rest)])
            else:
                table = _DOWNSAMPLE_ATTN if str(stage) in has_attn_down else _DOWNSAMPLE
                new_key = f"network.{2 * stage - 1}." + _rename(rest, table, True, key[:-len(rest)])
        out[new_key] = tensor.reshape(-1, 1, 1) if is_layer_scale(key) else tensor
        if key.endswith("attention_biases"):
            prefix = key[:-len("attention_biases")]
            grid = (grids or {}).get(prefix) or _square_grid(key, tensor)
            stride = 2 if ".downsample.attn." in key else 1
            out[new_key[:-len("attention_biases")] + "attention_bias_idxs"] = relative_position_index(grid, stride)
    return out


def _square_grid(key: str, table: torch.Tensor) -> tuple[int, int]:
    side = math.isqrt(table.shape[-1])
    if side * side != table.shape[-1]:
        raise CheckpointError(f"{key}: a bias table of {table.shape[-1]} entries is not square; the official layout "
                              f"only holds square resolutions")
    return side, side


def bias_table_grids(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """Key grid of every bias table in an (our-layout) state dict, assuming square tables."""
    return {key[:-len("attention_biases")]: _square_grid(key, t)
            for key, t in state_dict.items() if key.endswith("attention_biases")}
