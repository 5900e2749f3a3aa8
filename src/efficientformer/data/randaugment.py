"""RandAugment in timm's notation (`rand-m9-mstd0.5-inc1`) on uint8 (3, H, W) tensors.

Semantics follow timm's `rand_augment_transform` (pytorch-image-models `timm/data/auto_augment.py`):
per image, `num_ops` operations are drawn uniformly with replacement from the op set; each is
applied with probability 0.5 at magnitude `m`, jittered by N(0, mstd**2) when `mstd` > 0 (uniform
in [0, m] when mstd > 100) and clipped to [0, mmax]. Magnitudes map to op arguments on timm's
0-10 scale; rotate, shear, translate and the 'Increasing' enhancements take a random sign.
The 'inc1' set is timm's `_RAND_INCREASING_TRANSFORMS`, whose severity grows with the magnitude.

All draws come from the `torch.Generator` passed in, so an image's augmentation is a function of
that generator's seed alone (see data/seeding.py).

Differences from timm: spec tokens timm skips or asserts on are errors that name the token;
'inc0' means off (timm's `bool('0')` turns it on); the weighted op choice ('w0') is not offered;
geometric ops resample bilinearly (timm passes the training interpolation, bicubic in docs/training.md, to
Pillow; see data/image_ops.py); PosterizeIncreasing at magnitude 10 keeps 0 bits (a black
image) as old Pillow did, where Pillow >= 10 rejects 0 bits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from efficientformer.data import image_ops
from efficientformer.data.seeding import normal, uniform
from efficientformer.errors import ConfigError, UnknownNameError

LEVEL_DENOM = 10.0  # timm's 'M' scale: magnitude 10 is the strongest standard setting
DEFAULT_FILL = (124, 116, 104)  # round(255 * IMAGENET_MEAN), timm's img_mean hparam
TRANSLATE_PCT = 0.45  # timm's default translate_pct of TranslateXRel/YRel

RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)


@dataclass(frozen=True)
class RandAugmentConfig:
    """A parsed RandAugment spec.

    Args:
        magnitude: op strength on the 0-10 scale ('m').
        num_ops: operations drawn per image ('n').
        magnitude_std: std of the per-op magnitude jitter ('mstd'); inf means uniform in [0, magnitude].
        magnitude_max: upper clip of the jittered magnitude ('mmax').
        increasing: use the increasing-severity op set ('inc1').
        prob: probability that each drawn op is applied (timm's rand_augment_ops: 0.5).
    """

    magnitude: float = LEVEL_DENOM
    num_ops: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_DENOM
    increasing: bool = False
    prob: float = 0.5

    @property
    def ops(self) -> tuple[str, ...]:
        """Names of the op set this config draws from."""
        return RAND_INCREASING_TRANSFORMS if self.increasing else RAND_TRANSFORMS


def parse_rand_augment(spec: str) -> RandAugmentConfig | None:
    """Parse timm's RandAugment spec, e.g. 'rand-m9-mstd0.5-inc1'; '' gives None (no RandAugment).

    Sections after 'rand' are a key and a number: m (magnitude), n (ops per image), mstd
    (magnitude std; above 100 means uniform), mmax (magnitude clip), inc (0/1). Errors name the token.
    """
    spec = spec.strip()
    if not spec:
        return None
    name, *tokens = spec.split("-")
    if name != "rand":
        raise ConfigError(f"RandAugment spec {spec!r} must start with 'rand', got {name!r}")
    values: dict[str, float] = {}
    for token in tokens:
        match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d*)?|\.\d+)", token)
        if match is None:
            raise ConfigError(f"RandAugment spec {spec!r}: cannot read section {token!r} (expected a key and a "
                              f"number, e.g. 'm9', 'n2', 'mstd0.5', 'mmax10', 'inc1')")
        key, number = match.group(1), float(match.group(2))
        if key not in ("m", "n", "mstd", "mmax", "inc"):
            raise ConfigError(f"RandAugment spec {spec!r}: unknown section {token!r} (known keys: m, n, mstd, mmax, "
                              f"inc{'; the weighted choice w is not supported' if key == 'w' else ''})")
        if key in values:
            raise ConfigError(f"RandAugment spec {spec!r}: section {token!r} repeats the key {key!r}")
        if key in ("m", "n", "mmax", "inc") and not number.is_integer():
            raise ConfigError(f"RandAugment spec {spec!r}: section {token!r} needs an integer")
        values[key] = number
    magnitude_std = values.get("mstd", 0.0)
    config = RandAugmentConfig(
        magnitude=values.get("m", LEVEL_DENOM), num_ops=int(values.get("n", 2)),
        magnitude_std=math.inf if magnitude_std > 100 else magnitude_std,
        magnitude_max=values.get("mmax", LEVEL_DENOM), increasing=bool(values.get("inc", 0)))
    if config.num_ops < 1:
        raise ConfigError(f"RandAugment spec {spec!r}: n must be at least 1, got {config.num_ops}")
    return config


def _signed(value: float, generator: torch.Generator) -> float:
    """Negate with probability 1/2 (timm's _randomly_negate)."""
    return -value if uniform(generator) > 0.5 else value


def _enhance_increasing(level: float, generator: torch.Generator) -> float:
    """Factor 1 +- 0.9 * level/10, kept >= 0.1: stronger either way as the level grows."""
    return max(0.1, 1.0 + _signed(level / LEVEL_DENOM * 0.9, generator))


def _enhance(level: float, _: torch.Generator) -> float:
    """Factor in [0.1, 1.9] growing with the level (below 1 weakens, so severity is not monotonic)."""
    return level / LEVEL_DENOM * 1.8 + 0.1


_LevelFn = Callable[[float, torch.Generator], float]


def _op_table() -> dict[str, tuple[Callable[..., torch.Tensor], _LevelFn | None, bool]]:
    """name -> (function of (image, argument, ...), level-to-argument map or None, geometric?)."""
    return {
        "AutoContrast": (image_ops.auto_contrast, None, False),
        "Equalize": (image_ops.equalize, None, False),
        "Invert": (image_ops.invert, None, False),
        "Rotate": (image_ops.rotate, lambda level, g: _signed(level / LEVEL_DENOM * 30.0, g), True),
        "Posterize": (image_ops.posterize, lambda level, _: int(level / LEVEL_DENOM * 4), False),
        "PosterizeIncreasing": (image_ops.posterize, lambda level, _: 4 - int(level / LEVEL_DENOM * 4), False),
        "Solarize": (image_ops.solarize, lambda level, _: int(level / LEVEL_DENOM * 256), False),
        "SolarizeIncreasing": (image_ops.solarize, lambda level, _: 256 - int(level / LEVEL_DENOM * 256), False),
        "SolarizeAdd": (image_ops.solarize_add, lambda level, _: int(level / LEVEL_DENOM * 110), False),
        "Color": (image_ops.color, _enhance, False),
        "ColorIncreasing": (image_ops.color, _enhance_increasing, False),
        "Contrast": (image_ops.contrast, _enhance, False),
        "ContrastIncreasing": (image_ops.contrast, _enhance_increasing, False),
        "Brightness": (image_ops.brightness, _enhance, False),
        "BrightnessIncreasing": (image_ops.brightness, _enhance_increasing, False),
        "Sharpness": (image_ops.sharpness, _enhance, False),
        "SharpnessIncreasing": (image_ops.sharpness, _enhance_increasing, False),
        "ShearX": (image_ops.shear_x, lambda level, g: _signed(level / LEVEL_DENOM * 0.3, g), True),
        "ShearY": (image_ops.shear_y, lambda level, g: _signed(level / LEVEL_DENOM * 0.3, g), True),
        # the relative translations become pixels of the image's own width / height in apply_op
        "TranslateXRel": (image_ops.translate_x, lambda level, g: _signed(level / LEVEL_DENOM * TRANSLATE_PCT, g),
                          True),
        "TranslateYRel": (image_ops.translate_y, lambda level, g: _signed(level / LEVEL_DENOM * TRANSLATE_PCT, g),
                          True),
    }


OPS = _op_table()


def apply_op(image: torch.Tensor, name: str, magnitude: float, generator: torch.Generator,
             fill: tuple[int, int, int] = DEFAULT_FILL, interpolation: str = "bilinear") -> torch.Tensor:
    """Apply one named op at `magnitude` (0-10 scale, not jittered here), drawing its sign from `generator`.

    Args:
        name: a key of OPS (timm's op names).
        fill: colour of the area geometric ops uncover.
        interpolation: resampling of the geometric ops (data.image_ops.GEOMETRIC_INTERPOLATIONS).
    """
    if name not in OPS:
        raise UnknownNameError(f"unknown RandAugment op {name!r}; known: {', '.join(OPS)}")
    function, level_to_arg, geometric = OPS[name]
    if level_to_arg is None:
        return function(image)
    argument = level_to_arg(magnitude, generator)
    if name == "TranslateXRel":
        argument *= image.shape[-1]  # fraction of the width -> pixels
    elif name == "TranslateYRel":
        argument *= image.shape[-2]
    if geometric:
        return function(image, argument, fill, interpolation)
    return function(image, argument)


class RandAugment:
    """RandAugment on uint8 (3, H, W) tensors: `augment(image, generator) -> image`.

    Args:
        config: a RandAugmentConfig, or a timm spec string such as 'rand-m9-mstd0.5-inc1'.
        fill: colour of the area geometric ops uncover (timm: the dataset mean in uint8).
        interpolation: resampling of rotate / shear / translate.
    """

    def __init__(self, config: RandAugmentConfig | str, fill: tuple[int, int, int] = DEFAULT_FILL,
                 interpolation: str = "bilinear") -> None:
        if isinstance(config, str):
            parsed = parse_rand_augment(config)
            if parsed is None:
                raise ValueError("an empty RandAugment spec means no RandAugment: do not build one")
            config = parsed
        if interpolation not in image_ops.GEOMETRIC_INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {', '.join(image_ops.GEOMETRIC_INTERPOLATIONS)}, "
                              f"got {interpolation!r}")
        self.config = config
        self.fill = tuple(int(value) for value in fill)
        self.interpolation = interpolation

    def sample_magnitude(self, generator: torch.Generator) -> float:
        """The magnitude of one op application: jittered as configured, clipped to [0, magnitude_max]."""
        config = self.config
        magnitude = config.magnitude
        if math.isinf(config.magnitude_std):
            magnitude = uniform(generator, 0.0, magnitude)
        elif config.magnitude_std > 0:
            magnitude = normal(generator, magnitude, config.magnitude_std)
        return max(0.0, min(magnitude, config.magnitude_max))

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        image_ops.check_image(image)
        ops = self.config.ops
        choices = torch.randint(len(ops), (self.config.num_ops,), generator=generator).tolist()
        for choice in choices:
            if uniform(generator) > self.config.prob:
                continue
            image = apply_op(image, ops[choice], self.sample_magnitude(generator), generator, self.fill,
                             self.interpolation)
        return image

    def __repr__(self) -> str:
        config = self.config
        return (f"RandAugment(m={config.magnitude:g}, n={config.num_ops}, mstd={config.magnitude_std:g}, "
                f"mmax={config.magnitude_max:g}, increasing={config.increasing}, p={config.prob:g})")


__all__ = ["OPS", "RandAugment", "RandAugmentConfig", "parse_rand_augment"]
