"""A graph made before an in-place change of one of its tensors is refused, not differentiated
at the new values (found by probing, 2026-12-01: ``loss = (w ** 3).sum(); opt.step(...);
mm.grad(loss, [w])`` gave 3 w_new², with no error, in place of 3 w_old²). Every in-place change
the library makes (an optimizer step, Reptile's outer step, ``load_state_dict``, a learned
rate's load, ``Module.to`` onto another device) gives the tensor a new stamp
(``Tensor.changed_in_place``); the backward pass refuses a parent stamped after its child.
"""
import numpy as np
import pytest

import minimeta as mm
from minimeta import nn, optim
from minimeta.learners import MetaSGD, Reptile

STALE = r"changed in place since"


def cubes():
    w = mm.tensor([1.0, 2.0], requires_grad=True, name="w")
    return w, (w ** 3).sum()


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.5),
                                  lambda p: optim.SGD(p, lr=0.5, momentum=0.9),
                                  lambda p: optim.Adam(p, lr=0.5)])
def test_a_loss_made_before_an_optimizer_step_is_refused_by_grad_and_backward(make):
    w, loss = cubes()
    make([w]).step([mm.tensor([1.0, 1.0])])
    with pytest.raises(RuntimeError, match=f"PowScalar used a tensor 'w' .*{STALE}"):
        mm.grad(loss, [w])
    with pytest.raises(RuntimeError, match=STALE):
        loss.backward()
    (g,) = mm.grad((w ** 3).sum(), [w])     # made again after the step: its values
    np.testing.assert_allclose(g.numpy(), 3 * w.numpy() ** 2)


def test_a_step_on_one_of_two_inputs_is_found_below_the_other():
    a = mm.tensor([1.0], requires_grad=True)
    b = mm.tensor([2.0], requires_grad=True)
    loss = (a * b).sum()
    optim.SGD([b], lr=0.1).step([mm.tensor([1.0])])
    with pytest.raises(RuntimeError, match=f"Mul used a tensor of shape \\(1,\\) .*{STALE}"):
        mm.grad(loss, [a, b])
    with pytest.raises(RuntimeError, match=STALE):
        mm.grad(loss, [a])      # b is no input, but the VJP for a reads it


def test_a_gradient_taken_before_the_step_is_untouched_and_a_second_order_graph_too():
    w, loss = cubes()
    (g,) = mm.grad(loss, [w], create_graph=True)
    (h,) = mm.grad(g.sum(), [w])             # all before the step: as ever
    optim.SGD([w], lr=0.5).step([g.detach()])
    np.testing.assert_allclose(h.numpy(), [6.0, 12.0])
    with pytest.raises(RuntimeError, match=STALE):
        mm.grad(g.sum(), [w])               # g's graph holds the old w


def test_load_state_dict_and_reptile_s_outer_step_and_learned_rates_make_graphs_stale():
    net = nn.mlp((1, 4, 1), dtype=np.float64)
    x, y = np.ones((3, 1)), np.zeros((3, 1))
    params = net.parameters()
    loss = ((net(mm.tensor(x)) - mm.tensor(y)) ** 2).mean()
    net.load_state_dict(net.state_dict())
    with pytest.raises(RuntimeError, match=STALE):
        mm.grad(loss, params)

    reptile = Reptile(net, 0.1, 1, 0.5, loss="mse")
    loss = ((net(mm.tensor(x)) - mm.tensor(y)) ** 2).mean()
    reptile.outer_step([(x, y, x, y)])
    with pytest.raises(RuntimeError, match=STALE):
        mm.grad(loss, params)

    msgd = MetaSGD(net, 0.1, 1, loss="mse")
    rate = next(iter(msgd.rates.values()))
    use = (rate * 2.0).sum()
    msgd.load_state_dict(msgd.state_dict())
    with pytest.raises(RuntimeError, match=STALE):
        mm.grad(use, [rate])


