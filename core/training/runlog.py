"""A log that prints and mirrors every line into the run's log file (rank 0 only)."""

import os
import time

from tqdm import tqdm


class RunLog:
    def __init__(self, path: str | None, enabled: bool = True):
        self.path = path if enabled else None
        self.enabled = enabled
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
