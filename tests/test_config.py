"""The run configuration, the learner registry and the one training loop: every bad value is a
one-line error naming its option, the papers' defaults are filled in one place, checkpoints
of earlier releases still load, and interrupted or resumed runs see the same tasks."""
import dataclasses
import json
import os

import numpy as np
import pytest

from minimeta import cli, io
from minimeta.experiments import fewshot, training
from minimeta.experiments.config import RunConfig
from minimeta.experiments.registry import LEARNERS, OPTIONAL, WHY_NOT, build
from minimeta.learners import (ANIL, CNP, MAML, MatchingNet, MetaSGD, ProtoNet, RelationNet,
                               MANNLearner, Reptile, SnailLearner, StackedTasks)

SINUSOID = ["--learner", "maml", "--dataset", "sinusoid"]
REJECTED = [  # (options after `minimeta train`, the one-line error)
    (SINUSOID + ["--inner-lr", "nan"], "--inner-lr must be a finite number > 0, got nan"),
    (SINUSOID + ["--inner-lr", "inf"], "--inner-lr must be a finite number > 0, got inf"),
    (SINUSOID + ["--inner-lr", "-0.1"], "--inner-lr must be a finite number > 0, got -0.1"),
    (SINUSOID + ["--outer-lr", "0"], "--outer-lr must be a finite number > 0, got 0.0"),
    (SINUSOID + ["--clip-norm", "nan"], "--clip-norm must be a finite number > 0, got nan"),
    (SINUSOID + ["--clip-norm", "inf"], "--clip-norm must be a finite number > 0, got inf"),
    (SINUSOID + ["--checkpoint-every", "nan"],
     "--checkpoint-every must be a finite number >= 0, got nan"),
    (SINUSOID + ["--checkpoint-every", "-1"],
     "--checkpoint-every must be a finite number >= 0, got -1.0"),
    (SINUSOID + ["--lr-halve-every", "-5"], "--lr-halve-every must be at least 0, got -5"),
    (SINUSOID + ["--test-steps", "-1"], "--test-steps must be at least 0, got -1"),
    (SINUSOID + ["--inner-steps", "-1"], "--inner-steps must be at least 0, got -1"),
    (SINUSOID + ["--meta-batch", "0"], "--meta-batch must be at least 1, got 0"),
    (SINUSOID + ["--iterations", "0"], "--iterations must be at least 1, got 0"),
    (SINUSOID + ["--shots", "0"], "--shots must be at least 1, got 0"),
    (SINUSOID + ["--queries", "0"], "--queries must be at least 1 for maml, got 0"),
    (SINUSOID + ["--seed", "-1"], "--seed must be at least 0, got -1"),
    (["--learner", "maml", "--ways", "0"], "--ways must be at least 1, got 0"),
    (["--learner", "protonet", "--val-size", "-1"], "--val-size must be at least 0, got -1"),
    (["--learner", "protonet", "--val-episodes", "1"], "--val-episodes must be at least 2, got 1"),
    (["--learner", "maml", "--validate-every", "-1"],
     "--validate-every must be at least 0, got -1"),
    (["--learner", "maml", "--fce"], "--fce does not apply to maml: " + WHY_NOT["fce"]),
    (["--learner", "relation", "--fce"], "--fce does not apply to relation: " + WHY_NOT["fce"]),
    (["--learner", "reptile", "--clip-norm", "1"],
     "--clip-norm does not apply to reptile: " + WHY_NOT["clip_norm"]),
    (["--learner", "reptile", "--lr-halve-every", "100"],
     "--lr-halve-every does not apply to reptile: " + WHY_NOT["lr_halve_every"]),
    (["--learner", "reptile", "--multi-step-loss"],
     "--multi-step-loss does not apply to reptile: " + WHY_NOT["multi_step_loss"]),
    (["--learner", "protonet", "--multi-step-loss"],
     "--multi-step-loss does not apply to protonet: " + WHY_NOT["multi_step_loss"]),
    (["--learner", "matching", "--inner-lr", "0.1"],
     "--inner-lr does not apply to matching: a metric learner has no inner loop"),
    (["--learner", "protonet", "--test-steps", "3"],
     "--test-steps does not apply to protonet: a metric learner has no inner loop"),
    (["--learner", "snail", "--inner-lr", "0.1"],   # had said "a metric learner"
     "--inner-lr does not apply to snail: a model-based learner has no inner loop"),
    (["--learner", "cnp", "--inner-steps", "2"],
     "--inner-steps does not apply to cnp: a model-based learner has no inner loop"),
    # Omniglot's options on a sinusoid run: they had trained, and been saved in its settings
    (SINUSOID + ["--ways", "3"], "--ways does not apply to --dataset sinusoid: regression has "
                                 "no classes"),
    (SINUSOID + ["--split", "lake"], "--split does not apply to --dataset sinusoid: a split of "
                                     "Omniglot's characters"),
    (SINUSOID + ["--val-size", "500"], "--val-size does not apply to --dataset sinusoid: the "
                                       "characters held out to validate an Omniglot run"),
    (SINUSOID + ["--validate-every", "7"], "--validate-every does not apply to --dataset "
     "sinusoid: an Omniglot run is validated; a sinusoid run is tested by minimeta eval"),
    (SINUSOID + ["--val-episodes", "50"], "--val-episodes does not apply to --dataset "
     "sinusoid: an Omniglot run is validated; a sinusoid run is tested by minimeta eval"),
    (["--learner", "protonet", "--dataset", "sinusoid"],
     "protonet classifies images: use --dataset omniglot"),
    (["--learner", "snail", "--dataset", "sinusoid"],     # had said "regresses functions"
     "snail classifies images: use --dataset omniglot"),
    (["--learner", "mann", "--dataset", "sinusoid"], "mann classifies images: use --dataset "
                                                      "omniglot"),
    (["--learner", "snail", "--ways", "1"],       # had trained: loss 0, accuracy 1
     "--ways must be at least 2 to classify, got 1"),
    (["--learner", "protonet", "--ways", "1"], "--ways must be at least 2 to classify, got 1"),
]


