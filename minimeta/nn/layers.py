"""The standard layers as Modules: each forward is one call into ``minimeta.functional``.

Initialisation (seeded: pass ``seed`` or a ``numpy.random.Generator`` as ``rng``; with
neither, the layer draws from ``STREAM``, the process's one generator, so each layer gets
weights of its own; ``generator``, which the backbones and learners use too, so that
``seed=None`` means the same everywhere):
- ``Linear`` and ``Conv2d`` weights: Kaiming-normal, std = sqrt(2 / fan_in), the choice for
  layers followed by ReLU (He et al. 2015); biases start at zero. ``Linear(init_std=s)`` draws
  normal(0, s) instead (the sinusoid MLP of the MAML reference code uses s = 0.01).
- ``BatchNorm2d``: weight 1, bias 0, running mean 0, running variance 1.
- ``LSTMCell``: uniform(−1/√H, 1/√H) for all weights and its one bias, as PyTorch draws
  each of its two (b_ih + b_hh: a wider sum).
The default dtype is float32 (training speed); pass ``dtype=np.float64`` for gradient checks.

Read next: ``minimeta/nn/snail.py`` (SNAIL's blocks: temporal convolutions and causal attention).
"""
import numbers

import numpy as np

from .. import functional as F
from ..engine.workers import stacked_tasks
from ..functional.layers import whole
from .module import Module


# Layers made with neither ``seed`` nor ``rng`` draw their weights from this one stream, in the
# order they are made: each layer its own draw (two Linear(64, 64) had both been seeded 0, so
# equal), and the same weights again in a fresh process that makes the same layers in the same
# order (from one thread: threads making layers at once take the draws in the order they run).
STREAM = np.random.default_rng(0)


def derived(seed, part):
    """The seed of a model's ``part``-th network (1, 2, ...) for a model seeded ``seed``: the
    pair (seed, part), a stream of its own; None (the process stream) for None. (seed + 1 had
    been the next run's seed: seed 0's CNP decoder started as seed 1's encoder, scaled.)

    >>> derived(0, 1), derived(None, 1)
    ((0, 1), None)
    """
    return None if seed is None else (seed, part)


def generator(seed=None, rng=None):
    """``rng``; else a generator seeded ``seed`` (an int, or a ``derived`` pair); else the
    process's ``STREAM``."""
    if rng is not None:
        return rng
    return np.random.default_rng(seed) if seed is not None else STREAM


class Sequential(Module):
    """Children applied in order; parameters are named ``<index>.<name>``."""

    def __init__(self, *layers):
        super().__init__()
        self._names = [str(i) for i in range(len(layers))]
        for name, layer in zip(self._names, layers):
            self.add_child(name, layer)

    def forward(self, x, params):
        for name in self._names:
            x = self.call_child(name, x, params)
        return x

    def __getitem__(self, i):
        if isinstance(i, slice):
            raise TypeError(f"Sequential[{i.start}:{i.stop}]: slices are not offered (a slice "
                            "would need its parameters renamed); index one layer, or build a "
                            "new Sequential of the layers")
        return self._children[self._names[i]]

    def __len__(self):
        return len(self._names)


class Linear(Module):
    """y = x @ weight + bias with weight (in, out)."""

    def __init__(self, in_features, out_features, bias=True, seed=None, rng=None,
                 dtype=np.float32, init_std=None):
        super().__init__()
        r = generator(seed, rng)
        # (0 features had divided by zero, and a NaN init_std made NaN weights)
        self.shape = (whole("Linear", "in_features", in_features, 1, axes=1),
                      whole("Linear", "out_features", out_features, 1, axes=1))
        if init_std is not None and not (isinstance(init_std, numbers.Real)
                                         and 0 <= init_std < np.inf):
            raise ValueError(f"Linear: init_std must be a finite number >= 0, got {init_std!r}")
        std = np.sqrt(2.0 / in_features) if init_std is None else init_std
        self.add_param("weight", (r.standard_normal(self.shape) * std).astype(dtype))
        if bias:
            self.add_param("bias", np.zeros(out_features, dtype=dtype))

    def forward(self, x, params):
        return F.linear(x, params["weight"], params.get("bias"))

    def extra_repr(self):
        return f"{self.shape[0]}, {self.shape[1]}"


