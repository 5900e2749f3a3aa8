"""MobileNetV2 (Sandler et al., arXiv 1801.04381) as a reference model for benchmarks.

The structure and parameter counts are the standard ones (torchvision/timm `mobilenet_v2`): a 3x3
stride-2 stem, seven stages of inverted residual blocks, a 1x1 conv to 1280 (x width multiplier
when it is above 1), global average pooling, dropout and a linear classifier; every conv is
followed by BatchNorm, and all but the projection convs by ReLU6. It is not an EfficientFormerV2
config and is not in the model registry: build it with `create_mobilenetv2(name)`, or from its
`MobileNetV2Config` (the `config` of every MobileNetV2, saved in its checkpoints, so that it trains
and reloads through the training job like any variant; models/spec.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from efficientformer.errors import BadFileError, ConfigError, MissingFileError, UnknownNameError
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
FAMILY = "mobilenetv2"


@dataclass(frozen=True)
class MobileNetV2Config:
    """Everything a MobileNetV2 is built from; JSON carries `"family": "mobilenetv2"` to tell it from a ModelConfig.

    Args:
        name: what the model is reported and saved under.
        width_mult: scales every channel count (rounded to multiples of 8); the last conv's 1280
            channels only grow, never shrink.
        num_classes: classifier outputs; 0 returns the pooled features.
        drop_rate: dropout before the classifier.
        img_size: (height, width) it is trained and evaluated at; the network itself takes any size.
    """

    name: str = "mobilenetv2_100"
    width_mult: float = 1.0
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.2
    img_size: tuple[int, int] = (224, 224)
    family: ClassVar[str] = FAMILY

    def __post_init__(self) -> None:
        size = (self.img_size, self.img_size) if isinstance(self.img_size, int) else tuple(self.img_size)
        object.__setattr__(self, "img_size", size)
        if not self.width_mult > 0:
            raise ConfigError(f"MobileNetV2Config.width_mult must be positive, got {self.width_mult!r}")
        if self.num_classes < 0:
            raise ConfigError(f"MobileNetV2Config.num_classes must be >= 0, got {self.num_classes!r}")
        if self.in_chans < 1:
            raise ConfigError(f"MobileNetV2Config.in_chans must be >= 1, got {self.in_chans!r}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"MobileNetV2Config.drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"MobileNetV2Config.img_size must be a positive int or (height, width), got "
                              f"{self.img_size!r}")

    def replace(self, **changes: Any) -> MobileNetV2Config:
        """A copy with some fields changed (validated again); an unknown field is an error naming it."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown MobileNetV2Config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, with the family first."""
        return {"family": FAMILY, **dataclasses.asdict(self), "img_size": list(self.img_size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MobileNetV2Config:
        """Inverse of `to_dict`; an unknown key or another family is an error that names it."""
        values = dict(data)
        family = values.pop("family", FAMILY)
        if family != FAMILY:
            raise ConfigError(f"not a MobileNetV2 config: family is {family!r}")
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown MobileNetV2Config key(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**values)
        except TypeError as error:  # a value of the wrong type
            raise ConfigError(f"MobileNetV2Config: {error}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> MobileNetV2Config:
        """Parse JSON text, or read it from a file path (errors name the file)."""
        text = str(text_or_path)
        if text.lstrip().startswith("{"):
            try:
                return cls.from_dict(json.loads(text))
            except json.JSONDecodeError as error:
                raise ConfigError(f"the model config is not valid JSON ({error}): {text[:80]!r}") from None
        path = Path(text_or_path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except OSError as error:
            raise MissingFileError(f"cannot read model config {path}: {error}") from error
        except ValueError as error:
            raise BadFileError(f"invalid model config in {path}: {error}") from error


# The two standard widths, by the names bench and compare use (not in the EfficientFormerV2 registry).
MOBILENETV2_CONFIGS: dict[str, MobileNetV2Config] = {
    name: MobileNetV2Config(name=name, width_mult=width) for name, width in WIDTH_MULTIPLIERS.items()}


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
        num_classes, width_mult, in_chans, drop_rate, name, img_size: the MobileNetV2Config fields
            (`self.config`); `MobileNetV2.from_config(config)` passes them all.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_chans: int = 3,
                 drop_rate: float = 0.2, *, name: str | None = None,
                 img_size: int | tuple[int, int] = (224, 224)) -> None:
        super().__init__()
        self.config = MobileNetV2Config(name=name or f"mobilenetv2_{round(width_mult * 100):03d}",
                                        width_mult=width_mult, num_classes=num_classes, in_chans=in_chans,
                                        drop_rate=drop_rate, img_size=img_size)
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

    @classmethod
    def from_config(cls, config: MobileNetV2Config) -> MobileNetV2:
        """The network of `config` (freshly initialised)."""
        return cls(num_classes=config.num_classes, width_mult=config.width_mult, in_chans=config.in_chans,
                   drop_rate=config.drop_rate, name=config.name, img_size=config.img_size)

    def group_matcher(self, coarse: bool = False) -> dict[str, object]:
        """Parameter-name patterns ordering the layers from input to output (timm's convention; layer-wise lr
        decay reads them): the stem, each inverted residual block, the last conv; the classifier comes last."""
        return {"stem": r"^stem", "blocks": [(r"^blocks\.(\d+)", None), (r"^conv_head", (99999,))]}

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
    if name not in MOBILENETV2_CONFIGS:
        raise UnknownNameError(f"unknown MobileNetV2 {name!r}; choose one of {', '.join(MOBILENETV2_CONFIGS)}")
    return MobileNetV2.from_config(MOBILENETV2_CONFIGS[name].replace(num_classes=num_classes, **kwargs))


__all__ = ["FAMILY", "MOBILENETV2_CONFIGS", "WIDTH_MULTIPLIERS", "MobileNetV2", "MobileNetV2Config",
           "create_mobilenetv2"]