@pytest.mark.parametrize("options,message", REJECTED, ids=[m[:40] for _, m in REJECTED])
def test_each_rejected_value_is_a_one_line_error_naming_the_option(options, message, tmp_path,
                                                                   capsys, nothing_may_run):
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *options, "--out", out])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"minimeta train: {message}\n"   # one line, nothing else
    assert not os.path.exists(out)                                     # checked before training
    flag = message.split()[0]
    assert flag.startswith("--") or "classifies images" in message


@pytest.mark.parametrize("options,message", [
    (["--learner", "reptile", "--inner-steps", "0"],      # had trained: θ never moved
     "Reptile: inner_steps must be at least 1, got 0: with none, φ = θ and the outer step "
     "θ + ε·(φ − θ) never moves θ"),
    (SINUSOID + ["--inner-steps", "0", "--multi-step-loss"],   # had averaged over no steps
     "--multi-step-loss needs --inner-steps of at least 1 (it weighs the query losses after "
     "steps 1..K), got 0"),    # (the learner's own check had named no option)
])
def test_settings_under_which_nothing_is_learnt_are_refused(options, message, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--dataset", "sinusoid", *options, "--out", str(out)])
    said = capsys.readouterr()
    assert exit_info.value.code == 2 and said.out == "" and not out.exists()
    assert said.err == f"minimeta train: {message}\n"


def test_maml_without_inner_steps_is_plain_training_on_the_query_loss():
    """``--inner-steps 0`` is allowed (a baseline): its meta-gradient is ∇θ of the query loss
    at θ, and its multi-step loss is refused (above)."""
    from minimeta import functional as F
    from minimeta.data import SinusoidTasks
    from minimeta.engine import grad
    from minimeta.nn import mlp

    model = mlp((1, 8, 1), dtype=np.float64)
    tasks = SinusoidTasks(seed=3).sample(2, 4, 4)
    learner = MAML(model, inner_lr=0.5, inner_steps=0, loss="mse")
    params = list(learner.meta_parameters())
    mean = (F.mse_loss(model(tasks[0][2], learner.params), tasks[0][3]) +
            F.mse_loss(model(tasks[1][2], learner.params), tasks[1][3])) * 0.5
    for got, want in zip(learner.meta_gradient(tasks), grad(mean, params)):
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=1e-14)


