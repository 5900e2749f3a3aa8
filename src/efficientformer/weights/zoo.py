"""Known pretrained weights: where each file lives, what it is, how it was evaluated.

Every variant has the authors' 450-epoch ImageNet-1k release (hard distillation from RegNetY-16GF)
in two copies of the same tensors (docs/checkpoints.md): the official `.pth` on Google Drive and timm's
safetensors mirror on the Hugging Face hub. The hub copy is the default: it is a plain HTTPS file
(no Drive confirmation page) and safetensors cannot carry code.

No sha256 is recorded because none is published next to the files and this project could not
download them to compute one; `download.py` then records the hash of the first download beside the
cached file and checks every later use against it (trust on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from efficientformer.errors import ConfigError, UnknownNameError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875
INTERPOLATION_MODES = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

HF_URL = "https://huggingface.co/timm/{model}.snap_dist_in1k/resolve/main/model.safetensors"
DRIVE_URL = "https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"

# Both heads, 1000 classes (docs/model.md, Counts); a test checks these against the built models.
_NUM_PARAMS = {"s0": 3_600_256, "s1": 6_185_560, "s2": 12_710_112, "l": 26_322_288}
# Official README, 450 epochs (its eval: crop 0.875 ... 0.95 depending on the copy, docs/training.md).
_TOP1_OFFICIAL = {"s0": 76.2, "s1": 79.7, "s2": 82.0, "l": 83.5}
# timm's results-imagenet.csv for the hub copy (crop 0.95, bicubic).
_TOP1_TIMM = {"s0": 76.12, "s1": 79.68, "s2": 82.15, "l": 83.64}
_DRIVE_IDS = {
    "s0": "1PXb7b9pv9ZB4cfkRkYEdwgWuVwvEiazq",
    "s1": "1EKe1vt-3mG7iceVIMaET_DyISzVTJMn8",
    "s2": "1gjbFyB5T_yAkmzHNuXEljqScYVQZafMQ",
    "l": "1sRXNBHl_ewHBMwwYZVsOJo1k6JpcNJn-",
}


@dataclass(frozen=True)
class DataConfig:
    """How images must be preprocessed for a model's weights (timm's `resolve_data_config` keys).

    Args:
        input_size: (channels, height, width) the weights are evaluated at.
        mean, std: per-channel normalisation of [0, 1] pixels.
        crop_pct: the centre crop keeps this fraction of the resized shorter side.
        interpolation: resize filter, one of INTERPOLATION_MODES.
        crop_mode: 'center' (the only mode used here).
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bicubic"
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        for name in ("input_size", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.input_size) != 3 or min(self.input_size) < 1:
            raise ConfigError(f"DataConfig.input_size must be (channels, height, width), got {self.input_size!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"DataConfig.crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if self.interpolation not in INTERPOLATION_MODES:
            raise ConfigError(f"DataConfig.interpolation must be one of {', '.join(INTERPOLATION_MODES)}, "
                              f"got {self.interpolation!r}")

    @property
    def img_size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self.input_size[1], self.input_size[2]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with timm's key names (`create_transform(**cfg)` takes it)."""
        return {"input_size": self.input_size, "mean": self.mean, "std": self.std, "crop_pct": self.crop_pct,
                "interpolation": self.interpolation, "crop_mode": self.crop_mode}


@dataclass(frozen=True)
class Weights:
    """One downloadable checkpoint.

    Args:
        tag: the name users pass (`create_model(model, pretrained=tag)`, `--weights tag`).
        model: the registered architecture the tensors belong to.
        url: where the file is downloaded from.
        file_name: its name in the cache directory (unique across tags).
        layout: 'official', 'timm' or 'ours' (see weights/convert.py).
        num_params: parameters of the model the file fills (both heads).
        top1: ImageNet-1k top-1 (%) as published for this copy, with `crop_pct` and `img_size`.
        sha256: hex digest of the file when published; None = trust on first use.
        img_size, crop_pct, interpolation, mean, std: the eval preprocessing (see `data_config`).
    """

    tag: str
    model: str
    url: str
    file_name: str
    layout: str
    num_params: int
    top1: float | None = None
    sha256: str | None = None
    img_size: tuple[int, int] = (224, 224)
    crop_pct: float = 0.95
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""

    def data_config(self, in_chans: int = 3) -> DataConfig:
        """The preprocessing these weights were evaluated with."""
        return DataConfig(input_size=(in_chans, *self.img_size), mean=self.mean, std=self.std,
                          crop_pct=self.crop_pct, interpolation=self.interpolation)


def _entries() -> list[Weights]:
    entries = []
    for short in ("s0", "s1", "s2", "l"):
        model = f"efficientformerv2_{short}"
        entries.append(Weights(
            tag=f"{model}.snap_dist_in1k", model=model, url=HF_URL.format(model=model),
            file_name=f"{model}.snap_dist_in1k.safetensors", layout="timm", num_params=_NUM_PARAMS[short],
            top1=_TOP1_TIMM[short], crop_pct=0.95,
            source="timm's Hugging Face copy of the official 450-epoch release"))
        entries.append(Weights(
            tag=f"{model}.official_450e", model=model, url=DRIVE_URL.format(file_id=_DRIVE_IDS[short]),
            file_name=f"eformer_{short}_450.pth", layout="official", num_params=_NUM_PARAMS[short],
            top1=_TOP1_OFFICIAL[short], crop_pct=0.95,
            source="snap-research/EfficientFormer README, 450 epochs (Google Drive)"))
    return entries


WEIGHTS: dict[str, Weights] = {entry.tag: entry for entry in _entries()}
DEFAULT: dict[str, str] = {f"efficientformerv2_{s}": f"efficientformerv2_{s}.snap_dist_in1k"
                           for s in ("s0", "s1", "s2", "l")}


def list_weights(model: str | None = None) -> list[Weights]:
    """All known weights, or those of one registered model name."""
    return [entry for entry in WEIGHTS.values() if model is None or entry.model == model]


def get_weights(tag: str) -> Weights:
    """The entry for a tag; the error lists the known tags."""
    try:
        return WEIGHTS[tag]
    except KeyError:
        raise UnknownNameError(f"unknown weight tag {tag!r}; known tags: {', '.join(WEIGHTS)}") from None


def default_weights(model: str) -> Weights:
    """The weights `create_model(model, pretrained=True)` uses."""
    if model not in DEFAULT:
        raise UnknownNameError(f"no default pretrained weights for {model!r}; models with weights: "
                               f"{', '.join(DEFAULT)}")
    return WEIGHTS[DEFAULT[model]]


__all__ = ["DEFAULT", "DEFAULT_CROP_PCT", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATION_MODES", "WEIGHTS",
           "DataConfig", "Weights", "default_weights", "get_weights", "list_weights"]
