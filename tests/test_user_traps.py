"""What a user who knows NumPy or PyTorch expects, each once silently otherwise here.

Found by probing the public API (2026-12-01); each test below (but the guard that negative axes
still work) failed on the code before its fix:
- ``mm.tensor`` and ``Module.add_param`` / ``add_buffer`` copy the array they are given, so an
  optimizer's in-place step never reaches it;
- a convolution of uint8 images with float32 weights promotes (it had run in uint8: garbage);
- an axis out of range raises, as NumPy's AxisError does (it had wrapped around);
- a params mapping without one of a module's parameters raises, naming it in full (a misspelt
  bias had been skipped);
- ``requires_grad_`` refuses a Tensor an op made (it had cut the graph built through it);
- ``.backward()`` gives every leaf a gradient array of its own, writable (siblings had shared
  one, and a sum's gradient had been a read-only broadcast view);
- ``BatchNorm2d`` refuses a 3-D input that is not a stack (it had normalised the wrong axes);
- NumPy functions refuse a Tensor instead of making an array of Tensors;
- what had crashed deep inside (a ZeroDivisionError, a numba traceback) names the op;
- an optimizer refuses a model in place of its parameters, a parameter listed twice, lr = nan;
- ``minimeta train`` refuses episodes the split cannot give before it touches the run folder;
- a CNP refuses (K,) targets for (K, 1) predictions (the difference had broadcast to (K, K));
- Matching and Relation Networks refuse a support set without some class (they had scored an
  empty class); SNAIL and MANN are validated at their training ways (had been 5), MANN
  defaults to 10 shots (1 shot: nothing to recall); ``minimeta eval``'s refusals are in
  ``test_cli_mistakes.py``.
- the learners check their rates and step counts as the command line does (nan had passed),
  and refuse an empty meta-batch (its loss had been NaN with a NumPy warning).
- ``io.save`` refuses a key ending in '.npy' (NumPy's archive read 'w.npy' back as 'w').
- a cast to integers is a constant (it had passed gradients through, scaled or zeroed); ``hvp``
  refuses vectors that do not match the inputs; a bad axis of a 0-d Tensor is named, and
  ``max`` over the non-empty axis of an empty Tensor works as NumPy's does.
"""
import os

import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from minimeta.nn.module import MissingParameter
from minimeta.optim import SGD
from test_hostile_input import REAL, refused


def test_a_module_copies_the_arrays_it_registers():
    w0, b0 = np.array([1.0, 2.0]), np.array([0.0])

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.add_param("w", w0)
            self.add_buffer("b", b0)

    m = M()
    SGD(m.parameters(), lr=0.5).step([np.ones(2)])
    m._buffers["b"] += 1.0
    np.testing.assert_array_equal(w0, [1.0, 2.0])
    np.testing.assert_array_equal(b0, [0.0])
    np.testing.assert_array_equal(m.parameters()[0].numpy(), [0.5, 1.5])


def test_a_convolution_promotes_mixed_dtypes_as_numpy_does():
    images = np.full((1, 1, 3, 3), 200, np.uint8)
    w = np.full((1, 1, 3, 3), 0.5, np.float32)
    y = F.conv2d(mm.tensor(images), mm.tensor(w))
    assert y.dtype == np.float32 and y.item() == 900.0
    y = F.conv2d(mm.tensor(images.astype(np.float32)), mm.tensor(w.astype(np.float64)))
    assert y.dtype == np.float64 and y.item() == 900.0
    # each gradient comes back in its own tensor's dtype
    x32 = mm.tensor(np.ones((1, 1, 3, 3), np.float32), requires_grad=True)
    w64 = mm.tensor(np.ones((1, 1, 3, 3)), requires_grad=True)
    gx, gw = mm.grad(F.conv2d(x32, w64).sum(), [x32, w64])
    assert gx.dtype == np.float32 and gw.dtype == np.float64
    with pytest.raises(TypeError, match="^conv2d: needs floating arrays, got int64 and int64"):
        F.conv2d(mm.tensor(np.ones((1, 1, 3, 3), np.int64)),
                 mm.tensor(np.ones((1, 1, 3, 3), np.int64)))
    with pytest.raises(TypeError, match="^causal_conv1d: needs floating arrays"):
        mm.causal_conv1d(mm.tensor(np.ones((1, 1, 4), np.int64)),
                         mm.tensor(np.ones((1, 1, 2), np.int64)))


