"""A data loader that keeps the whole uint8 dataset on the device and augments batches there.

No worker processes, no PIL, no per-image Python: at each epoch start one CPU generator seeded
from (seed, epoch) draws the order and every example's crop offsets and flip, which move to the
device once; batch b is then a slice of those draws. So the batches are a deterministic function
of (seed, epoch, batch number) on any device, and resuming mid-epoch reproduces the rest exactly.
"""

import numpy as np
import torch

from core.errors import UserError

PADDING = 4  # RandomCrop(32, padding=4, padding_mode="reflect") in the reference
AIRBENCH = "airbench"  # augment= mode of the fast recipe: translate 2 px, alternating flips
AIRBENCH_PADDING = 2


def inference_batch_size(device) -> int:
    """Batch size of the test and scoring passes (no gradients: any size gives the same results).

    Large batches keep a GPU busy; on a CPU a batch's activations must stay in cache, and
    ResNet-20 inference measured 2x faster at 128 than at 1024 (2 cores: 920 against 494 img/s;
    one thread: 541 against 267), which is about 2 minutes of the quickstart's CPU profile.
    """
    return 1024 if torch.device(device).type == "cuda" else 128


class DeviceLoader:
    """Yields ``(index, images, targets)`` batches on ``device`` for one rank of ``world_size``.

    ``images`` uint8 [N, C, H, W] and ``targets`` [N] are the whole split; ``indices`` (optional)
    picks the subset to iterate, and the yielded ``index`` values are always positions in the
    whole split. ``batch_size`` is the global batch, shared across ranks; images come back as
    float32 ``(x / 255 - mean) / std``, reflect-padded random crops plus horizontal flips when
    ``augment`` is True. ``augment="airbench"`` is airbench94's: crops padded by 2 instead of 4,
    and each example mirrored in alternate epochs (a random half in even epochs, the other half
    in odd ones), so every example is seen both ways every two epochs. ``epoch_subsets``
    (instead of ``indices``; e.g. RS2's schedule) gives each epoch its own subset of one fixed
    size: ``.size`` and ``.indices(epoch)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int,
        mean,
        std,
        augment: bool,
        shuffle: bool,
        seed: int,
        device,
        indices=None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        epoch_subsets=None,
    ):
        _check_arguments(images, targets, mean, std, augment, batch_size, seed, rank, world_size)
        if epoch_subsets is not None and indices is not None:
            raise ValueError("give indices or epoch_subsets, not both")
        index = _subset_index(indices, len(targets))
        if len(index) < max(world_size, 1):
            raise UserError(f"{len(index)} examples are too few for {world_size} rank(s)")
        self.device = torch.device(device)
        # The one host-to-device copy of the data.
        self.images = (images if indices is None else images[index]).to(self.device).contiguous()
        self.targets = (targets if indices is None else targets[index]).to(self.device).long()
        self.index = index.to(self.device)
        self.epoch_subsets = epoch_subsets
        self.num_examples = len(index) if epoch_subsets is None else int(epoch_subsets.size)
        self.augment, self.shuffle, self.seed = augment, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._bounds = batch_bounds(self.num_examples, batch_size, world_size)
        self._normalise_uint8 = Normaliser(mean, std, self.device)
        self.padding = AIRBENCH_PADDING if augment == AIRBENCH else PADDING
        if augment == AIRBENCH:  # which examples even epochs mirror: fixed by the seed alone
            generator = torch.Generator().manual_seed(flip_seed(seed))
            self._even_flips = torch.randint(0, 2, (len(self.images),), generator=generator)
            self._even_flips = self._even_flips.bool().to(self.device)

    def __len__(self) -> int:
        """Batches per epoch, the same on every rank."""
        return len(self._bounds)

    def epoch(self, epoch: int, start_batch: int = 0):
        """Iterate over epoch ``epoch`` from batch ``start_batch`` on (to resume mid-epoch)."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch {start_batch} outside 0..{len(self)}")
        return self._batches(epoch, start_batch)

    def _batches(self, epoch: int, start_batch: int):
        order, shifts, flips = self._draw(epoch)
        for start, end in self._bounds[start_batch:]:
            mine = slice(start + self.rank, end, self.world_size)  # this rank's share
            position = order[mine]
            if self.augment:
                images = self._crop_and_flip(position, shifts[mine], flips[mine])
            else:
                images = self.images[position]
            yield self.index[position], self._normalise(images), self.targets[position]

    def _draw(self, epoch: int):
        """The epoch's order and augmentation, drawn on the CPU so every device agrees."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n = self.num_examples
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if self.epoch_subsets is not None:  # positions into the whole split, kept whole
            order = self.epoch_subsets.indices(epoch)[order]
        order, shifts, flips = order.to(self.device), None, None
        if self.augment:
            shifts = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
            shifts = shifts.to(self.device)
        if self.augment == AIRBENCH:
            flips = self._even_flips[order] ^ bool(epoch % 2)  # odd epochs mirror the others
        elif self.augment:
            flips = torch.randint(0, 2, (n,), generator=generator).bool().to(self.device)
        return order, shifts, flips

    def _crop_and_flip(self, position, shifts, flips) -> torch.Tensor:
        """Reflect-padded crops, flipped where ``flips``, as one gather from the uint8 data.

        Row i of the crop at offset dy is padded row i + dy, i.e. source row i + dy - PADDING
        reflected into range; flipping reverses the column indices.
        """
        channels, height, width = self.images.shape[1:]
        pad = self.padding
        rows = _reflect(torch.arange(height, device=self.device) + shifts[:, :1] - pad, height)
        cols = _reflect(torch.arange(width, device=self.device) + shifts[:, 1:] - pad, width)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        channel = torch.arange(channels, device=self.device)
        return self.images[
            position[:, None, None, None],
            channel[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def first_images(self, count: int) -> torch.Tensor:
        """The first ``count`` examples this loader holds, normalised, not augmented (what a
        recipe sets from data before training: airbench's whitening)."""
        return self._normalise(self.images[:count])

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        images = images.contiguous(memory_format=self.memory_format)  # cheaper in uint8
        return self._normalise_uint8(images)


class Normaliser:
    """uint8 images -> float32 ``(x / 255 - mean) / std``, as one multiply-add on the device."""

    def __init__(self, mean, std, device):
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std_t), -mean_t / std_t

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mul_(self.scale).add_(self.shift)


