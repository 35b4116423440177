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
    cli.add_scoring_flags(
        parser,
        gpuid_help="GPU id (default: 0)",
        data_dir_help="(ours) folder holding the dataset folder (default: the run's own)",
        authors_td_help="(ours) the authors' train.py dynamics log, td-<task>.pickle, to score "
        "instead of ours (default: <run>/td-<task>.pickle when the run has no td-<task>.pt); "
        "entropy and loss come from <run>/ckpt-last.pt, the authors' or ours",
    )
    parser.add_argument(
        "--dataset",
        type=str,
        default=None,
        choices=DATASETS,
        help="(ours) dataset (default: the run's own)",
    )
    parser.add_argument(
        "--normalized-scoring-inputs",
        action="store_true",
        help="(ours) entropy and loss on the normalised images the model trained on (default: "
        "ToTensor() only, values in [0, 1], as the authors' script)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="(ours) fail instead of downloading a missing dataset",
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
        device=dist_utils.start_process(args.device, args.gpuid),
        download=not args.no_download,
        normalized_inputs=args.normalized_scoring_inputs,
        authors_td=args.authors_td,
        score_epochs=args.score_epochs,
    )
    print(summary_line(out))
    return 0


if __name__ == "__main__":
    sys.exit(dist_utils.run_entry_point(main, get_args_parser().parse_args()))
