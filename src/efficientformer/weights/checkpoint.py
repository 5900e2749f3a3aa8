"""Reading, writing and loading checkpoints: ours (safetensors + config), timm's and the official .pth.

`.pth` files are only ever read with `torch.load(weights_only=True)`: a pickle that tries to run
code is refused. Every write is atomic.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from efficientformer.errors import CheckpointError, ConfigError, MissingFileError
from efficientformer.layers.rel_pos_bias import RelPosBias, resample_bias_table
from efficientformer.models.config import ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.models.spec import ModelSpec
from efficientformer.utils import atomic_write
from efficientformer.weights.convert import bias_table_grids, detect_layout, official_to_ours, ours_to_official
from efficientformer.weights.metadata import CheckpointMeta, config_metadata, parse_metadata

HEAD_PREFIXES = ("head.", "head_dist.")


@dataclass
class Checkpoint:
    """A state dict in our (timm) key layout, with what is known about where it came from (`config`: the spec
    stored in our files, of either model family)."""

    path: str
    layout: str
    state_dict: dict[str, torch.Tensor]
    config: ModelSpec | None = None
    features_only: bool = False
    out_indices: tuple[int, ...] | None = None


@dataclass
class LoadReport:
    """What `load_checkpoint` did, key by key."""

    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[tuple[str, tuple]] = field(default_factory=list)
    unexpected: list[tuple[str, tuple]] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    resampled: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        lines = [f"missing from checkpoint: {k} {list(s)}" for k, s in self.missing]
        lines += [f"unexpected in checkpoint: {k} {list(s)}" for k, s in self.unexpected]
        lines += [f"shape mismatch: {k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched]
        return "\n".join(lines)

    def __str__(self) -> str:
        text = f"{self.path} ({self.layout} layout): {len(self.loaded)} tensors loaded"
        if self.resampled:
            text += f", {len(self.resampled)} bias tables resampled to the model's resolution"
        if self.ignored:
            text += f", {len(self.ignored)} ignored"
        return text + ("\n" + self.problems() if not self.ok else "")


def _read_raw(path: Path) -> tuple[dict, CheckpointMeta]:
    """Read a file's tensors and parsed metadata (empty for .pth), recognising the format from its first bytes."""
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic[:4] == b"PK\x03\x04" or magic[:1] == b"\x80":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise CheckpointError(
                f"refused to load {path}: it holds pickled objects other than tensors and plain containers, which "
                f"could run code when unpickled (only weights_only loading is allowed). If you trust the file, load "
                f"it yourself and save just its state dict.\n{str(error).splitlines()[0]}") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
            raise CheckpointError(f"cannot read {path}: corrupt or truncated PyTorch file ({error})") from None
        return obj, CheckpointMeta(str(path))
    try:
        tensors = safetensors.torch.load_file(path)
        with safetensors.safe_open(path, "pt") as handle:
            metadata = handle.metadata() or {}
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: not a PyTorch or safetensors file, or corrupt/truncated "
                              f"({error})") from None
    return tensors, parse_metadata(metadata, path)


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint ({'model': ...}, {'state_dict': ...}) or the dict itself."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: no state dict found (expected a dict of tensors, or one under 'model')")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint file into our key layout."""
    path = Path(path)
    obj, meta = _read_raw(path)
    state_dict = _unwrap(obj, path)
    if meta.ours:
        layout = "ours"
    else:
        try:
            layout = detect_layout(state_dict)
        except KeyError as error:
            raise CheckpointError(f"{path}: {error}") from None
    if layout == "official":
        try:
            state_dict = official_to_ours(state_dict)
        except KeyError as error:
            raise CheckpointError(f"{path}: {error}") from None
    return Checkpoint(str(path), layout, state_dict, meta.config, meta.features_only, meta.out_indices)


def _model_grids(model: nn.Module) -> dict[str, tuple[int, int]]:
    return {f"{name}.": module.key_grid for name, module in model.named_modules() if isinstance(module, RelPosBias)}


def load_checkpoint(model: nn.Module, source: str | os.PathLike | Checkpoint, strict: bool = True,
                    skip_head: bool = False) -> LoadReport:
    """Load weights of any supported layout into `model`.

    Relative-position bias tables trained at another resolution are resampled to the model's.
    Index buffers are derived data and ignored. Everything else that is missing, unexpected or of
    the wrong shape is reported by name and shape.

    Args:
        source: a file path (official .pth, timm or our safetensors) or a `Checkpoint`.
        strict: raise `CheckpointError` when anything does not fit (default); else load what fits.
        skip_head: leave the classifier heads alone (fine-tuning for another class count).
    """
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source)
    report = LoadReport(checkpoint.path, checkpoint.layout)
    target = model.state_dict()
    source_grids = attention_grids(checkpoint.config) if isinstance(checkpoint.config, ModelConfig) else {}
    model_grids = _model_grids(model)
    features_only = getattr(model, "features_only", False)
    # A backbone drops the head and norm, and the stages after its last out index (not built).
    not_built = (HEAD_PREFIXES + ("norm.",) + tuple(f"stages.{i}." for i in range(len(model.stages), 4))
                 if features_only else ())
    to_load = {}
    for key, tensor in checkpoint.state_dict.items():
        if key.endswith("attention_bias_idxs"):
            report.ignored.append(key)
            continue
        if key.startswith(HEAD_PREFIXES) and skip_head or features_only and key.startswith(not_built):
            report.ignored.append(key)
            continue
        if key not in target:
            report.unexpected.append((key, tuple(tensor.shape)))
            continue
        wanted = target[key].shape
        if tensor.shape != wanted and key.endswith("attention_biases") and tensor.shape[0] == wanted[0]:
            prefix = key[:-len("attention_biases")]
            old_grid = source_grids.get(prefix) or bias_table_grids({key: tensor})[prefix]
            try:
                tensor = resample_bias_table(tensor, old_grid, model_grids[prefix])
            except ValueError as error:  # the stored config's grid disagrees with the stored table
                raise CheckpointError(f"{checkpoint.path}: {key} does not fit the config stored with it "
                                      f"(grid {old_grid[0]}x{old_grid[1]}): {error}") from None
            report.resampled.append((key, old_grid, model_grids[prefix]))
        if tensor.shape != wanted:
            report.mismatched.append((key, tuple(tensor.shape), tuple(wanted)))
            continue
        to_load[key] = tensor
    for key, tensor in target.items():
        if key not in to_load and key not in checkpoint.state_dict:
            if skip_head and key.startswith(HEAD_PREFIXES):
                continue
            report.missing.append((key, tuple(tensor.shape)))
    if strict and not report.ok:
        raise CheckpointError(f"{checkpoint.path} does not fit the model:\n{report.problems()}")
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    return report


def attention_grids(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """Key grid of every bias table of a model built for `config`, by state-dict prefix (no allocation)."""
    with torch.device("meta"):
        model = EfficientFormerV2(config)
    return _model_grids(model)


def _state_dict_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write `model`'s weights and architecture config to `path` as safetensors, atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"save_checkpoint writes safetensors: give a path ending in .safetensors, got {path} "
                          f"(for the official .pth layout use convert_checkpoint(..., to='official'))")
    features_only = getattr(model, "features_only", False)
    out_indices = tuple(model.out_indices) if features_only else None
    meta = {**config_metadata(model.config, features_only, out_indices), **(metadata or {})}
    write_state_dict(_state_dict_for_save(model), path, "ours", meta)
    return path


def write_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, layout: str,
                     metadata: dict[str, str] | None = None,
                     grids: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write an our-layout state dict in `layout`: 'ours'/'timm' as safetensors, 'official' as {'model': ...} .pth.

    Args:
        metadata: safetensors metadata for 'ours' (see `config_metadata`).
        grids: bias-table grids for the official index buffers (default: square tables).
    """
    path = Path(path)
    if layout == "official":
        buffer = io.BytesIO()
        torch.save({"model": ours_to_official(state_dict, grids)}, buffer)
        data = buffer.getvalue()
    elif layout in ("ours", "timm"):
        meta = metadata if layout == "ours" else {"format": "pt"}
        data = safetensors.torch.save({k: v.contiguous() for k, v in state_dict.items()}, metadata=meta)
    else:
        raise ConfigError(f"layout must be 'ours', 'timm' or 'official', got {layout!r}")
    with atomic_write(path) as handle:
        handle.write(data)
    return path
