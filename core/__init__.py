"""Coverage-centric Coreset Selection (CCS, ICLR 2023): the library under the scripts.

Modules: scores (training dynamics), coreset (selection), graph_selection (D2 pruning and
k-center greedy on features), score_io (safe score files), data (datasets and
device-resident loaders), models, training, coverage, report. Everything a user can get wrong raises `core.errors.UserError`.
"""

from core.errors import install_startup_handlers as _install_startup_handlers

# Before any heavy import of the project's scripts (PyTorch takes seconds): Ctrl-C or SIGTERM
# there ends with one line, not an import traceback. Other programs importing core: no change.
_install_startup_handlers()
