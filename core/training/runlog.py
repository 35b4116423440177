"""A log that prints and mirrors every line into the run's log file (rank 0 only)."""

import os
import time

from tqdm import tqdm

from core.errors import file_error
from core.run_folder import check_still_held_for, claimed_folder_of
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
            for attempt in range(2):
                # a run folder removed meanwhile is taken again (or the run stops) before the
                # log is appended to, as before a checkpoint: core.run_folder
                check_still_held_for(self.path)
                try:
                    with open(self.path, "a") as fh:
                        fh.write(f"{stamp} {message}\n")
                    return
                except FileNotFoundError as error:  # removed between the check and the open
                    if attempt or not claimed_folder_of(self.path):
                        raise file_error(self.path, "write", error) from None
                except OSError as error:
                    raise file_error(self.path, "write", error) from None
