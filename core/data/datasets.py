"""Readers for CIFAR10, CIFAR100, SVHN and CINIC10 in their official on-disk layouts.

Each dataset is read whole into uint8 tensors ``[N, 3, H, W]`` (what the device loader wants),
straight from the files torchvision's downloaders produce; no checksums are computed at read
time. The data root is ``os.path.join(data_dir, name)`` as in the reference scripts.
"""

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.io
import torch
from PIL import Image

from core import safe_pickle
from core.errors import UserError, file_error, os_reason
from core.fileio import atomic_write

DATASETS = ("cifar10", "cifar100", "svhn", "cinic10")

# Also CINIC10's class folders.
CIFAR10_CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
CIFAR100_CLASSES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl
boy bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud
cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster
house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew
skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank
telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf
woman worm""".split()

# torchvision.datasets.folder.IMG_EXTENSIONS: what ImageFolder accepts.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CINIC10_URL = "https://datashare.is.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz"


@dataclass(frozen=True)
class ArrayDataset:
    """A whole split in memory: ``images`` uint8 [N, 3, H, W] contiguous, ``targets`` int64 [N]."""

    images: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass(frozen=True)
class DatasetBundle:
    """Both splits of a dataset plus what training needs to know about it."""

    name: str
    train: ArrayDataset
    test: ArrayDataset
    num_classes: int
    mean: tuple
    std: tuple
    augment: bool  # RandomCrop(32, 4, reflect) + flip in the reference; SVHN has none
    classes: list


@dataclass(frozen=True)
class _Spec:
    num_classes: int
    mean: tuple
    std: tuple
    augment: bool
    expected: tuple  # paths relative to the root that must exist
    layout: str  # the expected files, for messages
    source: str  # how to get the files by hand: "<source> <root>"
    read: Callable  # root -> (train, test, classes)
    fetch: Callable  # root -> None, downloads into root


def load_dataset(name: str, data_dir: str, download: bool = True) -> DatasetBundle:
    """Read dataset ``name`` from ``os.path.join(data_dir, name)``, downloading it if allowed.

    Raises UserError for an unknown name, missing files (with download off or failing) and
    unreadable files.
    """
    if name not in _SPECS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    spec = _SPECS[name]
    root = os.path.join(data_dir, name)
    _ensure_files(name, spec, root, download)
    train, test, classes = spec.read(root)
    return DatasetBundle(
        name=name,
        train=train,
        test=test,
        num_classes=spec.num_classes,
        mean=spec.mean,
        std=spec.std,
        augment=spec.augment,
        classes=list(classes),
    )


# ---------------------------------------------------------------------------------------------
# Presence check and download


def _missing(spec: _Spec, root: str) -> list:
    return [p for p in spec.expected if not os.path.exists(os.path.join(root, p))]


def _ensure_files(name: str, spec: _Spec, root: str, download: bool) -> None:
    missing = _missing(spec, root)
    if not missing:
        return
    expected = f"{name}: expected {spec.layout} in {root}, missing {missing[0]}"
    by_hand = f"{spec.source} {root}, or pass --data-dir with the folder that holds {name}/"
    if not download:
        raise UserError(f"{expected}; downloading is off (--no-download): {by_hand}")
    try:
        spec.fetch(root)
    except Exception as exc:  # any network or archive failure means the same to the user
        reason = (str(exc).splitlines() or [""])[0][:200]
        raise UserError(
            f"{expected}; the download failed ({type(exc).__name__}: {reason}): {by_hand}"
        ) from exc
    missing = _missing(spec, root)
    if missing:
        raise UserError(f"{expected} even after downloading: {by_hand}")


# torchvision is imported only to download: importing it costs ~2 s per process (it loads
# torch._dynamo through torchvision.ops), a third of a short run's start-up.
def _fetch_cifar10(root: str) -> None:
    import torchvision.datasets

    torchvision.datasets.CIFAR10(root, train=True, download=True)


def _fetch_cifar100(root: str) -> None:
    import torchvision.datasets

    torchvision.datasets.CIFAR100(root, train=True, download=True)


def _fetch_svhn(root: str) -> None:
    import torchvision.datasets

    for split in ("train", "test"):
        torchvision.datasets.SVHN(root, split=split, download=True)


def _fetch_cinic10(root: str) -> None:
    import torchvision.datasets.utils

    # The archive holds train/, valid/ and test/ at its top level.
    torchvision.datasets.utils.download_and_extract_archive(
        CINIC10_URL, download_root=root, remove_finished=True
    )


# ---------------------------------------------------------------------------------------------
# CIFAR: pickled dicts {data: uint8 [n, 3072] as R, G, B planes, labels: [n]}


def _load_cifar_pickle(path: str) -> dict:
    """A CIFAR pickle as a dict with str keys (the files are Python 2 pickles: latin1), read
    with the restricted unpickler so that a tampered file cannot run code."""
    try:
        with open(path, "rb") as fh:
            content = safe_pickle.load(fh, encoding="latin1")
    except OSError as exc:  # the file, not its content: permissions, a folder, I/O errors
        raise file_error(path, "read", exc) from None
    except Exception as exc:  # unpickling can fail in many ways; all mean "corrupt"
        raise UserError(
            f"{path} is not a readable CIFAR pickle ({os_reason(exc)}); delete it and "
            "download again"
        ) from None
    if not isinstance(content, dict):
        raise UserError(
            f"{path} is not a CIFAR pickle (holds {type(content).__name__}, not a dict)"
        )
    return {_text(key): value for key, value in content.items()}


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _read_cifar_batches(paths: list, label_key: str, num_classes: int) -> ArrayDataset:
    images, targets = [], []
    for path in paths:
        batch = _load_cifar_pickle(path)
        data, labels = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
            raise UserError(f"{path}: 'data' is not a uint8 [n, 3072] array; the file is corrupt")
        if data.shape[1] != 3 * 32 * 32 or labels is None or len(labels) != len(data):
            raise UserError(
                f"{path}: 'data' / '{label_key}' have the wrong shape; the file is corrupt"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        targets.append(_check_labels(np.asarray(labels, dtype=np.int64), num_classes, path))
    return _to_dataset(np.concatenate(images), np.concatenate(targets))


def _check_labels(labels: np.ndarray, num_classes: int, path: str) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path}: labels outside 0..{num_classes - 1}; the file is corrupt")
    return labels


def _to_dataset(images: np.ndarray, targets: np.ndarray) -> ArrayDataset:
    return ArrayDataset(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        targets=torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64)),
    )


def _cifar_classes(meta_path: str, key: str, default: list) -> list:
    """Class names from the meta file when present and sane, else the published list."""
    if not os.path.exists(meta_path):
        return list(default)
    names = _load_cifar_pickle(meta_path).get(key)
    if not isinstance(names, list) or len(names) != len(default):
        raise UserError(
            f"{meta_path}: '{key}' is not a list of {len(default)} names; the file is corrupt"
        )
    return [_text(n) for n in names]


def _read_cifar10(root: str):
    folder = os.path.join(root, "cifar-10-batches-py")
    train_paths = [os.path.join(folder, f"data_batch_{i}") for i in range(1, 6)]
    train = _read_cifar_batches(train_paths, "labels", 10)
    test = _read_cifar_batches([os.path.join(folder, "test_batch")], "labels", 10)
    classes = _cifar_classes(os.path.join(folder, "batches.meta"), "label_names", CIFAR10_CLASSES)
    return train, test, classes


def _read_cifar100(root: str):
    folder = os.path.join(root, "cifar-100-python")
    train = _read_cifar_batches([os.path.join(folder, "train")], "fine_labels", 100)
    test = _read_cifar_batches([os.path.join(folder, "test")], "fine_labels", 100)
    classes = _cifar_classes(os.path.join(folder, "meta"), "fine_label_names", CIFAR100_CLASSES)
    return train, test, classes


# ---------------------------------------------------------------------------------------------
# SVHN: MATLAB files {X: uint8 [32, 32, 3, N], y: [N, 1]} where label 10 is the digit 0


def _read_svhn_split(path: str) -> ArrayDataset:
    try:
        content = scipy.io.loadmat(path)
        images, labels = content["X"], content["y"]
    except OSError as exc:  # the file, not its content
        raise file_error(path, "read", exc) from None
    except Exception as exc:  # scipy raises many types for a damaged file
        raise UserError(
            f"{path} is not a readable SVHN .mat file ({os_reason(exc)}); delete it and "
            "download again"
        ) from None
    if (
        images.ndim != 4
        or images.shape[2] != 3
        or images.dtype != np.uint8
        or labels.size != images.shape[3]
    ):
        raise UserError(
            f"{path}: X is not uint8 [32, 32, 3, N] with N labels in y; the file is corrupt"
        )
    targets = labels.astype(np.int64).reshape(-1)
    targets[targets == 10] = 0
    return _to_dataset(images.transpose(3, 2, 0, 1), _check_labels(targets, 10, path))


def _read_svhn(root: str):
    train = _read_svhn_split(os.path.join(root, "train_32x32.mat"))
    test = _read_svhn_split(os.path.join(root, "test_32x32.mat"))
    return train, test, [str(d) for d in range(10)]


# ---------------------------------------------------------------------------------------------
# CINIC10: ImageFolder trees train/, valid/, test/ of 32x32 PNGs


def _list_image_folder(folder: str):
    """(classes, paths, targets) in the order torchvision's ImageFolder uses."""
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    paths, targets = [], []
    for target, name in enumerate(classes):
        for dirpath, _, filenames in sorted(os.walk(os.path.join(folder, name), followlinks=True)):
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, filename))
                    targets.append(target)
    if not paths:
        raise UserError(f"{folder}: no images found (expected <class>/<image>.png folders)")
    return classes, paths, targets


