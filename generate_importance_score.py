"""Turn a finished full-data run into importance scores.

Reads <base-dir>/<task-name>/ckpt-last.pt and td-<task>.pt, makes an eval pass of the final
model over the un-augmented training set (entropy and loss on un-normalised images as the
authors' script does, penultimate features on normalised ones), and writes
data-score-<task>.pickle (reference format) and features-<task>.pt beside them.

A run folder of the authors' train.py (td-<task>.pickle, their ckpt-last.pt) is scored the same
way, from their logged dynamics; --authors-td names such a log elsewhere.

    python generate_importance_score.py --base-dir ./data-model/cifar10 --task-name all-data
"""

import argparse
import sys

from core import cli
from core.data import DATASETS
from core.scoring import score_finished_run, summary_line
from core.training import distributed as dist_utils


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--gpuid", type=str, default="0", help="GPU id (default: 0)")
    parser.add_argument("--base-dir", type=str, required=True, help="folder of run folders")
    parser.add_argument("--task-name", type=str, required=True, help="the full-data run's name")
    parser.add_argument(
        "--dataset",
        type=str,
        default=None,
        choices=DATASETS,
        help="(ours) dataset (default: the run's own)",
    )
    parser.add_argument(
        "--data-dir",
        type=str,
        default=None,
        help="(ours) folder holding the dataset folder (default: the run's own)",
    )
    parser.add_argument(
        "--data-score-path",
        type=str,
        default=None,
        help="(ours) output file (default: <run>/data-score-<task>.pickle)",
    )
    parser.add_argument(
        "--device",
        type=str,
        default="auto",
        help="(ours) auto, cpu, cuda or cuda:N (default: auto)",
    )
    parser.add_argument(
        "--normalized-scoring-inputs",
        action="store_true",
        help="(ours) entropy and loss on the normalised images the model trained on (default: "
        "ToTensor() only, values in [0, 1], as the authors' script)",
    )
    parser.add_argument(
        "--authors-td",
        type=str,
        default=None,
        help="(ours) the authors' train.py dynamics log, td-<task>.pickle, to score instead of "
        "ours (default: <run>/td-<task>.pickle when the run has no td-<task>.pt); entropy and "
        "loss come from <run>/ckpt-last.pt, the authors' or ours",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="(ours) fail instead of downloading a missing dataset",
    )
    parser.add_argument(
        "--allow-unvisited",
        action="store_true",
        help="(ours) score a run that never visited some training examples (a coreset run); "
        "their dynamics scores read 0 (default: refuse)",
    )
    return parser


def main(args) -> int:
    out = score_finished_run(
        base_dir=args.base_dir,
        task_name=args.task_name,
        allow_unvisited=args.allow_unvisited,
        dataset=args.dataset,
        data_dir=args.data_dir,
        data_score_path=args.data_score_path,
        device_flag=args.device,
        gpuid=args.gpuid,
        download=not args.no_download,
        normalized_inputs=args.normalized_scoring_inputs,
        authors_td=args.authors_td,
    )
    print(summary_line(out))
    return 0


if __name__ == "__main__":
    sys.exit(dist_utils.run_entry_point(main, get_args_parser().parse_args()))
