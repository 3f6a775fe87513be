"""The command line end to end on tiny budgets: train, resume, eval, bad arguments."""
import json
import os

import pytest

from minimeta import cli, io
from minimeta.data import omniglot


def test_train_resume_eval_round_trip_on_sinusoids(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "5",
            "--queries", "5", "--meta-batch", "4", "--out", out]
    assert cli.main(args + ["--iterations", "3"]) == 0
    assert io.load(os.path.join(out, "checkpoint.npz"))["iteration"] == 3
    assert cli.main(args + ["--iterations", "5", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [x["iteration"] for x in lines] == [1, 2, 3, 4, 5]
    assert cli.main(["eval", "--checkpoint", os.path.join(out, "checkpoint.npz"),
                     "--episodes", "10"]) == 0
    assert "MSE" in capsys.readouterr().out


def test_bad_arguments_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--learner", "maml", "--ways", "0"])
    assert exit_info.value.code == 2 and "--ways must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--learner", "nope"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--checkpoint", "/nonexistent.npz"])
    assert exit_info.value.code == 2


REAL = os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0]))


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_short_omniglot_train_and_eval(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    out = str(tmp_path / "omni")
    for learner in ("maml", "reptile"):
        assert cli.main(["train", "--learner", learner, "--ways", "5", "--shots", "1",
                         "--queries", "2", "--iterations", "2", "--meta-batch", "2",
                         "--test-steps", "1", "--out", out + learner]) == 0
        assert cli.main(["eval", "--checkpoint", os.path.join(out + learner, "checkpoint.npz"),
                         "--episodes", "4"]) == 0
        assert "accuracy" in capsys.readouterr().out
