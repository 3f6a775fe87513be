"""What a mutation audit of the GPU code found untested (marker ``gpu``, as ``test_gpu.py``): the
CUDA kernels on shapes that tell height from width (a kernel that swapped them passed every
square case), their outputs' dtypes on inputs of two dtypes (the references'), cosine
attention on rows of zeros, and the engine's device paths that only CuPy arrays take (a
tensor's dtype, a move that keeps ``requires_grad``, negative out-of-range indices). Each
test passes here and failed on a mutant that every other test passed. They run on a real GPU
and, without one, on the stand-in CuPy and numba's CUDA simulator at the production block
size:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -p simulated_gpu -o addopts= -m gpu \
        tests/test_gpu_audit.py

Read next: ``test_gpu.py`` (every CUDA kernel, and the engine, on a real GPU).
"""
import numpy as np
import pytest

import minimeta as mm

import cuda_cases  # tests/: CuPy, or the module skipped

pytestmark = pytest.mark.gpu
cp = cuda_cases.cupy_or_skip()

from minimeta.kernels import _cuda, attention_cuda, attention_ref  # noqa: E402
from minimeta.kernels import causal_cuda, causal_ref, conv_cuda, conv_ref  # noqa: E402
from minimeta.kernels import pool_cuda, pool_ref  # noqa: E402

RNG = np.random.default_rng(7)


def _close(got, want, tol):
    """``got`` (a device array) equal to the reference's ``want``, dtype included."""
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got.get(), want, rtol=tol, atol=tol * max(1, abs(want).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_convolution_whose_kernel_and_image_are_not_square_matches_the_reference(dtype):
    """A 2×3 kernel on 7×10 images, at stride 2 with padding 1, as a stack of two tasks: every
    index of the im2col/col2im kernels that mixes up kh and kw, or Ho and Wo, shows here (the
    other cases' kernels and outputs are square; the block-boundary case has a 1-row plane
    and leaves the weight gradient out). Outputs of 2·2·3·4·5 = 240 and more elements: two
    blocks of 128 threads, the second partial."""
    assert _cuda.THREADS == 128
    x = RNG.standard_normal((2, 2, 3, 7, 10)).astype(dtype)
    w = RNG.standard_normal((2, 3, 3, 2, 3)).astype(dtype)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    y = conv_cuda.conv2d(cp.asarray(x), cp.asarray(w), 2, 1)
    _close(y, conv_ref.conv2d(x, w, 2, 1), tol)
    assert y.flags.c_contiguous     # dense, as the CPU kernel's (the bias is added in place)
    g = RNG.standard_normal(y.shape).astype(dtype)
    _close(conv_cuda.conv2d_input_grad(cp.asarray(g), cp.asarray(w), x.shape, 2, 1),
           conv_ref.conv2d_input_grad(g, w, x.shape, 2, 1), tol)
    _close(conv_cuda.conv2d_weight_grad(cp.asarray(x), cp.asarray(g), w.shape, 2, 1),
           conv_ref.conv2d_weight_grad(x, g, w.shape, 2, 1), tol)
    # one task, no stack axis: the wrappers drop the axis they added
    _close(conv_cuda.conv2d_weight_grad(cp.asarray(x[1]), cp.asarray(g[1]), w.shape[1:], 2, 1),
           conv_ref.conv2d_weight_grad(x[1], g[1], w.shape[1:], 2, 1), tol)


def test_an_infinite_gradient_reaches_only_the_pixels_under_its_window():
    """An inf in the incoming gradient (a loss that overflowed) gives ±inf at the input pixels
    whose window it covers, and finite values elsewhere, as the reference does: col2im sums
    from a 0.0 of its own, where a sum seeded with ``cols[0, 0] * 0`` was NaN everywhere."""
    x, w = RNG.standard_normal((2, 3, 9, 8)), RNG.standard_normal((4, 3, 3, 3))
    g = RNG.standard_normal((2, 4, 5, 4))
    g[0, 0, 0, 0], g[1, 3, 4, 3] = np.inf, -np.inf
    with np.errstate(invalid="ignore"):     # NumPy's inf · 0 inside its matrix product
        want = conv_ref.conv2d_input_grad(g, w, x.shape, 2, 1)
    got = conv_cuda.conv2d_input_grad(cp.asarray(g), cp.asarray(w), x.shape, 2, 1).get()
    assert np.isinf(want).sum() == np.isinf(got).sum() > 0 and not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)



