"""Layer functions: linear, conv2d with bias, pooling, batch norm, dropout, flatten.

Conventions: images are NCHW, conv weights OIHW, linear weights (in, out) so that
``linear(x, w, b) = x @ w + b`` reads left to right.

Every layer also runs a *stack* of T tasks at once (``learners.StackedTasks`` runs a meta-batch
so): a leading task axis on the images, (T, N, C, H, W), and on the parameters that differ per
task, a weight (T, O, C, kh, kw) or (T, in, out), a per-channel vector (T, 1, C) (the shape
``StackedTasks`` broadcasts θ to). Parameters without the axis are shared by the T tasks. Batch
statistics stay per task.

Batch norm in training mode normalises with the statistics of the batch in hand. Inside a MAML
inner loop that is the "transductive" batch norm of Finn et al.: every forward pass, at
meta-training and at meta-test time, uses the statistics of the current support or query batch,
and the running averages are never used. (With a running average, the inner loop's gradients
would depend on earlier tasks.) The running buffers (used only in evaluation mode) are still
updated by every forward pass in training mode, a learner's ``evaluate`` included (so a
checkpoint's buffers carry the statistics of the last batches it saw; a training run's
validation puts them back, ``experiments/evaluation.validation``);
with tasks on worker threads, one task at a time, in task order (``engine/workers.defer``).

Read next: ``minimeta/functional/metric.py`` (similarities and the Matching read-out).
"""

import math

import numpy as np

from ..engine import ops
from ..engine.tensor import Tensor
from ..engine.backend import array_module
from ..kernels import norm_ref
from ..engine.workers import defer
from ..engine.primitives import conv as C
from ..engine.primitives.elementwise import floating
from ..engine.primitives.shape import fits
from ..engine.primitives.normalization import BatchNorm, batch_norm_composite  # noqa: F401

conv2d_input_grad, conv2d_weight_grad = C.conv2d_input_grad, C.conv2d_weight_grad
whole = C.whole  # an int option's check (strides, padding, windows), for the layers too


def _tensors(*xs):
    """``xs`` as Tensors: an array among them (an input, a weight from a params dict of arrays)
    becomes a constant on the device of the first Tensor (its own, if none); None stays None.
    Every layer takes arrays so (conv2d had failed on a memoryview: an ndarray's ``.data``)."""
    like = next((x for x in xs if isinstance(x, Tensor)), None)
    return [x if x is None or isinstance(x, Tensor) else
            ops.constant(x, like if like is not None else x) for x in xs]


