"""The one reader of the metadata our safetensors checkpoints carry (written by `checkpoint.config_metadata`,
the training job, `search.save_supernet` and `train.save_segmenter`).

Every reader goes through `read_metadata`, so a corrupt, truncated or non-safetensors file fails the
same way everywhere (a `CheckpointError` naming it) and a field is parsed by one rule. The on-disk
format is unchanged: string keys and values in the safetensors header (docs/checkpoints.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors

from efficientformer.errors import CheckpointError, MissingFileError
from efficientformer.models.spec import ModelSpec, spec_from_json

FORMAT = "efficientformer"
FORMAT_VERSION = "1"
SPACE_METADATA_KEY = "search_space"  # a supernet's space, as `SearchSpace.to_json` writes it
# The keys parsed into typed fields; every other key stays in `CheckpointMeta.raw` as written.
_TYPED = ("format", "format_version", "features_only", "out_indices", "classes", "eval_crop_pct", SPACE_METADATA_KEY)


@dataclass(frozen=True)
class CheckpointMeta:
    """What a safetensors checkpoint says about itself, parsed.

    `config` is the model spec of either family, set only for our classification format (a segmenter's
    config is its own type and stays in `raw['config']`). `search_space` is the parsed JSON dict of a
    supernet file (`search.SearchSpace.from_dict` turns it into a space: `weights` sits below `search`).
    """

    path: str
    format: str | None = None
    format_version: str | None = None
    config: ModelSpec | None = None
    features_only: bool = False
    out_indices: tuple[int, ...] | None = None
    classes: tuple[str, ...] | None = None
    eval_crop_pct: float | None = None
    search_space: dict[str, Any] | None = None
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        """Written by `save_checkpoint` (our layout, with a model config)."""
        return self.format == FORMAT


def read_metadata(path: str | os.PathLike) -> CheckpointMeta:
    """Parse the safetensors metadata of `path`, without reading its tensors.

    A foreign safetensors file (timm's, say) gives a `CheckpointMeta` with `format` as it wrote it and
    no config. Raises `MissingFileError` for a missing file and `CheckpointError`, naming the file, for
    one that is not safetensors, is truncated, or holds a field that does not parse.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    try:
        with safetensors.safe_open(path, "pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: not a safetensors file, or corrupt/truncated ({error})") from None
    return parse_metadata(metadata, path)


def parse_metadata(metadata: dict[str, str], path: str | os.PathLike) -> CheckpointMeta:
    """`read_metadata` for a header already read; `path` names the file in errors."""
    fmt = metadata.get("format")
    typed: dict[str, Any] = {}
    parsers = {"out_indices": lambda v: tuple(int(i) for i in json.loads(v)),
               "classes": lambda v: tuple(str(c) for c in json.loads(v)),
               "eval_crop_pct": float, SPACE_METADATA_KEY: _json_object}
    for key, parse in parsers.items():
        if key in metadata:
            try:
                typed[key] = parse(metadata[key])
            except (ValueError, TypeError) as error:
                raise CheckpointError(f"{path}: invalid {key} in metadata ({error})") from None
    raw = {k: v for k, v in metadata.items() if k not in _TYPED}
    config = None
    if fmt == FORMAT:
        try:
            config = spec_from_json(raw.pop("config"))
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: invalid model config in metadata ({error})") from None
    return CheckpointMeta(str(path), fmt, metadata.get("format_version"), config,
                          metadata.get("features_only") == "1", raw=raw, **typed)


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def config_metadata(config: ModelSpec, features_only: bool = False,
                    out_indices: tuple[int, ...] | None = None) -> dict[str, str]:
    """Our safetensors metadata for a state dict of `config` (a backbone's out_indices too)."""
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(config.to_dict()),
                "features_only": "1" if features_only else "0"}
    if features_only and out_indices is not None:
        metadata["out_indices"] = json.dumps(list(out_indices))
    return metadata


__all__ = ["FORMAT", "FORMAT_VERSION", "SPACE_METADATA_KEY", "config_metadata", "parse_metadata"]
