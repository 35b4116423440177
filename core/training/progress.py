"""Progress of a training run: a live tqdm bar on a terminal; when output goes to a file or a
pipe, one plain line per interval with the same information (no carriage returns)."""

import sys
import time

from tqdm import tqdm

PIPED_INTERVAL_S = 30.0


class Progress:
    def __init__(self, total: int, initial: int = 0, enabled: bool = True, interval_s=None):
        self.total, self.done = total, initial
        self.enabled = enabled
        self.piped = not sys.stderr.isatty()
        self.interval_s = PIPED_INTERVAL_S if interval_s is None else interval_s
        self.rate = ""
        self._start_done, self._start = initial, time.monotonic()
        self._last_line = self._start
        self.bar = None
        if enabled and not self.piped:
            self.bar = tqdm(
                total=total, initial=initial, unit="it", dynamic_ncols=True, leave=False
            )

    def update(self, n: int = 1) -> None:
        """Host-side bookkeeping only: no device work, so it is safe once per iteration."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self._last_line >= self.interval_s:
            self._line()

    def set_rate(self, text: str) -> None:
        self.rate = text
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def _line(self) -> None:
        now = time.monotonic()
        self._last_line = now
        per_s = (self.done - self._start_done) / max(now - self._start, 1e-9)
        eta = (self.total - self.done) / per_s if per_s > 0 else float("inf")
        rate = f", {self.rate}" if self.rate else ""
        print(
            f"progress: it {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%)"
            f", {per_s:.2f} it/s{rate}, eta {_duration(eta)}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"
