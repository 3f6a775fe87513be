"""numba.cuda versions of the conv family: im2col / col2im kernels around cuBLAS GEMMs.

On the GPU a hand-written GEMM would not beat cuBLAS, so each member of the family is one
hand kernel that rearranges data plus one matrix product by the array module (CuPy's ``@``,
which calls cuBLAS; NumPy's under the simulator):

    conv2d:              cols = im2col(x);   y = W(O, C·kh·kw) @ cols         → (N, O, Ho, Wo)
    conv2d_weight_grad:  cols = im2col(x);   gW = G(O, N·Ho·Wo) @ colsᵀ
    conv2d_input_grad:   cols = Wᵀ @ G;      gx = col2im(cols)  (a gather: one thread per
                                                                 input pixel, no atomics)

``cols`` has shape (C·kh·kw, N·Ho·Wo): row (c, p, q), column (n, i, j). Spec:
``conv_ref.py``; tested against it under the CUDA simulator (``tests/test_cuda_kernels.py``).

Read next: ``kernels/causal_cuda.py`` (the causal 1-D convolution on a GPU).
"""
from numba import cuda

from . import _cuda, array_module
from .conv_ref import out_size


@cuda.jit
def _im2col(x, cols, kh, kw, stride, pad, ho, wo):
    t = cuda.grid(1)
    rows, width = cols.shape
    if t >= rows * width:
        return
    row, col = t // width, t % width
    c, p, q = row // (kh * kw), (row // kw) % kh, row % kw
    n, i, j = col // (ho * wo), (col // wo) % ho, col % wo
    y, z = i * stride + p - pad, j * stride + q - pad
    if 0 <= y < x.shape[2] and 0 <= z < x.shape[3]:
        cols[row, col] = x[n, c, y, z]
    else:
        cols[row, col] = 0


@cuda.jit
def _col2im(cols, gx, kh, kw, stride, pad, ho, wo):
    t = cuda.grid(1)
    n_img, chans, h, w = gx.shape
    if t >= n_img * chans * h * w:
        return
    n, c, y, z = t // (chans * h * w), (t // (h * w)) % chans, (t // w) % h, t % w
    total = 0.0  # float64 sum; not cols[0, 0] * 0, which is NaN where cols holds an inf
    for p in range(kh):
        di = y + pad - p
        if di < 0 or di % stride != 0 or di // stride >= ho:
            continue
        for q in range(kw):
            dj = z + pad - q
            if dj < 0 or dj % stride != 0 or dj // stride >= wo:
                continue
            total += cols[(c * kh + p) * kw + q, (n * ho + di // stride) * wo + dj // stride]
    gx[n, c, y, z] = total


def _cols(x, kh, kw, stride, padding):
    xp = array_module(x)
    (x,) = _cuda.contiguous(x)
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, stride, padding), out_size(w, kw, stride, padding)
    cols = xp.empty((c * kh * kw, n * ho * wo), dtype=x.dtype)
    _cuda.launch(_im2col, cols.size, x, cols, kh, kw, stride, padding, ho, wo)
    return cols, ho, wo


def conv2d(x, w, stride=1, padding=0):
    """y (N, O, Ho, Wo) = cross-correlation of x (N, C, H, W) with w (O, C, kh, kw)."""
    xp = array_module(x)
    cols, ho, wo = _cols(x, w.shape[2], w.shape[3], stride, padding)
    y = w.reshape(w.shape[0], -1) @ cols
    return xp.ascontiguousarray(y.reshape(w.shape[0], x.shape[0], ho, wo).transpose(1, 0, 2, 3))


def conv2d_weight_grad(x, g, w_shape, stride=1, padding=0):
    """gw = Σ over images and output pixels of g · (the input patch under the kernel)."""
    cols, _, _ = _cols(x, w_shape[2], w_shape[3], stride, padding)
    g2 = g.transpose(1, 0, 2, 3).reshape(g.shape[1], -1)
    return (g2 @ cols.T).reshape(w_shape).astype(x.dtype, copy=False)


def conv2d_input_grad(g, w, x_shape, stride=1, padding=0):
    """gx: every input pixel gathers w·g over the outputs whose window covers it."""
    xp = array_module(g)
    ho, wo = g.shape[2], g.shape[3]
    g2 = xp.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(g.shape[1], -1)
    cols = xp.ascontiguousarray(w.reshape(w.shape[0], -1).T @ g2)
    gx = xp.empty(tuple(x_shape), dtype=cols.dtype)
    _cuda.launch(_col2im, gx.size, cols, gx, w.shape[2], w.shape[3], stride, padding, ho, wo)
    return gx
