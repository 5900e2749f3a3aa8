"""RandAugment: spec parsing, each op does what it says (against Pillow where timm calls it), determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from efficientformer.data import image_ops
from efficientformer.data.randaugment import (
    OPS,
    RAND_INCREASING_TRANSFORMS,
    RAND_TRANSFORMS,
    RandAugment,
    RandAugmentConfig,
    apply_op,
    parse_rand_augment,
)
from efficientformer.data.seeding import sample_generator

FILL = (124, 116, 104)


def _pixels(height: int = 23, width: int = 31, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) ** 2 * 200 + 20).astype(np.uint8)  # skewed: equalize has work to do


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (3, H, W)


def _from_pil(image: Image.Image) -> torch.Tensor:
    return _tensor(np.asarray(image).copy())


def test_parse_paper_spec_and_defaults():
    config = parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert config == RandAugmentConfig(magnitude=9, num_ops=2, magnitude_std=0.5, increasing=True)
    assert config.ops == RAND_INCREASING_TRANSFORMS and len(config.ops) == 15
    assert parse_rand_augment("rand-m7-mstd0.5").ops == RAND_TRANSFORMS
    assert parse_rand_augment("rand-n3-mmax15-inc0") == RandAugmentConfig(num_ops=3, magnitude_max=15)
    assert math.isinf(parse_rand_augment("rand-mstd101").magnitude_std)
    assert parse_rand_augment("") is None
    assert set(RAND_TRANSFORMS) | set(RAND_INCREASING_TRANSFORMS) <= set(OPS)


@pytest.mark.parametrize(("spec", "token"), [
    ("rand-m9-x3", "'x3'"), ("rand-m9-mstd", "'mstd'"), ("rand-m9.5", "'m9.5'"), ("auto-m9", "'auto'"),
    ("rand-w0", "'w0'"), ("rand-m9-m8", "'m8'"), ("rand-n0", "n must be"),
])
def test_parse_errors_name_the_bad_token(spec, token):
    with pytest.raises(ValueError, match=token):
        parse_rand_augment(spec)


def test_invert_solarize_posterize_solarize_add():
    image = _tensor(_pixels())
    assert torch.equal(image_ops.invert(image), 255 - image)
    solarized = image_ops.solarize(image, 128)
    assert torch.equal(solarized, torch.where(image >= 128, 255 - image, image))
    assert torch.equal(image_ops.solarize(image, 256), image)  # magnitude 0 of SolarizeIncreasing
    assert torch.equal(image_ops.posterize(image, 2), image & 0b1100_0000)
    assert torch.equal(image_ops.posterize(image, 0), torch.zeros_like(image))
    raised = image_ops.solarize_add(image, 100)
    assert torch.equal(raised, torch.where(image < 128, (image.int() + 100).clamp(max=255).to(torch.uint8), image))


def test_colour_ops_match_pillow_exactly():
    pixels = _pixels()
    pil, image = Image.fromarray(pixels), _tensor(pixels)
    assert torch.equal(image_ops.auto_contrast(image), _from_pil(ImageOps.autocontrast(pil)))
    assert torch.equal(image_ops.equalize(image), _from_pil(ImageOps.equalize(pil)))
    for bits in (1, 4, 7):
        assert torch.equal(image_ops.posterize(image, bits), _from_pil(ImageOps.posterize(pil, bits)))
    for factor in (0.1, 0.6, 1.4, 1.9):
        for ours, enhancer in ((image_ops.color, ImageEnhance.Color), (image_ops.contrast, ImageEnhance.Contrast),
                               (image_ops.brightness, ImageEnhance.Brightness),
                               (image_ops.sharpness, ImageEnhance.Sharpness)):
            assert torch.equal(ours(image, factor), _from_pil(enhancer(pil).enhance(factor))), (ours, factor)


def test_equalize_flattens_the_histogram():
    image = _tensor(_pixels(64, 64))
    before = torch.bincount(image[0].flatten().long(), minlength=256).float()
    after = torch.bincount(image_ops.equalize(image)[0].flatten().long(), minlength=256).float()
    # cumulative histogram of an equalised channel is close to the diagonal
    diagonal = torch.linspace(1 / 256, 1, 256) * image[0].numel()
    assert (after.cumsum(0) - diagonal).abs().max() < (before.cumsum(0) - diagonal).abs().max() / 3


def test_auto_contrast_stretches_to_full_range():
    image = _tensor(_pixels())
    out = image_ops.auto_contrast(image)
    assert out.amin(dim=(1, 2)).tolist() == [0, 0, 0] and out.amax(dim=(1, 2)).tolist() == [255, 255, 255]
    flat = torch.full((3, 4, 4), 77, dtype=torch.uint8)
    assert torch.equal(image_ops.auto_contrast(flat), flat)


def test_rotate_90_moves_a_marked_pixel_and_matches_pillow():
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    image[:, 1, 6] = 255  # row 1, column 6: top right
    rotated = image_ops.rotate(image, 90, FILL)
    assert rotated[:, 1, 1].tolist() == [255, 255, 255]  # counter-clockwise: top right -> top left
    assert int(rotated.sum()) == 3 * 255
    pixels = _pixels(16, 16)
    expected = _from_pil(Image.fromarray(pixels).rotate(90))
    assert torch.equal(image_ops.rotate(_tensor(pixels), 90, FILL), expected)


def test_geometric_ops_match_pillow_bilinear_and_fill_uncovered_area():
    pixels = _pixels()
    pil, image = Image.fromarray(pixels), _tensor(pixels)
    bilinear = Image.Resampling.BILINEAR
    cases = [
        (image_ops.rotate(image, 17.0, FILL), pil.rotate(17.0, resample=bilinear, fillcolor=FILL)),
        (image_ops.shear_x(image, -0.2, FILL), pil.transform(pil.size, Image.Transform.AFFINE, (1, -0.2, 0, 0, 1, 0),
                                                             resample=bilinear, fillcolor=FILL)),
        (image_ops.shear_y(image, 0.3, FILL), pil.transform(pil.size, Image.Transform.AFFINE, (1, 0, 0, 0.3, 1, 0),
                                                            resample=bilinear, fillcolor=FILL)),
        (image_ops.translate_x(image, 5.5, FILL), pil.transform(pil.size, Image.Transform.AFFINE, (1, 0, 5.5, 0, 1, 0),
                                                                resample=bilinear, fillcolor=FILL)),
    ]
    for ours, theirs in cases:  # Pillow truncates in double: exact up to rounding ties
        difference = (ours.int() - _from_pil(theirs).int()).abs()
        assert difference.max() <= 1 and (difference > 0).float().mean() < 0.05
    shifted = image_ops.translate_y(image, 4, FILL)
    assert torch.equal(shifted[:, :-4], image[:, 4:])  # content moves up by 4 rows
    assert (shifted[:, -4:] == torch.tensor(FILL, dtype=torch.uint8).view(3, 1, 1)).all()


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "SolarizeIncreasing",
                                  "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                                  "SharpnessIncreasing", "Posterize"])
def test_magnitude_zero_is_identity_where_it_should_be(name):
    image = _tensor(_pixels())
    out = apply_op(image, name, 0.0, sample_generator(0, 0, 0), FILL)
    if name == "Posterize":  # the decreasing-severity Posterize keeps 0 bits at magnitude 0, as in timm
        assert torch.equal(out, torch.zeros_like(image))
    else:
        assert torch.equal(out, image), name


def test_magnitude_ten_ops_change_the_image():
    image = _tensor(_pixels())
    for name in RAND_INCREASING_TRANSFORMS:
        out = apply_op(image, name, 10.0, sample_generator(0, 0, 1), FILL)
        assert out.shape == image.shape and out.dtype == torch.uint8
        assert not torch.equal(out, image), name
    assert torch.equal(apply_op(image, "PosterizeIncreasing", 10.0, sample_generator(0, 0, 0)), image & 0)


def test_signed_ops_take_both_signs():
    image = _tensor(_pixels())
    outputs = {apply_op(image, "TranslateXRel", 5.0, sample_generator(0, 0, i), FILL)[0, 0, 0].item()
               for i in range(16)}
    assert len(outputs) == 2  # shifted left or right by the same distance


def test_rand_augment_is_deterministic_per_generator_seed():
    augment = RandAugment("rand-m9-mstd0.5-inc1")
    image = _tensor(_pixels(32, 32))
    first = augment(image, sample_generator(0, 0, 0))
    assert first.shape == image.shape and first.dtype == torch.uint8
    assert torch.equal(first, augment(image, sample_generator(0, 0, 0)))
    results = [augment(image, sample_generator(0, 0, i)) for i in range(1, 12)]
    assert sum(not torch.equal(first, other) for other in results) >= 8
    assert torch.equal(image, _tensor(_pixels(32, 32)))  # input untouched


def test_rand_augment_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        RandAugment("rand-m9")(torch.zeros(3, 4, 4), sample_generator(0, 0, 0))
    with pytest.raises(ValueError, match="empty"):
        RandAugment("")
    with pytest.raises(ValueError, match="unknown RandAugment op"):
        apply_op(torch.zeros(3, 4, 4, dtype=torch.uint8), "Cutout", 5.0, sample_generator(0, 0, 0))
