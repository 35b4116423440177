"""Train on CIFAR10 / CIFAR100 / SVHN / CINIC10, on all data (recording training dynamics)
or on a coreset. Flags and defaults follow the reference scripts; see README.md.

    python train.py --dataset cifar10 --epochs 200 --task-name all-data --base-dir ./data-model/cifar10

--gpuid 0,1 (or torchrun) trains with one process per GPU; --batch-size is the global batch
(docs/DISTRIBUTED.md).
"""

import argparse
import sys
import time

from core import cli

NETWORKS = ("resnet18", "resnet50", "resnet20", "resnet32", "resnet56")
# settings a run folder must keep to be resumed
FINGERPRINT = (
    "dataset",
    "network",
    "epochs",
    "iterations",
    "batch_size",
    "lr",
    "seed",
    "train_subset",
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dataset",
        type=str,
        default="cifar10",
        choices=("cifar10", "cifar100", "svhn", "cinic10"),
        help="dataset (default: cifar10)",
    )
    cli.add_run_flags(parser)
    cli.add_training_flags(parser, networks=NETWORKS)
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
    return parser


def main(args) -> int:
    from core.data import DeviceLoader, load_dataset
    from core.data.subset import take_train_subset
    from core.models import build_model
    from core.training import distributed as dist_utils
    from core.training.run import (
        Recipe,
        resolve_precision,
        say_if_finished,
        seed_everything,
        select_training_subset,
        train_and_record,
    )

    started = time.time()
    device, coreset, fingerprint, paths, state = cli.start_training_run(args, FINGERPRINT)
    if say_if_finished(paths, state):
        return 0

    with dist_utils.local_main_first():  # one download per node
        data = load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    data = take_train_subset(data, args.train_subset)
    indices = select_training_subset(coreset, args.data_score_path, data.train.targets, args.seed)
    if coreset is not None:
        coreset["data_score_path"] = args.data_score_path

    seed_everything(args.seed)  # the same on every rank: DDP starts from rank 0's weights anyway
    common = dict(
        mean=data.mean,
        std=data.std,
        device=device,
        channels_last=True,
        rank=dist_utils.rank(),
        world_size=dist_utils.world_size(),
    )
    train_loader = DeviceLoader(
        data.train.images,
        data.train.targets,
        batch_size=args.batch_size,
        augment=data.augment,
        shuffle=True,
        seed=args.seed,
        indices=indices,
        **common,
    )
    test_loader = DeviceLoader(
        data.test.images,
        data.test.targets,
        batch_size=1024,
        augment=False,
        shuffle=False,
        seed=args.seed,
        **common,
    )
    recipe = Recipe(
        lr=args.lr,
        weight_decay=5e-4,
        nesterov=True,
        scheduler="cosine",
        epochs=args.epochs,
        iterations=args.iterations,
        iterations_per_testing=args.iterations_per_testing,
    )
    return train_and_record(
        paths=paths,
        state=state,
        model=build_model(args.network, data.num_classes),
        train_loader=train_loader,
        test_loader=test_loader,
        recipe=recipe,
        device=device,
        precision=resolve_precision(args.precision, device),
        num_classes=data.num_classes,
        train_size=len(data.train.targets),
        indices=indices,
        coreset=coreset,
        record_dynamics=True,
        compile_model=args.compile,
        checkpoint_interval=args.checkpoint_interval,
        fingerprint=fingerprint,
        args_record=vars(args),
        seed=args.seed,
        dataset=args.dataset,
        network=args.network,
        started=started,
    )


if __name__ == "__main__":
    from core.training.distributed import run_entry_point

    sys.exit(run_entry_point(main, get_args_parser().parse_args()))
