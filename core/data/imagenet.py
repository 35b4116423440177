"""ImageNet in its ImageFolder layout: file lists, the reference transforms, and a loader with
DeviceLoader's interface (``len(loader)``, ``loader.epoch(epoch, start_batch)`` yielding
``(index, images, targets)`` on the device), so the same Trainer runs it.

JPEG decoding and the per-image transforms (RandomResizedCrop + flip for training,
Resize + CenterCrop for testing, as in the reference) run in DataLoader worker processes and
produce uint8 batches; they travel to the device in uint8 (pinned, non-blocking) and are
normalised there. The epoch's order is a permutation drawn from (seed, epoch), the same on
every rank, cut into global batches and each batch shared out between the ranks, so every
example is seen exactly once per epoch without DistributedSampler's padding duplicates.
Each image's augmentation is drawn from (seed, epoch, index): the same whatever the number of
workers or ranks, and a resumed epoch continues exactly.

An image that cannot be decoded (a truncated or garbage JPEG) is skipped, not a PIL traceback
mid-epoch: one warning per file names it and why, the batch goes on without it (the batch
boundaries stay, so checkpoints and resuming are exact), and the example is never visited in
the training dynamics. Checking every file before training was the alternative; for ImageNet
it means decoding 1.28M images at every start.
"""

import dataclasses
import functools
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from tqdm import tqdm

from core.data.device import Normaliser, _subset_index, batch_bounds, epoch_seed
from core.errors import UserError, os_reason
from core.training.distributed import local_rank, local_world_size, usable_cores

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "train/<class>/*.JPEG and val/<class>/*.JPEG"
# Batches each worker keeps in flight (PyTorch's default). They wait in /dev/shm: 16 workers
# x 2 x 256 images of 224 px take 1.2 GB, 4 took 2.5 GB. The rate is the workers' decoding
# speed either way; 2 per worker is slack enough for one slow batch.
PREFETCH = 2
SHM = "/dev/shm"


@dataclasses.dataclass(frozen=True)
class ImageList:
    """One split: image files (paths relative to ``root``) and their labels."""

    root: str
    paths: np.ndarray  # bytes (utf-8); one array, not a list of str: no per-item refcounts to
    # copy into every forked worker
    targets: torch.Tensor  # int64

    def __len__(self) -> int:
        return len(self.targets)

    def path(self, position: int) -> str:
        return os.path.join(self.root, self.paths[position].decode())


@dataclasses.dataclass(frozen=True)
class ImageFolderData:
    train: ImageList
    test: ImageList
    classes: list
    num_classes: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    name: str = "imagenet"


def load_imagefolder(data_dir: str) -> ImageFolderData:
    """Scan ``data_dir/train`` and ``data_dir/val``; labels are train's sorted class folders."""
    train_dir, val_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, "val")
    for folder in (train_dir, val_dir):
        if not os.path.isdir(folder):
            raise UserError(
                f"--data-dir {data_dir}: {folder} is missing (expected the ImageNet "
                f"root holding {LAYOUT})"
            )
    classes, class_to_idx = _classes_of(train_dir, find_classes)
    val_classes, _ = _classes_of(val_dir, find_classes)
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise UserError(f"{val_dir} has class folders that train/ lacks, e.g. {unknown[0]}")
    return ImageFolderData(
        train=_scan(train_dir, class_to_idx),
        test=_scan(val_dir, class_to_idx),
        classes=classes,
        num_classes=len(classes),
    )


def _classes_of(folder: str, find_classes):
    try:
        return find_classes(folder)
    except FileNotFoundError:
        raise UserError(
            f"{folder} holds no class folders (expected {LAYOUT}; ImageNet's val "
            "images must first be sorted into val/<wnid>/, e.g. by valprep.sh)"
        ) from None


def _scan(folder: str, class_to_idx: dict) -> ImageList:
    try:
        samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError as error:
        raise UserError(f"{folder}: {str(error).splitlines()[0]}") from None
    if not samples:
        raise UserError(f"{folder} holds no images (expected {LAYOUT})")
    paths = np.array([os.path.relpath(path, folder).encode() for path, _ in samples])
    targets = torch.tensor([target for _, target in samples], dtype=torch.int64)
    return ImageList(root=folder, paths=paths, targets=targets)


