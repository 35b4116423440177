"""Train a ResNet on ImageNet (ImageFolder layout), on all data (recording training dynamics)
or on a coreset. Flags and defaults follow the authors' script; see README.md.

    python train_imagenet.py --epochs 60 --lr 0.1 --scheduler cosine \\
        --task-name ICLR2023-ImageNet --base-dir ./work/imagenet --data-dir /data/imagenet \\
        --network resnet34 --batch-size 256 --gpuid 0,1

--gpuid 0,1 starts one process per GPU (DDP); torchrun works too (docs/DISTRIBUTED.md).
--batch-size is the global batch, split across the processes.
"""

import argparse
import dataclasses
import sys

from core import cli
from core.data.fingerprint import data_fingerprint
from core.data.imagenet import ImageFolderLoader, default_workers, load_imagefolder
from core.experiment import DataFamily, train_run
from core.models import IMAGENET_NETWORKS, build_model
from core.settings import RunSettings
from core.training import distributed as dist_utils
from core.training.optim import SCHEDULERS


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_run_flags(parser, data_dir_default="./data/imagenet")
    cli.add_training_flags(
        parser, network="resnet34", networks=IMAGENET_NETWORKS, iterations_per_testing=5000
    )
    cli.add_coreset_flags(parser)
    parser.add_argument(
        "--scheduler",
        type=str,
        default="default",
        choices=SCHEDULERS,
        help="default: x0.1 at epochs 30/60/90/100; short: x0.1 at iterations "
        "100k/150k/200k; short-400k: at 200k/300k/350k; cosine: per "
        "iteration to 1e-4 (default: default)",
    )
    parser.add_argument(
        "--ignore-td", action="store_true", help="do not record training dynamics (coreset runs)"
    )
    cli.add_imagefolder_flags(parser)
    return parser


def resolve_workers(settings: RunSettings) -> RunSettings:
    """The worker count decided once the processes are placed, so that it is recorded."""
    if settings.workers is not None:
        return settings
    return dataclasses.replace(settings, workers=default_workers(dist_utils.local_world_size()))


def _common(data, settings: RunSettings, device) -> dict:
    return dict(
        image_size=settings.image_size,
        mean=data.mean,
        std=data.std,
        device=device,
        rank=dist_utils.rank(),
        world_size=dist_utils.world_size(),
        workers=settings.workers,
        channels_last=True,
        seed=settings.seed,
        batch_size=settings.batch_size,
    )


def eval_loader(split, data, settings: RunSettings, device):
    """A split to evaluate (the test set, the --val-size split) with the test transforms."""
    common = _common(data, settings, device)
    return ImageFolderLoader(
        split, augment=False, shuffle=False, persistent_workers=False, **common
    )


def loaders(data, settings: RunSettings, indices, device, epoch_subsets=None, augment=True):
    """Decoded by DataLoader workers, normalised on the device; training restricted to the
    coreset."""
    common = _common(data, settings, device)
    train = ImageFolderLoader(
        data.train,
        augment=augment,
        shuffle=True,
        indices=indices,
        epoch_subsets=epoch_subsets,
        **common,
    )
    return train, eval_loader(data.test, data, settings, device)


IMAGENET_FAMILY = DataFamily(
    name=lambda settings: "imagenet",
    load=lambda settings: load_imagefolder(settings.data_dir),
    targets=lambda data: data.train.targets,
    loaders=loaders,
    model=lambda settings, num_classes: build_model(settings.network, num_classes, imagenet=True),
    weight_decay=1e-4,
    nesterov=False,
    topk=(1, 5),
    prepare=resolve_workers,
    fingerprint=lambda data: data_fingerprint(data.train.targets, paths=data.train.paths),
    # DUAL's ImageNet script scores the first 60 epochs (its CIFAR one 30)
    dynamics_options={"dual_epochs": 60},
    eval_loader=eval_loader,
)


def main(args) -> int:
    settings = RunSettings.from_args(args, "train_imagenet.py", dataset="imagenet")
    return train_run(settings, IMAGENET_FAMILY)


if __name__ == "__main__":
    sys.exit(dist_utils.run_entry_point(main, get_args_parser().parse_args()))
