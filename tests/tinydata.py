"""Tiny datasets written in the official on-disk formats, for tests across the project.

The images are learnable: every class has its own colour and stripe pattern, plus per-pixel
noise, so a few hundred training steps already reach well above chance accuracy. Everything is
a deterministic function of the seed, and balanced (class counts differ by at most one).
"""

import os
import pickle
import struct

import numpy as np
from PIL import Image

from core.data.datasets import CIFAR10_CLASSES, CIFAR100_CLASSES

CIFAR100_SUPERCLASSES = """aquatic_mammals fish flowers food_containers fruit_and_vegetables
household_electrical_devices household_furniture insects large_carnivores
large_man-made_outdoor_things large_natural_outdoor_scenes large_omnivores_and_herbivores
medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1
vehicles_2""".split()


def tiny_images(n: int, num_classes: int, size=(32, 32), seed: int = 0):
    """``(images uint8 [n, 3, H, W], labels int64 [n])``, balanced, in a shuffled order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    templates = class_templates(num_classes, size)
    noise = rng.normal(0.0, 24.0, size=(n, 3) + tuple(size)).astype(np.float32)
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def class_templates(num_classes: int, size=(32, 32)) -> np.ndarray:
    """float32 [C, 3, H, W] in 0..255: a colour per class times a class-specific stripe pattern."""
    height, width = size
    classes = np.arange(num_classes)[:, None]
    hue = (classes * 0.618034) % 1.0  # golden-ratio steps keep neighbouring classes apart
    colour = 0.5 + 0.4 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))  # [C, 3]
    frequency = 1 + classes % 3
    vertical = (classes // 3) % 2 == 1
    y = np.arange(height)[None, :, None] / height
    x = np.arange(width)[None, None, :] / width
    along = np.where(vertical[:, :, None], x, y)  # [C, H, W]
    stripes = np.cos(2 * np.pi * frequency[:, :, None] * along)
    pattern = 0.7 + 0.3 * stripes
    return (255 * colour[:, :, None, None] * pattern[:, None]).astype(np.float32)


def write_tiny(dataset: str, data_dir: str, n_train: int = 100, n_test: int = 50, seed: int = 0):
    """Write a tiny ``dataset`` under ``data_dir/dataset`` in its official layout; return that root.

    Loading it gives ``n_train`` training and ``n_test`` test examples (CINIC10 puts the first
    half of the training examples in ``train/`` and the rest in ``valid/``).
    """
    writers = {
        "cifar10": _write_cifar10,
        "cifar100": _write_cifar100,
        "svhn": _write_svhn,
        "cinic10": _write_cinic10,
    }
    root = os.path.join(data_dir, dataset)
    writers[dataset](root, n_train, n_test, seed)
    return root


def write_tiny_imagefolder(
    data_dir: str,
    num_classes: int = 4,
    n_train_per_class: int = 8,
    n_val_per_class: int = 4,
    size=(40, 48),
    seed: int = 0,
):
    """Write ImageNet-style ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``; return data_dir.

    ``size`` is (height, width).
    """
    wnids = [f"n{c:08d}" for c in range(num_classes)]
    splits = {"train": n_train_per_class, "val": n_val_per_class}
    for split_number, (split, per_class) in enumerate(splits.items()):
        images, labels = tiny_images(
            per_class * num_classes, num_classes, size, seed + split_number
        )
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            name = f"{wnids[label]}_{i}" if split == "train" else f"ILSVRC2012_val_{i + 1:08d}"
            path = os.path.join(data_dir, split, wnids[label], name + ".JPEG")
            _save_image(image, path, quality=95)
    return data_dir


def _save_image(image: np.ndarray, path: str, **options) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(path, **options)


# ---------------------------------------------------------------------------------------------
# CIFAR: the official files are Python 2 cPickle (protocol 2) dicts


class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2: str and bytes as byte strings, numpy under ``numpy.core``.

    This is how the official CIFAR files are encoded, so readers are tested on that format.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string

    def save_global(self, obj, name=None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def write_py2_pickle(obj, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        Py2Pickler(fh, protocol=2).dump(obj)


def _cifar_batch(images, labels, label_keys: dict, batch_label: str) -> dict:
    batch = {"batch_label": batch_label}
    batch.update({key: values(labels) for key, values in label_keys.items()})
    batch["data"] = images.reshape(len(images), -1)  # R, G, B planes of 1024 bytes each
    batch["filenames"] = [f"tiny_{i:06d}.png" for i in range(len(images))]
    return batch


def _write_cifar10(root: str, n_train: int, n_test: int, seed: int) -> None:
    folder = os.path.join(root, "cifar-10-batches-py")
    label_keys = {"labels": lambda labels: labels.tolist()}
    images, labels = tiny_images(n_train, 10, seed=seed)
    for part, chunk in enumerate(np.array_split(np.arange(n_train), 5)):
        batch = _cifar_batch(
            images[chunk], labels[chunk], label_keys, f"training batch {part + 1} of 5"
        )
        write_py2_pickle(batch, os.path.join(folder, f"data_batch_{part + 1}"))
    images, labels = tiny_images(n_test, 10, seed=seed + 1)
    batch = _cifar_batch(images, labels, label_keys, "testing batch 1 of 1")
    write_py2_pickle(batch, os.path.join(folder, "test_batch"))
    meta = {"num_cases_per_batch": 10000, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    write_py2_pickle(meta, os.path.join(folder, "batches.meta"))


def _write_cifar100(root: str, n_train: int, n_test: int, seed: int) -> None:
    folder = os.path.join(root, "cifar-100-python")
    label_keys = {
        "fine_labels": lambda labels: labels.tolist(),
        "coarse_labels": lambda labels: (labels // 5).tolist(),  # not the real grouping
    }
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = tiny_images(n, 100, seed=split_seed)
        batch = _cifar_batch(images, labels, label_keys, split)
        write_py2_pickle(batch, os.path.join(folder, split))
    meta = {"fine_label_names": list(CIFAR100_CLASSES), "coarse_label_names": CIFAR100_SUPERCLASSES}
    write_py2_pickle(meta, os.path.join(folder, "meta"))


# ---------------------------------------------------------------------------------------------
# SVHN and CINIC10


def _write_svhn(root: str, n_train: int, n_test: int, seed: int) -> None:
    import scipy.io

    os.makedirs(root, exist_ok=True)
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = tiny_images(n, 10, seed=split_seed)
        stored = np.where(labels == 0, 10, labels).astype(np.uint8)  # SVHN writes digit 0 as 10
        content = {"X": images.transpose(2, 3, 1, 0), "y": stored.reshape(-1, 1)}
        scipy.io.savemat(os.path.join(root, f"{split}_32x32.mat"), content)


def _write_cinic10(root: str, n_train: int, n_test: int, seed: int) -> None:
    train_images, train_labels = tiny_images(n_train, 10, seed=seed)
    half = n_train - n_train // 2  # train/ gets the first half, valid/ the rest: balanced together
    splits = {
        "train": (train_images[:half], train_labels[:half]),
        "valid": (train_images[half:], train_labels[half:]),
        "test": tiny_images(n_test, 10, seed=seed + 1),
    }
    for split, (images, labels) in splits.items():
        for name in CIFAR10_CLASSES:  # every class folder, even when a tiny split leaves it empty
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            name = f"cifar10-{split}-{i}.png"
            _save_image(image, os.path.join(root, split, CIFAR10_CLASSES[label], name))
