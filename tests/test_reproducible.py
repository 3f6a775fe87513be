"""Reproducible runs. The same bits on any number of kernel threads: a kernel's sum is cut into
runs fixed by the data (``kernels.threads.ordered_sum``), never by the thread count (each
thread's own share had given each thread count its own rounding: ProtoNet with a meta-batch of
1, whose kernels split over the cores, ended 6e-5 apart after 4 steps on one thread and on
two). ``seed=None`` means the process stream for every model, as for a layer. A run's config
refuses None where a number is needed, before it writes anything."""
import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import minimeta as mm
from minimeta import kernels as K
from minimeta.kernels import threads as kernel_threads
from minimeta.experiments.config import RunConfig
from minimeta.learners import CNP, ProtoNet
from minimeta.nn import backbones


@pytest.fixture
def split():
    before = kernel_threads.split_threads()

    def set_to(n):
        kernel_threads.set_split_threads(n)
    yield set_to
    kernel_threads.set_split_threads(before)


# (x shape, w shape, stride, padding): the paths of conv_numba.conv2d_weight_grad, each with
# at least 3 chunks of images (two chunks add up the same in any grouping)
PATHS = {
    "one input channel": ((300, 1, 28, 28), (16, 1, 3, 3), 1, 1),
    "winograd": ((96, 32, 14, 14), (32, 32, 3, 3), 1, 1),
    "shifted GEMMs": ((160, 8, 14, 14), (8, 8, 3, 3), 1, 1),
    "im2col": ((600, 8, 14, 14), (8, 8, 3, 3), 2, 1),
}


@pytest.mark.parametrize("path", PATHS)
def test_weight_gradients_have_the_same_bits_on_any_thread_count(path, split):
    x_shape, w_shape, stride, padding = PATHS[path]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)      # float64: exact enough to check the sum as well
    ho = (x_shape[2] + 2 * padding - w_shape[2]) // stride + 1
    g = rng.standard_normal((x_shape[0], w_shape[0], ho, ho))
    kernel = K.lookup("conv2d_weight_grad", x, g)
    results = []
    for n in (1, 2, 3, 5):
        split(n)
        results.append(kernel(x, g, w_shape, stride, padding))
    spec = K.TABLE["conv2d_weight_grad"].reference(x, g, w_shape, stride, padding)
    np.testing.assert_allclose(results[0], spec, rtol=1e-9, atol=1e-9)  # the right sum at all
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_a_protonet_step_has_the_same_bits_on_one_two_and_three_threads(split):
    # its largest sum has 3 chunks: 3 threads take one each, in order, and so cannot tell a
    # sum grouped by the threads' shares from one cut by the data; 2 threads can (a mutation
    # audit found the test had compared 1 and 3 only, and passed the old grouping)
    rng = np.random.default_rng(1)
    task = (rng.random((20, 1, 28, 28)), np.repeat(np.arange(5), 4),
            rng.random((40, 1, 28, 28)), np.repeat(np.arange(5), 8))
    params = []
    for n in (1, 2, 3):
        split(n)
        learner = ProtoNet(backbones.conv4(hidden=16, seed=0))
        opt = mm.optim.Adam(learner.meta_parameters(), lr=1e-3)
        for _ in range(2):
            opt.zero_grad()
            learner.outer_step([task])
            opt.step()
        params.append({k: p.numpy().copy() for k, p in learner.params.items()})
    for other in params[1:]:
        for k in params[0]:
            np.testing.assert_array_equal(other[k], params[0][k], err_msg=k)


