"""Training criteria: soft-target cross-entropy with label smoothing, DeiT-style distillation (docs/training.md)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from efficientformer.errors import ConfigError

DISTILLATION_MODES = ("none", "soft", "hard")


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against a distribution (mixup/cutmix targets, label smoothing); hard labels accepted too.

    Args:
        smoothing: label smoothing applied when targets are class indices (B,); targets that are
            already distributions (B, classes) are used as given (smooth them when mixing).
    """

    def __init__(self, smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 1:  # class indices: the same value, without building the (B, classes) targets
            return F.cross_entropy(logits.float(), targets, label_smoothing=self.smoothing)
        log_probs = F.log_softmax(logits.float(), dim=-1)  # (B, classes)
        return -(targets * log_probs).sum(dim=-1).mean()


class DistillationLoss(nn.Module):
    """`(1 - alpha) * base(class head, targets) + alpha * distill(dist head, teacher)` (DeiT; docs/training.md).

    The model must return `(class_logits, dist_logits)` in training (EfficientFormerV2 does when
    built with `distillation=True` and `set_distilled_training(True)`). 'hard' trains the
    distillation head on the teacher's argmax; 'soft' on its temperature-`tau` distribution (KL).
    The teacher is called in eval mode without gradients on the same (augmented) inputs.

    Args:
        base: criterion of the class head, e.g. SoftTargetCrossEntropy(smoothing).
        teacher: a module or callable mapping inputs to logits; None only with mode 'none'.
        mode: 'none' (plain base loss on a single output), 'soft' or 'hard'.
        alpha: weight of the distillation term (the paper: 0.5).
        tau: softmax temperature of soft distillation.
    """

    def __init__(self, base: nn.Module, teacher: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 mode: str = "hard", alpha: float = 0.5, tau: float = 1.0) -> None:
        super().__init__()
        if mode not in DISTILLATION_MODES:
            raise ConfigError(f"distillation mode must be one of {', '.join(DISTILLATION_MODES)}, got {mode!r}")
        if mode != "none" and teacher is None:
            raise ConfigError(f"distillation mode {mode!r} needs a teacher")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.base = base
        self.teacher = teacher
        self.mode = mode
        self.alpha = alpha
        self.tau = tau

    def forward(self, inputs: torch.Tensor, outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                targets: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            if isinstance(outputs, tuple):
                outputs = outputs[0]
            return self.base(outputs, targets)
        if not isinstance(outputs, tuple) or len(outputs) != 2:
            raise TypeError("distillation needs the model to return (class_logits, dist_logits): build it with "
                            "distillation=True and call model.set_distilled_training(True)")
        class_logits, dist_logits = outputs
        base_loss = self.base(class_logits, targets)
        with torch.no_grad():
            if isinstance(self.teacher, nn.Module):
                self.teacher.eval()
            teacher_logits = self.teacher(inputs).float()  # (B, classes)
        if teacher_logits.shape != dist_logits.shape:
            raise ConfigError(f"teacher logits {tuple(teacher_logits.shape)} do not match the distillation head "
                              f"{tuple(dist_logits.shape)}: the teacher must predict the same classes")
        if self.mode == "hard":
            distill_loss = F.cross_entropy(dist_logits.float(), teacher_logits.argmax(dim=-1))
        else:
            tau = self.tau
            distill_loss = F.kl_div(F.log_softmax(dist_logits.float() / tau, dim=-1),
                                    F.log_softmax(teacher_logits / tau, dim=-1),
                                    reduction="sum", log_target=True) * (tau * tau) / dist_logits.numel()
        return (1.0 - self.alpha) * base_loss + self.alpha * distill_loss


__all__ = ["DISTILLATION_MODES", "DistillationLoss", "SoftTargetCrossEntropy"]
