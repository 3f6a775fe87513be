"""What the examples print and draw, held to what they were asked: a mutation audit's tests.

Each test here kills mutants that passed every other test: a seed, a clipping bound or an
evaluation seed parsed and then dropped; a table's columns swapped; a figure without its
validation series; the reading order's check skipping a module. The examples run in-process
on their smallest settings, their training, data or learners stood in where only the
bookkeeping around them is tested; a figure is checked by the arrays on its axes, not its
pixels. (The learning curve's figure and the DOT graph: ``test_curve.py``, ``test_engine.py``.)

Read next: ``test_examples.py`` (the examples end to end, on tiny budgets).
"""
import json
import os
import re
import shutil
import sys
import types

import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from minimeta.data import omniglot
from minimeta.experiments import sinusoid as S

import source_file  # tests/: a repository file run as a module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def example(name):
    """The module ``examples/<name>.py``, loaded afresh (so a monkeypatch of it stays here)."""
    return source_file.load(f"examples/{name}.py")


def fake_classes(n=12):
    """Omniglot's class array in small: ``n`` classes of 20 random 28×28 drawings."""
    return np.random.default_rng(0).random((n, 20, 28, 28), dtype=np.float32)


# ----- examples/sinusoid_maml.py and sinusoid_table.py ------------------------------------------

@pytest.fixture
def sinusoid(monkeypatch):
    """sinusoid_maml with training stood in (an untrained MLP each): what it was asked, kept."""
    seen = types.SimpleNamespace(configs=[], evaluated=[], plotted=[])

    def meta_train(config):
        seen.configs.append(config)
        return nn.mlp((1, 40, 40, 1), init_std=0.01, seed=1), None, None

    def evaluate(models, **kwargs):
        seen.evaluated.append((kwargs, evaluate_real(models, **kwargs)))
        return seen.evaluated[-1][1]

    evaluate_real = S.evaluate
    monkeypatch.setattr(S, "meta_train", meta_train)
    monkeypatch.setattr(S, "pretrain", lambda config: (meta_train(config)[0], None))
    monkeypatch.setattr(S, "evaluate", evaluate)
    monkeypatch.setattr(S, "plot_task", lambda models, path, **kw: seen.plotted.append(kw))
    seen.main = example("sinusoid_maml").main
    return seen


def test_the_sinusoid_example_trains_tests_and_draws_with_every_option_given(
        sinusoid, tmp_path, capsys):
    # the seed, the clipping bound and the step weights had reached results.json only, the
    # held-out tasks' seed had been dropped, and the figure fine-tuned at α = 0.01
    out = str(tmp_path / "run")
    sinusoid.main(["--iterations", "3", "--tasks", "2", "--seed", "5", "--clip-norm", "5",
                   "--inner-lr", "0.02", "--train-steps", "2", "--step-weights", "0.5,0.25",
                   "--eval-seed", "99", "--out", out])
    config = sinusoid.configs[0]       # meta-training; the baseline gets the same settings
    assert (config.seed, config.clip_norm, config.inner_lr, config.inner_steps) == \
        (5, 5, 0.02, 2)
    assert list(config.multi_step_loss) == [0.5, 0.25]
    (kwargs, results), = sinusoid.evaluated
    assert (kwargs["seed"], kwargs["lr"], kwargs["n_tasks"]) == (99, 0.02, 2)
    assert sinusoid.plotted[0]["lr"] == 0.02
    assert "(multi-step loss [0.5, 0.25])" in capsys.readouterr().out
    with open(os.path.join(out, "results_eval99.json")) as f:
        run = json.load(f)
    assert run["eval_seed"] == 99
    mean, half, median, diverged = results[("MAML", 5)][1]
    assert run["results"]["MAML K=5"]["1"] == dict(mean=mean, ci95=half, median=median,
                                                   diverged=diverged)


def test_re_testing_a_sinusoid_run_prints_how_it_was_trained(sinusoid, tmp_path, capsys):
    out = str(tmp_path / "run")
    sinusoid.main(["--iterations", "3", "--tasks", "2", "--shots", "5", "--out", out])
    with open(os.path.join(out, "results.json")) as f:
        seconds = json.load(f)["maml_seconds"]
    capsys.readouterr()
    sinusoid.main(["--evaluate-only", "--tasks", "2", "--out", out])
    said = capsys.readouterr().out
    assert f"meta-trained with K = 5 and 1 inner step(s) for 3 iterations ({seconds:.0f} s " \
        "for MAML)" in said                 # not K = 10, the default, nor "nan s"


