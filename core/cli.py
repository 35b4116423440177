"""The reference scripts' flags, shared by the training and scoring scripts.

Flag names and defaults are the authors' scripts' (docs/FAITHFULNESS.md lists every
difference); flags they did not have are marked "(ours)". This module holds flags only: their
values are checked once, where core.settings builds its objects from them.
"""

import argparse

from core import methods
from core.errors import exit_with_error
from core.settings import RECIPE_DEFAULTS

PAPER, FAST = RECIPE_DEFAULTS["paper"], RECIPE_DEFAULTS["fast"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error format: one ``error: ...`` line, exit code 2."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message):
        exit_with_error(f"{message} (see {self.prog} --help)")


def add_run_flags(parser: argparse.ArgumentParser, data_dir_default="./data") -> None:
    parser.add_argument(
        "--gpuid",
        type=str,
        default=None,
        help="GPU id(s), e.g. 0 or 0,1 (default: 0); without CUDA the run says so and uses the CPU",
    )
    parser.add_argument(
        "--data-dir",
        type=str,
        default=data_dir_default,
        help=f"folder holding the dataset folder (default: {data_dir_default})",
    )
    parser.add_argument(
        "--base-dir", type=str, required=True, help="folder of run folders (required)"
    )
    parser.add_argument(
        "--task-name", type=str, required=True, help="run folder name under --base-dir (required)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="(ours) seed for init, data order, augmentation, selection (default: 0)",
    )
    parser.add_argument(
        "--device",
        type=str,
        default="auto",
        help="(ours) auto, cpu, cuda or cuda:N (default: auto: cuda:<gpuid> if "
        "available, else cpu)",
    )


def add_training_flags(
    parser: argparse.ArgumentParser,
    *,
    network="resnet18",
    networks=None,
    iterations_per_testing=800,
) -> None:
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train for this many epochs (give --epochs or --iterations)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="train for this many iterations (give --epochs or --iterations)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="global batch size, split across processes (default: "
        f"{PAPER['batch_size']}; --recipe fast: {FAST['batch_size']})",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"learning rate (default: {PAPER['lr']}; --recipe fast: {FAST['lr']} per 1024 "
        "examples, decoupled)",
    )
    parser.add_argument(
        "--recipe",
        choices=("paper", "fast"),
        default="paper",
        help="(ours) paper: the reference's SGD, schedule and loss; fast: airbench94's recipe "
        "(with --network airbench94; docs/FAITHFULNESS.md section F) (default: paper)",
    )
    parser.add_argument(
        "--network",
        type=str,
        default=network,
        choices=networks,
        help=f"network (default: {network})",
    )
    parser.add_argument(
        "--iterations-per-testing",
        type=int,
        default=iterations_per_testing,
        help="test every this many iterations, rounded down to whole epochs "
        f"(default: {iterations_per_testing})",
    )
    parser.add_argument(
        "--snapshot-epochs",
        type=str,
        default="",
        help="(ours) also keep every training-dynamics score as it stood after these epochs, "
        "e.g. 10,30: score keys name@K, and generate_importance_score*.py --score-epochs K "
        "scores the first K epochs (DUAL's early-epoch scoring; default: none)",
    )
    parser.add_argument(
        "--dynamics-window",
        type=int,
        default=None,
        help="(ours) the window, in epochs, of TDDS, Dyn-Unc and DUAL (default: their "
        "authors' 10); a shorter run than a window records no such score",
    )
    parser.add_argument(
        "--dynamics-epochs",
        type=int,
        default=None,
        help="(ours) the epochs TDDS and DUAL score, from the first (default: their authors' "
        "30; DUAL's 60 on ImageNet)",
    )
    parser.add_argument(
        "--val-size",
        type=int,
        default=0,
        help="(ours) hold this many training examples out for validation, class-stratified "
        "and the same for every --seed (after --train-subset, before --label-noise, which "
        "leaves them clean); every test also evaluates them, metrics.json adds "
        "test_acc_at_best_val and best_val_acc, ckpt-best.pt follows validation; "
        "0 = none, the reference's protocol (default: 0)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="(ours) auto = bf16 autocast on CUDA and on CPUs with native bf16 (AMX, "
        "AVX512-BF16), fp32 elsewhere; the log and metrics.json say which and why (default: auto)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="(ours) torch.compile the model (default: off)"
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="(ours) start afresh even if the run folder holds a checkpoint",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=60.0,
        help="(ours) seconds between end-of-epoch checkpoints; 0 = every epoch; "
        "checkpoints are also written at each test and on SIGINT/SIGTERM "
        "(default: 60)",
    )


def add_coreset_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coreset", action="store_true", help="train on a coreset")
    parser.add_argument(
        "--coreset-mode",
        type=str,
        choices=methods.modes(),
        default=None,
        help=methods.modes_help(),
    )
    parser.add_argument(
        "--data-score-path",
        type=str,
        default=None,
        help="score file from generate_importance_score*.py",
    )
    parser.add_argument(
        "--coreset-key",
        type=str,
        default=None,
        help="score used to rank or stratify, e.g. accumulated_margin",
    )
    parser.add_argument(
        "--data-score-descending",
        type=int,
        default=0,
        choices=(0, 1),
        help="1: larger scores come first: coreset mode keeps the largest, d2 takes them "
        "as the most important (default: 0)",
    )
    parser.add_argument(
        "--class-balanced",
        type=int,
        default=0,
        choices=(0, 1),
        help="per-class selection in coreset, d2 and kcenter modes (default: 0)",
    )
    parser.add_argument(
        "--coreset-ratio",
        type=float,
        default=None,
        help="fraction of the training set kept, in (0, 1]",
    )
    parser.add_argument(
        "--mis-key",
        type=str,
        default="accumulated_margin",
        help="score of the CCS hard cut (default: accumulated_margin)",
    )
    parser.add_argument(
        "--mis-data-score-descending",
        type=int,
        default=0,
        choices=(0, 1),
        help="1 cuts the largest --mis-key scores instead (default: 0)",
    )
    parser.add_argument(
        "--mis-ratio",
        type=float,
        default=0.0,
        help="CCS hard cut: fraction of the training set dropped first, "
        "the beta of the paper; also before d2 and kcenter (default: 0.0)",
    )
    parser.add_argument(
        "--strata",
        type=int,
        default=50,
        help="(ours; fixed at 50 in the reference) CCS strata (default: 50)",
    )
    add_method_param_flags(parser)


def add_method_param_flags(parser: argparse.ArgumentParser) -> None:
    """(ours) The flags of the methods' own parameters (core.methods registry), and the
    features file of the methods that read features (docs/FAITHFULNESS.md, section G)."""
    parser.add_argument(
        "--features-path",
        type=str,
        default=None,
        help="(ours) features file of d2 and kcenter (default: features-<task>.pt beside "
        "the score file, which generate_importance_score*.py writes into the scored run's "
        "folder <base-dir>/<task>)",
    )
    for param in methods.all_params():
        parser.add_argument(param.flag, type=param.kind, default=param.default, help=param.help)


def add_imagefolder_flags(parser: argparse.ArgumentParser, image_size_default=224) -> None:
    """(ours) The ImageNet input pipeline's flags, shared by the ImageNet scripts."""
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="(ours) DataLoader worker processes per process (default: "
        "min(16, CPU cores / processes on this node))",
    )
    if image_size_default is None:  # scoring: the run's size unless told otherwise
        size_help = "(ours) resize to size*256/224, centre-crop size (default: the run's own)"
    else:
        size_help = (
            "(ours) training crop size; testing resizes to size*256/224 and "
            f"centre-crops size (default: {image_size_default})"
        )
    parser.add_argument("--image-size", type=int, default=image_size_default, help=size_help)


def add_scoring_flags(
    parser: argparse.ArgumentParser, *, data_dir_help, gpuid_help, authors_td_help
):
    """The flags both scoring scripts share (each names its own data and dynamics logs)."""
    parser.add_argument("--gpuid", type=str, default="0", help=gpuid_help)
    parser.add_argument("--base-dir", type=str, required=True, help="folder of run folders")
    parser.add_argument("--task-name", type=str, required=True, help="the full-data run's name")
    parser.add_argument("--data-dir", type=str, default=None, help=data_dir_help)
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
    parser.add_argument("--authors-td", type=str, default=None, help=authors_td_help)
    parser.add_argument(
        "--score-epochs",
        type=int,
        default=None,
        help="(ours) the training-dynamics scores of the first K epochs only, from the run's "
        "train.py --snapshot-epochs K (default: the whole run)",
    )
    parser.add_argument(
        "--allow-unvisited",
        action="store_true",
        help="(ours) score a run that never visited some training examples (a coreset run); "
        "their dynamics scores read 0 (default: refuse)",
    )
