"""MobileNetV2 (Sandler et al., arXiv 1801.04381) as a reference model for benchmarks.

The structure and parameter counts are the standard ones (torchvision/timm `mobilenet_v2`): a 3x3
stride-2 stem, seven stages of inverted residual blocks, a 1x1 conv to 1280 (x width multiplier
when it is above 1), global average pooling, dropout and a linear classifier; every conv is
followed by BatchNorm, and all but the projection convs by ReLU6. It is not an EfficientFormerV2
config and is not in the model registry: build it with `create_mobilenetv2(name)`.
"""

from __future__ import annotations

import torch
from torch import nn

from efficientformer.errors import UnknownNameError
from efficientformer.layers import ConvNorm, ConvNormAct

# (expand ratio t, output channels c, blocks n, first stride s), Table 2 of the paper.
INVERTED_RESIDUAL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280

WIDTH_MULTIPLIERS = {"mobilenetv2_100": 1.0, "mobilenetv2_140": 1.4}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round `value` to the nearest multiple of `divisor`, never going more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when the ratio is 1) -> 3x3 depthwise -> 1x1 linear projection, plus identity.

    The identity shortcut is used when the block keeps the resolution and the channel count.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = (ConvNormAct(in_channels, self.hidden, kernel_size=1, bias=False, act_layer=nn.ReLU6)
                       if expand_ratio != 1 else nn.Identity())
        self.depthwise = ConvNormAct(self.hidden, self.hidden, kernel_size=3, stride=stride, groups=self.hidden,
                                     bias=False, act_layer=nn.ReLU6)
        self.project = ConvNorm(self.hidden, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier: (B, 3, H, W) -> (B, num_classes) logits.

    Args:
        num_classes: classifier outputs; 0 returns the pooled features.
        width_mult: scales every channel count (rounded to multiples of 8); the last conv's 1280
            channels only grow, never shrink.
        drop_rate: dropout before the classifier.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_chans: int = 3,
                 drop_rate: float = 0.2) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.width_mult = width_mult
        self.num_classes = num_classes
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.stem = ConvNormAct(in_chans, channels, kernel_size=3, stride=2, bias=False, act_layer=nn.ReLU6)
        blocks = []
        for expand_ratio, base_channels, repeats, first_stride in INVERTED_RESIDUAL_SETTINGS:
            out_channels = make_divisible(base_channels * width_mult)
            for index in range(repeats):
                blocks.append(InvertedResidual(channels, out_channels, first_stride if index == 0 else 1,
                                               expand_ratio))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        self.conv_head = ConvNormAct(channels, self.num_features, kernel_size=1, bias=False, act_layer=nn.ReLU6)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference initialisation: He (fan-out) convs, unit BN, N(0, 0.01) classifier."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_features, H/32, W/32)."""
        return self.conv_head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify a feature map; `pre_logits` stops after pooling."""
        x = x.mean(dim=(2, 3), keepdim=True).flatten(1)  # (B, num_features); keepdim: XNNPACK delegates it
        if pre_logits:
            return x
        return self.head(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_mobilenetv2(name: str, num_classes: int = 1000, **kwargs) -> MobileNetV2:
    """Build `mobilenetv2_100` or `mobilenetv2_140` (width x1.0 / x1.4).

    Args:
        kwargs: other MobileNetV2 arguments (in_chans, drop_rate).
    """
    if name not in WIDTH_MULTIPLIERS:
        raise UnknownNameError(f"unknown MobileNetV2 {name!r}; choose one of {', '.join(WIDTH_MULTIPLIERS)}")
    return MobileNetV2(num_classes=num_classes, width_mult=WIDTH_MULTIPLIERS[name], **kwargs)


__all__ = [
    "INVERTED_RESIDUAL_SETTINGS",
    "WIDTH_MULTIPLIERS",
    "InvertedResidual",
    "MobileNetV2",
    "create_mobilenetv2",
    "make_divisible",
]
