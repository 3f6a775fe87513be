"""The sinusoid example and its summary table run end to end on a tiny budget."""
import json
import os
import subprocess
import sys

import pytest

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
                          "--clip-norm", "5", "--out", out)
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
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["iterations"] == 20
    table = run_example("sinusoid_table.py", out).splitlines()
    assert table[2].startswith("| paper") and table[3].startswith("| run | 5 | 2 steps, multi")
    assert "clipped at norm 5" in table[3]


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


@pytest.mark.parametrize("command, message", [
    (["examples/omniglot_results.sh", "protonet", "typo"], "omniglot_results.sh: unknown run typo"),
    (["examples/results_table.py", "--report", "{tmp}"], "is not a file"),
    (["examples/metric_learners.py", "--learner", "protonet", "--fce"],
     "--fce: full context embeddings are Matching Networks'"),
    (["examples/metric_learners.py", "--queries", "0"], "argument --queries: must be >= 1, got 0"),
    (["examples/model_based.py", "--iterations", "-2"],
     "argument --iterations: must be >= 1, got -2"),
    (["examples/model_based.py", "--iterations", "5", "--test-tasks", "1"],
     "argument --test-tasks: must be >= 2, got 1"),
    (["examples/metric_learners.py", "--episodes", "1e3"],
     "argument --episodes: '1e3' is not an integer"),
    (["examples/hessian_view.py", "--hidden", "0"], "argument --hidden: must be >= 1, got 0"),
    (["examples/sinusoid_maml.py", "--evaluate-only", "--out", "{tmp}/none"],
     "--evaluate-only: {tmp}/none has no maml.npz or pretrained.npz"),
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


def test_the_budget_script_shows_a_run_s_progress_as_it_comes(tmp_path, monkeypatch):
    # it had captured each run's output to the end: 30 minutes of silence, then a log
    import importlib.util
    spec = importlib.util.spec_from_file_location("budget", os.path.join(ROOT, "benchmarks",
                                                                         "budget.py"))
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    seen = tmp_path / "seen"
    child = ("import os, sys, time\nprint('iteration 1', flush=True)\n"
             f"for _ in range(200):\n    if os.path.exists({str(seen)!r}):\n        break\n"
             "    time.sleep(0.05)\nelse:\n    sys.exit(3)\nprint('done', file=sys.stderr)")

    class Stderr:
        def write(self, text):
            said.append(text)
            seen.touch()              # the child goes on only once its first line is shown

    said = []
    monkeypatch.setattr(sys, "stderr", Stderr())
    with open(tmp_path / "log", "w") as log:
        assert budget.run([sys.executable, "-c", child], log) > 0
    assert said == ["    iteration 1\n", "    done\n"]
    assert (tmp_path / "log").read_text() == "iteration 1\ndone\n"
    with open(tmp_path / "log", "w") as log, pytest.raises(SystemExit, match="exit 3"):
        budget.run([sys.executable, "-c", "import sys; print('why'); sys.exit(3)"], log)
