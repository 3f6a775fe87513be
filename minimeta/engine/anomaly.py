"""Anomaly mode: find the first op whose forward output or VJP result holds a NaN or an inf.

    with mm.detect_anomaly():
        loss = F.cross_entropy(model(x, params), y)   # every op's output checked as made
        grads = mm.grad(loss, list(params.values()))  # and every VJP result, at every order

The error names the primitive, its inputs' shapes and dtypes (and whether they were already
non-finite), the order of differentiation, and the line of your code that called the forward
op. PyTorch's anomaly mode checks only for NaN and only in backward; this one checks NaN and
inf, both directions. Off by default, and then free: ``autodiff.apply`` and the backward loop
test one attribute (``benchmarks/engine_overhead.py`` measures both settings).

Orders: a Tensor made from your inputs is of order 0; the VJP of a node of order k computes
part of a derivative of order k + 1, and so does every op it applies; an op applied to Tensors
of orders up to k (a gradient taken with ``create_graph=True``, say) is of order k. (First
time through: primitives, VJPs and ``create_graph`` are defined in ``autodiff.py``, two files
on; this module only hooks into them, which is why it comes first.)

Read next: ``minimeta/engine/grad_mode.py`` (no_grad: whether ops are recorded).
"""
import contextlib
import linecache
import os
import sys
import threading

from .backend import array_module


class AnomalyError(FloatingPointError):
    """An op produced a NaN or an inf while ``detect_anomaly`` was on."""


class _Switch(threading.local):
    """This thread's anomaly mode (per thread, see ``workers.py``; a new thread starts off),
    and ``node``: the Tensor whose VJP is running (None outside one)."""

    def __init__(self):
        self.on, self.node = False, None


ANOMALY = _Switch()

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../minimeta
_OP_LAYERS = tuple(os.path.join(_PACKAGE, d) + os.sep
                   for d in ("engine", "functional", "nn", "kernels"))
_OP_LAYERS += (os.path.join(_PACKAGE, "gradcheck.py"),)


@contextlib.contextmanager
def detect_anomaly(enabled=True):
    """Context manager: raise ``AnomalyError`` at the first non-finite forward or VJP value.

    >>> import minimeta as mm, numpy as np
    >>> x = mm.tensor(np.array([1.0, 0.0]), requires_grad=True)
    >>> with mm.detect_anomaly():
    ...     y = mm.log(x)        # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    minimeta.engine.anomaly.AnomalyError: detect_anomaly: Log (forward) produced inf ...
    """
    previous = ANOMALY.on
    ANOMALY.on = bool(enabled)
    try:
        yield
    finally:
        ANOMALY.on = previous


_KIND = {}  # file name -> 0: an op layer, 1: other minimeta code, 2: not minimeta (cached)


def _kind(filename):
    kind = _KIND.get(filename)
    if kind is None:
        name = os.path.abspath(filename)
        kind = 0 if name.startswith(_OP_LAYERS) else 1 if name.startswith(_PACKAGE + os.sep) \
            else 2
        _KIND[filename] = kind
    return kind


def call_site():
    """Where the op was called, as ``((file, line), ...)``: the innermost frame outside the op
    layers (engine, functional, nn, kernels), and, when that is minimeta's own code (a
    learner), also the innermost frame outside minimeta. Formatted only on error."""
    frame, site = sys._getframe(2), None
    while frame is not None:
        kind = _kind(frame.f_code.co_filename)
        if site is None and kind:
            site = (frame.f_code.co_filename, frame.f_lineno)
            if kind == 2:
                return (site,)
        elif site is not None and kind == 2:
            return site, (frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return (site,) if site else ()


def _format_site(site):
    """``call_site()``'s frames as text (or the text already made for an op inside a VJP)."""
    if isinstance(site, str):
        return site
    lines = [f"{f}:{n} ({linecache.getline(f, n).strip()})" for f, n in site]
    return ", called from ".join(lines) or "an unknown place"


def _bad(array):
    """'nan', 'inf', 'nan and inf' or '' for an array (CPU or GPU)."""
    if array.dtype.kind not in "fc":
        return ""
    xp = array_module(array)
    if xp.isfinite(array).all():  # the common case: one pass
        return ""
    nan, inf = bool(xp.isnan(array).any()), bool(xp.isinf(array).any())
    return " and ".join(w for w, b in (("nan", nan), ("inf", inf)) if b)


def _describe(tensors):
    parts = []
    for t in tensors:
        bad = _bad(t.data)
        parts.append(f"{tuple(t.shape)} {t.dtype}" + (f" (already {bad})" if bad else ""))
    return ", ".join(parts)


def _order(t):
    return getattr(t, "_site", (0, None))[0]


def check_forward(op, inputs, out):
    """After ``op`` made ``out`` from ``inputs``: record its order and call site, and raise
    if ``out`` holds a NaN or an inf."""
    inside = ANOMALY.node
    order = max(map(_order, inputs), default=0)
    if inside is not None:
        order = max(order, _order(inside) + 1)
    # the node whose VJP made ``out`` is kept only for a recorded ``out``, whose own VJP may be
    # reported; an unrecorded one (a gradient without create_graph) never is, and the node had
    # kept the whole forward graph alive with the gradient (found by an audit, 2026-12-03)
    out._site = (order, call_site() if inside is None else
                 inside if out._requires_grad else None)
    bad = _bad(out.data)
    if bad:
        what = "forward" if order == 0 else f"forward, part of a derivative of order {order}"
        raise AnomalyError(
            f"detect_anomaly: {op!r} ({what}) produced {bad} in its output "
            f"{tuple(out.shape)}; inputs {_describe(inputs)}; called "
            + (f"inside {_vjp_site(inside)}" if inside is not None
               else f"at {_format_site(out._site[1])}"))


def _vjp_site(node):
    order, site = getattr(node, "_site", (None, None))
    order = "?" if order is None else order + 1
    if hasattr(site, "_op"):  # made inside another VJP (site is that node): name it
        where = f"called inside {_vjp_site(site)}"
    else:
        where = "called at " + _format_site(site) if site is not None else \
            "called at a place not recorded (its forward ran outside detect_anomaly)"
    return (f"the VJP of {node._op!r} (derivative of order {order}; inputs "
            f"{_describe(node._parents)}), whose forward op was {where}")


def checked_vjp(node, g, results):
    """``node``'s VJP on ``g``, run with ``node`` as the context of the ops it applies, its
    results checked by ``results`` (the autodiff's check of their number and type); raise if
    a result holds a NaN or an inf."""
    outer, ANOMALY.node = ANOMALY.node, node
    try:
        grads = results(node, node._op.vjp(g, node, *node._parents))
    finally:
        ANOMALY.node = outer
    for i, pg in enumerate(grads):
        bad = "" if pg is None else _bad(pg.data)
        if bad:
            raise AnomalyError(f"detect_anomaly: {_vjp_site(node)}, returned {bad} for input "
                               f"{i}")
    return grads
