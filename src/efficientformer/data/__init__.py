"""Image input: folder/list readers, a run's datasets and held-out split, the embedded digits, segmentation masks,
the verify pass, preprocessing and augmentation, samplers, bundled assets.

(The per-sample random streams behind exact resume are `data.seeding`, used by the samplers and transforms.)
"""

from efficientformer.data.datasets import RunData, eval_dataset, run_datasets
from efficientformer.data.embedded import DigitsDataset
from efficientformer.data.folder import IMAGE_EXTENSIONS, ImageFolder, SkippedSample, collate_skip_none
from efficientformer.data.masks import MaskFolder
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
from efficientformer.data.transforms import AugmentedDataset, EvalTransform, RandomErasing, TrainTransform
from efficientformer.data.verify import BAD_IMAGE_REASONS, BadFile, VerifyReport, verify_images

__all__ = [
    "BAD_IMAGE_REASONS", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "AugmentedDataset", "BadFile",
    "DigitsDataset", "EpochSampler", "EvalTransform", "ImageError", "ImageFolder", "MaskFolder", "Mixup",
    "RandAugment", "RandAugmentConfig", "RandomErasing", "RunData", "SkippedSample", "TrainTransform", "VerifyReport",
    "collate_skip_none", "eval_dataset", "eval_transform", "imagenet_class_names", "load_image", "parse_rand_augment",
    "run_datasets", "sample_image_path", "verify_images",
]
