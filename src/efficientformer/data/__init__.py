"""Image input: folder/list readers, the verify pass, preprocessing and augmentation, samplers, bundled assets."""

from efficientformer.data.folder import IMAGE_EXTENSIONS, ImageFolder, SkippedSample, collate_skip_none
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
from efficientformer.data.verify import BAD_IMAGE_REASONS, BadFile, VerifyReport, verify_images

__all__ = [
    "BAD_IMAGE_REASONS", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "MIXUP_STREAM", "SAMPLER_STREAM",
    "TRANSFORM_STREAM", "AugmentedDataset", "BadFile", "EpochSampler", "EvalTransform", "ImageError", "ImageFolder",
    "Mixup", "RandAugment", "RandAugmentConfig", "RandomErasing", "SkippedSample", "TrainTransform", "VerifyReport",
    "collate_skip_none", "eval_transform", "imagenet_class_names", "load_image", "parse_rand_augment",
    "sample_generator", "sample_image_path", "sample_seed", "verify_images",
]
