"""Stacks of tasks: the kernels on a leading task axis equal the plain reference run task by
task (the stack's definition). Read after test_kernels.py."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minimeta import kernels as K
from test_kernels import conv_case, norm_case


def assert_one_per_task(stacked, per_task, tasks, dtype=np.float64):
    """``stacked`` (an array or a packed vector) equals the ``tasks`` results of ``per_task(t)``
    stacked, or, for packed vectors of pieces, their pieces interleaved as the stack packs them
    (every task's first piece, then every task's second, ...); both of ``dtype``."""
    parts = [per_task(t) for t in range(tasks)]
    if isinstance(parts[0], list):      # packed: [piece 0, piece 1, ...] per task
        parts = np.concatenate([np.concatenate([p[i].ravel() for p in parts])
                                for i in range(len(parts[0]))])
    want = np.stack(parts) if isinstance(parts, list) else parts
    assert stacked.dtype == want.dtype == dtype
    tol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-4 * max(1.0, np.abs(want).max()))
    np.testing.assert_allclose(stacked, want, rtol=tol[0], atol=tol[1])


@st.composite
def stacked_conv_case(draw):
    x, w, s, p, _ = draw(conv_case())
    tasks = draw(st.integers(2, 3))
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    return (rng.standard_normal((tasks,) + x.shape), rng.standard_normal((tasks,) + w.shape),
            s, p)


@given(stacked_conv_case())
def test_a_stack_of_convolutions_is_one_per_task(case):
    """Reference and CPU kernels on 5-D stacks against the plain reference run task by task
    (the stack's definition), for all three members of the family."""
    x, w, s, p = case
    ref = {n: K.TABLE[n].reference for n in ("conv2d", "conv2d_input_grad",
                                               "conv2d_weight_grad")}
    g = np.random.default_rng(0).standard_normal(ref["conv2d"](x[0], w[0], s, p).shape)
    g = np.stack([g * (t + 1) for t in range(x.shape[0])])
    for impl in (ref, {n: K.resolve(K.TABLE[n].cpu) for n in ref}):
        assert_one_per_task(impl["conv2d"](x, w, s, p),
                            lambda t: ref["conv2d"](x[t], w[t], s, p), len(x))
        assert_one_per_task(impl["conv2d_input_grad"](g, w, x.shape, s, p),
                            lambda t: ref["conv2d_input_grad"](g[t], w[t], x.shape[1:], s, p),
                            len(x))
        assert_one_per_task(impl["conv2d_weight_grad"](x, g, w.shape, s, p),
                            lambda t: ref["conv2d_weight_grad"](x[t], g[t], w.shape[1:], s, p),
                            len(x))


def test_the_per_task_check_catches_a_stack_that_mixes_tasks():
    """Mutation: a stacked conv that uses task 0's filter for every task must fail the check."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 1, 2, 4, 4)), rng.standard_normal((2, 3, 2, 3, 3))
    ref = K.TABLE["conv2d"].reference
    mixed = np.stack([ref(x[t], w[0]) for t in range(2)])
    with pytest.raises(AssertionError):
        assert_one_per_task(mixed, lambda t: ref(x[t], w[t]), 2)


@given(norm_case(), st.integers(2, 3), st.integers(0, 99))
def test_a_stack_of_batch_norms_is_one_per_task(case, tasks, seed):
    """The stacked references (statistics per task and channel, in one vectorised pass) and
    the numba kernels against the plain reference task by task: forward, backward, double
    backward (whose packed outputs interleave the tasks piece by piece), in float64 and in
    float32 (training's dtype; the audit found stacks run only in float64)."""
    x0, _, _, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tasks,) + x0.shape) + np.arange(x0.size).reshape(x0.shape) / 7
    c = x0.shape[1]
    w, b = rng.uniform(0.5, 2, (tasks, c)), rng.standard_normal((tasks, c))
    g, h = rng.standard_normal(x.shape), rng.standard_normal(x.size + 2 * w.size)
    x, w, b, g, h = (a.astype(dtype) for a in (x, w, b, g, h))
    n = x0.size
    hx, hw, hb = h[:x.size].reshape(x.shape), h[x.size:x.size + w.size].reshape(w.shape), \
        h[x.size + w.size:].reshape(w.shape)
    ref = K.norm_ref
    for forward, backward in ((ref.batch_norm, ref.batch_norm_backward),
                              (K.resolve(K.TABLE["batch_norm"].cpu),
                               K.resolve(K.TABLE["batch_norm_backward"].cpu))):
        y, mean, var = forward(x, w, b)
        for got, i in ((y, 0), (mean, 1), (var, 2)):
            assert_one_per_task(got, lambda t: ref.batch_norm(x[t], w[t], b[t])[i], tasks,
                                dtype)

        def unpacked_backward(t):
            out = ref.batch_norm_backward(x[t], w[t], b[t], g[t])
            return [out[:n], out[n:n + c], out[n + c:]]
        assert_one_per_task(backward(x, w, b, g), unpacked_backward, tasks, dtype)

    def unpacked_double(t):
        out = ref.batch_norm_double_backward(x[t], w[t], b[t], g[t],
                                             np.concatenate([hx[t].ravel(), hw[t], hb[t]]))
        return [out[:n], out[n:n + c], out[n + c:n + 2 * c], out[n + 2 * c:]]
    for double in (ref.batch_norm_double_backward,
                   K.resolve(K.TABLE["batch_norm_double_backward"].cpu)):
        assert_one_per_task(double(x, w, b, g, h), unpacked_double, tasks, dtype)
