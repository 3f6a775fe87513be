"""Whether ops are recorded: ``no_grad``, ``set_grad_enabled``, ``is_grad_enabled``, and the
per-thread state they switch (``STATE``), which ``autodiff.apply`` reads for every op.

Read next: ``minimeta/engine/autodiff.py`` (the Primitive contract, apply, the backward pass).
"""
import functools
import inspect
import threading


class _GradState(threading.local):
    """This thread's switches: is recording on, and are we inside a backward pass (for
    ``viz``). Per thread, so the tasks of a meta-batch can run on worker threads
    (``workers.py``); a new thread starts with recording on."""

    def __init__(self):
        self.enabled = True
        self.backward_depth = 0


STATE = _GradState()


class set_grad_enabled:
    """Turn recording on or off: at once, as PyTorch's, so that ``mm.set_grad_enabled(False)``
    alone switches it off (as a bare call it had done nothing); as a ``with`` block, back to
    what it was when the block ends; as a decorator, for each call of the function (each step,
    for a generator function).

    >>> import minimeta as mm
    >>> with mm.set_grad_enabled(False):
    ...     (mm.tensor([1.0], requires_grad=True) * 2).requires_grad
    False
    """

    def __init__(self, flag):
        self._flag, self._previous = bool(flag), STATE.enabled
        STATE.enabled = self._flag

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        STATE.enabled = self._previous

    def __call__(self, fn):
        STATE.enabled = self._previous     # decorating switches nothing: each call does
        flag = self._flag
        return _decorate(fn, lambda: set_grad_enabled(flag))


class no_grad:
    """Record nothing inside the block (or the decorated function).

    >>> import minimeta as mm
    >>> x = mm.tensor([1.0], requires_grad=True)
    >>> with mm.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __enter__(self):
        self._previous = STATE.enabled
        STATE.enabled = False

    def __exit__(self, *exc):
        STATE.enabled = self._previous

    def __call__(self, fn):
        return _decorate(fn, no_grad)


def _decorate(fn, mode):
    """``fn`` run inside ``with mode():`` at each call; a generator function, at each of its
    steps (the switch would otherwise cover only the call that makes the generator, and
    leak to the caller between steps)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            it, resume, value = fn(*args, **kwargs), "send", None
            while True:
                try:
                    with mode():
                        out = getattr(it, resume)(value)   # send(None) starts it
                except StopIteration as stop:
                    return stop.value
                try:
                    value, resume = (yield out), "send"
                except GeneratorExit:
                    it.close()
                    raise
                except BaseException as err:   # g.throw(...): into fn's body
                    value, resume = err, "throw"
        return steps

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mode():
            return fn(*args, **kwargs)
    return wrapper


def is_grad_enabled():
    """True when ops are being recorded."""
    return STATE.enabled
