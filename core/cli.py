"""The reference scripts' flags, shared by train.py and train_imagenet.py, and their checks.

Flag names and defaults are the authors' scripts' (docs/FAITHFULNESS.md lists every
difference); flags they did not have are marked "(ours)". This module holds flags and their
checks only: checks run before anything is read or written, and raise UserError.
"""

import argparse
import math
import os

from core import coreset
from core.coreset import MODES as CORESET_MODES
from core.coreset import check_settings
from core.errors import UserError, exit_with_error
from core.run_folder import features_beside


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
    batch_size=256,
    lr=0.1,
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
        default=batch_size,
        help=f"global batch size, split across processes (default: {batch_size})",
    )
    parser.add_argument("--lr", type=float, default=lr, help=f"learning rate (default: {lr})")
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
        choices=CORESET_MODES,
        default=None,
        help="random, coreset (score-ranked), stratified (CCS), moderate, d2 (D2 pruning) "
        "or kcenter (k-center greedy)",
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
    add_feature_mode_flags(parser)


def add_feature_mode_flags(parser: argparse.ArgumentParser) -> None:
    """(ours) The flags of the d2 and kcenter modes, which select on the scoring run's
    penultimate features (docs/FAITHFULNESS.md, section G)."""
    parser.add_argument(
        "--features-path",
        type=str,
        default=None,
        help="(ours) features file of d2 and kcenter (default: features-<task>.pt beside "
        "the score file, which generate_importance_score*.py writes into the scored run's "
        "folder <base-dir>/<task>)",
    )
    parser.add_argument(
        "--d2-neighbors",
        type=int,
        default=coreset.D2_NEIGHBORS,
        help=f"(ours) d2: neighbours per example in the kNN graph (default: "
        f"{coreset.D2_NEIGHBORS}, the D2 authors' CIFAR command)",
    )
    parser.add_argument(
        "--d2-forward-gamma",
        type=float,
        default=coreset.D2_FORWARD_GAMMA,
        help="(ours) d2: forward message passing weighs a neighbour's importance by "
        f"exp(-gamma*distance) (default: {coreset.D2_FORWARD_GAMMA}, as the D2 code)",
    )
    parser.add_argument(
        "--d2-reverse-gamma",
        type=float,
        default=coreset.D2_REVERSE_GAMMA,
        help="(ours) d2: a pick lowers each neighbour's score by exp(-gamma*distance) times "
        f"its own (default: {coreset.D2_REVERSE_GAMMA}, the D2 authors' CIFAR command's "
        "--gamma)",
    )


def check_run_args(args) -> None:
    """--task-name is one plain folder name under --base-dir (no path, nothing hidden)."""
    name = args.task_name
    if not name or name in (".", "..") or os.sep in name or "/" in name or name.startswith("."):
        raise UserError(
            f"--task-name {name!r} must be a plain folder name (no '/', not empty, not "
            "starting with '.'); --base-dir says where it goes"
        )


def check_training_args(args) -> None:
    check_run_args(args)
    if (args.epochs is None) == (args.iterations is None):
        raise UserError("give exactly one of --epochs and --iterations")
    length = args.epochs if args.epochs is not None else args.iterations
    if length <= 0:
        flag = "--epochs" if args.epochs is not None else "--iterations"
        raise UserError(f"{flag} must be positive, got {length}")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise UserError(f"--lr must be a positive number, got {args.lr}")
    if not math.isfinite(args.checkpoint_interval) or args.checkpoint_interval < 0:
        raise UserError(
            f"--checkpoint-interval must be 0 or more seconds, got {args.checkpoint_interval}"
        )

    if args.iterations_per_testing <= 0:
        raise UserError(
            f"--iterations-per-testing must be positive, got {args.iterations_per_testing}"
        )


def check_train_args(args) -> None:
    """Every check of train.py's and train_imagenet.py's shared flags."""
    check_training_args(args)
    check_coreset_args(args)


def check_coreset_args(args) -> None:
    """Flag-level checks; the score file itself is checked when it is read."""
    if not args.coreset:
        return
    check_settings(args.coreset_mode, args.coreset_ratio, key=args.coreset_key,
                   mis_ratio=args.mis_ratio, strata=args.strata,
                   d2_neighbors=args.d2_neighbors, d2_forward_gamma=args.d2_forward_gamma,
                   d2_reverse_gamma=args.d2_reverse_gamma)  # fmt: skip
    if args.coreset_mode != "random" and not args.data_score_path:
        raise UserError(f"--coreset-mode {args.coreset_mode} needs --data-score-path")
    if args.coreset_mode == "stratified" and not args.coreset_key:
        raise UserError("--coreset-mode stratified needs --coreset-key")


def coreset_settings(args) -> dict | None:
    """The selection settings as keyword arguments of core.coreset.select_coreset. The d2
    parameters are included in d2 mode only, so that the settings recorded for (and
    compared when resuming) runs of the other modes are those they always were."""
    if not args.coreset:
        return None
    key = args.coreset_key
    if args.coreset_mode in ("moderate", "d2") and key is None:
        key = coreset.DEFAULT_KEYS[args.coreset_mode]
    d2 = {}
    if args.coreset_mode == "d2":
        d2 = {
            "d2_neighbors": args.d2_neighbors,
            "d2_forward_gamma": args.d2_forward_gamma,
            "d2_reverse_gamma": args.d2_reverse_gamma,
        }
    return {
        "mode": args.coreset_mode,
        "ratio": args.coreset_ratio,
        "key": key,
        "descending": bool(args.data_score_descending),
        "class_balanced": bool(args.class_balanced),
        "mis_ratio": args.mis_ratio,
        "mis_key": args.mis_key,
        "mis_descending": bool(args.mis_data_score_descending),
        "strata": args.strata,
        **d2,
    }


def features_path(args) -> str | None:
    """The features file a coreset run reads: --features-path, else the one beside the score
    file (core.run_folder.features_beside); None for modes that read none."""
    if not args.coreset or args.coreset_mode not in coreset.FEATURE_MODES:
        return None
    return args.features_path or features_beside(args.data_score_path)


def _file_settings(args) -> dict:
    """The files a selection reads, for the fingerprint and metrics.json."""
    files = {"data_score_path": args.data_score_path}
    if features_path(args) is not None:
        files["features_path"] = features_path(args)
    return files


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


def check_imagefolder_args(args) -> None:
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    if args.image_size is not None and args.image_size < 8:
        raise UserError(f"--image-size must be at least 8 pixels, got {args.image_size}")


def fingerprint(args, keys) -> dict:
    """The flags a run folder must keep to be resumed: those named, and the coreset selection."""
    settings = {k: getattr(args, k) for k in keys}
    settings["coreset"] = dict(coreset_settings(args) or {}, **_file_settings(args))
    return settings


def run_record(args, dataset: str) -> dict:
    """What metrics.json says about how a run was made (besides its results and provenance)."""
    settings = coreset_settings(args)
    if settings is not None:  # absolute paths: the report finds them from any folder
        files = _file_settings(args)
        settings.update({k: os.path.abspath(v) if v else v for k, v in files.items()})
    return {
        "seed": args.seed,
        "dataset": dataset,
        "network": args.network,
        "coreset": settings,
        "args": vars(args),
    }
