"""Image input: loading, evaluation preprocessing, bundled class names and sample photo."""

from efficientformer.data.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    eval_transform,
    imagenet_class_names,
    load_image,
    sample_image_path,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageError",
    "eval_transform",
    "imagenet_class_names",
    "load_image",
    "sample_image_path",
]
