"""Layer functions: linear, conv2d with bias, pooling, batch norm, dropout, flatten.

Conventions: images are NCHW, conv weights OIHW, linear weights (in, out) so that
``linear(x, w, b) = x @ w + b`` reads left to right.

Batch norm in training mode normalises with the statistics of the batch in hand. Inside a MAML
inner loop that is the "transductive" batch norm of Finn et al.: every forward pass, at
meta-training and at meta-test time, uses the statistics of the current support or query batch,
and the running averages are never used. (With a running average, the inner loop's gradients
would depend on earlier tasks.) With tasks on worker threads, the running buffers (used only in
evaluation mode) are updated one task at a time, in the order the tasks finish.

Read next: ``minimeta/functional/metric.py`` (similarities and the Matching read-out).
"""

import numpy as np

from ..engine import ops
from ..engine.workers import defer
from ..engine.primitives import conv as C
from ..engine.primitives.normalization import BatchNorm, batch_norm_composite  # noqa: F401

conv2d_input_grad, conv2d_weight_grad = C.conv2d_input_grad, C.conv2d_weight_grad


def linear(x, w, b=None):
    """x @ w (+ b), with ``w`` of shape (in, out) and ``b`` (out,); both broadcast, so a stack
    of layers, ``w`` (T, in, out) and ``b`` (T, 1, out) on ``x`` (T, n, in), is one layer per
    task (``learners.StackedTasks`` stacks θ so).

    >>> import minimeta as mm
    >>> linear(mm.tensor([[1.0, 2.0]]), mm.tensor([[1.0], [1.0]]), mm.tensor([0.5])).numpy()
    array([[3.5]])
    """
    if w.ndim < 2 or x.shape[-1] != w.shape[-2]:
        raise ValueError(f"linear: input features {x.shape} do not match weight {w.shape}")
    y = x @ w
    return y if b is None else y + b


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution of NCHW ``x`` by OIHW ``w``, plus a per-channel bias ``b`` (O,).

    >>> import minimeta as mm, numpy as np
    >>> conv2d(mm.tensor(np.ones((1, 1, 3, 3))), mm.tensor(np.ones((2, 1, 3, 3))),
    ...        padding=1).shape
    (1, 2, 3, 3)
    """
    y = C.conv2d(x, w, stride, padding)
    return y if b is None else y + ops.reshape(b, (1, -1, 1, 1))


def max_pool2d(x, kernel, stride=None):
    """Max over k×k windows, ``stride`` defaulting to ``kernel`` (floor mode, no padding)."""
    return C.max_pool2d(x, kernel, stride)


def avg_pool2d(x, kernel, stride=None):
    """Mean over k×k windows: the sum of k² strided slices of ``x``, divided by k²."""
    stride = stride or kernel
    ho = (x.shape[2] - kernel) // stride + 1
    wo = (x.shape[3] - kernel) // stride + 1
    total = None
    for p in range(kernel):
        for q in range(kernel):
            tap = x[:, :, p:p + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride]
            total = tap if total is None else total + tap
    return total * (1.0 / (kernel * kernel))


def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, training=True,
               momentum=0.1, eps=1e-5, fused=True):
    """Batch normalisation over all axes but the channel axis 1 (input NC or NCHW).

    ``training=True`` normalises with the batch's mean and biased variance, and, when running
    buffers (NumPy arrays) are given, updates them in place:
    running ← (1 − momentum)·running + momentum·batch (unbiased variance, as in PyTorch);
    tasks on worker threads apply these updates in task order (``engine/workers.defer``).
    It runs the fused primitive (one kernel each way, ``engine/primitives/normalization.py``)
    unless ``fused=False``, which runs ``batch_norm_composite``, its reference definition.
    ``training=False`` normalises with the running buffers.
    """
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm: input must be NC or NCHW, got {x.shape}")
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if not training:
        if running_mean is None:
            raise ValueError("batch_norm: training=False needs running_mean and running_var")
        mean = ops.constant(running_mean.reshape(shape).astype(x.dtype, copy=False), x)
        var = ops.constant(running_var.reshape(shape).astype(x.dtype, copy=False), x)
        return _affine((x - mean) / ops.sqrt(var + eps), weight, bias, shape)
    n = x.size // x.shape[1]
    if n < 2:
        raise ValueError(f"batch_norm: training needs more than 1 value per channel, got "
                         f"input {x.shape}")
    if fused:
        w = weight if weight is not None else ops.ones(x.shape[1], dtype=x.dtype, device=x.device)
        b = bias if bias is not None else ops.zeros(x.shape[1], dtype=x.dtype, device=x.device)
        y = ops.apply(BatchNorm(eps), x, w, b)
        mean, var = y.saved  # the batch statistics, saved by the primitive's forward
    else:
        y = batch_norm_composite(x, weight, bias, eps)
        axes = (0,) + tuple(range(2, x.ndim))
        mean, var = x.numpy().mean(axis=axes), x.numpy().var(axis=axes)
    if running_mean is not None:
        def update():           # in place ([...]: the caller's buffers, not new names)
            running_mean[...] *= 1 - momentum
            running_mean[...] += momentum * mean
            running_var[...] *= 1 - momentum
            running_var[...] += momentum * var * n / (n - 1)
        # tasks on worker threads share the buffers: their updates are applied in task order
        defer(update)
    return y


def _affine(y, weight, bias, shape):
    if weight is not None:
        y = y * ops.reshape(weight, shape)
    if bias is not None:
        y = y + ops.reshape(bias, shape)
    return y


def dropout(x, p=0.5, training=True, rng=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1 − p).

    ``rng`` (a ``numpy.random.Generator`` or a seed) makes the mask reproducible.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must lie in [0, 1), got {p}")
    if not training or p == 0:
        return x
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    keep = rng.random(x.shape) >= p
    return x * ops.constant(keep.astype(x.dtype) / (1 - p), x)


def flatten(x):
    """Reshape (N, ...) to (N, features)."""
    return ops.reshape(x, (x.shape[0], -1))
