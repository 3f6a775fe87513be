"""numba.cuda versions of the conv family: im2col / col2im kernels around cuBLAS GEMMs.

On the GPU a hand-written GEMM would not beat cuBLAS, so each member of the family is one
hand kernel that rearranges data plus one matrix product by the array module (CuPy's ``@``,
which calls cuBLAS; NumPy's under the simulator):

    conv2d:              cols = im2col(x);   y = W(O, C·kh·kw) @ cols         → (N, O, Ho, Wo)
    conv2d_weight_grad:  cols = im2col(x);   gWᵀ = cols @ Gᵀ(N·Ho·Wo, O)
    conv2d_input_grad:   cols = Wᵀ @ G;      gx = col2im(cols)  (a gather: one thread per
                                                                 input pixel, no atomics)

``cols`` has shape (T, C·kh·kw, N·Ho·Wo): task t, row (c, p, q), column (n, i, j). A single
convolution is a stack of T = 1; a stack of T tasks (``conv_ref.over_tasks``) runs in the same
launches, its T products as one batched GEMM. Spec: ``conv_ref.py``; tested against it under
the CUDA simulator (``tests/test_cuda_kernels.py``).

Read next: ``kernels/causal_cuda.py`` (the causal 1-D convolution on a GPU).
"""
from . import _cuda, array_module
from ._cuda import cuda
from .conv_ref import check_window, out_size


@cuda.jit
def _im2col(x, cols, kh, kw, stride, pad, ho, wo):
    """One thread a (task, channel, column): its column's kh·kw rows of that channel, so the
    index arithmetic (int64 divisions, the costly part on a GPU) is done once, not per value."""
    t = cuda.grid(1)
    tasks, width, chans = cols.shape[0], cols.shape[2], x.shape[2]
    if t >= tasks * chans * width:
        return
    task, c, col = t // (chans * width), (t // width) % chans, t % width
    n, i, j = col // (ho * wo), (col // wo) % ho, col % wo
    for p in range(kh):
        y = i * stride + p - pad
        for q in range(kw):
            z = j * stride + q - pad
            row = (c * kh + p) * kw + q
            if 0 <= y < x.shape[3] and 0 <= z < x.shape[4]:
                cols[task, row, col] = x[task, n, c, y, z]
            else:
                cols[task, row, col] = 0


@cuda.jit(device=True)
def _outputs(y, pad, k, stride, size):
    """(last, first) of the outputs i whose window covers input index ``y``, those with
    0 <= y + pad - i·stride < k: walked from the last down, their kernel offsets p ascend."""
    return min(size - 1, (y + pad) // stride), max(0, -((k - 1 - y - pad) // stride))


@cuda.jit
def _col2im(cols, gx, kh, kw, stride, pad, ho, wo):
    t = cuda.grid(1)
    tasks, n_img, chans, h, w = gx.shape
    if t >= tasks * n_img * chans * h * w:
        return
    task, n = t // (n_img * chans * h * w), (t // (chans * h * w)) % n_img
    c, y, z = (t // (h * w)) % chans, (t // w) % h, t % w
    total = 0.0  # float64 sum; not cols[0, 0] * 0, which is NaN where cols holds an inf
    i_hi, i_lo = _outputs(y, pad, kh, stride, ho)
    j_hi, j_lo = _outputs(z, pad, kw, stride, wo)
    for i in range(i_hi, i_lo - 1, -1):           # p = y + pad - i·stride, ascending
        p = y + pad - i * stride
        for j in range(j_hi, j_lo - 1, -1):
            total += cols[task, (c * kh + p) * kw + z + pad - j * stride, (n * ho + i) * wo + j]
    gx[task, n, c, y, z] = total


def _stacked(a):
    """``a`` with a task axis: a single convolution is a stack of one (a view, no copy)."""
    return a if a.ndim == 5 else a.reshape((1,) + a.shape)


def _cols(x, kh, kw, stride, padding):
    """cols (T, C·kh·kw, N·Ho·Wo) of a stack x (T, N, C, H, W)."""
    xp = array_module(x)
    (x,) = _cuda.contiguous(x)
    tasks, n, c, h, w = x.shape
    ho, wo = out_size(h, kh, stride, padding), out_size(w, kw, stride, padding)
    cols = xp.empty((tasks, c * kh * kw, n * ho * wo), dtype=x.dtype)
    _cuda.launch(_im2col, tasks * c * n * ho * wo, x, cols, kh, kw, stride, padding, ho, wo)
    return cols, ho, wo


def _unstacked(out, like):
    return out if like.ndim == 5 else out[0]


def conv2d(x, w, stride=1, padding=0):
    """y (N, O, Ho, Wo) = cross-correlation of x (N, C, H, W) with w (O, C, kh, kw); on a
    stack (a leading task axis on x, w and y), one batched GEMM for all T tasks."""
    check_window("conv2d", x.shape[-2:], w.shape[-2:], stride, padding)
    xp = array_module(x)
    xs, ws = _stacked(x), _stacked(w)
    tasks, n, o = xs.shape[0], xs.shape[1], ws.shape[1]
    cols, ho, wo = _cols(xs, ws.shape[3], ws.shape[4], stride, padding)
    y = ws.reshape(tasks, o, -1) @ cols                                  # (T, O, N·Ho·Wo)
    y = xp.ascontiguousarray(y.reshape(tasks, o, n, ho, wo).transpose(0, 2, 1, 3, 4))
    return _unstacked(y, x)


def conv2d_weight_grad(x, g, w_shape, stride=1, padding=0):
    """gw = Σ over images and output pixels of g · (the input patch under the kernel)."""
    check_window("conv2d_weight_grad", x.shape[-2:], tuple(w_shape)[-2:], stride, padding)
    xp = array_module(x)
    xs, gs = _stacked(x), _stacked(g)
    tasks, o = gs.shape[0], gs.shape[2]
    cols, _, _ = _cols(xs, w_shape[-2], w_shape[-1], stride, padding)
    # cols @ gᵀ, not g @ colsᵀ: CuPy's matmul copies a transposed operand first, and cols is
    # the large one (kh·kw times g's size); gᵀ is copied once here, gwᵀ (small) at the end
    gt = xp.ascontiguousarray(gs.transpose(0, 1, 3, 4, 2)).reshape(tasks, -1, o)
    gw = xp.ascontiguousarray((cols @ gt).transpose(0, 2, 1))             # (T, O, C·kh·kw)
    return gw.reshape(tuple(w_shape)).astype(x.dtype, copy=False)


def conv2d_input_grad(g, w, x_shape, stride=1, padding=0):
    """gx: every input pixel gathers w·g over the outputs whose window covers it."""
    check_window("conv2d_input_grad", tuple(x_shape)[-2:], w.shape[-2:], stride, padding)
    xp = array_module(g)
    gs, ws = _stacked(g), _stacked(w)
    tasks, o, ho, wo = gs.shape[0], gs.shape[2], gs.shape[3], gs.shape[4]
    g2 = xp.ascontiguousarray(gs.transpose(0, 2, 1, 3, 4)).reshape(tasks, o, -1)
    cols = xp.ascontiguousarray(ws.reshape(tasks, o, -1).transpose(0, 2, 1) @ g2)
    gx = xp.empty((tasks,) + tuple(x_shape)[-4:], dtype=cols.dtype)
    _cuda.launch(_col2im, gx.size, cols, gx, ws.shape[3], ws.shape[4], stride, padding, ho, wo)
    return _unstacked(gx, g)
