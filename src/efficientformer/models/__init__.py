"""Architectures: configs, the registry, the blocks and the network, its inference fast path and its summary."""

from efficientformer.models import variants  # noqa: F401  (registers the published configs)
from efficientformer.models.config import ModelConfig, StageConfig
from efficientformer.models.efficientformer_v2 import EfficientFormerV2
from efficientformer.models.fuse import APPROXIMATIONS, fuse
from efficientformer.models.mobilenetv2 import MOBILENETV2_CONFIGS, MobileNetV2, MobileNetV2Config, create_mobilenetv2
from efficientformer.models.registry import get as get_config
from efficientformer.models.registry import list_models, register
from efficientformer.models.segmentation import Segmenter, SegmenterConfig
from efficientformer.models.spec import ModelSpec, build_network
from efficientformer.models.summary import ModelSummary, model_summary

__all__ = ["APPROXIMATIONS", "MOBILENETV2_CONFIGS", "EfficientFormerV2", "MobileNetV2", "MobileNetV2Config",
           "ModelConfig", "ModelSpec", "ModelSummary", "Segmenter", "SegmenterConfig", "StageConfig", "build_network",
           "create_mobilenetv2", "fuse", "get_config", "list_models", "model_summary", "register"]
