"""data.folder: class folders and list files, ignored names, clear errors, error vs skip through a DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from efficientformer.data import (
    AugmentedDataset,
    ImageError,
    ImageFolder,
    SkippedSample,
    collate_skip_none,
)
from efficientformer.data.folder import is_image_file


def _to_tensor(image: Image.Image) -> torch.Tensor:
    assert image.mode == "RGB"
    return torch.from_numpy(np.array(image.resize((8, 8)), dtype=np.uint8)).permute(2, 0, 1)  # (3, 8, 8)


def test_folder_classes_samples_and_ignored_names(image_tree):
    dataset = ImageFolder(image_tree.root)
    assert dataset.classes == ("cat", "dog", "fish")
    assert dataset.class_to_idx == {"cat": 0, "dog": 1, "fish": 2}
    assert [path for path, _ in dataset.samples] == image_tree.all_files()  # sorted, hidden/.txt/root files left out
    assert dataset.targets == [0] * 4 + [1] * 5 + [2] * 3
    assert dataset.class_counts() == {"cat": 4, "dog": 5, "fish": 3}
    assert len(dataset) == 12


def test_every_good_mode_comes_out_rgb(image_tree):
    dataset = ImageFolder(image_tree.root, on_bad_image="skip")
    good = {image_tree.path(name) for name in image_tree.good}
    for index, (path, label) in enumerate(dataset.samples):
        item = dataset[index]
        if path in good:
            image, item_label = item
            assert image.mode == "RGB" and image.size == (24, 16) and item_label == label
        else:
            assert isinstance(item, SkippedSample)
    tensors = ImageFolder(image_tree.root, _to_tensor, on_bad_image="skip")
    image, _ = tensors[0]
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8


def test_error_mode_names_the_file(image_tree):
    dataset = ImageFolder(image_tree.root)
    for name in image_tree.bad:
        index = [path for path, _ in dataset.samples].index(image_tree.path(name))
        with pytest.raises(ImageError, match=name.split("/")[-1]):
            dataset[index]
    assert dataset.skipped == []
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_skip_mode_returns_a_marker_and_records_it(image_tree):
    dataset = ImageFolder(image_tree.root, on_bad_image="skip")
    items = [dataset[index] for index in range(len(dataset))]
    skipped = [item for item in items if isinstance(item, SkippedSample)]
    assert sorted(item.path for item in skipped) == sorted(image_tree.path(name) for name in image_tree.bad)
    assert all(dataset.samples[item.index][0] == item.path for item in skipped)  # nothing substituted
    assert dataset.skipped == skipped
    assert dataset[-1] == dataset[len(dataset) - 1]


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_drops_bad_samples_and_reports_them(image_tree, workers):
    dataset = ImageFolder(image_tree.root, _to_tensor, on_bad_image="skip")
    loader = DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=collate_skip_none)
    labels, skipped, kept = [], [], 0
    for images, batch_labels, batch_skipped in loader:
        assert images.shape[0] == batch_labels.shape[0] == 4 - len(batch_skipped)
        kept += images.shape[0]
        labels += batch_labels.tolist()
        skipped += batch_skipped
    assert kept == len(image_tree.good) and kept + len(skipped) == len(dataset)
    assert sorted(skipped) == sorted(image_tree.path(name) for name in image_tree.bad)
    good = {image_tree.path(name) for name in image_tree.good}
    assert labels == [label for path, label in dataset.samples if path in good]  # order kept, nothing substituted


def test_dataloader_error_mode_raises_naming_the_file(image_tree):
    loader = DataLoader(ImageFolder(image_tree.root, _to_tensor), batch_size=4, num_workers=0,
                        collate_fn=collate_skip_none)
    with pytest.raises(ImageError, match="truncated.jpg"):
        list(loader)


def test_collate_of_an_all_bad_batch_and_bare_nones():
    marker = SkippedSample(3, "/data/x.jpg", "truncated")
    images, labels, skipped = collate_skip_none([marker, None])
    assert images.numel() == 0 and labels.dtype == torch.long and labels.numel() == 0 and skipped == ["/data/x.jpg"]
    images, labels, skipped = collate_skip_none([(torch.zeros(3, 2, 2), 1), None, marker, (torch.ones(3, 2, 2), 0)])
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [1, 0] and skipped == ["/data/x.jpg"]


def test_augmented_dataset_passes_skipped_samples_through(image_tree):
    base = ImageFolder(image_tree.root, on_bad_image="skip")
    wrapped = AugmentedDataset(base, lambda image, generator: _to_tensor(image))
    bad_index = [path for path, _ in base.samples].index(image_tree.path("dog/empty.jpg"))
    assert isinstance(wrapped[bad_index], SkippedSample) and wrapped[bad_index].path.endswith("empty.jpg")
    assert wrapped[0][0].shape == (3, 8, 8)


def test_list_file_names_integers_header_and_relative_paths(image_tree, tmp_path):
    absolute = image_tree.path("dog/cmyk.jpg")
    names = tmp_path / "images" / "train.csv"
    names.write_text(f"path,label\ncat/rgb.jpg,cat\n\n# a comment\n\"fish/plain.bmp\", fish\n{absolute},dog\n")
    dataset = ImageFolder(names)
    assert dataset.classes == ("cat", "dog", "fish")
    assert dataset.samples == [(image_tree.path("cat/rgb.jpg"), 0), (image_tree.path("fish/plain.bmp"), 2),
                               (absolute, 1)]
    assert dataset[1][0].mode == "RGB" and dataset[1][1] == 2

    numbers = tmp_path / "list.txt"
    numbers.write_text("images/cat/rgb.jpg,3\nimages/dog/cmyk.jpg,0\n")
    dataset = ImageFolder(numbers)
    assert dataset.classes == ("0", "1", "2", "3") and dataset.targets == [3, 0]
    given = ImageFolder(numbers, classes=("a", "b", "c", "d"))
    assert given.classes == ("a", "b", "c", "d") and given.targets == [3, 0]
    by_name = ImageFolder(names, classes=("fish", "dog", "cat"))
    assert by_name.targets == [2, 0, 1]


def test_list_file_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    cases = [("a.jpg,cat\nb.jpg,cat,extra\n", "line 2: expected 'path,label'"),
             ("a.jpg\n", "line 1: expected 'path,label'"),
             ("a.jpg,cat\n\nb.jpg,\n", "line 3: expected 'path,label'"),
             ("# only a comment\n\n", "lists no images")]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            ImageFolder(path)
    path.write_text("a.jpg,cat\nb.jpg,cow\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: unknown label 'cow'"):
        ImageFolder(path, classes=("cat", "dog"))
    path.write_text("a.jpg,0\nb.jpg,7\n")
    with pytest.raises(ValueError, match="line 2: unknown label '7'"):
        ImageFolder(path, classes=("cat", "dog"))


def test_missing_listed_file_is_a_bad_sample(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("gone.jpg,cat\n")
    with pytest.raises(ImageError, match="gone.jpg"):
        ImageFolder(path)[0]
    skipped = ImageFolder(path, on_bad_image="skip")[0]
    assert isinstance(skipped, SkippedSample) and skipped.path.endswith("gone.jpg")


def test_folder_errors_name_the_path(tmp_path, image_tree):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")
    flat = tmp_path / "flat"
    (flat / ".hidden").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(flat / "loose.png")
    with pytest.raises(ValueError, match="flat has no class folders"):
        ImageFolder(flat)
    (flat / "empty_class").mkdir()
    (flat / "empty_class" / ".thumb.jpg").write_bytes(b"x")
    (flat / "empty_class" / "labels.txt").write_text("x")
    with pytest.raises(ValueError, match="class folder .*empty_class has no images"):
        ImageFolder(flat)
    with pytest.raises(ValueError, match="'fish' are not among the 2 given classes"):
        ImageFolder(image_tree.root, classes=("cat", "dog"))
    assert ImageFolder(image_tree.root, classes=("bird", "cat", "dog", "fish")).class_counts()["bird"] == 0
    with pytest.raises(ValueError, match="on_bad_image"):
        ImageFolder(image_tree.root, on_bad_image="ignore")


def test_image_extensions():
    extensions = ("jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "ppm", "pgm", "JPG", "Png")
    assert all(is_image_file(f"x.{ext}") for ext in extensions)
    assert not any(is_image_file(name) for name in (".x.jpg", "x.txt", "x.jpg.part", "jpg", "x.svg"))
