"""Train on CIFAR10 / CIFAR100 / SVHN / CINIC10, on all data (recording training dynamics)
or on a coreset. Flags and defaults follow the reference scripts; see README.md.

    python train.py --dataset cifar10 --epochs 200 --task-name all-data --base-dir ./data-model/cifar10

--gpuid 0,1 (or torchrun) trains with one process per GPU; --batch-size is the global batch
(docs/DISTRIBUTED.md).
"""

import argparse
import sys

from core import cli
from core.data import DATASETS, DeviceLoader, inference_batch_size, load_dataset
from core.data.fingerprint import data_fingerprint
from core.data.subset import take_test_subset, take_train_subset
from core.experiment import DataFamily, train_run
from core.models import CIFAR_NETWORKS, build_model
from core.settings import RunSettings
from core.training import distributed as dist_utils


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dataset",
        type=str,
        default="cifar10",
        choices=DATASETS,
        help="dataset (default: cifar10)",
    )
    cli.add_run_flags(parser)
    cli.add_training_flags(parser, networks=CIFAR_NETWORKS)
    cli.add_coreset_flags(parser)
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="(ours) fail instead of downloading a missing dataset",
    )
    parser.add_argument(
        "--train-subset",
        type=int,
        default=0,
        help="(ours) train on a fixed subset of this many examples, which then "
        "stands in for the whole training set; 0 = all (default: 0)",
    )
    parser.add_argument(
        "--test-subset",
        type=int,
        default=0,
        help="(ours) test on a fixed subset of this many test examples, for quick smoke runs; "
        "0 = all (default: 0)",
    )
    parser.add_argument(
        "--label-noise",
        type=float,
        default=None,
        help="(ours) flip this share of the training labels, each to another class drawn "
        "uniformly (symmetric noise), after --train-subset; a coreset run follows its score "
        "file's run (default: none, or the score file's)",
    )
    parser.add_argument(
        "--label-noise-seed",
        type=int,
        default=0,
        help="(ours) seed of the label flips, the same for every run of a study (default: 0)",
    )
    return parser


def load(settings: RunSettings):
    with dist_utils.local_main_first():  # one download per node
        data = load_dataset(settings.dataset, settings.data_dir, download=settings.download)
    return take_test_subset(take_train_subset(data, settings.train_subset), settings.test_subset)


def _on_device(data, settings: RunSettings, device) -> dict:
    return dict(
        mean=data.mean,
        std=data.std,
        device=device,
        channels_last=True,
        seed=settings.seed,
        rank=dist_utils.rank(),
        world_size=dist_utils.world_size(),
    )


def eval_loader(split, data, settings: RunSettings, device):
    """A split to evaluate (the test set, the --val-size split), resident on the device."""
    return DeviceLoader(
        split.images,
        split.targets,
        augment=False,
        shuffle=False,
        batch_size=inference_batch_size(device),
        **_on_device(data, settings, device),
    )


def loaders(data, settings: RunSettings, indices, device, epoch_subsets=None, augment=True):
    """Both sets resident on the device; the training set restricted to the coreset (or
    RS2's epoch subsets), augmented as the recipe says."""
    on_device = _on_device(data, settings, device)
    train = DeviceLoader(
        data.train.images,
        data.train.targets,
        augment=augment,
        batch_size=settings.batch_size,
        shuffle=True,
        indices=indices,
        epoch_subsets=epoch_subsets,
        **on_device,
    )
    return train, eval_loader(data.test, data, settings, device)


CIFAR_FAMILY = DataFamily(
    name=lambda settings: settings.dataset,
    load=load,
    targets=lambda data: data.train.targets,
    loaders=loaders,
    model=lambda settings, num_classes: build_model(settings.network, num_classes),
    weight_decay=5e-4,
    nesterov=True,
    follows_noise=True,
    fingerprint=lambda data: data_fingerprint(data.train.targets, images=data.train.images),
    eval_loader=eval_loader,
)


def main(args) -> int:
    return train_run(RunSettings.from_args(args, "train.py", scheduler="cosine"), CIFAR_FAMILY)


if __name__ == "__main__":
    sys.exit(dist_utils.run_entry_point(main, get_args_parser().parse_args()))