X = mm.tensor(np.ones((2, 3)))


@pytest.mark.parametrize("call, message", [
    (lambda: X.transpose(1, 2), "transpose: axis 2 is out of range for a tensor of 2 dims"),
    (lambda: mm.swapaxes(X, 0, 2), "swapaxes: axis 2 is out of range"),
    (lambda: mm.expand_dims(X, 3), "expand_dims: axis 3 is out of range for a tensor of 2"),
    (lambda: mm.squeeze(X, -3), "squeeze: axis -3 is out of range"),
    (lambda: mm.concatenate([X, X], axis=2), "concatenate: axis 2 is out of range"),
    (lambda: mm.stack([X, X], axis=5), "expand_dims: axis 5 is out of range"),
    (lambda: mm.concatenate([mm.tensor(1.0), mm.tensor(2.0)]), "concatenate: zero-dim"),
])
def test_an_axis_out_of_range_is_an_error_not_a_wrap_around(call, message):
    with pytest.raises(ValueError, match="^" + message):
        call()


def test_negative_axes_still_count_from_the_end():
    a = np.arange(6.0).reshape(2, 3)
    t = mm.tensor(a)
    assert mm.stack([t, t], axis=-1).shape == np.stack([a, a], axis=-1).shape
    assert mm.expand_dims(t, -3).shape == (1, 2, 3)
    np.testing.assert_array_equal(mm.concatenate([t, t], axis=-1).numpy(),
                                  np.concatenate([a, a], axis=-1))
    np.testing.assert_array_equal(t.transpose(-1, 0).numpy(), a.T)


def test_params_without_one_of_the_modules_parameters_is_an_error_naming_it():
    net = nn.mlp((2, 3, 1))
    x = mm.tensor(np.ones((4, 2), np.float32))
    params = dict(net.named_parameters())
    params["2.bais"] = params.pop("2.bias")                       # a typo
    with pytest.raises(MissingParameter, match=r"^Linear: params has no '2\.bias'"):
        net(x, params)
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    params = {k: v for k, v in bn.named_parameters().items() if k != "1.weight"}
    with pytest.raises(MissingParameter, match=r"'1\.weight'"):
        bn(mm.tensor(np.ones((2, 1, 5, 5), np.float32)), params)
    # every parameter there, and more: fine (a learner may pass a larger mapping)
    full = dict(net.named_parameters(), extra=mm.tensor(0.0))
    np.testing.assert_array_equal(net(x, full).numpy(), net(x).numpy())


def test_requires_grad_refuses_a_tensor_an_op_made():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    y = (h * h + x).sum()
    with pytest.raises(ValueError, match="^requires_grad_: this tensor was made by Mul"):
        h.requires_grad_(False)
    with pytest.raises(ValueError, match="^requires_grad =: this tensor was made by Mul"):
        h.requires_grad = False              # the property names itself (it had said "_")
    np.testing.assert_array_equal(mm.grad(y, [x])[0].numpy(), [19.0, 37.0])
    assert mm.tensor([1.0]).requires_grad_().requires_grad          # leaves: as before


def test_backward_gives_each_leaf_a_gradient_of_its_own():
    a, b, c = (mm.tensor(np.ones(2), requires_grad=True) for _ in range(3))
    ((a + b) * c).sum().backward()              # Add's VJP hands the same g to both inputs
    assert a.grad.data is not b.grad.data
    a.grad.data[0] = 100.0
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    x = mm.tensor(np.ones(3), requires_grad=True)
    x.sum().backward()                          # Sum's VJP is a broadcast (a read-only view)
    x.grad.data *= 2.0
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])
    seed = np.ones(2)
    leaf = mm.tensor(np.zeros(2), requires_grad=True)
    leaf.backward(seed)
    leaf.grad.data[0] = 5.0
    np.testing.assert_array_equal(seed, [1.0, 1.0])


