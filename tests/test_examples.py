"""The sinusoid example and its summary table run end to end on a tiny budget."""
import json
import os
import subprocess
import sys

import pytest

from minimeta.data import omniglot

import source_file  # tests/: a repository file run as a module

REAL = os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0]))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sinusoid_example_trains_evaluates_and_summarises(tmp_path):
    out = str(tmp_path / "run")
    printed = run_example("sinusoid_maml.py", "--iterations", "20", "--tasks", "3",
                          "--train-steps", "2", "--multi-step-loss", "--seed", "5",
                          "--clip-norm", "5", "--inner-lr", "0.02", "--out", out)
    assert "| MAML | 5 |" in printed and "multi-step loss" in printed
    with open(os.path.join(out, "results.json")) as f:
        run = json.load(f)
    assert (run["iterations"], run["train_steps"], run["seed"], run["clip_norm"]) == (20, 2, 5, 5)
    assert set(run["results"]) == {"MAML K=5", "pretrained K=5", "MAML K=10",
                                   "pretrained K=10"}
    # re-evaluating keeps the record of how the models were trained, and prints it
    again = run_example("sinusoid_maml.py", "--evaluate-only", "--tasks", "3", "--out", out)
    assert "meta-trained with K = 10 and 2 inner step(s) (multi-step loss equal weights) for " \
        "20 iterations" in again            # had printed the defaults: 1 step, 30000
    assert "α = 0.02;" in again             # had fine-tuned at the default α, 0.01
    with open(os.path.join(out, "results.json")) as f:
        rerun = json.load(f)
    assert rerun["iterations"] == 20 and rerun["results"] == run["results"]   # the same tasks
    # other held-out tasks go beside them: 4 tasks had replaced the 3 tasks' results.json
    other = run_example("sinusoid_maml.py", "--evaluate-only", "--tasks", "4", "--out", out)
    assert f"results: {os.path.join(out, 'results_4tasks.json')}" in other
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f) == rerun
    with open(os.path.join(out, "results_4tasks.json")) as f:
        assert json.load(f)["tasks"] == 4
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "sinusoid_maml.py"),
                           "--evaluate-only", "--inner-lr", "0.5", "--out", out],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "trained with α = 0.02" in done.stderr
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "sinusoid_maml.py"),
                           "--iterations", "3", "--tasks", "2", "--out", out],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.splitlines()[-1].endswith(   # had replaced it
        "holds an earlier run (maml.npz, pretrained.npz, results.json): --evaluate-only to "
        "test it, --overwrite to replace it, or another --out")
    table = run_example("sinusoid_table.py", out).splitlines()
    assert table[2].startswith("| paper") and table[3].startswith(
        "| run (3 test tasks) | 5 | 2 steps, multi")     # a smoke run had read as a full one
    assert "clipped at norm 5, α = 0.02 |" in table[3]  # and α had not been shown


def test_sinusoid_results_of_other_tasks_go_beside_and_overwrite_clears_them(tmp_path):
    # a run tested on --eval-seed 99 keeps its record in results_eval99.json: re-testing it on
    # other tasks had replaced that file, recorded as trained 30000 iterations (a review's)
    out = str(tmp_path / "run")
    run_example("sinusoid_maml.py", "--iterations", "3", "--tasks", "2", "--eval-seed", "99",
                "--out", out)
    with open(os.path.join(out, "results_eval99.json")) as f:
        first = json.load(f)
    again = run_example("sinusoid_maml.py", "--evaluate-only", "--tasks", "3", "--eval-seed",
                        "99", "--out", out)
    assert "for 3 iterations" in again and "results_eval99_3tasks.json" in again
    with open(os.path.join(out, "results_eval99.json")) as f:
        assert json.load(f) == first
    with open(os.path.join(out, "results_eval99_3tasks.json")) as f:
        assert json.load(f)["iterations"] == 3
    fresh = run_example("sinusoid_maml.py", "--iterations", "4", "--tasks", "2", "--overwrite",
                        "--out", out)       # new models: the old ones' results go with them
    assert "--overwrite: removed results_eval99.json: results of the models replaced" in fresh
    assert sorted(n for n in os.listdir(out) if n.endswith(".json")) == ["results.json"]


def test_sinusoid_example_rejects_a_bad_option_in_one_line():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "sinusoid_maml.py"),
                           "--inner-lr", "nan", "--out", "unused"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and not os.path.exists("unused")
    assert done.stderr.splitlines()[-1].endswith(
        "error: --inner-lr must be a finite number > 0, got nan")