@pytest.mark.parametrize("argv", [["--tasks", "1"],
                                  ["--train-steps", "2", "--step-weights", "1,1,1"]])
def test_the_sinusoid_example_refuses_what_it_cannot_run(sinusoid, argv, tmp_path):
    with pytest.raises(SystemExit) as stop:
        sinusoid.main(["--iterations", "2", "--out", str(tmp_path / "run")] + argv)
    assert stop.value.code == 2 and not sinusoid.configs and not os.listdir(tmp_path)


def stats(mean, ci95, median=0.1, diverged=0):
    return dict(mean=mean, ci95=ci95, median=median, diverged=diverged)


def test_the_sinusoid_table_shows_each_number_in_its_column(tmp_path, monkeypatch, capsys):
    maml = {"0": stats(3.0, 0.3), "1": stats(0.5, 0.05), "5": stats(150.0, 9.0),
            "10": stats(2000.0, 99.0, 0.3, 2)}
    run = {"iterations": 700, "maml_seconds": 65.4, "seed": 3, "train_steps": 1,
           "shots": 5, "eval_seed": 99, "results": {
               "MAML K=5": maml, "MAML K=10": {s: stats(7.0, 0.7) for s in maml},
               "pretrained K=5": {s: stats(float(s) + 1, 0.2) for s in maml}}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results_eval99.json").write_text(json.dumps(run))
    monkeypatch.setattr(sys, "argv", ["sinusoid_table.py", str(tmp_path / "run" /
                                                                "results_eval99.json")])
    example("sinusoid_table").main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| paper (Finn et al. 2017) | — | 1 step | 70000 | — | 0.67 | 0.38 | " \
        "0.35 | 2.19 |"
    assert lines[3] == ("| run (tasks seed 99) | 3 | 1 step, trained with K = 5 | 700 | 65 s | "
                        "0.500 ± 0.050 | 150.000 ± 9.000 | diverged (2 div., median 0.300) | "
                        "11.000 ± 0.200 |")


# ----- examples/hessian_view.py -------------------------------------------------------------

def test_the_hessian_view_prints_the_meta_gradient_of_its_options(monkeypatch, capsys):
    """Its numbers against the Hessian it computed and a finite-difference meta-gradient of
    the same task, network and α (each option had been free to be ignored)."""
    view, seen = example("hessian_view"), {}

    class Spy(view.MAML):
        def meta_gradient(self, tasks):
            seen["task"] = tasks[0]
            return super().meta_gradient(tasks)

    def spy(model, alpha, steps, loss, params):
        seen["model"], seen["theta"] = model, params["theta"].numpy().copy()
        return Spy(model, alpha, steps, loss=loss, params=params)

    hessian = mm.hessian
    monkeypatch.setattr(view, "MAML", spy)
    monkeypatch.setattr(mm, "hessian", lambda f, x: seen.setdefault("H", hessian(f, x)))
    view.main(["--hidden", "2", "--shots", "3", "--alpha", "0.1"])
    said = {k.strip(): float(v) for k, v in re.findall(   # "name = number", after line 1
        r"([^=,\n]+)= *([-+\d.e]+)", capsys.readouterr().out.split("\n", 1)[1])}
    xs, ys, xq, yq = seen["task"]
    assert xs.shape == (3, 1) and seen["theta"].shape == (13,)    # K = 3; n = h² + 4h + 1
    eig = np.max(np.abs(np.linalg.eigvalsh(seen["H"].numpy())))
    assert said["largest |eigenvalue|"] == pytest.approx(eig, rel=1e-3)
    assert said["max |learner − explicit|"] < 1e-10
    assert said["|learner − first-order|"] == said["|α H ∇φL| (what FOMAML drops)"] > 0

    def meta_loss(theta):      # L(θ − α ∇L(θ, S), Q), the objective MAML differentiates
        t = mm.tensor(theta, requires_grad=True)
        support = F.mse_loss(seen["model"](mm.tensor(xs), {"theta": t}), ys)
        phi = t - 0.1 * mm.grad(support, [t])[0]
        return F.mse_loss(seen["model"](mm.tensor(xq), {"theta": phi}), yq).item()

    step = 1e-6 * np.eye(13)
    numeric = [(meta_loss(seen["theta"] + e) - meta_loss(seen["theta"] - e)) / 2e-6
               for e in step]
    assert said["|meta-gradient|"] == pytest.approx(np.linalg.norm(numeric), rel=1e-4)
    # the largest |eigenvalue| is a magnitude: the same for −H (H's largest is positive here)
    monkeypatch.setattr(mm, "hessian", lambda f, x: -hessian(f, x))
    view.main(["--hidden", "2", "--shots", "3", "--alpha", "0.1"])
    assert f"largest |eigenvalue| = {eig:.4g}\n" in capsys.readouterr().out


# ----- examples/metric_learners.py and model_based.py ---------------------------------------

class Samplers:
    """A stand-in ``EpisodeSampler`` class that keeps every sampler made and its draws."""

    def __init__(self):
        from minimeta.data import EpisodeSampler

        self.made = []

        class Recorded(EpisodeSampler):
            def __init__(inner, classes, ways, shots, queries, seed=0):
                super().__init__(classes, ways, shots, queries, seed=seed)
                inner.args, inner.draws = (ways, shots, queries, str(seed)), 0
                self.made.append(inner)

            def sample(inner):
                inner.draws += 1
                return super().sample()
        self.cls = Recorded


def test_the_metric_example_trains_and_tests_as_its_options_say(monkeypatch, capsys):
    metric, samplers, built, tested = example("metric_learners"), Samplers(), [], []
    make_learner, run_episodes = metric.make_learner, metric.run_episodes
    monkeypatch.setattr(omniglot, "class_images", lambda *a: fake_classes())
    monkeypatch.setattr(metric, "EpisodeSampler", samplers.cls)
    monkeypatch.setattr(metric, "make_learner", lambda *a: built.append(a) or make_learner(*a))
    monkeypatch.setattr(metric, "run_episodes", lambda learner, tasks, n, seed: tested.append(
        (learner, n)) or run_episodes(learner, tasks, n, seed))
    metric.main(["--learner", "matching", "--fce", "--train-way", "3", "--shots", "2",
                 "--queries", "3", "--test-way", "4", "--test-episodes", "3", "--episodes", "2",
                 "--seed", "4"])
    assert built == [("matching", True, 4)] and tested[0][0].fce and tested[0][1] == 3
    check, train, *test = samplers.made      # the test episodes checked, then training's
    assert train.args == (3, 2, 3, "4") and train.draws == 2
    assert [s.args[:3] for s in test] == [(4, 2, 15)] * 3
    assert len({s.args[3] for s in test}) == 3           # each test episode its own draw
    assert "matching (FCE): 4-way 2-shot test accuracy " in capsys.readouterr().out


def test_the_model_based_example_tests_cnp_at_each_k_on_every_task(monkeypatch, capsys):
    model_based, drawn, counted = example("model_based"), [], []
    held_out, mean_ci, cnp = model_based.held_out_tasks, model_based.mean_ci, model_based.CNP
    monkeypatch.setattr(model_based, "held_out_tasks", lambda k, n: drawn.append((k, n)) or
                        held_out(k, n))
    monkeypatch.setattr(model_based, "mean_ci", lambda v: counted.append(len(v)) or mean_ci(v))
    monkeypatch.setattr(model_based, "CNP", lambda seed: drawn.append(seed) or cnp(seed=seed))
    args = types.SimpleNamespace(learner="cnp", seed=3, test_tasks=2, ways=5)
    learner, sample, test = model_based.make(args)
    test(learner)
    assert drawn == [3, (5, 2), (10, 2)] and counted == [2, 2]
    assert "cnp: K = 10: MSE " in capsys.readouterr().out


def test_the_model_based_example_tests_snail_and_mann_as_it_says(monkeypatch, capsys):
    model_based, samplers, episodes = example("model_based"), Samplers(), []
    monkeypatch.setattr(omniglot, "class_images", lambda *a: fake_classes())
    monkeypatch.setattr(model_based, "EpisodeSampler", samplers.cls)
    monkeypatch.setattr(model_based, "first_use_note", lambda *a: None)
    monkeypatch.setattr(model_based, "SnailLearner", lambda *a, **k: types.SimpleNamespace(
        net=None))
    monkeypatch.setattr(model_based, "run_episodes", lambda learner, tasks, n, seed: (
        episodes.append((tasks([seed, 0], 1)[0][0].shape, n)) or (0.5, 0.1)))
    args = types.SimpleNamespace(learner="snail", seed=0, test_tasks=3, ways=4)
    learner, sample, test = model_based.make(args)
    test(learner)
    assert episodes == [((4, 1, 28, 28), 3), ((20, 1, 28, 28), 3)]     # 4-way 1-shot, then 5-shot

    class Mann:
        def __init__(self, *args, **kwargs):
            pass

        def instance_accuracy(self, tasks):
            episodes.append(len(tasks))
            return np.arange(10) / 10
    monkeypatch.setattr(model_based, "MANNLearner", Mann)
    args = types.SimpleNamespace(learner="mann", seed=0, test_tasks=2, ways=5)
    learner, sample, test = model_based.make(args)
    capsys.readouterr()
    test(learner)
    assert episodes[-1] == 2 and capsys.readouterr().out == (
        "mann: instance accuracy by presentation 1: 0.000, 2: 0.100, 3: 0.200, 4: 0.300, "
        "5: 0.400, 10: 0.900 (2 episodes)\n")


def test_the_model_based_example_trains_for_its_minutes_and_tests_mann_on_100(monkeypatch):
    model_based, made = example("model_based"), []
    learner = types.SimpleNamespace(meta_parameters=lambda: [],
                                    outer_step=lambda batch: {"loss": 1.0})
    monkeypatch.setattr(model_based, "make", lambda args: made.append(args) or (
        learner, lambda i: None, lambda learner: None))
    monkeypatch.setattr(model_based, "Adam", lambda *a, **k: types.SimpleNamespace(
        step=lambda: None, zero_grad=lambda: None))
    clock = iter(range(10 ** 6))            # each reading of the clock, a second later
    monkeypatch.setattr(model_based, "time", types.SimpleNamespace(
        perf_counter=lambda: float(next(clock))))
    done = model_based.main(["--learner", "mann", "--minutes", "0.5"])
    assert 20 < done < 30 and made[0].test_tasks == 100      # 30 s, not 0.5 s


# ----- examples/results_table.py -----------------------------------------------------------

def omniglot_row(tmp_path, **changes):
    """A row of ``minimeta eval --report`` for a run folder under ``tmp_path``."""
    from minimeta.experiments.config import RunConfig

    folder = tmp_path / "maml20"
    settings = RunConfig(learner="maml", ways=5, shots=1, iterations=800,
                         out=str(folder)).settings()
    return dict(dict(learner="maml", fce=False, ways=20, shots=1, queries=5, episodes=600,
                     accuracy=0.9312, interval=0.0071, train_ways=5, train_shots=1,
                     iterations=800, wall_seconds=1800, train_seconds=1500,
                     checkpoint=str(folder / "checkpoint.npz"), settings=settings), **changes)


def test_the_results_table_puts_each_number_in_its_column(tmp_path):
    table = example("results_table")
    rows = [omniglot_row(tmp_path), omniglot_row(tmp_path, ways=5, shots=5, queries=15)]
    assert table.table(rows).splitlines()[2:] == [
        "| maml | maml20 | 20-way 1-shot | 93.1 ± 0.7% | 95.8% | 5 | 5-way 1-shot | 800 | "
        "30 min |",                         # the paper's 20-way 1-shot number, and 1800 s
        "| maml | maml20 | 5-way 5-shot | 93.1 ± 0.7% | 99.9% | 15 | 5-way 1-shot | 800 | "
        "30 min |"]
    lines = table.commands(rows).strip().splitlines()   # one training command, two tests
    assert lines[0] == "maml20:" and lines[1] == ""
    assert lines[2].startswith("    minimeta train --learner maml --ways 5 --shots 1 ")
    assert lines[3:] == [f"    minimeta eval --checkpoint {tmp_path}/maml20/checkpoint.npz "
                         f"--episodes 600 --ways {w} --shots {s} --queries {q}"
                         for w, s, q in ((20, 1, 5), (5, 5, 15))]


def test_the_learning_curves_draw_each_run_s_running_mean_and_validation(
        tmp_path, monkeypatch, capsys):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)    # the figure kept, to be read
    (tmp_path / "maml20").mkdir()
    log = [dict(iteration=i, loss=5.0 - i / 10, accuracy=i / 20) | (
        dict(val_accuracy=0.3 + i / 100) if i % 10 == 0 else {}) for i in range(1, 21)]
    (tmp_path / "maml20" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n"
                                                                for r in log))
    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps(omniglot_row(tmp_path)) + "\n")
    plot = str(tmp_path / "mine" / "curves.png")
    example("results_table").main(["--report", str(report), "--plot", plot])
    assert capsys.readouterr().out.endswith(f"learning curves: {plot}\n")
    assert os.path.getsize(plot) > 0
    ax = figures[0].axes[0]
    train, val = ax.lines                # a fifth of 20 iterations: a mean of 4
    assert train.get_xdata().tolist() == list(range(4, 21))
    np.testing.assert_allclose(train.get_ydata(), [(i - 1.5) / 20 for i in range(4, 21)])
    assert list(val.get_xdata()) == [10, 20] and list(val.get_ydata()) == [0.4, 0.5]
    assert "mean of 4 iterations" in ax.get_title()