def test_module_to_its_own_device_keeps_graphs():
    net = nn.mlp((1, 4, 1), dtype=np.float64)
    loss = net(mm.tensor(np.ones((2, 1)))).sum()
    net.to("cpu")
    assert len(mm.grad(loss, net.parameters())) == len(net.parameters())


def test_module_to_another_device_makes_graphs_stale(monkeypatch):
    """A graph made before ``Module.to`` moved the parameters reads arrays they no longer
    hold: refused (without the stamp it had passed every test: a mutation audit's). The move
    is a copy here, where no GPU is: ``to_device`` returns a new array, as it would."""
    from minimeta.nn import module
    net = nn.mlp((1, 4, 1), dtype=np.float64)
    loss = net(mm.tensor(np.ones((2, 1)))).sum()
    monkeypatch.setattr(module, "to_device", lambda array, device: array.copy())
    net.to("cuda")
    with pytest.raises(RuntimeError, match=STALE):
        mm.grad(loss, net.parameters())


def test_a_loss_mixing_graphs_from_before_and_after_a_step_is_refused():
    """The creation stamps that bound the backward walk (``floor``) had hidden the stale part
    of ``a + b``: its term was dropped and the gradient came back as 2 w_new alone (found by
    the review, 2026-12-01). The change has a stamp of its own now."""
    w, a = cubes()
    optim.SGD([w], lr=0.5).step([mm.tensor([1.0, 1.0])])
    loss = a + (w ** 2).sum()
    for differentiate in (lambda: mm.grad(loss, [w]), loss.backward,
                          lambda: mm.grad(a, [w], allow_unused=True)):
        with pytest.raises(RuntimeError, match=STALE):
            differentiate()


def test_a_gradient_that_runs_no_vjp_of_the_changed_tensor_is_allowed():
    w = mm.tensor([1.0, 2.0], requires_grad=True)
    z = w * 3.0
    optim.SGD([w], lr=0.5).step([mm.tensor([1.0, 1.0])])
    (g,) = mm.grad((z ** 2).sum(), [z])      # the walk stops at z: Mul's VJP never runs
    np.testing.assert_allclose(g.numpy(), [6.0, 12.0])
    with pytest.raises(ValueError, match="only a leaf's data"):
        z.changed_in_place()


def test_what_a_graph_took_from_the_old_array_keeps_its_values():
    """An optimizer gives the leaf a new array: a view taken before the step (w.T) keeps the
    values the graph was built with, so the gradient through it is the old graph's (it had
    been a mix of old and new values, [[46, 66]], found by the review, 2026-12-01)."""
    w = mm.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    x = mm.tensor([[1.0, 1.0]], requires_grad=True)
    loss = ((x @ w.T) ** 2).sum()
    frozen = w.detach()
    optim.SGD([w], lr=0.1).step([np.ones((2, 2))])
    (g,) = mm.grad(loss, [x])
    old = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(g.numpy(), 2 * (np.ones((1, 2)) @ old.T) @ old)   # [[48, 68]]
    np.testing.assert_array_equal(frozen.numpy(), old)
    with pytest.raises(RuntimeError, match=STALE):
        mm.grad(loss, [w])                   # Transpose's VJP runs, on the changed leaf


def test_an_optimizer_refuses_a_tensor_an_op_made():
    w = mm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"SGD: parameter 1 \(shape \(2,\)\) was made by an op"):
        optim.SGD([w, w * 2.0], lr=0.1)      # its step had been half applied, then refused


