"""A dependency-free progress line for long loops: iteration, rate, and the latest metrics.

Read next: ``minimeta/experiments/sinusoid.py`` (the sinusoid experiment).
"""
import sys
import time


class Progress:
    """Print ``label it/total  rate it/s  eta  metrics`` every ``every`` seconds and at the end."""

    def __init__(self, total, label="", every=None, stream=None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        # a terminal gets a live line every 2 s; a log file a line every 30 s
        self.every = every if every is not None else (2.0 if self.stream.isatty() else 30.0)
        self.start = self.last = time.perf_counter()

    def update(self, i, **metrics):
        now = time.perf_counter()
        if now - self.last < self.every and i + 1 < self.total:
            return
        self.last = now
        rate = (i + 1) / max(now - self.start, 1e-9)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        eta = (self.total - i - 1) / rate
        end = "\n" if i + 1 >= self.total or not self.stream.isatty() else "\r"
        self.stream.write(f"{self.label} {i + 1}/{self.total}  {rate:.1f} it/s  "
                          f"eta {eta:.0f}s  {shown}{end}")
        self.stream.flush()

    @property
    def elapsed(self):
        return time.perf_counter() - self.start