def test_max_pooling_on_gpu_picks_a_nan_as_the_reference_does():
    """A NaN anywhere in a window (not only first) is that window's maximum, and its argmax
    the first NaN's, as NumPy's argmax (``pool_ref``) says; the gradient goes there. A kernel
    that compared with ``>`` alone skipped every NaN after a window's first element."""
    x = RNG.standard_normal((3, 4, 9, 9))
    x[0, 0, 1, 1] = x[2, 3, 4, 5] = x[1, 2, 0, 0] = x[1, 2, 2, 2] = np.nan
    y, idx = pool_cuda.max_pool2d(cp.asarray(x), 3, 2)
    y_ref, idx_ref = pool_ref.max_pool2d(x, 3, 2)
    assert np.isnan(y_ref).sum() > 1
    np.testing.assert_array_equal(y.get(), y_ref)
    np.testing.assert_array_equal(idx.get(), idx_ref)
    g = RNG.standard_normal(y.shape)
    np.testing.assert_allclose(pool_cuda.max_pool2d_backward(cp.asarray(g), idx, x.shape).get(),
                               pool_ref.max_pool2d_backward(g, idx_ref, x.shape), atol=1e-12)

def test_the_1d_and_2d_convolution_kernels_give_the_references_dtype_on_mixed_inputs():
    """The kernel table called directly with float32 and float64 arrays: each CUDA kernel's
    output has its reference's dtype (NumPy's promotion, but the conv weight gradient's,
    which is x's), as cosine attention's does (``test_cuda_kernels.py``). A kernel that took
    one input's dtype gave float32 where the reference gives float64, or the reverse."""
    f32 = np.float32       # beside the float64 arrays drawn here
    x, w = RNG.standard_normal((2, 3, 9, 8)), RNG.standard_normal((4, 3, 3, 3))
    g = RNG.standard_normal((2, 4, 5, 4))
    xc, wc, gc = (RNG.standard_normal(s) for s in ((3, 7, 26), (8, 7, 2), (3, 8, 26)))
    calls = [
        (conv_cuda.conv2d, conv_ref.conv2d, (x.astype(f32), w), (2, 1)),
        (conv_cuda.conv2d_input_grad, conv_ref.conv2d_input_grad, (g.astype(f32), w),
         (x.shape, 2, 1)),
        (conv_cuda.conv2d_input_grad, conv_ref.conv2d_input_grad, (g, w.astype(f32)),
         (x.shape, 2, 1)),
        (conv_cuda.conv2d_weight_grad, conv_ref.conv2d_weight_grad, (x.astype(f32), g),
         (w.shape, 2, 1)),
        (conv_cuda.conv2d_weight_grad, conv_ref.conv2d_weight_grad, (x, g.astype(f32)),
         (w.shape, 2, 1)),
        (causal_cuda.causal_conv1d, causal_ref.causal_conv1d, (xc.astype(f32), wc), (2,)),
        (causal_cuda.causal_conv1d_input_grad, causal_ref.causal_conv1d_input_grad,
         (gc.astype(f32), wc), (2,)),
        (causal_cuda.causal_conv1d_weight_grad, causal_ref.causal_conv1d_weight_grad,
         (xc.astype(f32), gc), (wc.shape, 2)),
    ]
    for cuda_kernel, reference, arrays, static in calls:
        want = reference(*arrays, *static)
        got = cuda_kernel(*[cp.asarray(a) for a in arrays], *static)
        assert got.dtype == want.dtype, (cuda_kernel.__name__, got.dtype, want.dtype)
        np.testing.assert_allclose(got.get(), want, rtol=1e-4, atol=1e-4)


def test_cosine_attention_on_gpu_is_finite_on_rows_of_zeros():
    """A query or support row of zeros (an embedding that ReLU zeroed) has norm eps, not 0:
    its similarities are 0 and the gradients finite, as the reference's; norms without eps²
    gave 0/0, NaN, in the forward and in both backward kernels. 150 query rows: two blocks."""
    q, s = RNG.standard_normal((2, 75, 16)), RNG.standard_normal((2, 25, 16))
    q[0, 3], q[1, 74], s[1, 0] = 0, 0, 0
    y = np.eye(5)[RNG.integers(0, 5, (2, 25))]
    g = RNG.standard_normal((2, 75, 5))
    args = [cp.asarray(a) for a in (q, s, y)]
    got = attention_cuda.cosine_attention(*args)
    assert bool(cp.isfinite(got).all())
    _close(got, attention_ref.cosine_attention(q, s, y), 1e-10)
    back = attention_cuda.cosine_attention_backward(*args, cp.asarray(g))
    assert bool(cp.isfinite(back).all())
    _close(back, attention_ref.cosine_attention_backward(q, s, y, g), 1e-9)


