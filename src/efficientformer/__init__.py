"""EfficientFormerV2 for mobile vision: model zoo, checkpoint conversion, fast inference."""

from efficientformer.errors import UserError
from efficientformer.factory import convert_checkpoint, create_model, data_config, infer_config, load_model
from efficientformer.models import EfficientFormerV2, ModelConfig, StageConfig, fuse, list_models
from efficientformer.weights import CheckpointError, DataConfig, LoadReport, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataConfig",
    "EfficientFormerV2",
    "LoadReport",
    "ModelConfig",
    "StageConfig",
    "UserError",
    "convert_checkpoint",
    "create_model",
    "data_config",
    "fuse",
    "infer_config",
    "list_models",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