def test_a_step_keeps_a_parameter_s_kind_shape_and_layout():
    """The new array an update makes keeps the old one's layout, and a 0-d parameter stays a
    0-d array (``p.data - u`` had made it a NumPy scalar, which refuses writes and
    ``np.asarray``: the review, 2026-12-01); a load gives C order whatever the state's."""
    s = mm.tensor(np.array(2.0), requires_grad=True)
    f = mm.Tensor(np.asfortranarray(np.ones((2, 3))), requires_grad=True)
    optim.SGD([s], lr=0.1).step([mm.tensor(1.0)])
    optim.Adam([f], lr=0.1).step([np.ones((2, 3))])
    assert type(s.data) is np.ndarray and s.shape == () and np.asarray(s) == 1.9
    assert f.data.flags.f_contiguous and f.dtype == np.float64
    assert type(mm.tensor(np.float64(2.0)).data) is np.ndarray
    assert np.asarray(s.exp()) == pytest.approx(np.exp(1.9))     # an op's 0-d result too
    net = nn.mlp((1, 4, 1))
    state = {k: np.asfortranarray(v) for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert all(p.data.flags.c_contiguous and p.dtype == np.float32 for p in net.parameters())


# A graph reads the plain arrays it was given as they were when it ran: an op keeps its own
# copy of an operand, an index, a mask or labels, so a caller that refills its array before
# the backward pass (a buffer reused for the next batch) changes nothing (found by probing,
# 2026-12-01: each of these had given the gradient of the refilled array, beside a loss value
# computed from the old one).
def refilled(make, refill, wrt):
    """The gradient of ``make()`` with respect to ``wrt``, after ``refill()`` has changed the
    arrays ``make`` read, against the gradient with nothing refilled."""
    (before,) = mm.grad(make(), [wrt])
    loss = make()
    refill()
    (after,) = mm.grad(loss, [wrt])
    return before.numpy(), after.numpy()


def test_a_graph_reads_its_plain_arrays_as_they_were_when_it_ran():
    import minimeta.functional as F

    x = mm.tensor([1.0, 2.0, 3.0], requires_grad=True)
    logits = mm.tensor(np.arange(6.0).reshape(2, 3) / 4, requires_grad=True)
    w, cond, index, labels = (np.array([3.0, 4.0, 5.0]), np.array([True, False, True]),
                              np.array([0, 0, 2]), np.array([0, 1]))
    cases = [
        (lambda: (x * w * x).sum(), lambda: w.__imul__(10), x),              # an operand
        (lambda: (mm.where(cond, x, 0.0) ** 2).sum(), lambda: cond.fill(False), x),   # a mask
        (lambda: (x[index] ** 2).sum(), lambda: index.fill(1), x),           # an index
        (lambda: (x[(index,)] ** 2).sum(), lambda: index.fill(1), x),        # one in a tuple
        (lambda: F.cross_entropy(logits, labels), lambda: labels.fill(2), logits),  # labels
    ]
    for make, refill, wrt in cases:
        w[:], cond[:], index[:], labels[:] = [3.0, 4.0, 5.0], [True, False, True], [0, 0, 2], \
            [0, 1]
        before, after = refilled(make, refill, wrt)
        assert np.abs(before).sum() > 0
        np.testing.assert_array_equal(after, before)


def test_another_librarys_memory_is_copied_too():
    """A buffer NumPy views without a copy (a CPU torch tensor is one; here the standard
    library's ``array`` and a memoryview, since CI has no torch): a review found them still
    read at backward time."""
    import array

    for make in (lambda: array.array("d", [3.0, 4.0]),
                 lambda: memoryview(np.array([3.0, 4.0]))):
        x = mm.tensor([1.0, 2.0], requires_grad=True)
        w = make()
        loss = (x * mm.constant(w, x) * x).sum()
        np.asarray(w)[:] = 100.0                     # the caller refills its buffer
        np.testing.assert_array_equal(mm.grad(loss, [x])[0].numpy(), [6.0, 16.0])


def test_an_eval_mode_batch_norm_graph_keeps_the_running_statistics_it_read():
    """A batch-norm graph in eval mode read the running buffers, which a train-mode forward
    then updates in place: its gradient still uses the statistics its forward used. (This
    held before the copies too: the VJPs read the forward's own results, not the buffers.)"""
    import minimeta.functional as F

    x = mm.tensor(np.random.default_rng(0).normal(size=(4, 2)), requires_grad=True)
    mean, var = np.zeros(2), np.full(2, 4.0)
    (before,) = mm.grad(F.batch_norm(x, running_mean=mean, running_var=var,
                                     training=False).sum(), [x])
    loss = F.batch_norm(x, running_mean=mean, running_var=var, training=False).sum()
    F.batch_norm(x * 10, running_mean=mean, running_var=var, training=True)  # updates them
    assert var[0] != 4.0
    np.testing.assert_allclose(mm.grad(loss, [x])[0].numpy(), before, rtol=1e-15)
    np.testing.assert_allclose(before, 1 / np.sqrt(4.0 + 1e-5), rtol=1e-12)


def test_a_seed_array_is_read_as_it_was_when_the_gradient_ran():
    """``grad_outputs=u`` (and ``backward(u)``) with ``create_graph``: a later order read ``u``
    at its new values, 100× here (found by probing, 2026-12-01); now the seed is copied."""
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    u = np.ones(2)
    (gx,) = mm.grad(x ** 3, [x], grad_outputs=u, create_graph=True)
    u[...] = 100.0
    np.testing.assert_array_equal(mm.grad(gx.sum(), [x])[0].numpy(), [6.0, 12.0])
    w = mm.tensor([1.0, 2.0], requires_grad=True)
    seed = np.ones(2)
    with pytest.warns(UserWarning, match="reference cycle"):
        (w ** 3).backward(seed, create_graph=True)
    seed[...] = 100.0
    np.testing.assert_array_equal(mm.grad(w.grad.sum(), [w])[0].numpy(), [6.0, 12.0])


@pytest.mark.parametrize("write", [
    lambda t: np.copyto(t, 7.0), lambda t: np.fill_diagonal(t, 7.0),
    lambda t: np.put(t, [0, 1, 2, 3], 7.0), lambda t: np.putmask(t, np.ones((2, 2), bool), 7.0),
    lambda t: t.numpy().__setitem__(0, 7.0), lambda t: np.asarray(t).__imul__(7.0),
    lambda t: np.asarray(t, dtype=t.dtype).__setitem__(0, 7.0)])      # (a review's find)
def test_numpy_cannot_write_into_a_tensor_a_graph_may_hold(write):
    """NumPy's in-place functions on a constant, and writes through ``numpy()`` or
    ``np.asarray``, had changed a recorded graph without a word (the gradient of
    ``(x @ w).sum()`` became [14, 14]); they now meet a read-only view, as NumPy refuses."""
    x = mm.tensor([[3.0, 4.0], [5.0, 6.0]])
    w = mm.tensor([1.0, 1.0], requires_grad=True)
    loss = (x @ w).sum()
    with pytest.raises(ValueError, match="read-only"):
        write(x)
    np.testing.assert_array_equal(mm.grad(loss, [w])[0].numpy(), [8.0, 10.0])
    assert np.array(x).flags.writeable and x.data.flags.writeable     # copies, and .data
    assert np.mean(x) == 4.5 and np.allclose(x, x.numpy())           # reading is as before


def test_a_tensor_on_an_ndarray_subclass_is_read_only_too(tmp_path):
    """A memmap keeps its type inside a Tensor: ``numpy()`` had handed it out writable."""
    x = mm.tensor(np.memmap(tmp_path / "x", np.float64, "w+", shape=(2, 2)))
    x.data[...] = [[3.0, 4.0], [5.0, 6.0]]
    w = mm.tensor([1.0, 1.0], requires_grad=True)
    loss = (x @ w).sum()
    with pytest.raises(ValueError, match="read-only"):
        x.numpy()[0] = 7.0
    np.testing.assert_array_equal(mm.grad(loss, [w])[0].numpy(), [8.0, 10.0])
