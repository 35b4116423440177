"""Train on CIFAR10 / CIFAR100 / SVHN / CINIC10, on all data (recording training dynamics)
or on a coreset. Flags and defaults follow the reference scripts; see README.md.

    python train.py --dataset cifar10 --epochs 200 --task-name all-data --base-dir ./data-model/cifar10
"""
import argparse
import math
import sys
import time

from core import cli
from core.errors import UserError, exit_with_error

NETWORKS = ("resnet18", "resnet50", "resnet20", "resnet32", "resnet56")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=str, default="cifar10",
                        choices=("cifar10", "cifar100", "svhn", "cinic10"),
                        help="dataset (default: cifar10)")
    cli.add_run_flags(parser)
    cli.add_training_flags(parser, networks=NETWORKS)
    cli.add_coreset_flags(parser)
    parser.add_argument("--no-download", action="store_true",
                        help="(ours) fail instead of downloading a missing dataset")
    parser.add_argument("--train-subset", type=int, default=0,
                        help="(ours) train on a fixed subset of this many examples, which then "
                             "stands in for the whole training set; 0 = all (default: 0)")
    return parser


def main(args) -> int:
    import torch

    from core.data import DeviceLoader, load_dataset
    from core.data.subset import take_train_subset
    from core.models import build_model
    from core.scores import TrainingDynamics
    from core.training import distributed as dist_utils
    from core.training.optim import build_scheduler, build_sgd
    from core.training.run import (find_resume_state, resolve_precision, run_paths,
                                   seed_everything, select_device, select_training_subset,
                                   write_outputs)
    from core.training.runlog import RunLog
    from core.training.trainer import Interrupted, Trainer

    started = time.time()
    cli.check_training_args(args)
    cli.check_coreset_args(args)
    dist_utils.init_from_env()
    device = select_device(args.device, args.gpuid)
    precision = resolve_precision(args.precision, device)
    paths = run_paths(args.base_dir, args.task_name)
    coreset = cli.coreset_settings(args)
    fingerprint = {k: getattr(args, k) for k in
                   ("dataset", "network", "epochs", "iterations", "batch_size", "lr", "seed",
                    "train_subset")}
    fingerprint["coreset"] = dict(coreset or {}, data_score_path=args.data_score_path)
    fingerprint["world_size"] = dist_utils.world_size()
    state = find_resume_state(paths, fingerprint, args.no_resume)
    if state is not None and state.get("finished"):
        if dist_utils.is_main():
            print(f"{paths['dir']} is already finished (best acc {state['best_acc']:.4f}); "
                  "use --no-resume to train it again")
        return 0

    data = load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    data = take_train_subset(data, args.train_subset)
    indices = select_training_subset(coreset, args.data_score_path, data.train.targets, args.seed)
    if coreset is not None:
        coreset["data_score_path"] = args.data_score_path

    seed_everything(args.seed)
    channels_last = True  # faster on CUDA (tensor cores) and on CPU (oneDNN) alike
    common = dict(mean=data.mean, std=data.std, device=device, channels_last=channels_last,
                  rank=dist_utils.rank(), world_size=dist_utils.world_size())
    train_loader = DeviceLoader(data.train.images, data.train.targets, batch_size=args.batch_size,
                                augment=data.augment, shuffle=True, seed=args.seed,
                                indices=indices, **common)
    test_loader = DeviceLoader(data.test.images, data.test.targets, batch_size=1024,
                               augment=False, shuffle=False, seed=args.seed, **common)
    model = build_model(args.network, data.num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_sgd(model, args.lr)
    per_epoch = len(train_loader)
    total = args.iterations if args.iterations is not None else args.epochs * per_epoch
    scheduler = build_scheduler(optimizer, "cosine", total, per_epoch)
    dynamics = TrainingDynamics(len(data.train.targets), data.num_classes, device=device)
    model = dist_utils.wrap_model(model, device)
    if args.compile:
        model = torch.compile(model)

    log = RunLog(paths["log"], enabled=dist_utils.is_main())
    trainer = Trainer(model=model, optimizer=optimizer, scheduler=scheduler,
                      train_loader=train_loader, test_loader=test_loader, device=device,
                      run_dir=paths["dir"], task_name=args.task_name, dynamics=dynamics,
                      precision=precision, log=log, checkpoint_interval_s=args.checkpoint_interval,
                      state_extra={"fingerprint": fingerprint, "args": vars(args),
                                   "num_classes": data.num_classes})
    train_size = len(data.train.targets)
    used = train_size if indices is None else int(indices.numel())
    if state is not None:
        trainer.load_state_dict(state)
        log.info(f"resuming {paths['dir']} at iteration {trainer.position['iteration']}/{total}")
    else:
        log.info(f"training {args.network} on {args.dataset}: {used}/{train_size} examples, "
                 f"{total} iterations ({per_epoch}/epoch), {device}, {precision}, "
                 f"{dist_utils.world_size()} process(es)")
    epochs_per_test = max(1, args.iterations_per_testing // per_epoch)
    try:
        result = trainer.fit(total, epochs_per_test)
    except Interrupted as stop:
        log.info(f"interrupted at iteration {stop.args[0]}; checkpoint saved in {paths['dir']}; "
                 "run the same command again to resume")
        return 130
    write_outputs(paths, result=result, args=args, coreset=coreset, indices=indices,
                  train_size=train_size, dynamics=dynamics,
                  epochs_seen=math.ceil(total / per_epoch), device=device, seed=args.seed,
                  dataset=args.dataset, network=args.network, started=started)
    log.info(f"done: best acc {result['best_acc']:.4f}, last acc {result['last_acc']:.4f}, "
             f"{result['images_per_s']:,.0f} img/s; outputs in {paths['dir']}")
    dist_utils.shutdown()
    return 0


if __name__ == "__main__":
    arguments = get_args_parser().parse_args()
    try:
        sys.exit(main(arguments))
    except UserError as err:
        exit_with_error(str(err))