def _decode_image(path: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... per format
        raise UserError(
            f"{path} is not a readable image ({os_reason(exc)}); the file is corrupt"
        ) from None


def _decode_images(paths: list) -> np.ndarray:
    """Decode all images, in parallel threads (PIL releases the GIL), into uint8 [N, 3, H, W]."""
    first = _decode_image(paths[0])
    out = np.empty((len(paths),) + first.shape, dtype=np.uint8)

    def decode_chunk(start: int) -> None:
        for i in range(start, min(start + 1024, len(paths))):
            image = _decode_image(paths[i])
            if image.shape != first.shape:
                raise UserError(
                    f"{paths[i]} is {image.shape[:2]}, expected {first.shape[:2]} like {paths[0]}"
                )
            out[i] = image

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(decode_chunk, range(0, len(paths), 1024)))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _cache_path(root: str, split: str, paths: list) -> str:
    # The file list names the cache, so adding, removing or renaming images invalidates it.
    digest = hashlib.sha1("\n".join(os.path.relpath(p, root) for p in paths).encode()).hexdigest()
    return os.path.join(root, f"decoded-{split}-uint8-{digest[:16]}.npy")


def _load_cache(path: str, count: int):
    if not os.path.exists(path):
        return None
    try:
        images = np.load(path, allow_pickle=False)
    except Exception:  # OSError, ValueError, EOFError (empty): a damaged cache is rebuilt
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != count:
        return None
    return images


