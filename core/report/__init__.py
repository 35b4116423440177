"""Collect the runs under a base folder into a summary, tables and figures.

    python -m core.report BASE_DIR [--out DIR] [--features PATH] [--data-score PATH]
                                   [--coverage-rate R] [--device DEV]

Reads every ``metrics.json`` below BASE_DIR (docs/CONTRACTS.md, "Run folder") and writes
``summary.json``, ``table.md``, ``accuracy.png`` (the paper's figure-5 layout), ``strata.png``
(how CCS split its budget over the strata) and ``coverage.png`` (coverage curves and AUCpr,
paper section 3.1). Score and features files are taken only from where the runs record them
or the flags name them (see inputs.py); a figure whose file is missing is skipped with a note
naming it.

Modules: runs (collect runs, group, aggregate, summary.json), tables (table.md), inputs (the
score, features and indices files), measures (strata counts, coverage distances), figures
(matplotlib), build (make_report), cli (flags, main).
"""

from core.report.build import make_report
from core.report.cli import main, parse_args
from core.report.figures import plot_accuracy, plot_coverage, plot_strata
from core.report.inputs import load_features, read_indices
from core.report.measures import compute_distances, coverage_distances, strata_counts
from core.report.runs import choose_variants, collect_runs, summarise
from core.report.tables import markdown_table
from core.run_folder import features_beside

__all__ = [
    "choose_variants",
    "collect_runs",
    "compute_distances",
    "coverage_distances",
    "features_beside",
    "load_features",
    "main",
    "make_report",
    "markdown_table",
    "parse_args",
    "plot_accuracy",
    "plot_coverage",
    "plot_strata",
    "read_indices",
    "strata_counts",
    "summarise",
]