def test_model_based_example_runs_each_learner_on_a_tiny_budget():
    printed = run_example("model_based.py", "--learner", "cnp", "--iterations", "5",
                          "--test-tasks", "4")
    assert "cnp: 5 training iterations" in printed
    assert "cnp: K = 5: MSE" in printed and "cnp: K = 10: MSE" in printed
    from minimeta.data import omniglot

    if not os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0])):
        pytest.skip("Omniglot absent: SNAIL and MANN need it (CI has it; CNP ran)")
    printed = run_example("model_based.py", "--learner", "snail", "--iterations", "2",
                          "--test-tasks", "3")
    assert "snail: 5-way 1-shot accuracy" in printed and "5-way 5-shot" in printed
    printed = run_example("model_based.py", "--learner", "mann", "--iterations", "2",
                          "--test-tasks", "2")
    assert "mann: instance accuracy by presentation 1:" in printed and "10:" in printed


def test_the_metric_example_tests_on_what_its_shots_leave_of_a_class():
    # its test episodes had asked for 15 queries whatever --shots, so at 6 to 19 shots the
    # run failed after training (a probe's)
    from minimeta.data import omniglot

    if not os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0])):
        pytest.skip("Omniglot absent")
    printed = run_example("metric_learners.py", "--shots", "6", "--train-way", "3",
                          "--episodes", "1", "--test-episodes", "2")
    assert "5-way 6-shot test accuracy" in printed and "(2 episodes, 14 queries per class)" \
        in printed


