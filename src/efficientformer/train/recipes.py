"""Training recipes as typed, frozen configs: the paper's (docs/training.md), fine-tuning, and the embedded default.

    recipe = get_recipe("paper-300ep").replace(batch_size=64, epochs=10)   # CLI flags override fields
    recipe.to_json()                                                        # saved with every run
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from efficientformer.errors import ConfigError, UnknownNameError
from efficientformer.train.losses import DISTILLATION_MODES

CLIP_MODES = ("agc", "norm", "none")
AMP_DTYPES = ("none", "bfloat16", "float16")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The annotation of each TrainRecipe field (a string: postponed annotations) -> a check of a value.
_FIELD_TYPES = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool), "float": _is_number,
                "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
                "float | None": lambda v: v is None or _is_number(v)}
_PAIR_TYPES = ("tuple[float, float]",)


@dataclass(frozen=True)
class TrainRecipe:
    """Every knob of a training run except the data location and the model.

    Args:
        epochs, batch_size: epochs, and images per step per process (global = batch_size * world size).
        lr_base, lr_base_batch: the learning rate is `lr_base * global_batch / lr_base_batch`.
        min_lr, warmup_epochs, warmup_lr, lr_per_step: the warm-up + cosine schedule
            (the official run steps it per epoch).
        weight_decay, opt_eps, betas: AdamW; norms, biases, layer scales and bias tables are not decayed.
        layer_decay: layer-wise lr decay; each layer's rate is scaled by layer_decay ** (layers after it),
            from the heads (full rate) down to the stem, using the model's `group_matcher` (None = off).
        clip_mode, clip_grad: gradient clipping ('agc' factor 0.01 in the paper; 'norm'; 'none').
        img_size, crop_pct: training crop and the eval centre-crop fraction.
        scale, ratio: random-resized-crop area and aspect ranges; hflip: flip probability.
        rand_augment: RandAugment spec in timm's notation ('' to disable).
        reprob, remode, recount: random erasing probability, fill mode and count.
        mixup, cutmix, mixup_prob, mixup_switch_prob: batch mixing (alpha 0 disables each).
        smoothing: label smoothing, folded into the (mixed) soft targets.
        repeated_aug: DeiT repeated augmentation factor (1 = off).
        distillation, distillation_alpha, distillation_tau: 'hard' as in the paper, 'soft' or 'none'.
        ema, ema_decay: keep an exponential moving average of the weights.
        amp: autocast dtype ('none' = fp32 as in the paper).
        pretrained_head: keep the loaded classifier when the class count matches (fine-tuning).
        seed: base random seed.
    """

    name: str = "custom"
    epochs: int = 300
    batch_size: int = 128
    lr_base: float = 1e-3
    lr_base_batch: int = 1024
    min_lr: float = 1e-5
    warmup_epochs: float = 5
    warmup_lr: float = 1e-5
    lr_per_step: bool = False
    weight_decay: float = 0.025
    opt_eps: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float | None = None
    clip_mode: str = "agc"
    clip_grad: float = 0.01
    img_size: int = 224
    crop_pct: float = 0.875
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    rand_augment: str = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    remode: str = "pixel"
    recount: int = 1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    repeated_aug: int = 3
    distillation: str = "hard"
    distillation_alpha: float = 0.5
    distillation_tau: float = 1.0
    ema: bool = True
    ema_decay: float = 0.99996
    amp: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        self._check_types()
        for name in ("betas", "scale", "ratio"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        positive = ("epochs", "batch_size", "lr_base", "lr_base_batch", "img_size", "recount", "repeated_aug")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrainRecipe.{name} must be positive, got {getattr(self, name)!r}")
        probabilities = ("hflip", "reprob", "mixup_prob", "mixup_switch_prob", "distillation_alpha")
        for name in probabilities:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"TrainRecipe.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"TrainRecipe.smoothing must be in [0, 1), got {self.smoothing!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"TrainRecipe.crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"TrainRecipe.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"TrainRecipe.layer_decay must be in (0, 1] or None, got {self.layer_decay!r}")
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"TrainRecipe.warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs})")
        for name, allowed in (("clip_mode", CLIP_MODES), ("amp", AMP_DTYPES), ("distillation", DISTILLATION_MODES),
                              ("remode", ("pixel", "rand", "const"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"TrainRecipe.{name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if self.scale[0] > self.scale[1] or self.ratio[0] > self.ratio[1] or min(self.scale + self.ratio) <= 0:
            raise ConfigError(f"TrainRecipe.scale and ratio must be positive (low, high) ranges, got {self.scale}, "
                              f"{self.ratio}")

    def lr(self, global_batch: int) -> float:
        """Peak learning rate for `global_batch` images per step (linear scaling rule)."""
        return self.lr_base * global_batch / self.lr_base_batch

    def _check_types(self) -> None:
        """Each field holds its annotated kind (an int is a float too; a bool is neither), e.g. from `--set`."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in _PAIR_TYPES:
                ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value))
            else:
                ok = _FIELD_TYPES[field.type](value)
            if not ok:
                raise ConfigError(f"TrainRecipe.{field.name} must be {field.type}, got {value!r}")

    def replace(self, **changes: Any) -> TrainRecipe:
        """A copy with some fields changed (validated); unknown field names are an error naming them."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown TrainRecipe field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRecipe:
        if not isinstance(data, dict):
            raise ConfigError(f"a TrainRecipe is a JSON object of its fields, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown TrainRecipe field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as error:  # a missing field, or a value of the wrong type
            raise ConfigError(f"TrainRecipe: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> TrainRecipe:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ConfigError(f"the recipe is not valid JSON ({error}): {text[:80]!r}") from None
        return cls.from_dict(data)


# The paper (docs/training.md): main.py defaults, hard distillation from RegNetY-16GF, fp32, AGC 0.01.
PAPER_300 = TrainRecipe(name="paper-300ep", epochs=300)
PAPER_450 = TrainRecipe(name="paper-450ep", epochs=450)

# Fine-tuning a pretrained model on a new (usually small) dataset: our choice, not the paper's (the
# authors do not support fine-tuning with distillation). Shorter, lower rate, lighter regularisation,
# no distillation or repeated augmentation, global-norm clipping, layer-wise lr decay 0.9 per block
# (the pretrained early layers move least; for S0 the stem trains at 0.9**19 = 0.14 of the heads' rate).
FINETUNE = TrainRecipe(
    name="finetune", epochs=30, batch_size=64, lr_base=5e-4, lr_base_batch=256, min_lr=1e-6, warmup_epochs=2,
    warmup_lr=1e-6, lr_per_step=True, weight_decay=0.05, layer_decay=0.9, clip_mode="norm", clip_grad=1.0,
    rand_augment="rand-m7-mstd0.5", reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.1, repeated_aug=1,
    distillation="none", ema=False)

# The embedded default run (`efficientformer train` with no arguments): small images, a few minutes
# on 2 CPU cores. No augmentation that a tiny dataset cannot afford; per-step schedule.
DEFAULT = TrainRecipe(
    name="default", epochs=10, batch_size=64, lr_base=2e-3, lr_base_batch=64, min_lr=1e-5, warmup_epochs=1,
    warmup_lr=1e-4, lr_per_step=True, weight_decay=0.05, clip_mode="norm", clip_grad=5.0, img_size=64,
    crop_pct=1.0, scale=(0.6, 1.0), hflip=0.0, rand_augment="", reprob=0.0, mixup=0.0, cutmix=0.0,
    smoothing=0.1, repeated_aug=1, distillation="none", ema=False)

RECIPES: dict[str, TrainRecipe] = {r.name: r for r in (PAPER_300, PAPER_450, FINETUNE, DEFAULT)}


def get_recipe(name: str) -> TrainRecipe:
    """A shipped recipe by name; the error lists them."""
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownNameError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}") from None


__all__ = ["AMP_DTYPES", "CLIP_MODES", "DEFAULT", "FINETUNE", "PAPER_300", "PAPER_450", "RECIPES", "TrainRecipe",
           "get_recipe"]