def test_batchnorm2d_refuses_a_3d_input_that_is_not_a_stack():
    bn = nn.BatchNorm2d(4)
    with pytest.raises(ValueError, match=r"^BatchNorm2d: input \(8, 4, 4\) is 3-D"):
        bn(mm.tensor(np.ones((8, 4, 4), np.float32)))
    # a stack of tasks (T, N, C) with per-task weights (T, C) is what 3-D means, and runs
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    stacked = {"weight": mm.tensor(np.ones((2, 4), np.float32)),
               "bias": mm.tensor(np.zeros((2, 4), np.float32))}
    y = bn(mm.tensor(x), stacked).numpy()
    np.testing.assert_allclose(y.std(axis=1), 1.0, rtol=1e-3)


def test_numpy_meets_a_tensor_as_an_array_or_refuses():
    t = mm.tensor([1.0, 2.0], requires_grad=True)
    np.testing.assert_array_equal(np.asarray(t), [1.0, 2.0])
    assert float(mm.tensor(2.5)) == 2.5 and int(mm.tensor(3.0)) == 3 and t.tolist() == [1, 2]
    assert isinstance(np.ones(2) * t, mm.Tensor)       # the Tensor's operator ran
    with pytest.raises(TypeError, match="does not support ufuncs"):
        np.exp(t)


@pytest.mark.parametrize("call, error, message", [
    (lambda: nn.conv4(5, image_size=15), ValueError, "conv4: image_size 15 is too small"),
    (lambda: F.one_hot(np.array([0.0, 1.0]), 2), TypeError, "one_hot: labels must be integers"),
    (lambda: F.max_pool2d(mm.tensor(np.ones((1, 1, 4, 4), np.float16)), 2), TypeError,
     "max_pool2d: float16 arrays are not supported by the kernels"),
])
def test_what_crashed_deep_inside_is_a_one_line_error_naming_the_op(call, error, message):
    # they had been a ZeroDivisionError, NumPy's IndexError and a 60-line numba traceback
    with pytest.raises(error, match="^" + message):
        call()


def test_an_optimizer_refuses_what_is_not_a_list_of_distinct_parameters():
    from minimeta.optim import Adam

    with pytest.raises(TypeError, match=r"^SGD: parameter 0 is a Linear, not a Tensor"):
        SGD(nn.mlp((1, 2, 1)), lr=0.1)                 # the model itself, not its parameters
    w = mm.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="^Adam: a parameter is listed twice"):
        Adam([w, w])
    with pytest.raises(ValueError, match="^SGD: learning rate must be a finite number > 0, "
                                         "got nan"):
        SGD([w], lr=float("nan"))
    SGD([w], lr=0.5).step([[2.0]])                     # a plain list is a gradient too
    np.testing.assert_array_equal(w.numpy(), [0.0])


def test_grad_of_an_output_made_under_no_grad_says_so():
    x = mm.tensor([1.0], requires_grad=True)
    with mm.no_grad():
        y = (x * x).sum()
    with pytest.raises(ValueError, match="^grad: no output requires grad"):
        mm.grad(y, [x])


@pytest.mark.skipif(not REAL, reason="needs Omniglot (MINIMETA_DATA_DIR)")
@pytest.mark.parametrize("options, message", [
    (["--shots", "10"], "--shots 10 + --queries 15 (maml's default at 5-way) ask for 25 "
                        "drawings of a class; each omniglot class has 20: give --queries 10 or "
                        "fewer"),   # (had blamed a --queries 15 the user never typed)
    (["--shots", "10", "--queries", "11"], "--shots 10 + --queries 11 ask for 21 drawings of "
                                           "a class; each omniglot class has 20"),
    (["--ways", "5000"], "--ways 5000 needs 5000 classes; the training part has 4400"),
    (["--val-size", "1", "--validate-every", "2"],
     "--val-size 1 leaves 4 validation classes, fewer than the 5 ways of validation: raise "
     "--val-size, or validate never (--validate-every 0)"),   # had named no option, --val-ways
])
def test_episodes_the_split_cannot_give_are_refused_before_the_folder_is_used(
        options, message, tmp_path, capsys):
    # they had failed after the run's first checkpoint was written (its folder then refused
    # the corrected command), or at the first validation, iterations later
    out = tmp_path / "run"
    line = refused(["train", "--learner", "maml", "--iterations", "3", "--meta-batch", "1",
                    *options, "--out", str(out)], capsys)
    assert line.startswith("minimeta train: " + message), line
    assert not out.exists()          # no empty folder left either (found by probing)


