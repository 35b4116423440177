"""A fixed subset of a training set that then stands in for the whole of it (CPU-scale runs)."""

import dataclasses

import torch

from core.errors import UserError

SUBSET_SEED = 0  # fixed: every run of a profile must see the same subset, whatever its --seed


def take_train_subset(bundle, size: int):
    """The bundle with its training set cut to ``size`` examples drawn once with a fixed seed.

    Class proportions follow the full set's in expectation; order is the drawn order's sorted
    positions, so scores and coreset indices refer to positions within the subset.
    """
    n = len(bundle.train.targets)
    if size < 0:
        raise UserError(f"--train-subset must be 0 (all) or a positive size, got {size}")
    if size == 0 or size == n:
        return bundle
    if size > n:
        raise UserError(
            f"--train-subset {size} is larger than the {bundle.name} training set ({n} examples)"
        )
    return dataclasses.replace(bundle, train=_fixed_subset(bundle.train, size))


def take_test_subset(bundle, size: int):
    """The bundle with its test set cut to ``size`` examples (seed 0; 0 = all): a quicker,
    noisier test for smoke runs. Never the paper's protocol."""
    n = len(bundle.test.targets)
    if size < 0:
        raise UserError(f"--test-subset must be 0 (all) or a positive size, got {size}")
    if size == 0 or size >= n:
        return bundle
    return dataclasses.replace(bundle, test=_fixed_subset(bundle.test, size))


def _fixed_subset(split, size: int):
    """The split's examples at the first ``size`` positions of a fixed (SUBSET_SEED)
    permutation, in their original order."""
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    keep = torch.randperm(len(split.targets), generator=generator)[:size].sort().values
    return dataclasses.replace(
        split, images=split.images[keep].contiguous(), targets=split.targets[keep].contiguous()
    )