def default_workers(processes_on_node: int) -> int:
    """The reference's 16 DataLoader workers, capped by this process's share of the cores."""
    return max(1, min(16, usable_cores() // max(1, processes_on_node)))


@functools.cache
def warn_if_shared_memory_short(process_bytes: int) -> None:
    """One line (once per process, from the node's first process) when the workers of this
    node's processes may need more of /dev/shm than is free: there they die of SIGBUS, often
    in containers, whose /dev/shm is 64 MB unless enlarged."""
    if (local_rank() or 0) != 0:
        return
    try:
        free = shutil.disk_usage(SHM).free
    except OSError:
        return  # no /dev/shm (not Linux): nothing to say
    need = process_bytes * local_world_size()
    if free < need:
        print(
            f"warning: DataLoader workers may need {need / 2**30:.1f} GiB of {SHM}, "
            f"{free / 2**30:.1f} GiB free; if workers die with a bus error, use fewer "
            "--workers or a smaller --batch-size, or enlarge /dev/shm (docker: --shm-size)",
            flush=True,
        )


# ---- transforms ----------------------------------------------------------------------------
def train_transform(image_size: int):
    """RandomResizedCrop(size) + horizontal flip, as uint8 CHW (normalised on the device)."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),
        ]
    )


def test_transform(image_size: int):
    """Resize(size * 256/224) + CenterCrop(size): the reference's Resize(256) + CenterCrop(224)."""
    return transforms.Compose(
        [
            transforms.Resize(image_size * 256 // 224),
            transforms.CenterCrop(image_size),
            transforms.PILToTensor(),
        ]
    )


class IndexedImages(torch.utils.data.Dataset):
    """``dataset[(position, sample_seed)] -> (position, uint8 [3, S, S], target)``."""

    def __init__(self, images: ImageList, transform, augment: bool):
        self.images, self.transform, self.augment = images, transform, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        """``(position, pixels, target, None)``, or ``(position, None, target, why)`` for an
        image that cannot be decoded (truncated, not an image, unreadable): it is skipped."""
        position, sample_seed = key
        target = int(self.images.targets[position])
        path = self.images.path(position)
        try:
            with Image.open(path) as file:
                image = file.convert("RGB")
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ... per format
            return position, None, target, f"{path}: {os_reason(error)}"
        if self.augment:
            # torchvision's random transforms draw from the global RNG: seed it per image,
            # and leave the caller's RNG as it was (workers=0 runs this in the main process)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed)
                pixels = self.transform(image)
        else:
            pixels = self.transform(image)
        return position, pixels, target, None


def collate_readable(samples):
    """A batch of the readable images, ``(index, pixels, targets, unreadable)``, with
    ``unreadable`` the ``(position, why)`` of those skipped; index is None if none was
    readable."""
    readable = [sample[:3] for sample in samples if sample[1] is not None]
    unreadable = [(sample[0], sample[3]) for sample in samples if sample[1] is None]
    if not readable:
        return None, None, None, unreadable
    index, pixels, targets = torch.utils.data.default_collate(readable)
    return index, pixels, targets, unreadable


_REPORTED: set = set()  # unreadable images already reported by this process


def report_unreadable(why: str) -> None:
    """One warning per unreadable image and process (every epoch meets it again)."""
    if why in _REPORTED:
        return
    _REPORTED.add(why)
    tqdm.write(
        f"warning: skipping an unreadable image, {why}; it is left out of every batch (and "
        "unvisited in the training dynamics) until it is replaced",
        file=sys.stderr,
    )


class _EpochBatches(torch.utils.data.Sampler):
    """The batch sampler of a reused DataLoader: holds the batches of the epoch being read."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ImageFolderLoader:
    """Yields ``(index, images, targets)`` on ``device`` for one rank of ``world_size``.

    ``batch_size`` is the global batch, shared across ranks; ``indices`` (optional) picks the
    subset to iterate, and ``index`` values are always positions in the whole split. Images
    come back as float32 ``(x / 255 - mean) / std`` of ``image_size`` pixels square.
    """

    def __init__(
        self,
        images: ImageList,
        *,
        batch_size: int,
        image_size: int,
        mean,
        std,
        augment: bool,
        shuffle: bool,
        seed: int,
        device,
        indices=None,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        channels_last: bool = False,
        persistent_workers: bool = True,
        epoch_subsets=None,
    ):
        if not 0 <= rank < world_size or batch_size < world_size:
            raise UserError(
                f"batch size {batch_size} and rank {rank} do not fit {world_size} process(es)"
            )
        if epoch_subsets is not None and indices is not None:
            raise ValueError("give indices or epoch_subsets, not both")
        self.index = _subset_index(indices, len(images))
        self.epoch_subsets = epoch_subsets  # as DeviceLoader's: a subset per epoch (RS2)
        size = len(self.index) if epoch_subsets is None else int(epoch_subsets.size)
        if size < world_size:
            raise UserError(f"{size} examples are too few for {world_size} rank(s)")
        self.device = torch.device(device)
        self.shuffle, self.seed, self.augment = shuffle, seed, augment
        self.rank, self.world_size = rank, world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._bounds = batch_bounds(size, batch_size, world_size)
        transform = train_transform(image_size) if augment else test_transform(image_size)
        self._sampler = _EpochBatches()
        self._loader = torch.utils.data.DataLoader(
            IndexedImages(images, transform, augment),
            batch_sampler=self._sampler,
            collate_fn=collate_readable,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=persistent_workers and workers > 0,
            prefetch_factor=PREFETCH if workers > 0 else None,
        )
        if workers > 0:
            share = -(-batch_size // world_size)  # this process's largest share of a batch
            warn_if_shared_memory_short(workers * PREFETCH * share * 3 * image_size**2)
        self._normalise = Normaliser(mean, std, self.device)

    def __len__(self) -> int:
        """Batches per epoch, the same on every rank."""
        return len(self._bounds)

    def epoch(self, epoch: int, start_batch: int = 0):
        """Iterate over epoch ``epoch`` from batch ``start_batch`` on (to resume mid-epoch):
        the skipped batches are cut from the index lists, not loaded."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch {start_batch} outside 0..{len(self)}")
        self._sampler.batches = self.batches(epoch)[start_batch:]
        return self._to_device(iter(self._loader))

    def batches(self, epoch: int) -> list:
        """This rank's batches of ``epoch``: lists of (dataset position, augmentation seed)."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        index = self.index if self.epoch_subsets is None else self.epoch_subsets.indices(epoch)
        n = len(index)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        positions = index[order].tolist()
        base = epoch_seed(self.seed, epoch) if self.augment else 0
        return [
            [
                (p, (base + p * 0x9E3779B97F4A7C15) % 2**64)  # a distinct seed per image
                for p in positions[start + self.rank : end : self.world_size]
            ]
            for start, end in self._bounds
        ]

    def _to_device(self, batches):
        for index, images, targets, unreadable in batches:
            for _, why in unreadable:
                report_unreadable(why)
            readable = 0 if index is None else len(index)
            if unreadable and readable < min(2, readable + len(unreadable)):
                # BatchNorm in training needs 2 examples (batch_bounds keeps 2 per rank): a
                # batch left with fewer would fail in the model; say why here instead
                raise UserError(
                    f"{len(unreadable)} of the {readable + len(unreadable)} images of a batch "
                    f"are unreadable, e.g. {unreadable[0][1]}; replace them (the run resumes "
                    "from its last checkpoint)"
                )
            images = images.to(self.device, non_blocking=True)  # uint8: a quarter of float's bytes
            images = images.contiguous(memory_format=self.memory_format)
            yield (
                index.to(self.device, non_blocking=True),
                self._normalise(images),
                targets.to(self.device, non_blocking=True),
            )
