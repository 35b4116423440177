"""A log that prints and mirrors every line into the run's log file (rank 0 only)."""

import os
import time

from tqdm import tqdm

from core.training import distributed as dist_utils


class RunLog:
    def __init__(self, path: str | None, enabled: bool | None = None):
        self.enabled = dist_utils.is_main() if enabled is None else enabled
        self.path = path if self.enabled else None
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        tqdm.write(message)  # keeps a live progress bar intact
        if self.path:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(self.path, "a") as fh:
                fh.write(f"{stamp} {message}\n")
