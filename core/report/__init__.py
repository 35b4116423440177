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

import importlib

INTERRUPTED = "interrupted (the report's files are only ever written whole)"  # Ctrl-C, SIGTERM
# name -> module; imported on first use, so that `python -m core.report` can catch Ctrl-C and
# SIGTERM (__main__.py) before the seconds that importing torch takes
_EXPORTS = {
    "choose_variants": "core.report.runs",
    "collect_runs": "core.report.runs",
    "compute_distances": "core.report.measures",
    "coverage_distances": "core.report.measures",
    "features_beside": "core.run_folder",
    "load_features": "core.report.inputs",
    "main": "core.report.cli",
    "make_report": "core.report.build",
    "markdown_table": "core.report.tables",
    "parse_args": "core.report.cli",
    "plot_accuracy": "core.report.figures",
    "plot_coverage": "core.report.figures",
    "plot_strata": "core.report.figures",
    "read_indices": "core.report.inputs",
    "strata_counts": "core.report.measures",
    "summarise": "core.report.runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'core.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
