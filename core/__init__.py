"""Coverage-centric Coreset Selection (CCS, ICLR 2023): the library under the scripts.

Modules: scores (training dynamics), coreset (selection), graph_selection (D2 pruning and
k-center greedy on features), score_io (safe score files), data (datasets and
device-resident loaders), models, training, coverage, report. Everything a user can get wrong raises `core.errors.UserError`.
"""
