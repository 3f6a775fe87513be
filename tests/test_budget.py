"""``minimeta train --minutes M``: a training budget in minutes of training time.

The clock counts sampling through the optimizer step (not validation, not checkpoints); the
run stops at the first iteration that finds the budget spent, writes its checkpoint and says
the iteration reached. A resumed run's budget counts the time already spent.
"""
import json
import time

import pytest

from minimeta import cli, io
from test_runs import SINE, checkpoint


def _metrics(folder):
    with open(f"{folder}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_budget_that_is_not_a_positive_finite_number_is_refused(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(SINE + ["--iterations", "5", "--out", str(tmp_path / "run"),
                         f"--minutes={value}"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert f"--minutes must be a finite number > 0, got {float(value)!r}" in err
    assert not (tmp_path / "run").exists()


def test_the_budget_stops_the_run_and_its_checkpoint_records_the_iteration(tmp_path, capsys):
    out = str(tmp_path / "run")
    budget = 0.25 / 60  # a quarter of a second of training time
    assert cli.main(SINE + ["--iterations", "20000", "--out", out,
                            f"--minutes={budget}"]) == 0
    state, rows = checkpoint(out), _metrics(out)
    reached = int(state["iteration"])
    assert 0 < reached < 20000 and len(rows) == reached
    said = capsys.readouterr().out
    assert f"budget of {budget:g} minutes reached at iteration {reached}" in said
    # the clock (rounded to 1 ms in the log): the budget spent when it stopped, not before (a
    # machine so loaded that one iteration outlasts the budget stops after that one)
    assert rows[-1]["train_seconds"] >= 0.2495
    assert len(rows) == 1 or rows[-2]["train_seconds"] <= 0.2505
    assert float(state["train_seconds"]) == pytest.approx(rows[-1]["train_seconds"], abs=1e-3)
    assert all(r["train_seconds"] <= r["seconds"] for r in rows)  # saving is not counted


def test_a_resumed_run_counts_the_time_already_spent(tmp_path):
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "20000", "--out", out,
                            f"--minutes={0.1 / 60}"]) == 0
    first = int(checkpoint(out)["iteration"])
    spent = _metrics(out)[-1]["train_seconds"]
    assert cli.main(SINE + ["--iterations", "20000", "--out", out, "--resume",
                            f"--minutes={0.2 / 60}"]) == 0
    rows = _metrics(out)
    assert int(checkpoint(out)["iteration"]) == len(rows) > first
    assert rows[first]["train_seconds"] > spent  # the clock went on from where it was
    assert rows[-1]["train_seconds"] >= 0.1995 and rows[-2]["train_seconds"] <= 0.2005


def test_checkpoint_writing_is_not_on_the_budgets_clock(tmp_path, monkeypatch):
    out, save = str(tmp_path / "run"), io.save

    def slow_save(*args, **kwargs):  # every checkpoint now costs 50 ms of wall time
        time.sleep(0.05)
        return save(*args, **kwargs)

    monkeypatch.setattr(io, "save", slow_save)
    assert cli.main(SINE + ["--iterations", "20000", "--out", out, "--checkpoint-every", "0",
                            f"--minutes={0.1 / 60}"]) == 0
    rows = _metrics(out)
    # saved after every iteration: were saving counted, 0.1 s would buy two iterations
    assert len(rows) > 5
    assert rows[-1]["seconds"] - rows[-1]["train_seconds"] >= 0.05 * (len(rows) - 1)


def test_a_resumed_run_s_wall_clock_goes_on_from_its_checkpoint_s(tmp_path):
    """``seconds`` (metrics and checkpoint; ``eval`` prints it as the run's time) counts on from
    the checkpoint's, as ``train_seconds`` does: set to 1000 s there, every line of the resumed
    leg reads more (restarted at 0, a resumed run had seemed to take its last leg's time)."""
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "2", "--out", out]) == 0
    state = checkpoint(out)
    io.save(f"{out}/checkpoint.npz", {**state, "seconds": 1000.0})
    assert cli.main(SINE + ["--iterations", "4", "--out", out, "--resume"]) == 0
    rows = _metrics(out)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4] and rows[1]["seconds"] < 1000
    assert all(r["seconds"] > 1000 for r in rows[2:])
    assert 1000 < float(checkpoint(out)["seconds"]) < 1000 + 60
