"""Batch Mixup / CutMix: target rows, lam, CutMix box area, determinism, the disabled cases."""

from __future__ import annotations

import pytest
import torch

from efficientformer.data.mixup import Mixup, cutmix_box, mix_targets, smoothed_targets
from efficientformer.data.seeding import MIXUP_STREAM, sample_generator
from efficientformer.train.recipes import DEFAULT, PAPER_300

CLASSES = 7


def _batch(size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(size, dtype=torch.float32).view(size, 1, 1, 1).expand(size, 3, 16, 20).clone()
    return images, torch.arange(size) % CLASSES  # image b is the constant b: the mix is readable off it


def _generator(step: int) -> torch.Generator:
    return sample_generator(0, 0, step, stream=MIXUP_STREAM)


def test_smoothed_targets_match_train_losses():
    labels = torch.tensor([0, 3, 6, 3])
    assert torch.allclose(smoothed_targets(labels, CLASSES, 0.1),
                          torch.nn.functional.one_hot(labels, CLASSES).float() * 0.9 + 0.1 / CLASSES)


def test_mixup_lam_and_targets():
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, smoothing=0.1, num_classes=CLASSES)
    images, labels = _batch()
    for step in range(5):
        lam, use_cutmix = mixup.sample_params(_generator(step))
        assert not use_cutmix and 0.0 <= lam <= 1.0
        mixed, targets = mixup(images, labels, _generator(step))
        assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0))
        assert targets.shape == (6, CLASSES) and torch.allclose(targets.sum(dim=1), torch.ones(6))
        expected = (lam * smoothed_targets(labels, CLASSES, 0.1)
                    + (1 - lam) * smoothed_targets(labels.flip(0), CLASSES, 0.1))
        assert torch.allclose(targets, expected)
    assert torch.equal(images, _batch()[0])  # input untouched


def test_cutmix_box_area_matches_corrected_lam():
    mixup = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, smoothing=0.0, num_classes=CLASSES)
    images, labels = _batch()
    for step in range(10):
        mixed, targets = mixup(images, labels, _generator(step))
        pasted = mixed[0, 0] != images[0, 0]  # (H, W) where image 0 took image 5's pixels
        lam = 1.0 - pasted.float().mean().item()
        rows, cols = pasted.nonzero(as_tuple=True)
        if rows.numel():  # the changed pixels form one rectangle
            assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
            assert torch.equal(mixed[0, :, pasted], images[5, :, pasted])
        assert targets[0, labels[0]].item() == pytest.approx(lam, abs=1e-6)
        assert targets[0, labels[5]].item() == pytest.approx(1 - lam, abs=1e-6)
        assert torch.allclose(targets.sum(dim=1), torch.ones(6))


def test_cutmix_box_geometry():
    generator = torch.Generator().manual_seed(0)
    for lam in (0.0, 0.3, 0.75, 0.99):
        (top, bottom, left, right), corrected = cutmix_box(32, 40, lam, generator)
        assert 0 <= top <= bottom <= 32 and 0 <= left <= right <= 40
        assert corrected == pytest.approx(1 - (bottom - top) * (right - left) / (32 * 40))
        assert corrected >= lam - 1e-9  # clipping at the border only shrinks the box


def test_switch_between_mixup_and_cutmix():
    both = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, num_classes=CLASSES)
    kinds = {both.sample_params(_generator(step))[1] for step in range(20)}
    assert kinds == {True, False}
    always_cutmix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=1.0, num_classes=CLASSES)
    assert all(always_cutmix.sample_params(_generator(step))[1] for step in range(10))


def test_prob_zero_and_disabled_return_smoothed_targets_and_same_images():
    images, labels = _batch()
    for mixup in (Mixup(prob=0.0, num_classes=CLASSES), Mixup.from_recipe(DEFAULT, num_classes=CLASSES)):
        out, targets = mixup(images, labels, _generator(0))
        assert out is images
        assert torch.allclose(targets, smoothed_targets(labels, CLASSES, mixup.smoothing))
    assert not Mixup.from_recipe(DEFAULT, num_classes=CLASSES).enabled


def test_same_generator_seed_same_result():
    mixup = Mixup.from_recipe(PAPER_300, num_classes=CLASSES)
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([1, 2, 3, 4])
    first = mixup(images, labels, _generator(3))
    again = mixup(images, labels, _generator(3))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    others = [mixup(images, labels, _generator(step))[1] for step in range(4, 8)]
    assert any(not torch.equal(first[1], other) for other in others)


def test_mix_targets_lam_one_is_plain_and_bad_arguments_are_named():
    labels = torch.tensor([2, 5])
    assert torch.equal(mix_targets(labels, CLASSES, 1.0), smoothed_targets(labels, CLASSES))
    with pytest.raises(ValueError, match="switch_prob"):
        Mixup(switch_prob=1.5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        Mixup(num_classes=CLASSES)(torch.zeros(3, 8, 8), labels, _generator(0))
