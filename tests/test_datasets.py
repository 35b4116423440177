"""The dataset readers, on tiny files written in the official formats.

torchvision's own dataset classes (the reference's readers) serve as the oracle for pixel
values, channel order, labels and example order.
"""

import dataclasses
import os
import pickle
import urllib.error

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from tinydata import tiny_images, write_tiny

from core.data import DATASETS, load_dataset
from core.data import datasets as datasets_module
from core.errors import UserError


@pytest.fixture(autouse=True)
def _never_check_md5(monkeypatch):
    # torchvision's readers verify official checksums, which tiny files cannot match.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)


def _assert_split(split, n, num_classes):
    assert split.images.dtype == torch.uint8 and split.images.shape == (n, 3, 32, 32)
    assert split.images.is_contiguous()
    assert split.targets.dtype == torch.int64 and split.targets.shape == (n,)
    counts = torch.bincount(split.targets, minlength=num_classes)
    assert len(counts) == num_classes and counts.max() - counts.min() <= 1  # balanced


@pytest.mark.parametrize("name, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_matches_torchvision_reader(tmp_path, name, num_classes):
    write_tiny(name, str(tmp_path), n_train=120, n_test=40, seed=3)
    data = load_dataset(name, str(tmp_path), download=False)
    _assert_split(data.train, 120, num_classes)
    _assert_split(data.test, 40, num_classes)
    reader = getattr(torchvision.datasets, name.upper())
    root = os.path.join(str(tmp_path), name)
    for split, train in ((data.train, True), (data.test, False)):
        reference = reader(root, train=train)  # data: uint8 [N, H, W, C] in R, G, B order
        assert torch.equal(split.images.permute(0, 2, 3, 1), torch.from_numpy(reference.data))
        assert split.targets.tolist() == list(reference.targets)
        assert data.classes == reference.classes
    images, labels = tiny_images(120, num_classes, seed=3)  # exact pixel round trip
    assert torch.equal(data.train.images, torch.from_numpy(images))
    assert torch.equal(data.train.targets, torch.from_numpy(labels))


def test_cifar_channel_order_and_python3_pickles(tmp_path):
    # Hand-made batches, pickled by Python 3 with bytes keys: plane 0 must become red.
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    planes = np.concatenate([np.full((4, 1024), v, np.uint8) for v in (10, 20, 30)], axis=1)
    planes[0, 5] = 99  # red plane, row 0, column 5
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": planes, b"labels": [0, 1, 2, 9]}, fh, protocol=5)
    data = load_dataset("cifar10", str(tmp_path), download=False)
    assert data.train.images.shape == (20, 3, 32, 32)
    assert data.train.images[1, :, 3, 3].tolist() == [10, 20, 30]
    assert data.train.images[0, 0, 0, 5] == 99
    assert data.test.targets.tolist() == [0, 1, 2, 9]
    assert data.classes[0] == "airplane"  # no batches.meta: the published names


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_tiny("cifar10", str(tmp_path), n_train=20, n_test=10)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.makedirs, (str(marker),)

    path = tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(UserError, match="test_batch"):
        load_dataset("cifar10", str(tmp_path), download=False)
    assert not marker.exists()


def test_corrupt_cifar_file_names_it(tmp_path):
    root = write_tiny("cifar100", str(tmp_path), n_train=20, n_test=10)
    path = os.path.join(root, "cifar-100-python", "train")
    content = open(path, "rb").read()
    open(path, "wb").write(content[: len(content) // 2])
    with pytest.raises(UserError, match="cifar-100-python/train"):
        load_dataset("cifar100", str(tmp_path), download=False)


def test_svhn_matches_torchvision_reader(tmp_path):
    root = write_tiny("svhn", str(tmp_path), n_train=60, n_test=30, seed=1)
    data = load_dataset("svhn", str(tmp_path), download=False)
    _assert_split(data.train, 60, 10)
    _assert_split(data.test, 30, 10)
    for split, name in ((data.train, "train"), (data.test, "test")):
        reference = torchvision.datasets.SVHN(root, split=name)  # data: uint8 [N, C, H, W]
        assert torch.equal(split.images, torch.from_numpy(reference.data))
        assert split.targets.tolist() == reference.labels.tolist()
    images, labels = tiny_images(60, 10, seed=1)
    assert torch.equal(data.train.images, torch.from_numpy(images))
    assert torch.equal(data.train.targets, torch.from_numpy(labels))
    assert 0 in data.train.targets and 10 not in data.train.targets  # stored 10 means digit 0
    assert data.mean == (0.0, 0.0, 0.0) and data.std == (1.0, 1.0, 1.0) and not data.augment


def test_svhn_pixel_layout(tmp_path):
    x = np.zeros((32, 32, 3, 2), np.uint8)
    x[2, 7, 1, 1] = 200  # row 2, column 7, green, image 1
    (tmp_path / "svhn").mkdir()
    for split in ("train", "test"):
        scipy.io.savemat(tmp_path / "svhn" / f"{split}_32x32.mat", {"X": x, "y": [[10], [3]]})
    data = load_dataset("svhn", str(tmp_path), download=False)
    assert data.train.images[1, 1, 2, 7] == 200 and data.train.images.sum() == 200
    assert data.train.targets.tolist() == [0, 3]


def test_corrupt_svhn_file_names_it(tmp_path):
    root = write_tiny("svhn", str(tmp_path), n_train=10, n_test=10)
    open(os.path.join(root, "test_32x32.mat"), "wb").write(b"not a mat file")
    with pytest.raises(UserError, match="test_32x32.mat"):
        load_dataset("svhn", str(tmp_path), download=False)


def _imagefolder_reference(root, splits):
    """Images (uint8 [N, 3, H, W]) and targets of torchvision ImageFolders, concatenated."""
    images, targets = [], []
    for split in splits:
        folder = torchvision.datasets.ImageFolder(os.path.join(root, split))
        for image, target in folder:  # PIL RGB images, decoded by ImageFolder's own loader
            images.append(torchvision.transforms.functional.pil_to_tensor(image))
            targets.append(target)
    return torch.stack(images), targets


def test_cinic10_merges_train_and_valid_like_imagefolder(tmp_path):
    root = write_tiny("cinic10", str(tmp_path), n_train=50, n_test=20)
    data = load_dataset("cinic10", str(tmp_path), download=False)
    _assert_split(data.train, 50, 10)
    _assert_split(data.test, 20, 10)
    assert len(os.listdir(os.path.join(root, "valid", "cat"))) > 0  # valid/ really holds some
    images, targets = _imagefolder_reference(root, ["train", "valid"])
    assert torch.equal(data.train.images, images) and data.train.targets.tolist() == targets
    images, targets = _imagefolder_reference(root, ["test"])
    assert torch.equal(data.test.images, images) and data.test.targets.tolist() == targets
    assert data.classes == sorted(data.classes) and data.classes[0] == "airplane"


def test_cinic10_cache(tmp_path, monkeypatch):
    root = write_tiny("cinic10", str(tmp_path), n_train=20, n_test=10)
    first = load_dataset("cinic10", str(tmp_path), download=False)
    caches = sorted(f for f in os.listdir(root) if f.endswith(".npy"))
    assert len(caches) == 2

    def no_decoding(paths):
        raise AssertionError("decoded again although the cache matches")

    with monkeypatch.context() as patch:
        patch.setattr(datasets_module, "_decode_images", no_decoding)
        second = load_dataset("cinic10", str(tmp_path), download=False)
    assert torch.equal(first.train.images, second.train.images)
    # A new image changes the file list, so the stale cache is not used.
    extra = np.full((32, 32, 3), 7, np.uint8)
    Image.fromarray(extra).save(os.path.join(root, "valid", "truck", "zzz.png"))
    third = load_dataset("cinic10", str(tmp_path), download=False)
    assert len(third.train) == 21 and third.train.images[-1].eq(7).all()


def test_cinic10_unwritable_folder_skips_cache(tmp_path, monkeypatch):
    root = write_tiny("cinic10", str(tmp_path), n_train=20, n_test=10)

    def read_only(path, write, mode="wb"):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(datasets_module, "atomic_write", read_only)
    data = load_dataset("cinic10", str(tmp_path), download=False)
    assert len(data.train) == 20
    assert not [f for f in os.listdir(root) if f.endswith(".npy")]


def test_corrupt_cinic10_image_names_it(tmp_path):
    root = write_tiny("cinic10", str(tmp_path), n_train=20, n_test=10)
    folder = os.path.join(root, "test", "cat")
    path = os.path.join(folder, sorted(os.listdir(folder))[0])
    open(path, "wb").write(b"\x89PNG broken")
    with pytest.raises(UserError, match=os.path.basename(path)):
        load_dataset("cinic10", str(tmp_path), download=False)


@pytest.mark.parametrize("name", DATASETS)
def test_missing_files_without_download(tmp_path, name):
    with pytest.raises(UserError) as error:
        load_dataset(name, str(tmp_path), download=False)
    message = str(error.value)
    assert os.path.join(str(tmp_path), name) in message
    assert "--no-download" in message and "--data-dir" in message and "\n" not in message


def test_partly_missing_files_name_the_missing_one(tmp_path):
    root = write_tiny("cifar10", str(tmp_path), n_train=20, n_test=10)
    os.remove(os.path.join(root, "cifar-10-batches-py", "data_batch_4"))
    with pytest.raises(UserError, match="missing cifar-10-batches-py/data_batch_4"):
        load_dataset("cifar10", str(tmp_path), download=False)


def test_failed_download_is_one_line_user_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError) as error:
        load_dataset("cifar10", str(tmp_path), download=True)
    message = str(error.value)
    assert "download failed" in message and "no network here" in message
    assert "cifar-10-python.tar.gz" in message and "\n" not in message


def test_download_then_read(tmp_path, monkeypatch):
    fetched = []

    def fake_archive(url, download_root, **kwargs):  # stands in for the real download
        fetched.append(url)
        write_tiny("cinic10", os.path.dirname(download_root), n_train=20, n_test=10)

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_archive)
    data = load_dataset("cinic10", str(tmp_path), download=True)
    assert fetched == [datasets_module.CINIC10_URL] and len(data.train) == 20


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(UserError, match="cifar10, cifar100, svhn, cinic10"):
        load_dataset("mnist", str(tmp_path))


def test_normalisation_constants():
    specs = datasets_module._SPECS
    assert specs["cifar10"].mean == (0.4914, 0.4822, 0.4465)
    assert specs["cifar100"].std == (0.267, 0.256, 0.276)
    assert specs["cinic10"].mean == (0.47889522, 0.47227842, 0.43047404)
    assert [specs[name].augment for name in DATASETS] == [True, True, False, True]
    assert dataclasses.is_dataclass(specs["svhn"])
