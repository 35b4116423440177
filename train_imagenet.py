"""Train a ResNet on ImageNet (ImageFolder layout), on all data (recording training dynamics)
or on a coreset. Flags and defaults follow the authors' script; see README.md.

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
from core.coreset import select_from_score_file
from core.data.imagenet import ImageFolderLoader, default_workers, load_imagefolder
from core.models import IMAGENET_NETWORKS, build_model
from core.run_folder import RunFolder, claim_run_folder
from core.scores import TrainingDynamics
from core.training import distributed as dist_utils
from core.training.checkpoint import already_finished, resume_state
from core.training.optim import SCHEDULERS, build_scheduler, build_sgd, total_iterations
from core.training.run import place_model, resolve_precision, seed_everything, write_outputs
from core.training.runlog import RunLog
from core.training.trainer import Interrupted, Trainer

# settings a run folder must keep to be resumed
FINGERPRINT = ("network", "epochs", "iterations", "batch_size", "lr", "seed", "scheduler",
               "image_size", "ignore_td")  # fmt: skip


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


def main(args) -> int:
    started = time.time()
    cli.check_train_args(args)
    cli.check_imagefolder_args(args)
    device = dist_utils.start_process(args.device, args.gpuid)
    run = RunFolder(args.base_dir, args.task_name)
    claim_run_folder(run)  # one process per run folder
    fingerprint = cli.fingerprint(args, FINGERPRINT)
    state = resume_state(run, fingerprint, args.no_resume)
    if already_finished(run, state):
        return 0

    data = load_imagefolder(args.data_dir)
    n, coreset = len(data.train), cli.coreset_settings(args)
    indices = None
    if coreset is not None:
        indices = select_from_score_file(
            args.data_score_path, targets=data.train.targets, seed=args.seed,
            features_path=cli.features_path(args), **coreset,
        )  # fmt: skip
    seed_everything(args.seed)  # the same on every rank: DDP starts from rank 0's weights anyway
    if args.workers is None:  # resolved here so that metrics.json records the number used
        args.workers = default_workers(dist_utils.local_world_size())
    on_device = dict(image_size=args.image_size, mean=data.mean, std=data.std, device=device,
                     rank=dist_utils.rank(), world_size=dist_utils.world_size(),
                     workers=args.workers, channels_last=True, seed=args.seed,
                     batch_size=args.batch_size)  # fmt: skip
    train_loader = ImageFolderLoader(data.train, augment=True, shuffle=True, indices=indices,
                                     **on_device)  # fmt: skip
    test_loader = ImageFolderLoader(data.test, augment=False, shuffle=False,
                                    persistent_workers=False, **on_device)  # fmt: skip

    model = place_model(build_model(args.network, data.num_classes, imagenet=True), device,
                        args.compile)  # fmt: skip
    optimizer = build_sgd(model, args.lr, weight_decay=1e-4, nesterov=False)
    total = total_iterations(args.epochs, args.iterations, len(train_loader))
    scheduler = build_scheduler(optimizer, args.scheduler, total, len(train_loader))
    dynamics = None if args.ignore_td else TrainingDynamics(n, data.num_classes, device=device)
    used = n if indices is None else len(indices)
    precision, precision_why = resolve_precision(args.precision, device)
    trainer = Trainer(
        model=model, optimizer=optimizer, scheduler=scheduler, train_loader=train_loader,
        test_loader=test_loader, device=device, run=run, dynamics=dynamics, topk=(1, 5),
        precision=precision, precision_why=precision_why, log=RunLog(run.log),
        checkpoint_interval_s=args.checkpoint_interval, started=started,
        state_extra={"fingerprint": fingerprint, "args": vars(args),
                     "num_classes": data.num_classes},
        what=f"{args.network} on imagenet: {used}/{n} examples",
    )  # fmt: skip
    if state is not None:
        trainer.load_state_dict(state)
    try:
        result = trainer.fit(total, max(1, args.iterations_per_testing // len(train_loader)))
    except Interrupted:
        return 130
    write_outputs(run, result, cli.run_record(args, "imagenet"), indices=indices, train_size=n,
                  dynamics=dynamics, device=device)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(dist_utils.run_entry_point(main, get_args_parser().parse_args()))