def linear(x, w, b=None):
    """x @ w (+ b), with ``w`` of shape (in, out) and ``b`` (out,); both broadcast, so a stack
    of layers, ``w`` (T, in, out) and ``b`` (T, 1, out) on ``x`` (T, n, in), is one layer per
    task (``learners.StackedTasks`` stacks θ so).

    >>> import minimeta as mm
    >>> linear(mm.tensor([[1.0, 2.0]]), mm.tensor([[1.0], [1.0]]), mm.tensor([0.5])).numpy()
    array([[3.5]])
    """
    x, w, b = _tensors(x, w, b)
    if w.ndim < 2 or x.shape[-1] != w.shape[-2]:
        raise ValueError(f"linear: input features {x.shape} do not match weight {w.shape}")
    lead = x.shape[:-2]   # the product's leading axes: x's and w's, broadcast (as in matmul)
    if lead != w.shape[:-2]:
        try:
            lead = np.broadcast_shapes(lead, w.shape[:-2])
        except ValueError:
            raise ValueError(f"linear: the leading axes of input {x.shape} and weight "
                             f"{w.shape} cannot broadcast") from None
    shape = lead + x.shape[-2:-1] + w.shape[-1:]     # (a 1-d x: no row axis)
    if b is not None and not fits(b.shape, shape):
        raise ValueError(f"linear: bias {b.shape} does not fit weight {w.shape} (output "
                         f"{shape}): it would broadcast the output to another shape")
    if b is None or x.ndim < 2:
        return x @ w if b is None else x @ w + b
    return ops.affine(x, w, b)      # x @ w + b as one op


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution of NCHW ``x`` by OIHW ``w``, plus a per-channel bias ``b`` (O,); on a
    stack of tasks (5-D ``x``), one convolution per task (with ``w`` (T, O, C, kh, kw) and
    ``b`` (T, 1, O)) or one shared by all (``w`` OIHW, ``b`` (O,)), or a mix of the two.

    >>> import minimeta as mm, numpy as np
    >>> conv2d(mm.tensor(np.ones((1, 1, 3, 3))), mm.tensor(np.ones((2, 1, 3, 3))),
    ...        padding=1).shape
    (1, 2, 3, 3)
    >>> conv2d(mm.tensor(np.ones((4, 1, 1, 3, 3))), mm.tensor(np.ones((4, 2, 1, 3, 3))),
    ...        mm.tensor(np.zeros((4, 1, 2)))).shape               # 4 tasks, a filter each
    (4, 1, 2, 1, 1)
    """
    x, w, b = _tensors(x, w, b)
    if x.ndim == 5 and w.ndim == 4:             # a stack, one filter shared by every task
        y = _per_image(x, lambda x4: C.conv2d(x4, w, stride, padding))
        if b is None:
            return y
        per_task = b.ndim > 1               # (T, 1, O) or (T, O)
        return y + ops.reshape(b, (b.shape[0], 1, -1, 1, 1) if per_task else (1, 1, -1, 1, 1))
    if b is not None and w.ndim == 5 and b.ndim == 3:       # (T, 1, O) from StackedTasks
        b = ops.reshape(b, (b.shape[0], b.shape[2]))
    elif b is not None and w.ndim == 5 and b.ndim == 1:     # a bias shared by the tasks (not
        b = ops.broadcast_to(b, (w.shape[0],) + b.shape)   # adapted; it had been refused)
    return C.conv2d(x, w, stride, padding, b)   # the bias added inside, in place


def _per_image(x, f):
    """``f``, an op on NCHW images, on a stack (T, N, C, H, W) seen as T·N images."""
    y = f(ops.reshape(x, (-1,) + x.shape[2:]))
    return ops.reshape(y, x.shape[:2] + y.shape[1:])


def max_pool2d(x, kernel, stride=None):
    """Max over k×k windows, ``stride`` defaulting to ``kernel`` (floor mode, no padding)."""
    (x,) = _tensors(x)
    return C.max_pool2d(x, kernel, stride)      # a stack (T, N, C, H, W) too: each image


def avg_pool2d(x, kernel, stride=None):
    """Mean over k×k windows: the sum of k² strided slices of ``x``, divided by k²; ``stride``
    defaults to ``kernel`` (floor mode, no padding), and a stack (T, N, C, H, W) pools each
    image.

    >>> import minimeta as mm, numpy as np
    >>> avg_pool2d(mm.tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 2).numpy()[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    kernel = C.whole("avg_pool2d", "kernel", kernel, 1)
    (x,) = _tensors(x)
    stride = kernel if stride is None else C.whole("avg_pool2d", "stride", stride, 1)
    if x.ndim not in (4, 5) or min(x.shape[-2:]) < kernel:
        raise ValueError(f"avg_pool2d: input {x.shape} must be NCHW (or a stack TNCHW) with "
                         f"sides >= kernel {kernel}")
    if x.ndim == 5:
        return _per_image(x, lambda x4: avg_pool2d(x4, kernel, stride))
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
    """Batch normalisation over all axes but the channel axis 1 (input NC or NCHW); on a stack
    of tasks (T, N, C[, H, W]), over all but the task and channel axes, weight and bias (T, 1, C)
    per task or (C,) shared.

    ``training=True`` normalises with the batch's mean and biased variance, and, when running
    buffers (NumPy arrays) are given, updates them in place:
    running ← (1 − momentum)·running + momentum·batch (unbiased variance, as in PyTorch);
    tasks on worker threads apply these updates in task order (``engine/workers.defer``), as
    does a stack (task 0 first).
    It runs the fused primitive (one kernel each way, ``engine/primitives/normalization.py``)
    unless ``fused=False``, which runs ``batch_norm_composite``, its reference definition.
    ``training=False`` normalises with the running buffers.
    """
    x, weight, bias = _tensors(x, weight, bias)
    eps = float(eps)    # a Python number: np.float64(1e-5) had made eval's float32 float64
    if x.ndim not in (2, 3, 4, 5):
        raise ValueError(f"batch_norm: input must be NC or NCHW (or a stack of them, TNC or "
                         f"TNCHW), got {x.shape}")
    stack = x.ndim in (3, 5)
    tasks, c = (x.shape[0] if stack else 1), x.shape[1 + stack]
    shape = (1,) * stack + (1, c) + (1,) * (x.ndim - 2 - stack)
    if (running_mean is None) != (running_var is None):    # (one alone: half an update)
        raise ValueError("batch_norm: running_mean and running_var go together: give both "
                         "or neither")
    for name, buffer in (("running_mean", running_mean), ("running_var", running_var)):
        if buffer is not None and np.size(buffer) != c:   # (one channel's had filled all 3)
            raise ValueError(f"batch_norm: {name} has {np.size(buffer)} values for an input "
                             f"of {c} channels {x.shape}")
    if not training:
        if running_mean is None:
            raise ValueError("batch_norm: training=False needs running_mean and running_var")
        x = floating("batch_norm", x, weight, bias)[0]   # as training's (uint8 stats wrapped)
        mean = ops.constant(running_mean.reshape(shape).astype(x.dtype, copy=False), x)
        var = ops.constant(running_var.reshape(shape).astype(x.dtype, copy=False), x)
        return _affine((x - mean) / ops.sqrt(var + eps), weight, bias, x, stack)
    n = x.size // (tasks * c)
    if n < 2:
        raise ValueError(f"batch_norm: training needs more than 1 value per channel, got "
                         f"input {x.shape}")
    per = (tasks, c) if stack else (c,)
    w = _per_task(weight, per, x) if weight is not None else \
        ops.ones(per, dtype=x.dtype, device=x.device)
    b = _per_task(bias, per, x) if bias is not None else \
        ops.zeros(per, dtype=x.dtype, device=x.device)
    x, w, b = floating("batch_norm", x, w, b)  # NumPy's promotion, as the composite's ops
    if fused:
        y = ops.apply(BatchNorm(eps), x, w, b)
        mean, var = y.saved  # the batch statistics, saved by the primitive's forward
    else:
        y = batch_norm_composite(x, w, b, eps)
        axes = norm_ref.layout(x, w)[0]
        # on x's device, as the buffers they update are (numpy()'s host copies: CuPy refused)
        mean, var = x.data.mean(axis=axes), x.data.var(axis=axes)
    if running_mean is not None:
        # tasks on worker threads, or stacked, share the buffers: updates go in task order
        means, variances = np.reshape(mean, (tasks, c)), np.reshape(var, (tasks, c))
        for t in range(tasks):
            task = t if stack else None
            defer(RunningAverage(running_mean, 1 - momentum, momentum, means[t]), task=task)
            defer(RunningAverage(running_var, 1 - momentum, momentum * n / (n - 1),
                                 variances[t]), task=task)
    return y


class RunningAverage:
    """A deferred update of a running buffer, in place: buffer ← decay·buffer + weight·value.

    Updates of one buffer merge (``engine/workers.merged``): applying u₁ … u_L in turn is one
    update with decay Π decayⱼ and value Σⱼ weightⱼ·(Π_{k>j} decayₖ)·valueⱼ, one matrix
    product over the L stacked values (a stack's T per-task updates in a few device calls).
    """

    __slots__ = ("buffer", "decay", "weight", "value")

    def __init__(self, buffer, decay, weight, value):
        self.buffer, self.decay, self.weight, self.value = buffer, decay, weight, value

    @property
    def merge_key(self):
        return id(self.buffer)

    def __call__(self):                 # in place ([...]: the caller's buffer, not a new name)
        self.buffer[...] *= self.decay
        self.buffer[...] += self.value if self.weight == 1 else self.weight * self.value

    @classmethod
    def merge(cls, updates):
        """One update with the effect of ``updates`` applied in order."""
        coefficients, later = [], 1.0
        for u in reversed(updates):
            coefficients.append(u.weight * later)
            later *= u.decay
        values = np.stack([u.value for u in updates])           # on the values' device
        weights = array_module(values).asarray(np.array(coefficients[::-1]))
        return cls(updates[0].buffer, later, 1, weights @ values)


def _per_task(v, per, x):
    """A weight or bias as the primitive takes it: (C,), or (T, C) for a stack."""
    if v.size not in (per[-1], int(np.prod(per))):
        raise ValueError(f"batch_norm: input {x.shape} needs a weight and bias of {per[-1]} "
                         f"channels (per task: {per}), got {v.shape}")
    if v.shape == per:
        return v
    if len(per) == 1 or v.ndim > 1:
        return ops.reshape(v, per)
    return ops.broadcast_to(v, per)      # one vector shared by the stack's tasks


def _affine(y, weight, bias, x, stack):
    for v, combine in ((weight, ops.mul), (bias, ops.add)):
        if v is not None:
            lead = (v.shape[0], 1) if stack and v.ndim > 1 else (1,) * (1 + stack)
            y = combine(y, ops.reshape(v, lead + (-1,) + (1,) * (x.ndim - 2 - stack)))
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
    """Reshape (N, ...) to (N, features); a stack of images (T, N, C, H, W) to (T, N, features)."""
    (x,) = _tensors(x)
    lead = 1 + (x.ndim == 5)    # (features counted: a batch of 0 leaves -1 undetermined)
    return ops.reshape(x, x.shape[:lead] + (math.prod(x.shape[lead:]),))