def test_cosine_attention_on_integer_arrays_computes_in_float64():
    """Integer queries, support and labels all (the table called directly): float64 results,
    the reference's; with no float among them, integer norms had truncated every
    similarity (the mixed case, an integer query among floats: ``test_cuda_kernels.py``)."""
    q, s = RNG.integers(-3, 4, (2, 75, 8)), RNG.integers(-3, 4, (2, 25, 8))
    q[:, :, 0] = s[:, :, 0] = 5       # no row of zeros
    y = np.eye(5, dtype=np.int64)[RNG.integers(0, 5, (2, 25))]
    g = RNG.integers(-2, 3, (2, 75, 5))
    args = [cp.asarray(a) for a in (q, s, y)]
    _close(attention_cuda.cosine_attention(*args), attention_ref.cosine_attention(q, s, y), 1e-10)
    _close(attention_cuda.cosine_attention_backward(*args, cp.asarray(g)),
           attention_ref.cosine_attention_backward(q, s, y, g), 1e-9)


def test_a_tensor_made_from_a_gpu_array_takes_the_dtype_asked_for():
    """``Tensor(cupy_array, dtype=...)`` casts on the device, as it does a NumPy array on the
    host (the CuPy branch that casts had been dropped by a mutant, unnoticed)."""
    data = cp.asarray(np.arange(6.0).reshape(2, 3))
    for t in (mm.Tensor(data, dtype=np.float32), mm.tensor(data, dtype=np.float32),
              mm.tensor(np.arange(6.0), dtype=np.float32, device="cuda")):
        assert t.device == "cuda" and t.dtype == np.float32, (t.device, t.dtype)
    assert mm.Tensor(data).dtype == np.float64


def test_moving_a_tensor_between_devices_keeps_requires_grad_and_name():
    """``.to`` makes a new leaf on the other device that still takes gradients (a moved
    parameter that did not would silently stop learning)."""
    w = mm.tensor(np.ones(3), requires_grad=True, name="w")
    on_gpu = w.to("cuda")
    assert on_gpu.device == "cuda" and on_gpu.requires_grad and on_gpu.name == "w"
    back = on_gpu.to("cpu")
    assert back.device == "cpu" and back.requires_grad and back.name == "w"
    (grad,) = mm.grad((on_gpu * on_gpu).sum(), [on_gpu])
    assert grad.device == "cuda"
    np.testing.assert_array_equal(grad.numpy(), 2 * np.ones(3))


@pytest.mark.parametrize("bad", [3, -4])
def test_out_of_range_indices_on_gpu_are_an_error_at_either_end(bad):
    """CuPy wraps an out-of-range index entry around, at both ends (-4 of 3 reads element 2);
    the engine checks host index arrays for both, and in a scatter as in a gather (the test in
    ``test_gpu.py`` tries the upper end only)."""
    t = mm.tensor(np.arange(6.0).reshape(2, 3), device="cuda")
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for axis 1 with size 3"):
        t[:, np.array([0, bad])]
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for axis 0 with size 3"):
        mm.scatter_add(mm.tensor(np.ones(2), device="cuda"), np.array([1, bad]), (3,))


def test_where_moves_a_host_mask_tensor_to_the_values_device():
    """``where``'s mask is not differentiated: a mask Tensor on the host goes to the GPU with
    the values, as a mask array does (a mask left on the host mixed the devices)."""
    mask = np.array([True, False, True])
    a = mm.tensor(np.arange(3.0), requires_grad=True, device="cuda")
    b = mm.tensor(-np.arange(3.0), device="cuda")
    for cond in (mm.tensor(mask), mask):
        out = mm.where(cond, a, b)
        assert out.device == "cuda"
        np.testing.assert_array_equal(out.numpy(), [0.0, -1.0, 2.0])
        (grad,) = mm.grad(out.sum(), [a])
        np.testing.assert_array_equal(grad.numpy(), mask.astype(float))