@pytest.mark.parametrize("command, message", [
    (["examples/omniglot_results.sh", "protonet", "typo"], "omniglot_results.sh: unknown run typo"),
    (["examples/results_table.py", "--report", "{tmp}"], "is not a file"),
    (["examples/metric_learners.py", "--learner", "protonet", "--fce"],
     "--fce: full context embeddings are Matching Networks'"),
    (["examples/metric_learners.py", "--queries", "0"], "argument --queries: must be >= 1, got 0"),
    (["examples/metric_learners.py", "--shots", "6", "--test-queries", "15"],
     "--shots + --test-queries = 21: an Omniglot class has 20 drawings"),  # after training
    (["examples/model_based.py", "--iterations", "-2"],
     "argument --iterations: must be >= 1, got -2"),
    (["examples/model_based.py", "--iterations", "5", "--test-tasks", "1"],
     "argument --test-tasks: must be >= 2, got 1"),
    (["examples/metric_learners.py", "--episodes", "1e3"],
     "argument --episodes: '1e3' is not an integer"),
    (["examples/hessian_view.py", "--hidden", "0"], "argument --hidden: must be >= 1, got 0"),
    (["examples/sinusoid_table.py", "{tmp}/none"], "{tmp}/none/results.json is not a file"),
    (["examples/sinusoid_maml.py", "--evaluate-only", "--out", "{tmp}/none"],
     "--evaluate-only: {tmp}/none has no maml.npz or pretrained.npz"),
    # a second probe's: tracebacks, or a number that measures nothing
    (["examples/metric_learners.py", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["examples/model_based.py", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["examples/metric_learners.py", "--train-way", "1"],
     "argument --train-way: must be >= 2, got 1"),          # had scored accuracy 1.0
    (["examples/metric_learners.py", "--test-episodes", "1"],
     "argument --test-episodes: must be >= 2, got 1"),      # had printed ± nan
    pytest.param(["examples/metric_learners.py", "--train-way", "5000", "--episodes", "1"],
                 "metric_learners.py: EpisodeSampler: 5000-way episodes need at least 5000 "
                 "classes", marks=pytest.mark.skipif(not REAL, reason="needs Omniglot")),
    (["examples/sinusoid_maml.py", "--train-steps", "2", "--step-weights=nan,1"],
     "--multi-step-loss weights must be finite and >= 0, got [nan, 1.0]"),
    (["examples/sinusoid_maml.py", "--iterations", "2", "--tasks", "2", "--eval-seed", "-10"],
     "--eval-seed must be at least 0, got -10"),    # had trained, then "expected non-negative"
    (["benchmarks/budget.py", "--plot-only", "--out", "{tmp}/none"],
     "--plot-only: {tmp}/none holds no budget.jsonl"),       # had made it, then a traceback
    (["benchmarks/maml_memory.py", "--ways", "0"], "argument --ways: must be >= 1, got 0"),
    (["examples/model_based.py", "--learner", "mann", "--ways", "5000", "--iterations", "1"],
     "--ways is snail's; mann here runs the paper's setting"),     # had been ignored
    (["examples/model_based.py", "--learner", "cnp", "--ways", "5", "--iterations", "1"],
     "--ways is snail's; cnp here runs the paper's setting"),      # 5, the default: ignored
    (["benchmarks/gpu_check.py", "--phases", "bogus"], "argument --phases: invalid choice"),
    (["benchmarks/gpu_check.py", "--rounds", "-1"], "--rounds must be at least 1, got -1"),
])
def test_the_scripts_refuse_bad_arguments_before_doing_anything(command, message, tmp_path):
    # they had made outputs/ first, trained a run and then failed, or raised tracebacks
    command = [c.replace("{tmp}", str(tmp_path)) for c in command]
    runner = ["bash"] if command[0].endswith(".sh") else [sys.executable]
    done = subprocess.run(runner + [os.path.join(ROOT, command[0]), *command[1:]],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message.replace("{tmp}", str(tmp_path)) in done.stderr.splitlines()[-1]
    assert sorted(os.listdir(tmp_path)) == []            # nothing made, here or in outputs/


@pytest.mark.skipif(not REAL, reason="needs Omniglot")
def test_the_metric_example_checks_its_test_episodes_before_training(tmp_path):
    # more test ways than test classes had been found after the training episodes
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "metric_learners.py"),
                           "--test-way", "5000", "--train-way", "2", "--episodes", "1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "protonet train" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "metric_learners.py: EpisodeSampler: 5000-way episodes need at least 5000 classes, "
        "got 1692: ask for at most 1692 ways")


def _results_table():
    return source_file.load("examples/results_table.py")


@pytest.mark.parametrize("settings", [
    dict(learner="protonet", ways=20, lr_halve_every=0, validate_every=0, outer_lr=0.003,
         split="lake", clip_norm=1.0, iterations=2),
    dict(learner="maml", dataset="sinusoid", inner_lr=0.02, inner_steps=2, test_steps=4,
         multi_step_loss=True, minutes=3.0, iterations=50),
    dict(learner="matching", fce=True, ways=5, shots=5, queries=3, val_size=50, seed=4,
         iterations=10),
    dict(learner="relation", ways=5, shots=5, iterations=7, meta_batch=2),
])
def test_the_results_table_commands_reproduce_the_run_s_settings(settings, tmp_path):
    # they had left out --outer-lr, --split, --clip-norm, the inner loop's settings, --minutes,
    # and any setting of 0 (so --lr-halve-every 0 fell back to 2000): found by probing
    from minimeta import cli
    from minimeta.experiments.config import MAY_CHANGE_ON_RESUME, RunConfig

    run = RunConfig(out=str(tmp_path / "run"), **settings)
    command = _results_table().train_command(run.settings())
    assert command.startswith("minimeta train --learner ")
    args = cli.build_parser().parse_args(command.split()[1:])
    again = RunConfig.from_args(args)
    kept = MAY_CHANGE_ON_RESUME - {"iterations", "out", "minutes", "validate_every"}
    differ = {k for k in run.settings() if k not in kept and
              run.settings()[k] != again.settings().get(k)}
    assert not differ, (command, differ)


def test_the_results_table_leaves_out_rows_without_an_accuracy(tmp_path, capsys):
    report = tmp_path / "mixed.jsonl"
    report.write_text(json.dumps({"learner": "maml", "MSE": 0.5}) + "\n")
    with pytest.raises(SystemExit):            # no Omniglot rows: one line, not a KeyError
        _results_table().main(["--report", str(report)])
    err = capsys.readouterr()
    assert "1 row(s) without an accuracy" in err.out and "no Omniglot rows" in err.err


def fake_minimeta(tmp_path):
    """A ``minimeta`` command that only logs its arguments, first on PATH."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "minimeta"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}", "OUT": "out"}


def test_the_omniglot_script_trains_resumes_and_tests_each_row(tmp_path):
    env = fake_minimeta(tmp_path)
    os.makedirs(tmp_path / "out" / "protonet")
    (tmp_path / "out" / "protonet" / "checkpoint.npz").touch()     # a run begun before
    subprocess.run(["bash", os.path.join(ROOT, "examples", "omniglot_results.sh"), "protonet",
                    "protonet1", "maml5"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=60)
    test = "eval --checkpoint out/{} --episodes 600 --ways {} --shots {} --queries {} " \
        "--report out/omniglot.jsonl"
    assert (tmp_path / "calls").read_text().splitlines() == [
        "train --out out/protonet --resume --learner protonet --shots 5 --iterations 1200 "
        "--lr-halve-every 500", *(test.format("protonet/checkpoint.npz", *row) for row in (
            (5, 1, 15), (5, 5, 15), (20, 1, 5), (20, 5, 5))),
        "train --out out/protonet1 --learner protonet --shots 1 --iterations 1200 "
        "--lr-halve-every 500", *(test.format("protonet1/checkpoint.npz", *row) for row in (
            (5, 1, 15), (20, 1, 5))),
        "train --out out/maml5 --learner maml --ways 5 --shots 5 --meta-batch 8 "
        "--iterations 300", test.format("maml5/checkpoint.npz", 5, 5, 15)]


def test_the_omniglot_script_refuses_a_run_named_in_part(tmp_path):
    done = subprocess.run(["bash", os.path.join(ROOT, "examples", "omniglot_results.sh"),
                           "proto"], cwd=tmp_path, env=fake_minimeta(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown run proto" in done.stderr
    assert not (tmp_path / "calls").exists()