def test_seed_none_is_the_process_stream_for_every_model():
    """conv4/mlp(seed=None) had drawn from the OS (new weights in every process), unlike a
    layer's seed=None; CNP(seed=None) had failed on None + 1."""
    code = ("import minimeta.nn as nn\n"
            "from minimeta.learners import CNP, SnailLearner\n"
            "nets = [nn.conv4(seed=None), nn.mlp(seed=None), CNP(seed=None).net, "
            "SnailLearner(2, 1, seed=None).net]\n"
            "print(repr([float(p.numpy().sum()) for n in nets for p in n.parameters()]))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].count(",") > 20
    a, b = CNP(seed=None), CNP(seed=None)   # two draws from the stream: different weights
    assert not np.array_equal(a.params["encoder.0.weight"].numpy(),
                              b.params["encoder.0.weight"].numpy())


@pytest.mark.parametrize("option, flag", [("seed", "--seed"), ("iterations", "--iterations"),
                                          ("checkpoint_every", "--checkpoint-every")])
def test_a_config_refuses_none_for_a_number(option, flag, tmp_path):
    """seed=None had passed the checks and failed in NumPy after the first checkpoint; the
    config is checked before a run touches its folder."""
    with pytest.raises(ValueError, match=f"{flag} must be given .* got None"):
        RunConfig(learner="maml", out=str(tmp_path / "run"), **{option: None})


def test_a_models_second_network_is_no_other_seeds_first():
    """CNP(seed=s) had seeded its decoder s + 1: seed 0's decoder began as seed 1's encoder,
    scaled (every ratio 0.1245), so runs meant as independent seeds were partly one run."""
    decoder = CNP(seed=0).params["decoder.0.weight"].numpy().ravel()
    encoder = CNP(seed=1).params["encoder.0.weight"].numpy().ravel()
    ratio = decoder[:encoder.size] / encoder
    assert not np.allclose(ratio, ratio[0])


def test_the_runs_of_a_sum_even_out_over_the_threads(split):
    """Runs cut by the data, longer first, dealt out over 2 threads: 6 chunks each of 12 and 5
    of 10 (the longer runs had all fallen to one thread: 8 and 4)."""
    for n, each in ((12, 6), (10, 5), (16, 8)):
        split(2)
        seen = []
        total = kernel_threads.ordered_sum(lambda i: seen.append(threading.get_ident()) or i,
                                           range(n), int)
        assert total == sum(range(n))
        assert sorted(seen.count(t) for t in set(seen)) == [each, each]


def test_an_empty_batch_sums_to_zeros_in_every_weight_gradient_path():
    from minimeta.kernels import conv_numba, winograd_numba
    for c in (1, 64):
        x, g = np.zeros((0, c, 14, 14)), np.zeros((0, 64, 14, 14))
        gw = conv_numba.conv2d_weight_grad(x, g, (64, c, 3, 3), 1, 1)
        assert gw.shape == (64, c, 3, 3) and not gw.any()
    gw = winograd_numba.conv2d_weight_grad(np.zeros((0, 64, 14, 14)), g, 1)
    assert gw.shape == (64, 64, 3, 3) and not gw.any()


def test_the_sinusoid_experiment_s_two_task_streams_are_seed_plus_1_and_plus_2(monkeypatch):
    """MAML trains on the stream seeded seed + 1, the pretrained baseline on seed + 2 (the
    numbers of docs/RESULTS.md came from these): on MAML's own stream the baseline would see
    MAML's tasks, every run still reproducible and none of those numbers reproduced."""
    from minimeta.experiments import sinusoid
    seen = []

    def train(config, model=None, learner=None, label="train", **kwargs):
        seen.append((label, config.stream_seed, config.seed))
        return types.SimpleNamespace(model=model, learner=learner, curve=[])
    monkeypatch.setattr(sinusoid, "train", train)
    config = sinusoid.maml_config(3, seed=7)
    sinusoid.meta_train(config)
    sinusoid.pretrain(config)
    assert seen == [("maml", 8, 7), ("pretrained", 9, 7)]


def test_the_sinusoid_table_s_held_out_tasks_of_k_points_come_from_seed_plus_k():
    """Each K of the table has its own held-out functions, drawn from seed + K (one seed for
    every K would give K = 5 and K = 10 the same functions), and queries on an even grid."""
    from minimeta.data import SinusoidTasks
    from minimeta.experiments.sinusoid import held_out_tasks
    for shots in (5, 10):
        reference = SinusoidTasks(seed=1234 + shots)
        amps, phases = reference.sample_functions(3)
        tasks = held_out_tasks(shots, n_tasks=3, seed=1234, queries=4)
        for (x_s, y_s, x_q, y_q), a, p in zip(tasks, amps, phases):
            assert x_s.shape == (shots, 1)
            np.testing.assert_allclose(y_s, a * np.sin(x_s - p), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(x_q[:, 0], np.linspace(-5, 5, 4, dtype=np.float32))
            np.testing.assert_allclose(y_q, a * np.sin(x_q - p), rtol=1e-5, atol=1e-6)