# ----- minimeta/reading.py ------------------------------------------------------------------

@pytest.fixture
def source_copy(tmp_path):
    """A copy of every module of the reading order, laid out as a checkout."""
    from minimeta import reading

    for path, _ in reading.ORDER:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(ROOT, path), tmp_path / path)
    return tmp_path


def test_the_reading_check_sees_every_module_even_the_last_and_a_new_kernel(source_copy):
    from minimeta import reading

    last = source_copy / "minimeta/reading.py"       # the end of the line, edited by hand
    last.write_text(last.read_text(encoding="utf-8").replace(
        "Read next: nothing: this", "Read next: ``minimeta/cli.py``; nothing: this"))
    tensor = source_copy / "minimeta/engine/tensor.py"   # its line right, a stale one above
    text = tensor.read_text(encoding="utf-8")
    tensor.write_text(text.replace("\nRead next: ``minimeta/engine/anomaly.py``",
                                   "\nRead next: ``minimeta/engine/ops.py``.\n\n"
                                   "Read next: ``minimeta/engine/anomaly.py``"))
    assert reading.stale(str(source_copy)) == ["minimeta/engine/tensor.py",
                                               "minimeta/reading.py"]
    assert reading.write(str(source_copy)) == ["minimeta/engine/tensor.py",
                                               "minimeta/reading.py"]
    assert reading.stale(str(source_copy)) == [] and tensor.read_text(encoding="utf-8") == text
    (source_copy / "kernels/mine.py").write_text('"""Not in ORDER."""\n')
    assert reading.unlisted(str(source_copy)) == ["kernels/mine.py"]


@pytest.mark.parametrize("old", ["Read ``minimeta/io.py`` next.",
                                 "Start reading at ``minimeta/io.py``.",
                                 "Read next: ``minimeta/io.py`` (atomic .npz checkpoints,\n"
                                 "wrapped over two lines)."])
def test_every_earlier_form_of_the_reading_line_is_replaced(old):
    from minimeta import reading

    assert reading.with_line(f'"""A module.\n\n{old}\n"""\nx = 1\n', 0) == \
        f'"""A module.\n\n{reading.line_after(0)}\n"""\nx = 1\n'


def test_a_paragraph_that_opens_with_read_but_is_no_reading_line_is_kept():
    # the earlier forms' pattern had matched any paragraph opening with "Read ``": --write
    # would have deleted this one, --check called the module stale
    from minimeta import reading

    source = ('"""A module.\n\nRead ``docs/ENGINE.md`` first: it says why\nthe tape is a '
              'list.\n\n' + reading.line_after(0) + '\n"""\nx = 1\n')
    assert reading.with_line(source, 0) == source
