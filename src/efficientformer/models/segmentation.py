"""Semantic FPN (Kirillov et al. 2019) on an EfficientFormerV2 backbone: the paper's ADE20K setting.

The backbone's four maps (strides 4/8/16/32) go through an FPN neck (1x1 laterals, top-down sum,
3x3 smoothing), each level is brought to stride 4 by 3x3 conv + BN + ReLU + x2 upsampling blocks,
the levels are summed, and a 1x1 conv classifies every pixel; logits are upsampled to the input.
Any input size the backbone takes works: every upsampling goes to the size of the map it meets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from efficientformer.errors import ConfigError
from efficientformer.layers import ConvNormAct
from efficientformer.models.config import STAGE_STRIDES, ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2


@dataclass(frozen=True)
class SegmenterConfig:
    """A backbone and a Semantic FPN head.

    Args:
        backbone: the EfficientFormerV2 architecture (its num_classes is unused).
        num_classes: segmentation classes (the ignore index is not one of them).
        fpn_channels: channels of the FPN levels (256 in the paper's setting).
        head_channels: channels of the per-level upsampling blocks (128 in the paper's setting).
        dropout: before the per-pixel classifier.
    """

    backbone: ModelConfig
    num_classes: int
    fpn_channels: int = 256
    head_channels: int = 128
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            object.__setattr__(self, "backbone", ModelConfig.from_dict(self.backbone))
        for name in ("num_classes", "fpn_channels", "head_channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"SegmenterConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"SegmenterConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone.to_dict(), "num_classes": self.num_classes,
                "fpn_channels": self.fpn_channels, "head_channels": self.head_channels, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterConfig:
        unknown = set(data) - {"backbone", "num_classes", "fpn_channels", "head_channels", "dropout"}
        if unknown:
            raise ConfigError(f"unknown SegmenterConfig key(s): {', '.join(sorted(unknown))}")
        return cls(**data)


class SemanticFPN(nn.Module):
    """FPN neck + semantic head over maps of `in_channels` at strides 4, 8, 16, 32 -> (B, classes, H/4, W/4)."""

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, fpn_channels: int = 256,
                 head_channels: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_channels, kernel_size=1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(fpn_channels, fpn_channels, kernel_size=3, padding=1)
                                    for _ in in_channels)
        self.scale_heads = nn.ModuleList()
        for stride in STAGE_STRIDES[:len(in_channels)]:
            steps = max(1, int(math.log2(stride // STAGE_STRIDES[0])))
            self.scale_heads.append(nn.ModuleList(
                ConvNormAct(fpn_channels if i == 0 else head_channels, head_channels, kernel_size=3, padding=1,
                            act_layer=nn.ReLU) for i in range(steps)))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(head_channels, num_classes, kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for index in range(len(laterals) - 1, 0, -1):  # top-down: coarse into fine
            laterals[index - 1] = laterals[index - 1] + F.interpolate(
                laterals[index], size=laterals[index - 1].shape[-2:], mode="nearest")
        levels = [conv(x) for conv, x in zip(self.smooth, laterals)]
        sizes = [f.shape[-2:] for f in features]
        out = None
        for level, (x, blocks) in enumerate(zip(levels, self.scale_heads)):
            for step, block in enumerate(blocks):
                x = block(x)
                if level > 0:  # x2 towards stride 4, to the size of the finer map it meets
                    x = F.interpolate(x, size=sizes[level - step - 1], mode="bilinear", align_corners=False)
            out = x if out is None else out + x  # (B, head_channels, H/4, W/4)
        return self.classifier(self.dropout(out))


class Segmenter(nn.Module):
    """EfficientFormerV2 backbone (features_only) + Semantic FPN: (B, 3, H, W) -> (B, classes, H, W) logits.

    Args:
        config: backbone and head.
        frozen_stages, norm_eval: the backbone options (see EfficientFormerV2).
    """

    def __init__(self, config: SegmenterConfig, frozen_stages: int = -1, norm_eval: bool = False) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        self.backbone = EfficientFormerV2(config.backbone, features_only=True, frozen_stages=frozen_stages,
                                          norm_eval=norm_eval)
        channels = tuple(info["num_chs"] for info in self.backbone.feature_info)
        self.decode_head = SemanticFPN(channels, config.num_classes, config.fpn_channels, config.head_channels,
                                       config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decode_head(self.backbone(x))  # (B, classes, H/4, W/4)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, classes, H, W)

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{name}" for name in self.backbone.no_weight_decay()}


__all__ = ["Segmenter", "SegmenterConfig", "SemanticFPN"]
