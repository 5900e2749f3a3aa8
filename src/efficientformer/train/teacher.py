"""Distillation teachers from a file: one of our checkpoints, a TorchScript archive or a torch.export program.

TorchScript and torch.export are the practical way to bring the paper's RegNetY-16GF teacher without
timm: export it once where timm works (`torch.jit.trace(model, x).save("regnety_160.pt")` or
`torch.export.save(torch.export.export(model, (x,), dynamic_shapes=...), "regnety_160.pt2")`, with
a dynamic batch dimension and the model in eval mode) and pass the file.
Neither format unpickles Python objects.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from efficientformer.errors import CheckpointError, ConfigError, MissingFileError
from efficientformer.factory import load_model
from efficientformer.train.recipes import TrainRecipe


class _ExportedTeacher(nn.Module):
    """Wraps a torch.export program so it can be called (and moved) like a module."""

    def __init__(self, program) -> None:
        super().__init__()
        self.module_ = program.module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module_(x)

    def train(self, mode: bool = True) -> _ExportedTeacher:
        """Exported programs are frozen in the mode they were exported in (export the teacher in eval mode)."""
        self.training = mode
        return self


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except zipfile.BadZipFile:
        return []


def load_teacher(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """A frozen, eval-mode teacher from `path` (format detected from the file's contents)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"teacher {path} does not exist")
    names = _zip_names(path)
    inner = [name.split("/", 1)[-1] for name in names]  # without the archive's top folder
    torchscript = any(name.startswith("code/__torch__/") for name in inner)
    exported = any(name.startswith("models/") and name.endswith(".json") for name in inner)  # torch.export
    if not (torchscript or exported):
        teacher = load_model(path)
    else:
        try:
            teacher = (torch.jit.load(str(path), map_location="cpu") if torchscript
                       else _ExportedTeacher(torch.export.load(str(path))))
        except Exception as error:  # noqa: BLE001 (torch raises RuntimeError and others for a damaged archive)
            raise CheckpointError(f"cannot load teacher {path}: {error}") from None
    teacher = teacher.to(device).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def recipe_teacher(recipe: TrainRecipe, path: str | os.PathLike | None, model: nn.Module,
                   device: torch.device | str = "cpu") -> nn.Module | None:
    """The teacher `recipe` distils from (None when it does not distil); `model` is switched to distilled training.

    Raises:
        ValueError: the recipe distils but no teacher file is given, or `model` has no distillation head.
    """
    if recipe.distillation == "none":
        return None
    if path is None:
        raise ConfigError(f"recipe {recipe.name!r} uses {recipe.distillation} distillation: pass a teacher "
                          f"file (--teacher) or turn it off (--set distillation=none)")
    if not getattr(model.config, "distillation", False):
        raise ConfigError(f"{model.config.name} has no distillation head; build it with distillation=True "
                          f"or turn distillation off")
    teacher = load_teacher(path, device)
    model.set_distilled_training(True)
    return teacher


__all__ = ["load_teacher", "recipe_teacher"]
