"""Mask datasets (layouts, errors naming the file), the Semantic FPN model and mIoU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mask_data import CLASSES, IGNORE, ColourOracle, build_mask_dataset
from PIL import Image

import efficientformer
from efficientformer.data.folder import SkippedSample
from efficientformer.data.masks import MaskFolder, TrainPairTransform, find_pairs
from efficientformer.data.preprocess import ImageError
from efficientformer.models.segmentation import Segmenter, SegmenterConfig
from efficientformer.train.segmentation import SegmentationResult, confusion_matrix, evaluate_segmentation


def test_confusion_and_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    result = SegmentationResult(confusion, [])
    # IoU: class 0 = 1 / (2 + 2 - 1), class 1 = 3 / (3 + 4 - 3), class 2 = 1 / (2 + 1 - 1)
    assert result.per_class_iou == pytest.approx([100 / 3, 75.0, 50.0])
    assert result.miou == pytest.approx((100 / 3 + 75 + 50) / 3)
    assert result.pixel_accuracy == pytest.approx(500 / 7)
    absent = SegmentationResult(confusion_matrix(pred[:, :2], target[:, :2], 4), [])
    assert math.isnan(absent.per_class_iou[3])  # neither present nor predicted: left out of the mean


def test_layouts_and_palette_masks(tmp_path):
    build_mask_dataset(tmp_path / "ade", count=2, split="training", palette_masks=True)
    dataset = MaskFolder(tmp_path / "ade", split="training")
    image, mask = dataset[0]
    assert dataset.classes == CLASSES and mask.shape == (image.size[1], image.size[0]) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) <= {0, 1, 2, 3, IGNORE}
    voc = tmp_path / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (8, 8)).save(voc / "JPEGImages" / f"{name}.jpg")
        Image.new("L", (8, 8)).save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("b\n")
    assert [p[1].endswith("b.png") for p in find_pairs(voc, "val")] == [True]
    assert len(find_pairs(voc)) == 2


def test_bad_masks_are_errors_naming_the_file_or_skipped(tmp_path):
    root = build_mask_dataset(tmp_path / "d", count=3)
    Image.new("L", (10, 10)).save(root / "annotations" / "01.png")  # wrong size
    labels = np.zeros((64, 96), dtype=np.uint8)
    labels[5, 5], labels[6, 6] = 7, 9
    Image.fromarray(labels).save(root / "annotations" / "02.png")  # labels outside the classes
    strict = MaskFolder(root)
    with pytest.raises(ImageError, match=r"mask .*01.png is 10x10 but its image .*01.png is 96x64"):
        strict[1]
    with pytest.raises(ImageError, match=r"mask .*02.png holds label\(s\) 7, 9 outside the 4 classes \(0-3\) and "
                                         r"the ignore index 255"):
        strict[2]
    lenient = MaskFolder(root, on_bad_image="skip")
    assert [isinstance(lenient[i], SkippedSample) for i in range(3)] == [False, True, True]
    (root / "annotations" / "00.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image .*00.png has no mask"):
        MaskFolder(root)
    with pytest.raises(FileNotFoundError, match="class-name file"):
        MaskFolder(tmp_path / "d", classes=None) if (root / "classes.txt").unlink() is None else None


def test_reduce_zero_label_maps_ade_style_masks(tmp_path):
    root = build_mask_dataset(tmp_path / "d", count=1)
    raw = MaskFolder(root)[0][1]
    reduced = MaskFolder(root, classes=CLASSES[1:], reduce_zero_label=True)[0][1]
    assert torch.equal(reduced[raw == 0], torch.full_like(reduced[raw == 0], IGNORE))
    assert torch.equal(reduced[(raw > 0) & (raw != IGNORE)], raw[(raw > 0) & (raw != IGNORE)] - 1)


def test_miou_of_a_perfect_model_and_of_a_wrong_label_mapping(tmp_path):
    root = build_mask_dataset(tmp_path / "d", count=4)
    oracle = ColourOracle()
    right = evaluate_segmentation(oracle, MaskFolder(root), 64, torch.device("cpu"))
    assert right.miou == pytest.approx(100.0) and right.pixel_accuracy == pytest.approx(100.0)
    shifted = evaluate_segmentation(oracle, MaskFolder(root, reduce_zero_label=True), 64, torch.device("cpu"))
    assert shifted.miou < 10.0  # labels off by one: almost nothing matches


def test_train_pair_transform_keeps_image_and_mask_aligned(tmp_path):
    root = build_mask_dataset(tmp_path / "d", count=1)
    image, mask = MaskFolder(root)[0]
    pixels, labels = TrainPairTransform(48)(image, mask, torch.Generator().manual_seed(3))
    assert pixels.shape == (3, 48, 48) and labels.shape == (48, 48)
    predicted = ColourOracle()(pixels[None]).argmax(1)[0]
    known = (labels != IGNORE) & (pixels.abs().sum(0) > 0)
    agree = (predicted[known] == labels[known]).float().mean()
    assert agree > 0.9  # nearest-neighbour mask vs bilinear image: only edge pixels may differ
    flipped = (predicted.flip(-1)[known.flip(-1)] == labels.flip(-1)[known.flip(-1)]).float().mean()
    assert flipped == agree and (predicted.flip(-1)[known] == labels[known]).float().mean() < agree - 0.1


def test_segmenter_shapes_and_head_parameter_count(tiny_config):
    config = SegmenterConfig(tiny_config, num_classes=5, fpn_channels=16, head_channels=8)
    model = Segmenter(config).eval()
    with torch.no_grad():
        for size in ((64, 96), (96, 64)):
            assert model(torch.randn(1, 3, *size)).shape == (1, 5, *size)
    widths, fpn, head = tiny_config.widths, 16, 8
    lateral = sum(c * fpn + fpn for c in widths)
    smooth = 4 * (fpn * fpn * 9 + fpn)
    first, later = fpn * head * 9 + head + 2 * head, head * head * 9 + head + 2 * head  # conv + bias, BN affine
    scale_heads = 4 * first + (0 + 0 + 1 + 2) * later
    classifier = head * 5 + 5
    count = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decode_head."))
    assert count == lateral + smooth + scale_heads + classifier
    backbone = efficientformer.create_model(tiny_config, features_only=True)
    assert sum(p.numel() for p in model.backbone.parameters()) == sum(p.numel() for p in backbone.parameters())
