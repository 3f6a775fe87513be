"""How a training run stops without losing work: Ctrl-C (SIGINT) and the stop signals.

A run outlives Ctrl-C and the signals whose default action would end the process on the spot,
SIGTERM (``kill``, ``docker stop``, a batch scheduler's time limit) and SIGHUP (the terminal
or the ssh connection that started it closed). Inside ``GracefulStop`` the training loop
notes them and stops between iterations (a validation in progress gives up within a few
episodes: the checkpoint keeps that iteration's line, and ``--resume`` validates it first),
raising ``KeyboardInterrupt`` or, for a stop signal, ``Terminated`` (a ``KeyboardInterrupt``
too, so one ``except`` in ``training.train`` saves the whole iterations on either);
``updating`` marks the part of an iteration where the weights move, which a second signal
may cut short.

Read next: ``minimeta/experiments/evaluation.py`` (the 95% interval, test episodes, fine-tuning).
"""
import contextlib
import signal
import threading

# Signals whose default action ends the process, and which a run outlives: SIGTERM (``kill``,
# ``docker stop``, a batch scheduler's time limit) and SIGHUP (the terminal or the ssh
# connection that started the run closed); Windows has no SIGHUP.
STOPS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """A stop signal (``STOPS``) during training: the run stops as on Ctrl-C, saving its whole
    iterations; ``minimeta`` then exits with 128 + the signal's number (143 for SIGTERM, 129
    for SIGHUP), as a shell reports a process the signal ended."""

    def __init__(self, sig):
        super().__init__(signal.Signals(sig).name)
        self.signum = int(sig)


def _default(sig):
    """The handler a signal has when no one has set one: Python's own for SIGINT (it raises
    KeyboardInterrupt), the operating system's action for the stop signals."""
    return signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL


class GracefulStop:
    """``with GracefulStop() as signals:`` around a training loop: inside, Ctrl-C (SIGINT) and
    the stop signals are noted, not raised, and ``signals.check()``, which the loop calls
    between iterations, raises for the first one noted (``KeyboardInterrupt``, or
    ``Terminated``); so does leaving the block. A second signal inside takes its own action at
    once (Ctrl-C: KeyboardInterrupt; SIGTERM, SIGHUP: the process ends).

    Why noted and not raised: an exception raised from a Python signal handler surfaces in
    whatever Python code runs next, and inside a numba kernel that is a callback of numba's own
    (it calls back into Python as a kernel returns its arrays), which turns it into a
    ``SystemError``: the run's ``except KeyboardInterrupt`` never sees it, the process ends
    with a traceback and the iterations since the last checkpoint are lost (1 Ctrl-C in 12
    did so, sent at random 1.5–4 s into a ProtoNet run). Only the main thread takes signals,
    and only signals at their default (``_default``) are taken over: a handler of the
    caller's, or SIGINT or SIGHUP ignored (``nohup ... &``), is left as it is."""

    def __enter__(self):
        self.caught = []
        main = threading.current_thread() is threading.main_thread()
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT,) + STOPS
                         if main and signal.getsignal(sig) == _default(sig)}
        for sig in self.previous:
            signal.signal(sig, self._note)
        return self

    def __exit__(self, kind, value, traceback):
        self._restore()
        if kind is None:
            self.check()            # a signal during the last iteration's save still stops

    def check(self):
        """Raise for the first signal noted, if any."""
        if self.caught:
            sig = self.caught[0]
            raise Terminated(sig) if sig in STOPS else KeyboardInterrupt

    def _note(self, sig, _):
        self.caught.append(sig)
        if len(self.caught) > 1:    # the second: the signal's own action, now
            self._restore()
            signal.raise_signal(sig)

    def _restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


@contextlib.contextmanager
def updating(run):
    """``run["busy"]`` is True inside, where the weights move and the iteration is logged, and
    stays True if an exception (a second signal) leaves it: the run then saves nothing, as its
    weights may be half-moved."""
    run["busy"] = True
    yield
    run["busy"] = False