def test_the_same_checks_from_python():
    with pytest.raises(ValueError, match=r"^--inner-lr must be a finite number > 0, got nan$"):
        RunConfig(learner="maml", inner_lr=float("nan"))
    with pytest.raises(ValueError, match=r"^--ways must be an integer, got 2\.5$"):
        RunConfig(learner="maml", ways=2.5)
    with pytest.raises(ValueError, match=r"^--learner must be one of maml, fomaml, "):
        RunConfig(learner="nope")
    with pytest.raises(ValueError, match=r"^--learner is required$"):
        RunConfig()
    with pytest.raises(ValueError, match=r"^--dataset must be one of omniglot, sinusoid"):
        RunConfig(learner="maml", dataset="mnist")
    with pytest.raises(ValueError, match=r"^stream_seed: one stream of tasks is the sinusoid"):
        RunConfig(learner="maml", stream_seed=1)
    config = RunConfig(learner="maml", dataset="sinusoid")
    with pytest.raises(ValueError, match=r"^--clip-norm must be a finite number > 0, got 0$"):
        dataclasses.replace(config, clip_norm=0)       # replace re-checks


def test_papers_defaults_are_filled_in_one_place():
    def picked(config, names="inner_lr inner_steps test_steps meta_batch queries outer_lr"):
        return tuple(getattr(config, n) for n in names.split())

    assert picked(RunConfig(learner="maml")) == (0.4, 1, 3, 32, 15, 1e-3)
    assert picked(RunConfig(learner="anil", ways=20)) == (0.1, 5, 5, 16, 15, 1e-3)
    assert picked(RunConfig(learner="reptile")) == (1e-3, 5, 50, 5, 15, 1.0)
    assert picked(RunConfig(learner="metasgd", dataset="sinusoid")) == \
        (0.01, 1, 10, 25, 10, 1e-3)
    proto = RunConfig(learner="protonet")
    assert (proto.ways, proto.queries, proto.lr_halve_every, proto.val_ways) == (60, 5, 2000, 5)
    assert picked(proto) == (None, None, None, 1, 5, 1e-3)    # no inner loop: unset
    assert RunConfig(learner="relation", ways=20).queries == 10
    assert RunConfig(learner="relation").queries == 19
    assert RunConfig(learner="matching", ways=20).queries == 5
    assert RunConfig(learner="maml", ways=20).val_ways == 20   # the head's way count
    assert RunConfig(learner="reptile").lr_halve_every is None  # no outer optimizer
    assert RunConfig(learner="maml", split="lake").val_size == 0
    assert RunConfig(learner="cnp", dataset="sinusoid").shots == 10   # context sizes 1..10
    assert RunConfig(learner="maml", dataset="sinusoid").shots == 10  # K = 10, had been 1
    # Sung et al.'s queries differ by shots (5-way 5-shot had asked for 5 + 19 drawings)
    assert [RunConfig(learner="relation", ways=w, shots=k).queries
            for w, k in ((5, 1), (5, 5), (20, 1), (20, 5))] == [19, 15, 10, 5]
    assert RunConfig(learner="relation", ways=5, shots=5, queries=3).queries == 3
    assert RunConfig(learner="relation", ways=10, shots=5).queries == 15   # as 5-way's table
    given = RunConfig(learner="maml", ways=20, inner_lr=0.05, queries=3)
    assert (given.inner_lr, given.queries, given.inner_steps) == (0.05, 3, 5)


def test_command_line_and_python_build_the_same_config():
    args = cli.build_parser().parse_args(["train", "--learner", "matching", "--fce", "--ways",
                                          "20", "--clip-norm", "2", "--out", "x"])
    assert RunConfig.from_args(args) == RunConfig(learner="matching", fce=True, ways=20,
                                                  clip_norm=2.0, out="x")
    defaults = cli.build_parser().parse_args(["train", "--learner", "maml"])
    assert RunConfig.from_args(defaults) == RunConfig(learner="maml")


