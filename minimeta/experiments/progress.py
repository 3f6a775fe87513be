"""A dependency-free progress line for long loops: iteration, rate, and the latest metrics.

Output never stops a run: a stream that has gone away (the terminal hung up, so writes fail
with EIO; a pipe whose reader quit) silences the line (``Progress``) or the log
(``tolerant``) instead of raising in the middle of training.

Read next: ``minimeta/experiments/curve.py`` (a run's learning curve: curve.png).
"""
import sys
import time

from ..kernels import compiled_before
from ..nn import Conv2d


class Progress:
    """Print ``label it/total  rate it/s  eta  metrics`` every ``every`` seconds and at the
    end; the first update at once, with the time it took in place of a rate (a log piped to a
    file had shown nothing for 30 s).
    With a time ``budget`` (seconds; counted by ``spent()`` when given, else by this line's
    wall clock) the eta is whichever ends first, and a total the budget will not reach is not
    shown. A loop resumed at iteration ``first`` counts its rate from
    there, not from 0.

    >>> import io
    >>> out = io.StringIO()
    >>> bar = Progress(10, "train", every=0.0, stream=out, first=4)
    >>> bar.update(4)
    >>> out.getvalue().startswith("train 5/10  ")
    True
    """

    def __init__(self, total, label="", every=None, stream=None, budget=None, first=0,
                 spent=None):
        self.total, self.label, self.budget, self.first = total, label, budget, first
        self.spent = spent  # the budget's clock (seconds), if not this line's wall clock
        self.stream = stream or sys.stderr
        # a terminal gets a live line every 2 s; a log file a line every 30 s
        self.every = every if every is not None else (2.0 if self.stream.isatty() else 30.0)
        self.start = self.last = time.perf_counter()
        self.shown = False    # nothing printed yet: the first update is

    def update(self, i, **metrics):
        now = time.perf_counter()
        early = now - self.last < self.every and i + 1 < self.total   # before its time
        if self.stream is None or (early and self.shown):
            return
        first_line = not self.shown and i + 1 < self.total
        self.last, self.shown = now, True
        rate = max(i + 1 - self.first, 0) / max(now - self.start, 1e-9)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        eta, total = (self.total - i - 1) / max(rate, 1e-9), f"/{self.total}"
        spent = self.spent() if self.spent is not None else now - self.start
        # time ends it first (judged from a rate, not from the first iteration's time)
        if self.budget is not None and self.budget - spent < eta and not first_line:
            eta, total = max(0.0, self.budget - spent), ""
        end = "\n" if i + 1 >= self.total or not self.stream.isatty() else "\r"
        # the first line: its iteration's time, not yet a rate to extrapolate (numba's compile
        # or cache load is in it: an eta from it had been 3× too long; slower than ``every``
        # it had still been extrapolated, 160 s shown for a run of 3 s)
        pace = f"first {now - self.start:.2f} s" if first_line else \
            f"{rate:.1f} it/s  eta {eta:.0f}s"
        try:
            self.stream.write(f"{self.label} {i + 1}{total}  {pace}  {shown}{end}")
            self.stream.flush()
        except OSError:      # the stream has gone away: no more progress lines
            self.stream = None

    @property
    def elapsed(self):
        return time.perf_counter() - self.start


def tolerant(write):
    """``write`` (``print``, a log function) made to ignore a stream that has gone away
    (``OSError``), so that a message never stops a run.

    >>> def gone(*_):
    ...     raise OSError(5, "Input/output error")
    >>> tolerant(gone)("the terminal hung up")
    """
    def call(*args, **kwargs):
        try:
            write(*args, **kwargs)
        except OSError:
            pass
    return call


def first_use_note(model, device, log=None):
    """The line said (through ``log``, when given) before a run of ``model`` whose convolution
    kernels numba has not compiled on this machine yet (``kernels.compiled_before``): its first
    iteration pauses about half a minute more, once; or None, said nothing (a model without
    convolutions, as MANN's or a sinusoid MLP; a GPU run, whose kernels are others)."""
    if device != "cpu" or not any(isinstance(m, Conv2d) for m in model._modules()) \
            or compiled_before() is not False:
        return None
    note = ("(first use here: numba compiles the convolution kernels, about half a minute, "
            "once; later runs load them from its cache)")
    if log is not None:
        log(note)
    return note
