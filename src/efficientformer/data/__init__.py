"""Image input: loading, preprocessing and augmentation, samplers, bundled class names and sample photo."""

from efficientformer.data.mixup import Mixup
from efficientformer.data.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    eval_transform,
    imagenet_class_names,
    load_image,
    sample_image_path,
)
from efficientformer.data.randaugment import RandAugment, RandAugmentConfig, parse_rand_augment
from efficientformer.data.sampler import EpochSampler
from efficientformer.data.seeding import MIXUP_STREAM, SAMPLER_STREAM, TRANSFORM_STREAM, sample_generator, sample_seed
from efficientformer.data.transforms import AugmentedDataset, EvalTransform, RandomErasing, TrainTransform

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "MIXUP_STREAM", "SAMPLER_STREAM", "TRANSFORM_STREAM", "AugmentedDataset",
    "EpochSampler", "EvalTransform", "ImageError", "Mixup", "RandAugment", "RandAugmentConfig", "RandomErasing",
    "TrainTransform", "eval_transform", "imagenet_class_names", "load_image", "parse_rand_augment",
    "sample_generator", "sample_image_path", "sample_seed",
]
