"""Modules with functional parameters, optimizers, checkpoints, and conv4 learning end to end."""
import os

import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta import io, nn
from minimeta.optim import SGD, Adam


def test_model_called_with_other_params_uses_them():
    net = nn.mlp((2, 3, 1), dtype=np.float64)
    x = mm.tensor(np.ones((4, 2)))
    params = net.named_parameters()
    assert list(params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    doubled = {k: v * 2.0 for k, v in params.items()}
    h = F.relu(x @ doubled["0.weight"] + doubled["0.bias"])
    np.testing.assert_allclose(net(x, doubled).numpy(),
                               (h @ doubled["2.weight"] + doubled["2.bias"]).numpy())
    # a plain callable f(x, params) works where a model is expected
    assert callable(lambda x, p: F.linear(x, p["w"]))


def test_inner_update_is_a_new_dict_and_differentiable():
    net = nn.mlp((1, 4, 1), dtype=np.float64)
    x, y = mm.tensor(np.linspace(-1, 1, 5)[:, None]), mm.tensor(np.ones((5, 1)))
    params = net.named_parameters()
    grads = mm.grad(F.mse_loss(net(x, params), y), list(params.values()), create_graph=True)
    fast = {k: p - 0.1 * g for (k, p), g in zip(params.items(), grads)}
    meta = mm.grad(F.mse_loss(net(x, fast), y), list(params.values()))
    assert all(g.shape == p.shape for g, p in zip(meta, params.values()))
    assert net.named_parameters()["0.weight"] is params["0.weight"]  # nothing mutated



def test_conv4_learns_synthetic_classes():
    rng = np.random.default_rng(0)
    protos = rng.random((3, 1, 28, 28)) > 0.7
    labels = np.repeat(np.arange(3), 10)
    images = (protos[labels] ^ (rng.random((30, 1, 28, 28)) > 0.9)).astype(np.float32)
    net = nn.conv4(3, hidden=16)
    opt = Adam(net.parameters(), lr=3e-3)
    x = mm.tensor(images)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(x), labels)
        opt.step(mm.grad(loss, net.parameters()))
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    assert F.accuracy(net(x), labels) == 1.0


def test_sgd_momentum_and_adam_match_their_formulas():
    w = mm.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    g = np.array([0.5, 0.5])
    opt.step([g])
    opt.step([g])
    v1 = g + 0.01 * np.array([1.0, -2.0])
    w1 = np.array([1.0, -2.0]) - 0.1 * v1
    v2 = 0.9 * v1 + g + 0.01 * w1
    np.testing.assert_allclose(w.numpy(), w1 - 0.1 * v2)
    a = mm.tensor(np.array([1.0]), requires_grad=True)
    Adam([a], lr=0.1).step([np.array([4.0])])
    np.testing.assert_allclose(a.numpy(), [0.9], rtol=1e-6)  # first Adam step = lr * sign


def test_clip_norm_rescales_all_gradients_together():
    w = mm.tensor(np.array([0.0, 0.0]), requires_grad=True)
    b = mm.tensor(np.array([0.0]), requires_grad=True)
    opt = SGD([w, b], lr=1.0, clip_norm=1.0)
    opt.step([np.array([3.0, 0.0]), np.array([4.0])])    # global norm 5 -> scaled by 1/5
    assert opt.last_norm == pytest.approx(5.0)
    np.testing.assert_allclose(w.numpy(), [-0.6, 0.0])
    np.testing.assert_allclose(b.numpy(), [-0.8])
    opt.step([np.array([0.3, 0.0]), None])               # under the bound: unchanged
    np.testing.assert_allclose(w.numpy(), [-0.9, 0.0])
    before = w.numpy().copy()
    with pytest.raises(FloatingPointError, match="SGD.step: gradient norm is nan"):
        opt.step([np.array([np.nan, 0.0]), np.array([1.0])])
    np.testing.assert_array_equal(w.numpy(), before)     # nothing was applied
    with pytest.raises(ValueError, match="clip_norm must be > 0"):
        Adam([w], clip_norm=0.0)


def test_checkpoint_round_trip_restores_params_and_optimizer_state(tmp_path):
    net = nn.conv4(5, hidden=8)
    opt = Adam(net.parameters(), lr=1e-3)
    x = mm.tensor(np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32))
    for _ in range(2):
        opt.step(mm.grad(F.cross_entropy(net(x), [0, 1, 2, 3]), net.parameters()))
    path = str(tmp_path / "ckpt.npz")
    io.save(path, {"model": net.state_dict(), "optim": opt.state_dict(), "step": 2,
                   "note": "hello", "best": None, "lr": 0.5})
    net2, opt2 = nn.conv4(5, hidden=8, seed=1), Adam(nn.conv4(5, hidden=8).parameters())
    state = io.load(path)
    net2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optim"])
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert opt2.steps == 2 and state["step"] == 2 and state["note"] == "hello"
    assert state["best"] is None and isinstance(state["lr"], float)
    for name in ("m", "v"):
        for a, b in zip(opt.state[name], opt2.state[name]):
            np.testing.assert_array_equal(a, b)
    assert [f for f in os.listdir(tmp_path)] == ["ckpt.npz"]  # no temp file left behind


def test_checkpoint_errors_are_clear(tmp_path):
    path = tmp_path / "ckpt.npz"
    io.save(str(path), {"a": np.ones(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a checkpoint"):
        io.load(str(path))
    np.savez(tmp_path / "foreign.npz", x=np.ones(2))
    with pytest.raises(ValueError, match="not a minimeta checkpoint"):
        io.load(str(tmp_path / "foreign.npz"))
    with pytest.raises(FileNotFoundError):
        io.load(str(tmp_path / "missing.npz"))


def test_load_state_dict_reports_mismatch():
    with pytest.raises(KeyError, match="missing"):
        nn.mlp((1, 2, 1)).load_state_dict({})
    with pytest.raises(ValueError, match="shape"):
        net = nn.mlp((1, 2, 1))
        state = net.state_dict()
        state["param:0.weight"] = np.ones((3, 3))
        net.load_state_dict(state)


def test_train_eval_switches_batch_norm():
    bn = nn.BatchNorm2d(2)
    x = mm.tensor(np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32) + 3)
    bn(x)
    assert np.all(bn.named_buffers()["running_mean"] > 0.2)
    bn.eval()
    assert not bn.training and bn(x).shape == x.shape


def test_lstm_cell_module():
    cell = nn.LSTMCell(3, 4)
    h = c = mm.tensor(np.zeros((2, 4), np.float32))
    h2, c2 = cell((mm.tensor(np.ones((2, 3), np.float32)), (h, c)))
    assert h2.shape == c2.shape == (2, 4)


def test_conv4_shapes_and_parameter_count():
    net = nn.conv4(5)
    x = mm.tensor(np.zeros((2, 1, 28, 28), np.float32))
    assert net(x).shape == (2, 5) and net(x).dtype == np.float32
    assert nn.conv4()(x).shape == (2, 64)
    conv = 64 * 9 + 64 + 3 * (64 * 64 * 9 + 64)
    assert sum(p.size for p in net.parameters()) == conv + 4 * 2 * 64 + 64 * 5 + 5