def _save_cache(path: str, images: np.ndarray) -> None:
    try:
        atomic_write(path, lambda fh: np.save(fh, images))
    except OSError:
        pass  # read-only data folder: decode again next time


def _decoded_images(root: str, split: str, paths: list) -> np.ndarray:
    """Decoded images, from the .npy cache next to the data when it matches the file list."""
    cache = _cache_path(root, split, paths)
    images = _load_cache(cache, len(paths))
    if images is None:
        images = _decode_images(paths)
        _save_cache(cache, images)
    return images


def _read_cinic10(root: str):
    classes, train_paths, train_targets = _list_image_folder(os.path.join(root, "train"))
    valid_classes, valid_paths, valid_targets = _list_image_folder(os.path.join(root, "valid"))
    test_classes, test_paths, test_targets = _list_image_folder(os.path.join(root, "test"))
    if not classes == valid_classes == test_classes:
        raise UserError(f"{root}: train/, valid/ and test/ hold different class folders")
    # The paper trains on train + valid (180,000 images), in that order.
    paths, targets = train_paths + valid_paths, train_targets + valid_targets
    train = _to_dataset(_decoded_images(root, "train+valid", paths), np.asarray(targets))
    test = _to_dataset(_decoded_images(root, "test", test_paths), np.asarray(test_targets))
    return train, test, classes


_CIFAR_BATCHES = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
_SPECS = {
    "cifar10": _Spec(
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        augment=True,
        expected=_CIFAR_BATCHES + ("cifar-10-batches-py/test_batch",),
        layout="cifar-10-batches-py/data_batch_1..5 and test_batch",
        source="download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extract it in",
        read=_read_cifar10,
        fetch=_fetch_cifar10,
    ),
    "cifar100": _Spec(
        num_classes=100,
        mean=(0.507, 0.487, 0.441),
        std=(0.267, 0.256, 0.276),
        augment=True,
        expected=("cifar-100-python/train", "cifar-100-python/test"),
        layout="cifar-100-python/train and test",
        source="download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, extract it in",
        read=_read_cifar100,
        fetch=_fetch_cifar100,
    ),
    "svhn": _Spec(
        num_classes=10,
        mean=(0.0, 0.0, 0.0),  # the reference uses ToTensor only
        std=(1.0, 1.0, 1.0),
        augment=False,
        expected=("train_32x32.mat", "test_32x32.mat"),
        layout="train_32x32.mat and test_32x32.mat",
        source="download them from http://ufldl.stanford.edu/housenumbers/ into",
        read=_read_svhn,
        fetch=_fetch_svhn,
    ),
    "cinic10": _Spec(
        num_classes=10,
        mean=(0.47889522, 0.47227842, 0.43047404),
        std=(0.24205776, 0.23828046, 0.25874835),
        augment=True,
        expected=("train", "valid", "test"),
        layout="the folders train/, valid/ and test/",
        source=f"download {CINIC10_URL} and extract it in",
        read=_read_cinic10,
        fetch=_fetch_cinic10,
    ),
}