def test_settings_round_trip_and_older_dicts_load():
    config = RunConfig(learner="maml", dataset="sinusoid", inner_steps=2,
                       multi_step_loss=(0.7, 0.3), clip_norm=5.0, out="o")
    assert RunConfig.from_settings(config.settings()) == config
    # as checkpoints before RunConfig stored them: derived values, options the learner ignores
    # (Reptile's lr_halve_every=0, ProtoNet's test_steps), keys since renamed or added
    old = {"learner": "reptile", "dataset": "sinusoid", "inner_lr": 0.01, "inner_steps": 1,
           "test_steps": 10, "meta_batch": 25, "outer_lr": 1.0, "queries": 10,
           "lr_halve_every": 0, "val_ways": 5, "ways": 5, "shots": 1, "split": "vinyals",
           "iterations": 10, "seed": 0, "out": "o", "resume": True, "fce": False,
           "checkpoint_every": 300.0, "val_size": 100, "an_old_key": 1}
    loaded = RunConfig.from_settings(old, resume=False)
    assert (loaded.lr_halve_every, loaded.resume, loaded.device) == (None, False, "cpu")
    proto = fewshot.settings_with_defaults({"learner": "protonet", "ways": 5, "test_steps": 1,
                                            "inner_lr": None, "device": "cpu"})
    assert (proto.test_steps, proto.queries, proto.ways) == (None, 5, 5)
    model, learner = fewshot.build({"learner": "maml", "dataset": "sinusoid"})  # a dict too
    assert isinstance(learner, StackedTasks)


def test_a_checkpoint_written_before_run_config_still_evaluates(tmp_path, capsys):
    new = str(tmp_path / "new")
    assert cli.main(["train", "--learner", "reptile", "--dataset", "sinusoid", "--iterations",
                     "2", "--out", new]) == 0
    state = io.load(os.path.join(new, "checkpoint.npz"))
    old = dict(state["settings"], lr_halve_every=0, an_old_key="x")  # the earlier layout
    for key in ("detect_anomaly", "multi_step_loss", "device"):      # missing: defaults
        old.pop(key)
    io.save(str(tmp_path / "old.npz"), {**state, "settings": old})
    capsys.readouterr()
    lines = []
    for path in (os.path.join(new, "checkpoint.npz"), str(tmp_path / "old.npz")):
        assert cli.main(["eval", "--checkpoint", path, "--episodes", "5"]) == 0
        lines.append(capsys.readouterr().out)
    assert lines[0] == lines[1] and lines[0].startswith("MSE ")


def test_registry_names_families_builders_and_options():
    assert dataclasses.fields(RunConfig)[0].metadata["choices"] is LEARNERS   # the live table
    expected = {"maml": MAML, "fomaml": MAML, "metasgd": MetaSGD, "anil": ANIL,
                "reptile": Reptile, "protonet": ProtoNet, "matching": MatchingNet,
                "relation": RelationNet, "cnp": CNP, "snail": SnailLearner,
                "mann": MANNLearner}
    assert set(expected) == set(LEARNERS)
    assert set(WHY_NOT) == OPTIONAL
    for name, spec in LEARNERS.items():
        assert spec.family in ("optimization", "metric", "model") and spec.options <= OPTIONAL
        assert spec.outer_optimizer == (name != "reptile")
        dataset = spec.datasets[0]
        model, learner = build(RunConfig(learner=name, fce=name == "matching", dataset=dataset))
        assert type(learner) is expected[name], name
        assert model.state_dict() and learner.meta_parameters()
        if spec.family in ("metric", "model"):
            assert model is learner.net
        else:
            assert model.parameters()[-1].shape[-1] == 5          # a 5-way head
            assert getattr(learner, "first_order", False) == (name == "fomaml")
            _, on_sines = build(RunConfig(learner=name, dataset="sinusoid"))
            assert isinstance(on_sines, StackedTasks) == (name != "reptile")
    assert build(RunConfig(learner="matching", fce=True))[1].fce is not None


def losses(folder):
    return [json.loads(line)["loss"] for line in open(os.path.join(folder, "metrics.jsonl"))]