class Conv2d(Module):
    """2-D convolution with OIHW weight and per-channel bias."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 seed=None, rng=None, dtype=np.float32):
        super().__init__()
        r = generator(seed, rng)
        in_channels = whole("Conv2d", "in_channels", in_channels, 1, axes=1)
        out_channels = whole("Conv2d", "out_channels", out_channels, 1, axes=1)
        kernel_size = whole("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = whole("Conv2d", "stride", stride, 1)
        self.padding = whole("Conv2d", "padding", padding, 0)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        std = np.sqrt(2.0 / (in_channels * kernel_size * kernel_size))
        self.add_param("weight", (r.standard_normal(shape) * std).astype(dtype))
        if bias:
            self.add_param("bias", np.zeros(out_channels, dtype=dtype))

    def forward(self, x, params):
        return F.conv2d(x, params["weight"], params.get("bias"), self.stride, self.padding)

    def extra_repr(self):
        o, i, k, _ = self._params["weight"].shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class BatchNorm2d(Module):
    """Batch norm over NCHW (or NC). Training mode uses batch statistics and updates the
    running buffers; evaluation mode uses the buffers. See ``functional/layers.py``."""

    def __init__(self, channels, momentum=0.1, eps=1e-5, affine=True, dtype=np.float32):
        super().__init__()
        if isinstance(momentum, (bool, np.bool_)) or not isinstance(momentum, numbers.Real) \
                or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm2d: momentum must be a number in [0, 1] (None, "
                             f"PyTorch's cumulative average, is not offered), got {momentum!r}")
        if not (isinstance(eps, numbers.Real) and eps > 0):
            raise ValueError(f"BatchNorm2d: eps must be a number > 0, got {eps!r}")
        self.momentum, self.eps = momentum, eps
        # (0 channels had been taken, -1 and 2.5 had met NumPy's errors, naming no layer)
        channels = whole("BatchNorm2d", "channels", channels, 1, axes=1)
        if affine:
            self.add_param("weight", np.ones(channels, dtype=dtype))
            self.add_param("bias", np.zeros(channels, dtype=dtype))
        self.add_buffer("running_mean", np.zeros(channels, dtype=np.float64))
        self.add_buffer("running_var", np.ones(channels, dtype=np.float64))

    def forward(self, x, params):
        weight = params.get("weight")
        # a 3-D input is a stack of tasks (T, N, C) only where something says so: a per-task
        # weight, (T, C) or StackedTasks' (T, 1, C), or a StackedTasks run of T tasks (an NC
        # model without affine weights had been refused there)
        if x.ndim == 3 and (weight is None or weight.ndim == 1) and \
                stacked_tasks() != x.shape[0]:
            raise ValueError(f"BatchNorm2d: input {x.shape} is 3-D; give NCHW or NC (a 3-D "
                             "input is read only as a stack of tasks (T, N, C), weight (T, C))")
        return F.batch_norm(x, weight, params.get("bias"),
                            self._buffers["running_mean"], self._buffers["running_var"],
                            self.training, self.momentum, self.eps)

    def extra_repr(self):
        affine = "" if "weight" in self._params else ", affine=False"
        return (f"{self._buffers['running_mean'].shape[0]}, momentum={self.momentum}, "
                f"eps={self.eps}{affine}")


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x, params):
        return F.relu(x)


class Tanh(Module):
    """tanh(x): the smooth activation (gradient checks of whole networks use it)."""

    def forward(self, x, params):
        return F.tanh(x)


class MaxPool2d(Module):
    """Max pooling over k×k windows."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = whole("MaxPool2d", "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else whole("MaxPool2d", "stride",
                                                                     stride, 1)

    def forward(self, x, params):
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(Module):
    """(N, ...) → (N, features)."""

    def forward(self, x, params):
        return F.flatten(x)


class LSTMCell(Module):
    """One LSTM step: ``cell((x, (h, c)), params)`` returns ``(h', c')``.

    ``recurrent_size`` is the width of the recurrent input h (default: ``hidden_size``).
    """

    def __init__(self, input_size, hidden_size, seed=None, rng=None, dtype=np.float32,
                 recurrent_size=None):
        super().__init__()
        r = generator(seed, rng)
        # (hidden_size 0 had met an OverflowError in NumPy's uniform; input_size 0 was taken)
        input_size = whole("LSTMCell", "input_size", input_size, 1, axes=1)
        hidden_size = whole("LSTMCell", "hidden_size", hidden_size, 1, axes=1)
        recurrent_size = hidden_size if recurrent_size is None else \
            whole("LSTMCell", "recurrent_size", recurrent_size, 1, axes=1)
        bound = 1.0 / np.sqrt(hidden_size)
        self.hidden_size = hidden_size
        for name, shape in (("w_ih", (input_size, 4 * hidden_size)),
                            ("w_hh", (recurrent_size, 4 * hidden_size)),
                            ("bias", (4 * hidden_size,))):
            self.add_param(name, r.uniform(-bound, bound, shape).astype(dtype))

    def forward(self, inputs, params):
        x, (h, c) = inputs
        return F.lstm_cell(x, h, c, params["w_ih"], params["w_hh"], params["bias"])

    def extra_repr(self):
        inputs, recurrent = (self._params[k].shape[0] for k in ("w_ih", "w_hh"))
        more = "" if recurrent == self.hidden_size else f", recurrent_size={recurrent}"
        return f"{inputs}, {self.hidden_size}{more}"
