"""Train a ResNet on ImageNet (ImageFolder layout), on all data (recording training dynamics)
or on a coreset. Flags and defaults follow the reference script (REFERENCE §6); see README.md.

    python train_imagenet.py --epochs 60 --lr 0.1 --scheduler cosine \\
        --task-name ICLR2023-ImageNet --base-dir ./work/imagenet --data-dir /data/imagenet \\
        --network resnet34 --batch-size 256 --gpuid 0,1

--gpuid 0,1 starts one process per GPU (DDP); torchrun works too (docs/DISTRIBUTED.md).
--batch-size is the global batch, split across the processes.
"""

import argparse
import sys
import time

from core import cli

NETWORKS = ("resnet18", "resnet34", "resnet50")
# settings a run folder must keep to be resumed
FINGERPRINT = (
    "network",
    "epochs",
    "iterations",
    "batch_size",
    "lr",
    "seed",
    "scheduler",
    "image_size",
    "ignore_td",
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_run_flags(parser, data_dir_default="./data/imagenet")
    cli.add_training_flags(
        parser, network="resnet34", networks=NETWORKS, iterations_per_testing=5000
    )
    cli.add_coreset_flags(parser)
    parser.add_argument(
        "--scheduler",
        type=str,
        default="default",
        choices=cli.SCHEDULERS,
        help="default: x0.1 at epochs 30/60/90/100; short: x0.1 at iterations "
        "100k/150k/200k; short-400k: at 200k/300k/350k; cosine: per "
        "iteration to 1e-4 (default: default)",
    )
    parser.add_argument(
        "--ignore-td", action="store_true", help="do not record training dynamics (coreset runs)"
    )
    cli.add_imagefolder_flags(parser)
    return parser


def main(args) -> int:
    from core.data.imagenet import ImageFolderLoader, default_workers, load_imagefolder
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
    cli.check_imagefolder_args(args)
    device, coreset, fingerprint, paths, state = cli.start_training_run(args, FINGERPRINT)
    if say_if_finished(paths, state):
        return 0

    data = load_imagefolder(args.data_dir)
    indices = select_training_subset(coreset, args.data_score_path, data.train.targets, args.seed)
    if coreset is not None:
        coreset["data_score_path"] = args.data_score_path

    seed_everything(args.seed)  # the same on every rank: DDP starts from rank 0's weights anyway
    if args.workers is None:  # resolved here so that metrics.json records the number used
        args.workers = default_workers(dist_utils.local_world_size())
    common = dict(
        image_size=args.image_size,
        mean=data.mean,
        std=data.std,
        device=device,
        rank=dist_utils.rank(),
        world_size=dist_utils.world_size(),
        workers=args.workers,
        channels_last=True,
        seed=args.seed,
    )
    train_loader = ImageFolderLoader(
        data.train,
        batch_size=args.batch_size,
        augment=True,
        shuffle=True,
        indices=indices,
        **common,
    )
    test_loader = ImageFolderLoader(
        data.test,
        batch_size=args.batch_size,
        augment=False,
        shuffle=False,
        persistent_workers=False,
        **common,
    )
    recipe = Recipe(
        lr=args.lr,
        weight_decay=1e-4,
        nesterov=False,
        scheduler=args.scheduler,
        epochs=args.epochs,
        iterations=args.iterations,
        iterations_per_testing=args.iterations_per_testing,
        topk=(1, 5),
    )
    return train_and_record(
        paths=paths,
        state=state,
        model=build_model(args.network, data.num_classes, imagenet=True),
        train_loader=train_loader,
        test_loader=test_loader,
        recipe=recipe,
        device=device,
        precision=resolve_precision(args.precision, device),
        num_classes=data.num_classes,
        train_size=len(data.train),
        indices=indices,
        coreset=coreset,
        record_dynamics=not args.ignore_td,
        compile_model=args.compile,
        checkpoint_interval=args.checkpoint_interval,
        fingerprint=fingerprint,
        args_record=vars(args),
        seed=args.seed,
        dataset="imagenet",
        network=args.network,
        started=started,
    )


if __name__ == "__main__":
    from core.training.distributed import run_entry_point

    sys.exit(run_entry_point(main, get_args_parser().parse_args()))