def test_a_cnp_refuses_targets_that_would_broadcast_into_a_wrong_loss():
    from minimeta.data import SinusoidTasks
    from minimeta.learners import CNP

    xs, ys, xq, yq = SinusoidTasks(seed=0).sample(1, 5)[0]
    learner = CNP()
    assert np.isfinite(learner.evaluate((xs, ys, xq, yq))[0])
    for call in (lambda: learner.evaluate((xs, ys, xq, yq[:, 0])),
                 lambda: learner.task_loss((xs, ys, xq, yq[:, 0]))):
        with pytest.raises(ValueError, match=r"^CNP: targets of shape \(5,\) for predictions"):
            call()


@pytest.mark.parametrize("support, query, message", [
    (np.arange(1, 6), np.arange(1, 6), "support labels must cover 0..5"),   # no class 0
    (np.arange(5), np.arange(7), "query labels must be support classes 0..4, got 0..6"),
    # one past the last class, the boundary (a `>` for `>=` had passed: mutation audit)
    (np.arange(5), np.array([0, 5]), "query labels must be support classes 0..4, got 0..5"),
])
def test_metric_learners_refuse_labels_without_support_classes(support, query, message):
    from minimeta.learners import MatchingNet, ProtoNet, RelationNet

    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(support), 1, 28, 28)).astype(np.float32)
    xq = rng.standard_normal((len(query), 1, 28, 28)).astype(np.float32)
    learners = (ProtoNet(nn.conv4()), MatchingNet(nn.conv4()),
                RelationNet(nn.relation_embedding(), nn.relation_module()))
    for learner in learners:      # Matching and Relation had scored an empty class 0
        with pytest.raises(ValueError, match=f"^{type(learner).__name__}: {message}"):
            learner.evaluate((x, support, xq, query))


def test_model_based_heads_are_validated_at_their_training_ways():
    from minimeta.experiments.config import RunConfig

    assert RunConfig(learner="snail", ways=20).val_ways == 20        # had been 5
    assert RunConfig(learner="protonet", ways=60).val_ways == 5       # metric: any ways
    assert RunConfig(learner="protonet", ways=60, val_ways=20).val_ways == 20
    for learner, val_ways in (("maml", 20), ("snail", 3)):    # a crash after iteration 1 (20),
        with pytest.raises(ValueError, match=f"^val_ways must equal --ways \\(5\\) for "
                                             f"{learner}: its head"):   # a silent 3-way (3)
            RunConfig(learner=learner, ways=5, val_ways=val_ways)
    assert RunConfig(learner="mann").shots == 10                       # had been 1: no recall
    from minimeta.data import omniglot
    with pytest.raises(ValueError, match="^Omniglot: part must be 'train', 'val' or 'test'"):
        omniglot.split_characters("lake", "tst")


