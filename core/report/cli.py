"""The command line: python -m core.report BASE_DIR [--out DIR] [...]."""

import contextlib
import signal
import threading

from core.cli import ArgumentParser
from core.errors import UserError, exit_with_error
from core.report import INTERRUPTED
from core.report.build import make_report


def parse_args(argv=None):
    parser = ArgumentParser(
        prog="python -m core.report",
        description="Summarise the runs under BASE_DIR: summary.json, table.md and figures.",
    )
    parser.add_argument("base_dir", metavar="BASE_DIR", help="folder searched for metrics.json")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="folder for the report (default: BASE_DIR)"
    )
    parser.add_argument(
        "--features",
        default=None,
        metavar="PATH",
        help="features-<task>.pt of the full-data model, for AUCpr and coverage.png, for "
        "every dataset (default, per dataset/network: the features file beside the score "
        "file its coreset runs record, i.e. <run>/features-<task>.pt for "
        "<run>/data-score-<task>.pickle, as generate_importance_score.py writes them)",
    )
    parser.add_argument(
        "--data-score",
        default=None,
        metavar="PATH",
        help="score file the coreset runs were selected from, for strata.png and to find "
        "the features beside it (default: the coreset.data_score_path each run's "
        "metrics.json records; a relative one is taken from the current folder)",
    )
    parser.add_argument(
        "--coverage-rate",
        type=float,
        default=None,
        metavar="RATE",
        help="pruning rate (fraction, e.g. 0.9) of coverage.png (default: the "
        "highest rate with coreset indices)",
    )
    parser.add_argument(
        "--device",
        default=None,
        metavar="DEV",
        help="device for the distances (default: cuda when available, else cpu)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        with _sigterm_as_interrupt():
            _report(args)
    except UserError as exc:
        exit_with_error(str(exc))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every file is written whole or not at all
        exit_with_error(INTERRUPTED, code=130)


def _report(args) -> None:
    table, written = make_report(
        base_dir=args.base_dir,
        out_dir=args.out,
        features_path=args.features,
        data_score_path=args.data_score,
        coverage_rate=args.coverage_rate,
        device=args.device,
    )
    print()
    print(table, end="")
    print()
    for path in written:
        print(f"wrote {path}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt while the report runs, so the atomic writes remove
    their temporary files (the default SIGTERM ends the process on the spot)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
