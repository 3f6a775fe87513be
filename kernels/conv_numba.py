"""numba CPU kernels of the conv2d family: parallel im2col / col2im feeding BLAS GEMM.

Each function has the signature of its reference in ``conv_ref.py`` and must agree with it
(property-tested in ``tests/test_kernels.py``). The work splits in two:

- data movement, written here as ``prange`` loops compiled by numba: ``im2col`` gathers every
  receptive field into a column, ``col2im`` adds columns back to image pixels (each image owned
  by one thread, so there is no race);
- the arithmetic, one matrix product through NumPy (OpenBLAS), the fastest GEMM on the machine.

Chosen by measurement (benchmarks/conv_kernels.py, figures in docs/PERFORMANCE.md):
- 64-channel layers: im2col + GEMM. The GEMM has K = C·kh·kw = 576, which BLAS runs near peak;
  any direct loop nest we tried in numba was several times slower.
- 1-input-channel layers (the first Omniglot layer): K would be 9, a shape where GEMM is
  memory-bound and poor, so forward and weight gradient are direct loops (``_conv_c1`` and
  ``_weight_grad_c1``), vectorised over the output row.

Inputs of any layout are accepted: they are made C-contiguous first (a copy only when needed).
Results match the reference to float rounding (the summation order differs).

Read next: ``pool_numba.py``.
"""
import numpy as np
from numba import njit, prange

from .conv_ref import out_size


@njit(parallel=True, cache=True)
def _im2col(x, kh, kw, stride, padding, ho, wo):
    """cols[n, (c, p, q), (i, j)] = xpad[n, c, i·s + p, j·s + q]  (zeros outside x)."""
    n, c, h, w = x.shape
    cols = np.zeros((n, c * kh * kw, ho * wo), dtype=x.dtype)
    for b in prange(n):
        for ch in range(c):
            for p in range(kh):
                for q in range(kw):
                    row = (ch * kh + p) * kw + q
                    for i in range(ho):
                        r = i * stride + p - padding
                        if r < 0 or r >= h:
                            continue
                        for j in range(wo):
                            col = j * stride + q - padding
                            if 0 <= col < w:
                                cols[b, row, i * wo + j] = x[b, ch, r, col]
    return cols


@njit(parallel=True, cache=True)
def _im2col_rows(x, kh, kw, stride, padding, ho, wo):
    """rows[(n, i, j), (c, p, q)]: the transposed layout, for the weight-gradient GEMM."""
    n, c, h, w = x.shape
    k = c * kh * kw
    rows = np.zeros((n * ho * wo, k), dtype=x.dtype)
    for b in prange(n):
        for i in range(ho):
            for j in range(wo):
                out = (b * ho + i) * wo + j
                for ch in range(c):
                    for p in range(kh):
                        r = i * stride + p - padding
                        if r < 0 or r >= h:
                            continue
                        for q in range(kw):
                            col = j * stride + q - padding
                            if 0 <= col < w:
                                rows[out, (ch * kh + p) * kw + q] = x[b, ch, r, col]
    return rows


@njit(parallel=True, cache=True)
def _col2im(cols, c, h, w, kh, kw, stride, padding, ho, wo):
    """The adjoint of ``_im2col``: add every column entry back to its pixel."""
    n = cols.shape[0]
    x = np.zeros((n, c, h, w), dtype=cols.dtype)
    for b in prange(n):
        for ch in range(c):
            for p in range(kh):
                for q in range(kw):
                    row = (ch * kh + p) * kw + q
                    for i in range(ho):
                        r = i * stride + p - padding
                        if r < 0 or r >= h:
                            continue
                        for j in range(wo):
                            col = j * stride + q - padding
                            if 0 <= col < w:
                                x[b, ch, r, col] += cols[b, row, i * wo + j]
    return x


@njit(parallel=True, cache=True)
def _conv_c1(x, w, stride, padding, ho, wo):
    """Direct convolution for one input channel: y[n,o,i,j] = Σ_pq x[n,0,i·s+p,j·s+q] w[o,0,p,q]."""
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    for b in prange(n):
        for oc in range(o):
            for p in range(kh):
                for q in range(kw):
                    wv = w[oc, 0, p, q]
                    for i in range(ho):
                        r = i * stride + p - padding
                        if r < 0 or r >= h:
                            continue
                        for j in range(wo):
                            col = j * stride + q - padding
                            if 0 <= col < wd:
                                y[b, oc, i, j] += wv * x[b, 0, r, col]
    return y


@njit(parallel=True, cache=True)
def _weight_grad_c1(x, g, kh, kw, stride, padding):
    """Direct weight gradient for one input channel, parallel over output channels."""
    n, _, h, wd = x.shape
    o, ho, wo = g.shape[1], g.shape[2], g.shape[3]
    gw = np.zeros((o, 1, kh, kw), dtype=np.float64)
    for oc in prange(o):
        for p in range(kh):
            for q in range(kw):
                acc = 0.0
                for b in range(n):
                    for i in range(ho):
                        r = i * stride + p - padding
                        if r < 0 or r >= h:
                            continue
                        for j in range(wo):
                            col = j * stride + q - padding
                            if 0 <= col < wd:
                                acc += g[b, oc, i, j] * x[b, 0, r, col]
                gw[oc, 0, p, q] = acc
    return gw


def conv2d(x, w, stride=1, padding=0):
    """Forward convolution; same contract as ``conv_ref.conv2d``."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    ho = out_size(x.shape[2], w.shape[2], stride, padding)
    wo = out_size(x.shape[3], w.shape[3], stride, padding)
    if x.shape[1] == 1:
        return _conv_c1(x, w, stride, padding, ho, wo)
    cols = _im2col(x, w.shape[2], w.shape[3], stride, padding, ho, wo)
    y = np.matmul(w.reshape(w.shape[0], -1), cols)          # (N, O, Ho·Wo), one GEMM each
    return y.reshape(x.shape[0], w.shape[0], ho, wo)


def conv2d_input_grad(g, w, x_shape, stride=1, padding=0):
    """Input gradient (transposed convolution); same contract as the reference."""
    g, w = np.ascontiguousarray(g), np.ascontiguousarray(w, dtype=g.dtype)
    n, o, ho, wo = g.shape
    cols = np.matmul(w.reshape(o, -1).T, g.reshape(n, o, ho * wo))   # (N, C·kh·kw, Ho·Wo)
    return _col2im(cols, x_shape[1], x_shape[2], x_shape[3], w.shape[2], w.shape[3], stride,
                   padding, ho, wo)


def conv2d_weight_grad(x, g, w_shape, stride=1, padding=0):
    """Weight gradient; same contract as the reference."""
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g, dtype=x.dtype)
    o, c, kh, kw = w_shape
    n, _, ho, wo = g.shape
    if c == 1:
        return _weight_grad_c1(x, g, kh, kw, stride, padding).astype(x.dtype)
    rows = _im2col_rows(x, kh, kw, stride, padding, ho, wo)          # (N·Ho·Wo, C·kh·kw)
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n * ho * wo)
    return (g2 @ rows).reshape(w_shape)