def _reflect(coordinate: torch.Tensor, size: int) -> torch.Tensor:
    """Map coordinates in [-padding, size + padding) back into [0, size) like reflect padding."""
    coordinate = coordinate.abs()
    return torch.where(coordinate > size - 1, 2 * (size - 1) - coordinate, coordinate)


def batch_bounds(num_examples: int, batch_size: int, world_size: int) -> list:
    """``[(start, end)]`` of each global batch in epoch order.

    A final batch that would give some rank fewer than 2 examples (BatchNorm needs 2 in train
    mode) is merged into the batch before it.
    """
    bounds = [(s, min(s + batch_size, num_examples)) for s in range(0, num_examples, batch_size)]
    if len(bounds) > 1 and (bounds[-1][1] - bounds[-1][0]) // world_size < 2:
        bounds[-2:] = [(bounds[-2][0], num_examples)]
    return bounds


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 64-bit generator seed for (seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])


def flip_seed(seed: int) -> int:
    """The seed of the airbench mode's fixed flips, a stream no (seed, epoch) pair can give."""
    return int(np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1, np.uint64)[0])


def _subset_index(indices, num_examples: int) -> torch.Tensor:
    if indices is None:
        return torch.arange(num_examples)
    index = torch.as_tensor(indices).cpu()
    if index.ndim != 1 or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise UserError("indices must be a 1-D integer tensor of dataset positions")
    index = index.long()
    if len(index) and (index.min() < 0 or index.max() >= num_examples):
        raise UserError(f"indices must lie in 0..{num_examples - 1}")
    return index


def _check_arguments(
    images, targets, mean, std, augment, batch_size, seed, rank, world_size
) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise UserError(
            f"images must be uint8 [N, C, H, W], got {images.dtype} {list(images.shape)}"
        )
    if targets.ndim != 1 or len(targets) != len(images):
        raise UserError(f"targets must be [N] with N = {len(images)}, got {list(targets.shape)}")
    if not len(mean) == len(std) == images.shape[1]:
        raise UserError(f"mean and std need one value per channel ({images.shape[1]})")
    if not 0 <= rank < world_size:
        raise UserError(f"rank {rank} outside 0..{world_size - 1}")
    if batch_size < world_size:
        raise UserError(f"batch size {batch_size} is smaller than the world size {world_size}")
    if augment not in (False, True, AIRBENCH):
        raise UserError(f"augment must be True, False or {AIRBENCH!r}, got {augment!r}")
    padding = AIRBENCH_PADDING if augment == AIRBENCH else PADDING
    if augment and min(images.shape[2:]) <= padding:
        raise UserError(
            f"images of {list(images.shape[2:])} pixels are too small to pad by {padding}"
        )
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
