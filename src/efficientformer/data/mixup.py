"""Batch Mixup / CutMix with label-smoothed soft targets, as timm's `Mixup` in 'batch' mode (docs/training.md).

    mixup = Mixup.from_recipe(recipe, num_classes=1000)
    generator = sample_generator(recipe.seed, epoch, step, stream=MIXUP_STREAM)
    images, targets = mixup(images, labels, generator)        # targets: (B, classes), rows sum to 1

One decision per batch: with probability `prob` the batch is mixed, by CutMix with probability
`switch_prob` when both are enabled, with lam ~ Beta(alpha, alpha). Every image is mixed with its
mirror in the batch (`x.flip(0)`); for CutMix lam is corrected to the pasted box's true area.
Targets are `lam * smooth(y) + (1 - lam) * smooth(y.flip(0))`.

Differences from timm: the input is not modified in place; odd batches are allowed (the middle
image mixes with itself); the Beta draw comes from a NumPy generator seeded by the torch generator
passed in (torch has no seeded Beta sampler).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from efficientformer.data.seeding import randint, uniform
from efficientformer.errors import ConfigError


def smoothed_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) class indices -> (B, classes) float targets: 1 - smoothing + smoothing/classes on the label,
    smoothing/classes elsewhere."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.view(-1, 1).long(), 1.0 - smoothing + off)


def mix_targets(labels: torch.Tensor, num_classes: int, lam: float, smoothing: float = 0.0) -> torch.Tensor:
    """lam * smoothed(labels) + (1 - lam) * smoothed(labels.flip(0)), (B, classes)."""
    targets = smoothed_targets(labels, num_classes, smoothing)
    if lam == 1.0:
        return targets
    return targets * lam + targets.flip(0) * (1.0 - lam)


def beta(generator: torch.Generator, alpha: float) -> float:
    """One Beta(alpha, alpha) draw, seeded from `generator`."""
    rng = np.random.default_rng(int(torch.randint(2 ** 62, (), generator=generator)))
    return float(rng.beta(alpha, alpha))


Corners = tuple[int, int, int, int]  # (top, bottom, left, right), bottom and right exclusive


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator) -> tuple[Corners, float]:
    """timm's rand_bbox + area correction: a box of about (1 - lam) of the image, centred uniformly.

    The box side is sqrt(1 - lam) times the image side, clipped at the borders; returns
    ((top, bottom, left, right), corrected lam = 1 - box area / image area).
    """
    cut_ratio = float(np.sqrt(1.0 - lam))
    cut_h, cut_w = int(height * cut_ratio), int(width * cut_ratio)
    centre_y = randint(generator, 0, height - 1)
    centre_x = randint(generator, 0, width - 1)
    top, bottom = np.clip((centre_y - cut_h // 2, centre_y + cut_h // 2), 0, height).tolist()
    left, right = np.clip((centre_x - cut_w // 2, centre_x + cut_w // 2), 0, width).tolist()
    corrected = 1.0 - (bottom - top) * (right - left) / float(height * width)
    return (top, bottom, left, right), corrected


class Mixup:
    """Per-batch Mixup / CutMix: `mixup(images, labels, generator) -> (images, soft targets)`.

    Args:
        mixup_alpha: Beta parameter of Mixup; 0 disables it.
        cutmix_alpha: Beta parameter of CutMix; 0 disables it.
        prob: probability that a batch is mixed at all.
        switch_prob: probability of CutMix rather than Mixup when both are enabled.
        smoothing: label smoothing folded into the targets.
        num_classes: width of the targets.
        correct_lam: use the clipped CutMix box's true area for lam (timm's default).
    """

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, smoothing: float = 0.1, num_classes: int = 1000,
                 correct_lam: bool = True) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ConfigError(f"mixup and cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"mixup {name} must be in [0, 1], got {value}")
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {smoothing}")
        if num_classes < 1:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.smoothing = smoothing
        self.num_classes = num_classes
        self.correct_lam = correct_lam

    @classmethod
    def from_recipe(cls, recipe: Any, num_classes: int) -> Mixup:
        """Build from a TrainRecipe (read by attribute: mixup, cutmix, mixup_prob, mixup_switch_prob, smoothing)."""
        return cls(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
                   switch_prob=recipe.mixup_switch_prob, smoothing=recipe.smoothing, num_classes=num_classes)

    @property
    def enabled(self) -> bool:
        """Whether any batch can be mixed."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def sample_params(self, generator: torch.Generator) -> tuple[float, bool]:
        """(lam, use_cutmix) of one batch; lam 1.0 means the batch is left unmixed."""
        if not self.enabled or uniform(generator) >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = uniform(generator) < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        return beta(generator, self.cutmix_alpha if use_cutmix else self.mixup_alpha), use_cutmix

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a (B, C, H, W) batch and its (B,) labels; returns new images and (B, classes) targets."""
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"expected (B, C, H, W) images and (B,) labels, got {tuple(images.shape)} and "
                             f"{tuple(labels.shape)}")
        lam, use_cutmix = self.sample_params(generator)
        if lam == 1.0:
            return images, mix_targets(labels, self.num_classes, 1.0, self.smoothing)
        if use_cutmix:
            (top, bottom, left, right), corrected = cutmix_box(images.shape[-2], images.shape[-1], lam, generator)
            if self.correct_lam:
                lam = corrected
            mixed = images.clone()
            mixed[:, :, top:bottom, left:right] = images.flip(0)[:, :, top:bottom, left:right]
        else:
            mixed = images * lam + images.flip(0) * (1.0 - lam)
        return mixed, mix_targets(labels, self.num_classes, lam, self.smoothing)

    def __repr__(self) -> str:
        return (f"Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, "
                f"switch_prob={self.switch_prob}, smoothing={self.smoothing}, num_classes={self.num_classes})")


__all__ = ["Mixup", "smoothed_targets"]