@pytest.mark.parametrize("stream", [False, True], ids=["seeded-per-iteration", "one-stream"])
def test_an_interrupted_then_resumed_run_sees_the_same_tasks(stream, tmp_path):
    config = RunConfig(learner="maml", dataset="sinusoid", iterations=6, shots=5, queries=5,
                       meta_batch=3, out=str(tmp_path / "straight"),
                       stream_seed=1 if stream else None)
    straight = training.train(config)
    assert straight.curve == losses(config.out) and len(straight.curve) == 6
    config = dataclasses.replace(config, out=str(tmp_path / "cut"))
    model, learner = build(config)
    step, calls = learner.outer_step, []

    def ctrl_c_at_the_third(tasks):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(tasks)

    learner.outer_step = ctrl_c_at_the_third
    with pytest.raises(KeyboardInterrupt):
        training.train(config, model, learner, log=lambda *a: None)
    assert io.load(os.path.join(config.out, "checkpoint.npz"))["iteration"] == 2
    training.train(dataclasses.replace(config, resume=True), log=lambda *a: None)
    assert losses(config.out) == straight.curve
    assert io.load(os.path.join(config.out, "checkpoint.npz"))["iteration"] == 6


def test_a_resumed_stream_skips_the_tasks_it_has_seen_without_drawing_them(monkeypatch):
    """A resumed one-stream run had drawn every past iteration's tasks again to reach its own
    (~0.3 ms an iteration); ``SinusoidTasks.skip`` moves the generator there, to the same bits
    (PCG64's ``advance``; another bit generator, such as MT19937, replays the draws)."""
    from minimeta.data import SinusoidTasks

    def same(a, b):
        return all(np.array_equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))

    for seed, times, n, shots, queries in ((1, 300, 4, 5, 3), (2, 17, 1, 1, 0),
                                           (np.random.Generator(np.random.MT19937(3)), 5, 3, 2,
                                            None)):
        replayed, skipped = SinusoidTasks(seed=seed), SinusoidTasks(seed=seed)
        if isinstance(seed, np.random.Generator):   # the same generator state, twice over
            skipped = SinusoidTasks(seed=np.random.Generator(np.random.MT19937(3)))
        for _ in range(times):
            replayed.sample(n, shots, queries)
        skipped.skip(times, n, shots, queries)
        assert same(replayed.sample(n, shots, queries), skipped.sample(n, shots, queries))
    config = RunConfig(learner="maml", dataset="sinusoid", shots=5, queries=3, meta_batch=4,
                       stream_seed=1)
    reference, sample, drawn = SinusoidTasks(seed=1), SinusoidTasks.sample, []
    for _ in range(300):
        reference.sample(4, 5, 3)
    monkeypatch.setattr(SinusoidTasks, "sample",
                        lambda self, *args: drawn.append(args) or sample(self, *args))
    assert same(training.batches(config, 300)(300), sample(reference, 4, 5, 3))
    assert drawn == [(4, 5, 3)]          # only iteration 300's tasks were drawn


def test_a_stream_skip_cannot_count_is_replayed():
    """``skip`` counts ``sample``'s own draws on a PCG64 without a half-used word: a subclass
    adding noise (a normal draw takes a varying number of 64-bit words) had been advanced by
    that count, to other tasks; a generator holding a 32-bit half is replayed (advance drops it)."""
    from minimeta.data import SinusoidTasks

    class Noisy(SinusoidTasks):
        def points(self, amp, phase, k):
            x, y = super().points(amp, phase, k)
            return x, y + self.rng.normal(0, 0.1, y.shape).astype(y.dtype)

    replayed, skipped = Noisy(seed=3), Noisy(seed=3)
    for _ in range(20):
        replayed.sample(2, 5)
    skipped.skip(20, 2, 5)
    assert all(np.array_equal(a, b) for p, q in zip(replayed.sample(2, 5), skipped.sample(2, 5))
               for a, b in zip(p, q))
    # a PCG64 holding half a 64-bit word (a 32-bit draw's): advance would drop it
    replayed, skipped = SinusoidTasks(seed=4), SinusoidTasks(seed=4)
    for tasks in (replayed, skipped):
        tasks.rng.integers(0, 10, dtype=np.int32)
    for _ in range(5):
        replayed.sample(2, 3)
    skipped.skip(5, 2, 3)
    assert replayed.rng.integers(0, 2 ** 31 - 1, 4, dtype=np.int32).tolist() == \
        skipped.rng.integers(0, 2 ** 31 - 1, 4, dtype=np.int32).tolist()