def test_the_learners_check_their_settings_and_refuse_an_empty_meta_batch():
    from minimeta.learners import MAML, ProtoNet, Reptile, StackedTasks

    net = nn.mlp((1, 4, 1), dtype=np.float64)
    for make, message in [
        (lambda: MAML(net, float("nan"), 1), "MAML: inner_lr must be a finite number > 0"),
        (lambda: MAML(net, 0.1, 1, test_steps=-1), "MAML: test_steps must be an integer >= 0"),
        (lambda: Reptile(net, -0.1, 5, 1.0), "Reptile: inner_lr must be a finite number > 0"),
        (lambda: Reptile(net, 0.1, 5, 0.0), "Reptile: outer_lr must be a finite number > 0"),
        (lambda: Reptile(net, 0.1, -1, 1.0), "Reptile: inner_steps must be an integer >= 0"),
    ]:
        with pytest.raises(ValueError, match="^" + message):
            make()
    maml = MAML(net, 0.1, 1, loss="mse")
    for call, who in [(lambda: maml.outer_step([]), "MAML"), (lambda: maml.meta_gradient([]),
                      "MAML"), (lambda: StackedTasks(maml).outer_step([]), "StackedTasks"),
                      (lambda: Reptile(net, 0.1, 1, 1.0, loss="mse").outer_step([]), "Reptile"),
                      (lambda: ProtoNet(nn.conv4()).outer_step([]), "ProtoNet")]:
        with pytest.raises(ValueError, match=f"^{who}: a meta-batch needs at least one task"):
            call()


def test_save_refuses_a_key_the_archive_would_read_back_as_another(tmp_path):
    from minimeta import io

    with pytest.raises(ValueError, match=r"^save: key 'w\.npy' ends in '\.npy'"):
        io.save(str(tmp_path / "c.npz"), {"w": np.ones(2), "w.npy": np.zeros(3)})
    assert not (tmp_path / "c.npz").exists()


def test_a_cast_to_integers_is_a_constant_not_a_path_for_gradients():
    # it had stayed in the graph: d/dx (int(x) * 1.0) read 1, (int(x) * 0.5) read 0
    x = mm.tensor([1.5, 2.5], requires_grad=True)
    y = x.astype(np.int64)
    assert not y.requires_grad and y.numpy().tolist() == [1, 2]
    assert x.astype(np.float32).requires_grad                # between floats: differentiable


def test_hvp_refuses_vectors_that_do_not_match_the_inputs():
    f = lambda a, b: (a * b).sum() ** 2                              # noqa: E731
    a, b = mm.tensor([1.0, 2.0]), mm.tensor([3.0, 4.0])
    with pytest.raises(ValueError, match=r"hvp: v must be one vector per input"):
        mm.hvp(f, [a, b], [mm.tensor([1.0, 0.0])])            # zip had dropped b's
    with pytest.raises(ValueError, match=r"inputs \[\(2, 3\)\], v \[\(3,\)\]"):
        mm.hvp(lambda a: (a ** 3).sum(), [mm.tensor(np.ones((2, 3)))], [np.ones(3)])  # tiled


def test_reductions_name_a_bad_axis_of_a_scalar_and_max_keeps_empty_rows():
    for op in (mm.sum, mm.mean, mm.max, mm.logsumexp):      # had raised NumPy's AxisError
        with pytest.raises(ValueError, match="axis 0 is out of range for a tensor of 0 dims"):
            op(mm.tensor(1.0), axis=0)
    assert mm.max(mm.tensor(np.zeros((0, 3))), axis=1).shape == (0,)   # as NumPy
    with pytest.raises(ValueError, match="max: cannot reduce an empty axis"):
        mm.max(mm.tensor(np.zeros((0, 3))), axis=0)


def test_matching_s_full_context_embeddings_take_the_embedding_s_dtype():
    # they had always been float32: a float64 model's gradients agreed to 1e-8, not 1e-14
    from minimeta.learners import MatchingNet

    for dtype in (np.float32, np.float64):
        net = MatchingNet(nn.conv4(dtype=dtype), fce=True).net
        assert {p.dtype for p in net.parameters()} == {np.dtype(dtype)}


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_checkpoint_gets_the_mode_of_any_new_file(umask, tmp_path):
    # it had been 0600 whatever the umask (mkstemp's), while metrics.jsonl was 0644
    from minimeta import io

    previous = os.umask(umask)
    try:
        io.save(str(tmp_path / "c.npz"), {"w": np.ones(2)})
        (tmp_path / "plain").write_text("")
    finally:
        os.umask(previous)
    mode = lambda name: os.stat(tmp_path / name).st_mode & 0o777     # noqa: E731
    assert mode("c.npz") == mode("plain") == 0o666 & ~umask
