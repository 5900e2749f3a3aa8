"""Training transforms: shapes, per-sample determinism across DataLoader workers, crop bounds, flip, erasing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from efficientformer.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from efficientformer.data.seeding import MIXUP_STREAM, sample_generator, sample_seed
from efficientformer.data.transforms import (
    AugmentedDataset,
    EvalTransform,
    RandomErasing,
    TrainTransform,
    normalize,
    pil_to_tensor,
    random_resized_crop_box,
    resized_crop,
)
from efficientformer.train.recipes import DEFAULT, PAPER_300


def _image(height: int = 40, width: int = 56, seed: int = 0) -> Image.Image:
    """A smooth colour gradient with noise: every flip, crop and op changes it visibly."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], axis=-1)
    pixels = pixels + rng.normal(0, 10, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class _Images:
    """A tiny in-memory (PIL image, label) dataset; index 3 is a bad sample (None)."""

    def __init__(self, count: int = 8) -> None:
        self.images = [_image(32 + 4 * i, 48 - 2 * i, seed=i) for i in range(count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return None if index == 3 else (self.images[index], index % 5)


def _paper_transform(img_size: int = 32) -> TrainTransform:
    return TrainTransform.from_recipe(PAPER_300.replace(img_size=img_size, reprob=0.5))


def test_sample_seed_mixes_every_component_and_rejects_negatives():
    seeds = {sample_seed(0, 0, 0), sample_seed(1, 0, 0), sample_seed(0, 1, 0), sample_seed(0, 0, 1),
             sample_seed(0, 0, 0, repeat=1), sample_seed(0, 0, 0, stream=MIXUP_STREAM),
             sample_seed(2 ** 32, 0, 0), sample_seed(0, 1, 0)}
    assert len(seeds) == 7  # (0, 1, 0) twice; (2**32, 0) does not collide with (0, 1)
    assert sample_seed(5, 6, 7) == sample_seed(5, 6, 7)
    with pytest.raises(ValueError, match="epoch"):
        sample_seed(0, -1, 0)


def test_train_transform_shapes_and_dtype():
    transform = _paper_transform(img_size=24)
    out = transform(_image(), sample_generator(0, 0, 0))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    rect = TrainTransform(img_size=(16, 20))(_image().convert("L"), sample_generator(0, 0, 0))
    assert rect.shape == (3, 16, 20)


def test_same_seed_epoch_index_same_output_and_different_otherwise():
    transform = _paper_transform()
    image = _image()
    first = transform(image, sample_generator(0, 2, 5))
    assert torch.equal(first, transform(image, sample_generator(0, 2, 5)))
    for other in ((0, 2, 6), (0, 3, 5), (1, 2, 5)):
        assert not torch.equal(first, transform(image, sample_generator(*other)))


def test_augmented_dataset_repeat_key_and_none_passthrough():
    dataset = AugmentedDataset(_Images(), _paper_transform(), seed=3)
    assert len(dataset) == 8 and dataset[3] is None
    image, label = dataset[2]
    assert label == 2 and torch.equal(image, dataset[(2, 0)][0])
    assert not torch.equal(image, dataset[(2, 1)][0])  # repeated-augmentation copies differ
    dataset.set_epoch(1)
    assert not torch.equal(image, dataset[2][0])


def _collate(items):
    kept = [item for item in items if item is not None]
    return torch.stack([image for image, _ in kept]), torch.tensor([label for _, label in kept])


@pytest.mark.parametrize("epoch", [0, 4])
def test_results_identical_across_worker_counts(epoch):
    dataset = AugmentedDataset(_Images(), _paper_transform(), seed=11)
    dataset.set_epoch(epoch)
    runs = []
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=_collate)
        runs.append([(images, labels) for images, labels in loader])
    for (images_a, labels_a), (images_b, labels_b) in zip(*runs, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
    direct = torch.stack([dataset[i][0] for i in (0, 1, 2)])
    assert torch.equal(direct, runs[0][0][0])


def test_random_resized_crop_respects_scale_and_ratio_bounds():
    height, width = 60, 80
    scale, ratio = (0.25, 0.5), (0.75, 4 / 3)
    generator = torch.Generator().manual_seed(0)
    areas = []
    for _ in range(300):
        top, left, crop_h, crop_w = random_resized_crop_box(height, width, scale, ratio, generator)
        assert 0 <= top and top + crop_h <= height and 0 <= left and left + crop_w <= width
        area = crop_h * crop_w / (height * width)
        areas.append(area)
        # rounding each side to whole pixels moves the area and aspect by at most ~1 pixel per side
        assert scale[0] * 0.9 <= area <= scale[1] * 1.1
        assert ratio[0] * 0.9 <= crop_w / crop_h <= ratio[1] * 1.1
    assert min(areas) < 0.3 and max(areas) > 0.45  # the whole range is used


def test_random_resized_crop_falls_back_to_centre_crop():
    generator = torch.Generator().manual_seed(0)
    # a 10:1 strip cannot hold a box of aspect <= 4/3 covering >= 90% of it: centre crop at the max aspect
    box = random_resized_crop_box(10, 100, (0.9, 1.0), (3 / 4, 4 / 3), generator)
    assert box == (0, (100 - 13) // 2, 10, 13)


def test_resized_crop_identity_and_close_to_pillow():
    image = _image(48, 64)
    pixels = pil_to_tensor(image)
    assert torch.equal(resized_crop(pixels, (0, 0, 48, 64), (48, 64)), pixels)
    ours = resized_crop(pixels, (4, 6, 40, 50), (24, 24))
    pil = image.resize((24, 24), Image.Resampling.BICUBIC, box=(6, 4, 56, 44))
    theirs = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    assert (ours.int() - theirs.int()).abs().float().mean() < 0.5


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_flip_probability_extremes(probability):
    image = _image(20, 20)
    transform = TrainTransform(img_size=20, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=probability)
    expected = normalize(pil_to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)
    if probability == 1.0:
        expected = expected.flip(-1)
    for index in range(5):
        assert torch.equal(transform(image, sample_generator(0, 0, index)), expected)


def test_random_erasing_changes_only_one_rectangle():
    image = torch.randn(3, 30, 40, generator=torch.Generator().manual_seed(1))
    for mode in ("pixel", "rand", "const"):
        erasing = RandomErasing(1.0, mode)
        (top, left, box_h, box_w), = erasing.sample_boxes(30, 40, sample_generator(0, 0, 7))
        assert 0.02 * 1200 * 0.8 <= box_h * box_w <= 1200 / 3 * 1.2
        out = erasing(image, sample_generator(0, 0, 7))
        changed = (out != image).any(dim=0)  # (H, W)
        inside = torch.zeros_like(changed)
        inside[top:top + box_h, left:left + box_w] = True
        assert not changed[~inside].any() and changed[inside].all()
        patch = out[:, top:top + box_h, left:left + box_w]
        if mode == "const":
            assert torch.equal(patch, torch.zeros_like(patch))
        if mode == "rand":  # one colour per box
            assert torch.equal(patch, patch[:, :1, :1].expand_as(patch))


def test_random_erasing_probability_extremes_and_count():
    image = torch.randn(3, 30, 40)
    never = RandomErasing(0.0)
    assert all(torch.equal(never(image, sample_generator(0, 0, i)), image) for i in range(10))
    always = RandomErasing(1.0)
    assert all(not torch.equal(always(image, sample_generator(0, 0, i)), image) for i in range(10))
    counts = {len(RandomErasing(1.0, max_count=3).sample_boxes(30, 40, sample_generator(0, 0, i))) for i in range(40)}
    assert counts <= {1, 2, 3} and len(counts) > 1
    with pytest.raises(ValueError, match="mode"):
        RandomErasing(0.5, "noise")


def test_default_recipe_has_no_augmentation_ops_and_eval_reuses_preprocess():
    transform = TrainTransform.from_recipe(DEFAULT)
    assert transform.rand_augment is None and transform.erasing is None and transform.img_size == (64, 64)
    image = _image(70, 90)
    expected = eval_transform(image, (64, 64), crop_pct=1.0)
    assert torch.equal(EvalTransform.from_recipe(DEFAULT)(image), expected)
    assert math.isclose(float(transform(image, sample_generator(0, 0, 0)).mean()), float(expected.mean()), abs_tol=0.5)
