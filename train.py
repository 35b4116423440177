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
from core.coreset import select_from_score_file
from core.data import DATASETS, DeviceLoader, inference_batch_size, load_dataset
from core.data.noise import resolve_label_noise, with_targets
from core.data.subset import take_test_subset, take_train_subset
from core.models import CIFAR_NETWORKS, build_model
from core.run_folder import RunFolder, claim_run_folder
from core.scores import TrainingDynamics
from core.training import distributed as dist_utils
from core.training.checkpoint import already_finished, resume_state
from core.training.optim import build_scheduler, build_sgd, total_iterations
from core.training.run import place_model, resolve_precision, seed_everything, write_outputs
from core.training.runlog import RunLog
from core.training.trainer import Interrupted, Trainer

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
    "test_subset",
    "label_noise",
    "label_noise_seed",
)


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


def main(args) -> int:
    started = time.time()
    cli.check_train_args(args)
    device = dist_utils.start_process(args.device, args.gpuid)
    run = RunFolder(args.base_dir, args.task_name)
    claim_run_folder(run)  # one process per run folder
    fingerprint = cli.fingerprint(args, FINGERPRINT)
    state = resume_state(run, fingerprint, args.no_resume)
    if already_finished(run, state):
        return 0

    with dist_utils.local_main_first():  # one download per node
        data = load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    data = take_test_subset(take_train_subset(data, args.train_subset), args.test_subset)
    n, coreset = len(data.train.targets), cli.coreset_settings(args)
    noise = resolve_label_noise(args.label_noise, args.label_noise_seed, data.train.targets,
                                data.num_classes, args.data_score_path if coreset else None)  # fmt: skip
    if noise is not None:
        data = with_targets(data, noise.targets)
    indices = None
    if coreset is not None:
        indices = select_from_score_file(
            args.data_score_path, targets=data.train.targets, seed=args.seed,
            features_path=cli.features_path(args), **coreset,
        )  # fmt: skip
    seed_everything(args.seed)  # the same on every rank: DDP starts from rank 0's weights anyway
    on_device = dict(mean=data.mean, std=data.std, device=device, channels_last=True,
                     seed=args.seed, rank=dist_utils.rank(),
                     world_size=dist_utils.world_size())  # fmt: skip
    train_loader = DeviceLoader(data.train.images, data.train.targets, augment=data.augment,
                                batch_size=args.batch_size, shuffle=True, indices=indices,
                                **on_device)  # fmt: skip
    test_loader = DeviceLoader(data.test.images, data.test.targets,
                               batch_size=inference_batch_size(device),
                               augment=False, shuffle=False, **on_device)  # fmt: skip

    model = place_model(build_model(args.network, data.num_classes), device, args.compile)
    optimizer = build_sgd(model, args.lr, weight_decay=5e-4, nesterov=True)
    total = total_iterations(args.epochs, args.iterations, len(train_loader))
    scheduler = build_scheduler(optimizer, "cosine", total, len(train_loader))
    dynamics = TrainingDynamics(n, data.num_classes, device=device)
    used = n if indices is None else len(indices)
    precision, precision_why = resolve_precision(args.precision, device)
    trainer = Trainer(
        model=model, optimizer=optimizer, scheduler=scheduler, train_loader=train_loader,
        test_loader=test_loader, device=device, run=run, dynamics=dynamics,
        precision=precision, precision_why=precision_why, log=RunLog(run.log),
        checkpoint_interval_s=args.checkpoint_interval, started=started,
        state_extra={"fingerprint": fingerprint, "args": vars(args),
                     "num_classes": data.num_classes},
        what=f"{args.network} on {args.dataset}: {used}/{n} examples",
    )  # fmt: skip
    if state is not None:
        trainer.load_state_dict(state)
    try:
        result = trainer.fit(total, max(1, args.iterations_per_testing // len(train_loader)))
    except Interrupted:
        return 130
    write_outputs(run, result, cli.run_record(args, args.dataset), indices=indices, train_size=n,
                  dynamics=dynamics, device=device, noise=noise)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(dist_utils.run_entry_point(main, get_args_parser().parse_args()))
