"""Architectures: configs, the registry, the blocks and the network."""

from efficientformer.models import variants  # noqa: F401  (registers the published configs)
from efficientformer.models.config import ModelConfig, StageConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.models.fuse import fuse
from efficientformer.models.registry import get as get_config
from efficientformer.models.registry import list_models

__all__ = ["EfficientFormerV2", "ModelConfig", "StageConfig", "fuse", "get_config", "list_models"]
