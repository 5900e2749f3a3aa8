"""Generic building blocks with no EfficientFormer knowledge."""

from efficientformer.layers.conv_norm import ConvNorm, ConvNormAct, fold_bn_into_conv
from efficientformer.layers.drop_path import DropPath
from efficientformer.layers.layer_scale import LayerScale2d
from efficientformer.layers.rel_pos_bias import RelPosBias, relative_position_index
from efficientformer.layers.sync_batchnorm import SyncBatchNorm2d, convert_sync_batchnorm
from efficientformer.layers.talking_head import TalkingHead

__all__ = [
    "ConvNorm",
    "ConvNormAct",
    "DropPath",
    "LayerScale2d",
    "RelPosBias",
    "SyncBatchNorm2d",
    "TalkingHead",
    "convert_sync_batchnorm",
    "fold_bn_into_conv",
    "relative_position_index",
]
