"""Softmax, log-softmax and the losses, as compositions (their VJPs come from the primitives).

log_softmax(z) = (z − m) − logsumexp(z − m), m the row's largest value (a constant): the
stable form, whose derivative ∂ log_softmax(z)ᵢ/∂zⱼ is [i = j] − softmax(z)ⱼ (so cross-entropy's
gradient with respect to z is (softmax − one-hot) / N, the loss being the mean over N rows).

Read next: ``minimeta/functional/layers.py`` (linear, conv2d, pooling, batch norm).
"""
import numpy as np

from ..engine import ops
from ..engine.backend import array_module
from ..engine.primitives.elementwise import floating
from ..engine.primitives.reductions import normalize_axis
from ..engine.tensor import Tensor


def log_softmax(z, axis=-1, op="log_softmax"):
    """(z − m) − logsumexp(z − m) along ``axis`` (an int or a tuple), m the row's largest
    value (0 where that is not finite) taken as a constant: the derivatives are those of
    z − logsumexp(z). Shifting first keeps the small
    term: z − logsumexp(z) rounds log Σ exp(z − m) away against a large m, and subtracting
    does not restore it (float32 logits of −1e4 lost 4% of a small loss and its gradient).

    >>> import minimeta as mm
    >>> float(log_softmax(mm.tensor([0.0, 0.0])).exp().sum().item())
    1.0
    >>> softmax(mm.tensor([0.0, 1e30, 1e30])).numpy()      # not [0, 1, 1]
    array([0. , 0.5, 0.5])
    """
    axis = normalize_axis(axis, z.ndim, op)        # (``op``: the name an error gives)
    if any(z.shape[a] == 0 for a in axis):   # nothing to normalise: empty, as PyTorch's
        return z + 0.0                       # (logsumexp refuses an empty axis)
    if z.size:
        xp = array_module(z.data)
        m = xp.max(z.data, axis=axis, keepdims=True)
        z = z - ops.constant(xp.where(xp.isfinite(m), m, 0), z)
    return z - ops.logsumexp(z, axis, keepdims=True)


def softmax(z, axis=-1):
    """exp(log_softmax(z)): probabilities along ``axis``."""
    return ops.exp(log_softmax(z, axis, "softmax"))


def _labels(labels, n, classes, op="cross_entropy"):
    labels = np.asarray(labels.numpy() if isinstance(labels, Tensor) else labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{op}: labels must be {n} integers, got shape {labels.shape}"
                         f" dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{op}: labels must lie in [0, {classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    return labels


def cross_entropy(logits, labels):
    """Mean over the batch of −log softmax(logits)[label]; ``logits`` (N, C), ``labels`` (N,).

    >>> import minimeta as mm
    >>> round(cross_entropy(mm.tensor([[0.0, 0.0]]), [1]).item(), 4)
    0.6931
    """
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got {logits.shape}")
    if logits.shape[0] == 0:   # (the engine's mean refuses it, naming "mean")
        raise ValueError(f"cross_entropy: no rows in logits {logits.shape}: the mean loss of "
                         "an empty batch is undefined")
    labels = _labels(labels, logits.shape[0], logits.shape[1])
    picked = log_softmax(logits)[np.arange(logits.shape[0]), labels]
    return -ops.mean(picked)


def mse_loss(pred, target):
    """Mean of (pred − target)² over all elements (shapes must match). An array ``target``
    takes a floating ``pred``'s dtype; an integer ``pred`` is promoted with it (NumPy's rule),
    so 0.5 is not truncated to 0.

    >>> import minimeta as mm, numpy as np
    >>> mse_loss(mm.tensor(np.array([1, 2])), [0.5, 0.5]).item()
    1.25
    """
    if np.issubdtype(pred.dtype, np.floating):
        target = ops.constant(target, pred, dtype=pred.dtype)
    else:
        pred, target = floating("mse_loss", pred, ops.constant(target, pred))
    if pred.shape != target.shape:
        raise ValueError(f"mse_loss: prediction {pred.shape} and target {target.shape} differ")
    if pred.dtype.char in "fd" and pred.size:     # one op (the same numbers)
        return ops.mean_squared_error(pred, target)
    diff = pred - target        # float16 (whose mean sums in float32), or empty (mean says so)
    return ops.mean(diff * diff)


def accuracy(logits, labels):
    """Fraction of rows whose argmax equals the label (a float, not differentiable);
    ``logits`` (N, C) and ``labels`` N integers, or a stack of them, (T, N, C) and (T, N).
    Not one-hot labels, nor (N, 1): either would compare every row with every label.

    >>> import minimeta as mm
    >>> accuracy(mm.tensor([[2.0, 0.0], [0.0, 1.0]]), [0, 0])
    0.5
    """
    return float(unread_accuracy(logits, labels))


def unread_accuracy(logits, labels):
    """``accuracy``, on a GPU a 0-d float64 array there, not yet read (on the host, the
    float). A read waits for all the work queued before it, so the learners keep a step's
    metrics unread and read them together once the step is queued
    (``learners/base.summary``); the argmax runs where the logits are, and only the number
    comes back.

    >>> import minimeta as mm
    >>> float(unread_accuracy(mm.tensor([[[2.0, 0.0]], [[0.0, 1.0]]]), [[0], [1]]))
    1.0
    """
    if logits.ndim < 2:
        raise ValueError(f"accuracy: logits must be (N, C) or a stack of them, got "
                         f"{logits.shape}")
    labels = np.asarray(labels.numpy() if isinstance(labels, Tensor) else labels)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"accuracy: labels must be {logits.shape[:-1]} integers for logits "
                         f"{logits.shape}, got shape {labels.shape} dtype {labels.dtype}")
    labels = _labels(labels.reshape(-1), labels.size, logits.shape[-1], "accuracy")
    xp = array_module(logits.data)
    predicted = xp.argmax(logits.data, axis=-1).reshape(-1)
    if xp is np:
        return float(np.mean(predicted == labels))
    return (predicted == xp.asarray(labels)).mean()