def test_a_run_without_a_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = training.train(RunConfig(learner="fomaml", dataset="sinusoid", iterations=2, out=None,
                                   stream_seed=0))
    assert run.checkpoint is None and len(run.curve) == 2 and os.listdir(tmp_path) == []
    assert np.isfinite(run.curve).all()


@pytest.mark.parametrize("option, value", [("inner_steps", 10 ** 5), ("shots", 10 ** 5),
                                           ("meta_batch", 10 ** 5), ("iterations", 10 ** 21)])
def test_counts_have_an_upper_bound_named_in_one_line(option, value):
    from minimeta.experiments.config import RunConfig

    with pytest.raises(ValueError, match=rf"^--{option.replace('_', '-')} must be at most \d+, "
                                         rf"got {value}$"):
        RunConfig(learner="maml", dataset="sinusoid", **{option: value})


@pytest.mark.parametrize("option", ["inner_steps", "shots", "meta_batch", "iterations",
                                    "threads"])
def test_a_count_s_upper_bound_is_its_last_value(option):
    # (a mutation audit: the bound + 1 had passed)
    from minimeta.experiments.config import RunConfig
    from minimeta.experiments.options import MOST, MOST_PER_TASK

    most = {"iterations": MOST, "threads": 1024}.get(option, MOST_PER_TASK)
    RunConfig(learner="maml", dataset="sinusoid", **{option: most})
    with pytest.raises(ValueError, match=f"must be at most {most}, got {most + 1}$"):
        RunConfig(learner="maml", dataset="sinusoid", **{option: most + 1})


def test_a_resumed_run_may_end_where_its_checkpoint_is_but_not_before():
    from minimeta.experiments.config import RunConfig

    saved = RunConfig(learner="protonet", out="run", iterations=20).settings()
    RunConfig(learner="protonet", out="run", iterations=10).check_resume(saved, 10)
    with pytest.raises(ValueError, match="--iterations 9 is below the checkpoint's iteration 10"):
        RunConfig(learner="protonet", out="run", iterations=9).check_resume(saved, 10)


def test_a_sinusoid_run_shows_and_stores_no_omniglot_setting(tmp_path, capsys):
    """A sinusoid run had printed and stored ``ways=5, split=vinyals, validate_every=500``,
    settings of Omniglot runs that meant nothing to it; one given from Python other than its
    default is refused by name, as the command line refuses one given at all."""
    config = RunConfig(learner="maml", dataset="sinusoid", out="o")
    stray = ("ways", "split", "val_size", "validate_every", "val_episodes", "val_ways")
    assert [name for name in stray if getattr(config, name) is not None] == []
    assert not any(f"{name}=" in config.describe() for name in stray)
    assert not set(stray) & set(config.settings())
    # a checkpoint written before holds them: it loads to the same config, and may resume
    older = dict(config.settings(), ways=5, split="vinyals", val_size=100, validate_every=500,
                 val_episodes=100, val_ways=5)
    assert RunConfig.from_settings(older) == config
    config.check_resume(older, 0)
    assert dataclasses.replace(config, test_steps=3).test_steps == 3   # as eval --test-steps
    for name, value in (("ways", 3), ("split", "lake"), ("validate_every", 7)):
        with pytest.raises(ValueError, match=rf"^--{name.replace('_', '-')} does not apply to "
                                             r"--dataset sinusoid: .*, got "):
            RunConfig(learner="maml", dataset="sinusoid", **{name: value})
    assert RunConfig(learner="cnp", dataset="sinusoid", validate_every=0).validate_every is None
    out = str(tmp_path / "run")
    assert cli.main(["train", "--learner", "cnp", "--dataset", "sinusoid", "--iterations", "2",
                     "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "learner=cnp" in printed and not any(f"{name}=" in printed for name in stray)
    assert not set(stray) & set(io.load(os.path.join(out, "checkpoint.npz"))["settings"])
    # eval --test-steps on a learner without an inner loop: one line, exit 2, nothing written
    report = str(tmp_path / "report.jsonl")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--checkpoint", os.path.join(out, "checkpoint.npz"), "--test-steps",
                  "2", "--report", report])
    assert exit_info.value.code == 2 and not os.path.exists(report)
    assert capsys.readouterr().err.strip().splitlines() == [
        "minimeta eval: --test-steps applies to the learners with an inner loop (the MAML "
        "family, Reptile), not cnp"]
