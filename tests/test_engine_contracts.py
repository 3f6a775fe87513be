"""The engine's and the functional layer's contracts that a mutation audit (2026-12-02) found
untested: each test here failed on its mutant (named beside it) and passes on the code.
Outputs listed twice, an op whose only differentiable input is in the middle, gradients in
their leaf's dtype, detach, a device move keeping requires_grad, nested grad modes, anomaly
reports after a grad inside a VJP, the workers' earliest error, negative labels, transposed
accuracy labels, one_hot's dtype, mse's dtype, logsumexp over two axes. Below them, what an
adversarial probe against PyTorch found (2026-12-03), each failing on the code before its fix:
one batch-norm buffer alone, a copied leaf's ``.grad`` graph, ``one_hot([])``, NumPy keywords
given as arrays, ``set_grad_enabled`` on a generator.

Read next: ``tests/test_stale_graphs.py`` (graphs made before an in-place change).
"""
import numpy as np
import pytest

import minimeta as mm
from minimeta.engine.primitives.conv import conv2d


def test_grad_of_an_output_listed_twice_counts_it_twice():        # seed_dup_outputs
    x = mm.tensor(3.0, requires_grad=True)
    y = x * x
    (g,) = mm.grad([y, y], [x])
    assert float(g.item()) == 12.0                               # PyTorch: 2 * 6


def test_grad_without_create_graph_records_nothing():           # create_graph_always
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    (g,) = mm.grad((x * x * x).sum(), [x])
    assert not g.requires_grad and g.is_leaf


def test_middle_input_alone_requiring_grad_is_recorded():       # apply_middle_input
    x = mm.tensor(np.ones((1, 1, 3, 3)))                          # a constant image
    w = mm.tensor(np.ones((2, 1, 2, 2)), requires_grad=True)
    b = mm.tensor(np.zeros(2))                                   # a frozen bias
    out = conv2d(x, w, bias=b).sum()
    assert out.requires_grad
    (gw,) = mm.grad(out, [w])
    np.testing.assert_allclose(gw.numpy(), np.full((2, 1, 2, 2), 4.0))


def test_float32_leaf_met_float64_gets_a_float32_gradient():     # pg_dtype_nocast
    x = mm.tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * mm.tensor(np.full(3, 2.0))).sum()                   # float64
    (g,) = mm.grad(y, [x])
    y.backward()
    assert g.dtype == np.float32 and x.grad.dtype == np.float32


def test_detach_gives_a_leaf_that_does_not_require_grad():      # detach_keeps_flag
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert d.is_leaf and not d.requires_grad
    assert not (d * 3).requires_grad                             # nothing recorded from it


def test_moving_a_tensor_keeps_requires_grad(monkeypatch):       # to_drops_flag
    import fake_cupy                                             # (tests/ on sys.path)
    fake_cupy.install(monkeypatch)
    w = mm.tensor([1.0, 2.0], requires_grad=True)
    assert w.to("cuda").requires_grad and w.to("cuda").to("cpu").requires_grad


def test_no_grad_inside_set_grad_enabled_false_restores_off():   # no_grad/setgrad_exit_true
    x = mm.tensor([1.0], requires_grad=True)
    with mm.set_grad_enabled(False):
        with mm.no_grad():
            pass
        with mm.set_grad_enabled(False):
            pass
        assert not (x * 2).requires_grad


def test_anomaly_after_a_grad_taken_inside_a_vjp_still_names_that_vjp():  # anomaly_node_reset_none
    from minimeta.engine.autodiff import Primitive, apply

    class Sq(Primitive):
        def forward(self, a):
            return a * a

        def vjp(self, g, out, a):
            with mm.set_grad_enabled(True):
                (d,) = mm.grad((a * a).sum(), [a], create_graph=True)   # 2a, VJPs inside
            return (g * d * mm.log(a - a),)                     # log(0): -inf, inside Sq's VJP
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    with mm.detect_anomaly(), pytest.raises(mm.AnomalyError, match="inside the VJP of Sq"):
        apply(Sq(), x).sum().backward()


def test_map_threads_raises_the_earliest_items_error(monkeypatch):  # workers_last_error
    import concurrent.futures
    from minimeta.engine import workers
    monkeypatch.setattr(workers.kernel_threads, "concurrent", lambda n: n)
    # every item done before the errors are read (otherwise which have failed is a race)
    monkeypatch.setattr(workers, "wait", lambda fs, return_when: concurrent.futures.wait(fs))

    both = __import__("threading").Barrier(2)

    def fail(i):                       # both items begun before either fails
        both.wait(5)
        raise ValueError(f"item {i}")
    with pytest.raises(ValueError, match="item 0"):
        workers.map_threads(fail, [0, 1], workers=2)


