"""numba.cuda max pooling: one thread per output (forward), a scatter with atomics (backward).

Spec: ``pool_ref.py`` (the argmax is the flat index into x of the first maximum of each
window). The backward adds g at those indices with ``cuda.atomic.add``, so overlapping windows
(stride < kernel) that share a maximum sum correctly, though in the order the threads arrive:
the last bits of such a sum may differ from run to run (docs/PERFORMANCE.md, "The same bits";
non-overlapping windows, conv4's 2×2 at stride 2, add each input at most once onto zero: the
same bits every run).

Read next: ``kernels/attention_cuda.py`` (cosine attention on a GPU).
"""
from . import _cuda, array_module
from ._cuda import cuda
from .conv_ref import out_size
from .pool_ref import check_pool


@cuda.jit
def _max_pool(x, y, idx, k, stride):
    t = cuda.grid(1)
    n_img, chans, ho, wo = y.shape
    if t >= n_img * chans * ho * wo:
        return
    n, c, i, j = t // (chans * ho * wo), (t // (ho * wo)) % chans, (t // wo) % ho, t % wo
    h, w = x.shape[2], x.shape[3]
    best_r, best_c = i * stride, j * stride
    best = x[n, c, best_r, best_c]
    for p in range(k):
        for q in range(k):
            v = x[n, c, i * stride + p, j * stride + q]
            if v > best or (v != v and best == best):   # the first NaN wins, as argmax's
                best, best_r, best_c = v, i * stride + p, j * stride + q
    y[n, c, i, j] = best
    idx[n, c, i, j] = ((n * chans + c) * h + best_r) * w + best_c


@cuda.jit
def _scatter_add(g, idx, out):
    t = cuda.grid(1)
    if t < g.size:
        cuda.atomic.add(out, idx[t], g[t])


def max_pool2d(x, kernel, stride):
    """Return ``(y, argmax)`` as ``pool_ref.max_pool2d`` does."""
    check_pool("max_pool2d", x, kernel, stride)
    xp = array_module(x)
    (x,) = _cuda.contiguous(x)
    n, c, h, w = x.shape
    shape = (n, c, out_size(h, kernel, stride, 0), out_size(w, kernel, stride, 0))
    y, idx = xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=xp.int64)
    _cuda.launch(_max_pool, y.size, x, y, idx, kernel, stride)
    return y, idx


def max_pool2d_backward(g, argmax, x_shape):
    """Scatter-add ``g`` to the flat ``argmax`` positions of a zero array of ``x_shape``."""
    xp = array_module(g)
    out = xp.zeros(int(x_shape[0] * x_shape[1] * x_shape[2] * x_shape[3]), dtype=g.dtype)
    _cuda.launch(_scatter_add, g.size, xp.ascontiguousarray(g).reshape(-1),
                 xp.ascontiguousarray(argmax).reshape(-1), out)
    return out.reshape(tuple(x_shape))
