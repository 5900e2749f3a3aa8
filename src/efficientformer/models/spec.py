"""A model spec: the config of either model family this package builds, and the one place a spec becomes a network.

    spec = spec_from_json("found.json")        # a ModelConfig, or a MobileNetV2Config when "family" says so
    net = build_network(spec)                  # EfficientFormerV2(spec) or MobileNetV2.from_config(spec)

Both families expose the same surface to the training job, checkpoints and benchmarks: `net.config`
(the spec: `name`, `num_classes`, `img_size`, `replace`, `to_dict`), `net.num_classes`,
`group_matcher` (layer-wise lr decay) and `.fuse()` on their parts. A spec's JSON (in a file, or in a
checkpoint's metadata) names its family with a "family" key; without one it is an EfficientFormerV2
ModelConfig, so every config written before MobileNetV2 could be trained still reads as it did.
"""

from __future__ import annotations

import os
from typing import Any, Union

from torch import nn

from efficientformer.errors import BadFileError, ConfigError, UnknownNameError
from efficientformer.models.config import ModelConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.models.mobilenetv2 import FAMILY as MOBILENETV2
from efficientformer.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from efficientformer.utils.jsonarg import read_json_argument

EFFICIENTFORMERV2 = "efficientformerv2"
ModelSpec = Union[ModelConfig, MobileNetV2Config]
FAMILIES: dict[str, type] = {EFFICIENTFORMERV2: ModelConfig, MOBILENETV2: MobileNetV2Config}


def family_of(spec: ModelSpec) -> str:
    """'efficientformerv2' or 'mobilenetv2'."""
    if isinstance(spec, MobileNetV2Config):
        return MOBILENETV2
    if isinstance(spec, ModelConfig):
        return EFFICIENTFORMERV2
    raise TypeError(f"not a model spec (ModelConfig or MobileNetV2Config): {type(spec).__name__}")


def spec_from_dict(data: dict[str, Any]) -> ModelSpec:
    """The spec a `to_dict` wrote, by its "family" key (absent: an EfficientFormerV2 ModelConfig)."""
    family = data.get("family", EFFICIENTFORMERV2)
    if family not in FAMILIES:
        raise UnknownNameError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    if family == EFFICIENTFORMERV2:
        return ModelConfig.from_dict({key: value for key, value in data.items() if key != "family"})
    return MobileNetV2Config.from_dict(data)


def spec_from_json(text_or_path: str | os.PathLike) -> ModelSpec:
    """Parse a spec from JSON text or a JSON file (`utils.jsonarg`: the one rule); errors name the file."""
    data, path = read_json_argument(text_or_path, "model config")
    if path is None:
        if not isinstance(data, dict):
            raise ConfigError(f"the model config must be a JSON object, got {type(data).__name__}")
        return spec_from_dict(data)
    if not isinstance(data, dict):
        raise BadFileError(f"invalid model config in {path}: expected a JSON object, got {type(data).__name__}")
    try:
        return spec_from_dict(data)
    except (ValueError, TypeError) as error:
        raise BadFileError(f"invalid model config in {path}: {error}") from error


def build_network(spec: ModelSpec) -> nn.Module:
    """The freshly initialised network of `spec`."""
    if family_of(spec) == MOBILENETV2:
        return MobileNetV2.from_config(spec)
    return EfficientFormerV2(spec)


__all__ = ["EFFICIENTFORMERV2", "FAMILIES", "MOBILENETV2", "ModelSpec", "build_network", "family_of",
           "spec_from_dict", "spec_from_json"]