def test_cross_entropy_refuses_a_negative_label():               # ce_neg_label
    from minimeta.functional import cross_entropy
    with pytest.raises(ValueError, match="labels must lie in"):
        cross_entropy(mm.tensor([[0.0, 5.0], [1.0, 0.0]]), [-1, 0])   # not column -1


def test_accuracy_refuses_transposed_stack_labels():             # acc_no_shape_check
    from minimeta.functional import accuracy
    logits = mm.tensor(np.zeros((2, 3, 4)))                       # (T, N, C)
    with pytest.raises(ValueError, match="labels must be"):
        accuracy(logits, np.zeros((3, 2), int))                   # (N, T)


def test_one_hot_takes_the_dtype_asked_for():                    # onehot_dtype_ignored
    from minimeta.functional import one_hot
    assert one_hot([0, 1], 2, np.float32).dtype == np.float32


def test_one_hot_refuses_a_negative_label():                     # onehot_neg_ok
    from minimeta.functional import one_hot
    with pytest.raises(ValueError, match="must lie in"):
        one_hot([0, -1], 3)                                      # not row 2 of the eye


def test_mse_of_a_float32_prediction_and_a_float64_target_is_float32():  # mse_target_dtype
    from minimeta.functional import mse_loss
    pred = mm.tensor(np.ones(3, np.float32), requires_grad=True)
    assert mse_loss(pred, np.array([0.5, 0.5, 0.5])).dtype == np.float32


def test_logsumexp_over_two_axes_drops_both():                  # lse_keepdims_shape
    x = mm.tensor(np.zeros((2, 3, 4)))
    assert mm.logsumexp(x, axis=(0, 1)).shape == (4,)
    assert mm.logsumexp(x, axis=(0, 2), keepdims=True).shape == (1, 3, 1)


# found by an adversarial probe of the engine against PyTorch (2026-12-03); each failed before
def test_batch_norm_refuses_one_running_buffer_without_the_other_and_changes_nothing():
    """One alone had updated ``running_mean`` before crashing on the missing variance, or, the
    other way round, left ``running_var`` silently as it was (PyTorch refuses both)."""
    import minimeta.functional as F

    x, buffer = mm.tensor(np.random.default_rng(0).standard_normal((4, 3))), np.zeros(3)
    for given in ({"running_mean": buffer}, {"running_var": buffer}):
        for training in (True, False):
            with pytest.raises(ValueError, match="batch_norm: running_mean and running_var "
                                                 "go together"):
                F.batch_norm(x, training=training, **given)
    assert not buffer.any()


def test_a_copied_or_unpickled_leaf_keeps_the_graph_of_its_grad():
    """A leaf is rebuilt after its ``.grad``, a graph made from it: restamped last, it had hid
    that graph from ``grad(w.grad, [w])`` ("not part of the graph")."""
    import copy
    import pickle
    import warnings

    w = mm.tensor([1.0, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # (the reference cycle create_graph=True makes)
        (w * w * w).sum().backward(create_graph=True)
    for w2 in (copy.deepcopy(w), pickle.loads(pickle.dumps(w))):
        (h,) = mm.grad(w2.grad.sum(), [w2])
        np.testing.assert_array_equal(h.numpy(), [6.0, 12.0])      # 6 w


def test_one_hot_of_no_labels_is_an_empty_matrix():
    """``[]`` is float64 to NumPy: it had failed as an index."""
    from minimeta.functional import one_hot

    assert one_hot([], 3).shape == (0, 3)


def test_numpy_keywords_given_as_arrays_are_refused_by_name():
    """An array compared with the default by ``!=`` had raised NumPy's "truth value of an
    array is ambiguous" in place of the refusal."""
    t = mm.tensor([1.0, 2.0])
    for key, value in (("where", np.array([True, False])), ("out", np.zeros(2)),
                       ("out", mm.tensor([0.0, 0.0]))):
        with pytest.raises(TypeError, match=rf"np.sum on a Tensor: {key}=an array of shape "
                                            r"\(2,\) is not offered"):
            np.sum(t, **{key: value})
    assert float(np.sum(t, where=np.True_, out=None)) == 3.0    # the defaults still pass


def test_set_grad_enabled_decorates_each_step_of_a_generator():
    """It had switched recording off for the call that makes the generator only (no_grad
    covered every step): torch's switches each step."""
    w = mm.tensor([1.0], requires_grad=True)

    @mm.set_grad_enabled(False)
    def steps():
        yield (w * 2).requires_grad
        yield (w * 2).requires_grad

    it = steps()
    assert next(it) is False and (w * 2).requires_grad and next(it) is False
