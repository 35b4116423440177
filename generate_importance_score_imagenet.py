"""Turn a finished train_imagenet.py full-data run into importance scores.

Reads <base-dir>/<task-name>/ckpt-last.pt and td-<task>.pt (the dynamics accumulated during
training), makes one eval pass of the final model over the un-augmented training set with the
test transforms (entropy, loss, penultimate features), and writes --data-score-path (the
reference format, a plain pickle of tensors, whatever the name) and features-<task>.pt in the
run.

    python generate_importance_score_imagenet.py --data-dir /data/imagenet \\
        --base-dir ./work/imagenet --task-name ICLR2023-ImageNet \\
        --data-score-path ./imagenet-data-score.pt

One process by default; under torchrun (or with --gpuid 0,1) each process scores a share.

A run folder of the authors' train_imagenet.py (training-dynamics/td-<task>-epoch-<i>.pickle)
is scored from their logs, one epoch file at a time; entropy and loss only if its ckpt-last.pt
is there (the authors' own ImageNet scoring computes neither).
"""

import argparse
import sys

from core import cli
from core.data.imagenet import default_workers
from core.errors import UserError
from core.scoring import score_imagenet_run, summary_line
from core.settings import check_imagefolder_settings
from core.training import distributed as dist_utils


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_scoring_flags(
        parser,
        gpuid_help="GPU id(s), e.g. 0 or 0,1 (default: 0); ignored without CUDA",
        data_dir_help="the ImageNet root holding train/ and val/ (default: the run's own)",
        authors_td_help="(ours) the authors' training-dynamics/ folder of "
        "td-<task>-epoch-<i>.pickle files to score instead of ours (default: "
        "<run>/training-dynamics when the run has no td-<task>.pt)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="(ours) global eval batch size (default: 256)"
    )
    cli.add_imagefolder_flags(parser, image_size_default=None)
    return parser


def main(args) -> int:
    check_imagefolder_settings(args.workers, args.image_size)
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    device = dist_utils.start_process(args.device, args.gpuid)
    workers = (
        args.workers if args.workers is not None else default_workers(dist_utils.local_world_size())
    )
    out = score_imagenet_run(
        base_dir=args.base_dir,
        task_name=args.task_name,
        allow_unvisited=args.allow_unvisited,
        data_dir=args.data_dir,
        data_score_path=args.data_score_path,
        device=device,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=workers,
        authors_td=args.authors_td,
        score_epochs=args.score_epochs,
    )
    if out is not None:
        print(summary_line(out))
    return 0


if __name__ == "__main__":
    sys.exit(dist_utils.run_entry_point(main, get_args_parser().parse_args()))
