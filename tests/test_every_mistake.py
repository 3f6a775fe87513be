"""Every case of the issue "Runs that are never silently wrong or lost", in one table.

Each row is one mistake: a readable id, what it does (the files it needs, made in
``tmp_path``, then the ``minimeta`` command line, or a Python call), what it must end in (an
exit code, or an exception type) and a regex for the one line it prints (or the exception's
one-line message). The deeper tests of each case stay where they were: ``test_runs.py`` (run
folders, resume, non-finite runs), ``test_hostile_input.py`` (checkpoints, eval, data) and
``test_config.py`` (option values).

In a row, ``<tmp>`` stands for the case's ``tmp_path`` and ``<run>`` for a finished
6-iteration sinusoid MAML run folder (shared, never changed by a row).
"""
import io as text_io
import re
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

import minimeta as mm
from minimeta import cli, io
from minimeta.data import fetch
from minimeta.experiments.config import RunConfig
from test_hostile_input import broken_archives, nan_checkpoint, write_checkpoint
from test_runs import SINE

OMNI = RunConfig(learner="protonet", ways=5, queries=5)
SINUSOID = RunConfig(learner="maml", dataset="sinusoid")


@pytest.fixture(scope="module")
def run6(tmp_path_factory):
    """A finished 6-iteration sinusoid MAML run folder (the rows only read it)."""
    out = str(tmp_path_factory.mktemp("every") / "run")
    assert cli.main(SINE + ["--iterations", "6", "--out", out]) == 0
    return out


def afile(c):
    """An existing file in the case's folder."""
    (c.tmp / "afile").write_text("")
    return str(c.tmp / "afile")


def random_bytes(c):
    (c.tmp / "random.npz").write_bytes(np.random.default_rng(0).bytes(4000))
    return str(c.tmp / "random.npz")


def npy(c):
    np.save(c.tmp / "array.npy", np.ones(3))
    return str(c.tmp / "array.npy")


def malformed(c):
    np.savez(c.tmp / "m.npz", __minimeta__=np.asarray("{bad json"))
    return str(c.tmp / "m.npz")


def zip_of(c, *members):
    """An Omniglot-like zip of ``members``: (width, height) for a PNG, bytes as they are."""
    image = pytest.importorskip("PIL.Image")
    path = c.tmp / "images_background.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i, member in enumerate(members, 1):
            if isinstance(member, tuple):
                buf = text_io.BytesIO()
                image.fromarray(np.zeros(member[::-1], np.uint8)).save(buf, format="PNG")
                member = buf.getvalue()
            z.writestr(f"images_background/A/character01/0001_{i:02d}.png", member)
    return str(path)


def truncated_omniglot(c):
    folder = broken_archives(c.tmp / "data")
    c.mp.setenv("MINIMETA_DATA_DIR", str(folder))
    c.mp.setenv("MINIMETA_CACHE_DIR", str(c.tmp / "cache"))
    return ["eval", "--checkpoint", write_checkpoint(c.tmp / "p.npz", OMNI), "--episodes", "2"]


def offline(c):
    c.mp.delenv("MINIMETA_DATA_DIR", raising=False)
    c.mp.setenv("HOME", str(c.tmp / "home"))
    c.mp.setenv("MINIMETA_CACHE_DIR", str(c.tmp / "cache"))
    c.mp.setattr(fetch, "URL", "http://127.0.0.1:9/images_{part}.zip")  # connection refused
    return ["eval", "--checkpoint", write_checkpoint(c.tmp / "p.npz", OMNI), "--episodes", "2"]


def another_architecture(c):
    """An MLP's weights under settings that describe conv4 (MAML on Omniglot)."""
    state = io.load(c.ckpt)
    path = write_checkpoint(c.tmp / "other.npz", RunConfig(learner="maml", ways=5),
                            model_state=state["model"])
    return ["eval", "--checkpoint", path]


def without(key):
    def make(c):
        path = write_checkpoint(c.tmp / f"no_{key}.npz", SINUSOID, drop=(key,))
        return ["eval", "--checkpoint", path]
    return make


def train(*options):
    return lambda c: SINE + list(options) + ["--out", str(c.tmp / "run")]


def resume_as(learner):
    return lambda c: ["train", "--learner", learner] + SINE[3:] + [
        "--iterations", "8", "--out", c.run, "--resume"]


TRAIN = "minimeta train: "
EVAL = "minimeta eval: "
OTHER_SETTINGS = (TRAIN + r"--resume: the run in <run> was trained with other settings, which "
                  r"its checkpoint fixes: --learner maml \(given {}\)")
NOT_A_CHECKPOINT = r"load: <tmp>/{} is not a minimeta checkpoint \({}\)"
CASES = [  # (id, make, exit code or exception type, regex of the one line)
    # ----- run folders and resume (test_runs.py)
    ("resume-into-a-missing-folder", lambda c: SINE + ["--out", str(c.tmp / "no"), "--resume"],
     2, TRAIN + r"--resume: no run to resume in <tmp>/no \(<tmp>/no/checkpoint\.npz does not "
     r"exist\); drop --resume to start one there$"),
    ("resume-maml-as-fomaml", resume_as("fomaml"), 2,
     OTHER_SETTINGS.format("fomaml") + r"; give its values, or start afresh"),
    ("resume-maml-as-reptile", resume_as("reptile"), 2,
     OTHER_SETTINGS.format("reptile") + r", .*--outer-lr 0\.001 \(given 1\.0\), "
     r"--lr-halve-every 0 \(given unset\); give its values"),
    ("resume-to-fewer-iterations",
     lambda c: SINE + ["--iterations", "3", "--out", c.run, "--resume"], 2,
     TRAIN + r"--resume: --iterations 3 is below the checkpoint's iteration 6 in <run>: a "
     r"resumed run only goes on \(--iterations 6 or more\)$"),
    ("fresh-run-into-a-run-folder", lambda c: SINE + ["--iterations", "2", "--out", c.run], 2,
     TRAIN + r"<run> already holds a run \(checkpoint\.npz, metrics\.jsonl\): --resume to "
     r"continue it, --overwrite to replace it, or another --out$"),
    ("inner-lr-1e30-trains-to-non-finite", train("--inner-lr", "1e30", "--iterations", "5"),
     1, TRAIN + r"iteration 1: the training loss is nan; training stopped: "
     r"<tmp>/run/checkpoint\.npz holds iteration 0, the last finite one; resume from it with "
     r"--detect-anomaly"),
    # ----- option values (test_config.py)
    ("lr-halve-every-negative", train("--lr-halve-every", "-1"), 2,
     TRAIN + r"--lr-halve-every must be at least 0, got -1$"),
    ("inner-lr-nan", train("--inner-lr", "nan"), 2,
     TRAIN + r"--inner-lr must be a finite number > 0, got nan$"),
    ("outer-lr-nan", train("--outer-lr", "nan"), 2,
     TRAIN + r"--outer-lr must be a finite number > 0, got nan$"),
    ("test-steps-negative", train("--test-steps", "-5"), 2,
     TRAIN + r"--test-steps must be at least 0, got -5$"),
    ("checkpoint-every-nan", train("--checkpoint-every", "nan"), 2,
     TRAIN + r"--checkpoint-every must be a finite number >= 0, got nan$"),
    ("checkpoint-every-negative", train("--checkpoint-every", "-1"), 2,
     TRAIN + r"--checkpoint-every must be a finite number >= 0, got -1\.0$"),
    ("fce-with-maml", train("--fce"), 2,
     TRAIN + r"--fce does not apply to maml: full context embeddings are Matching Networks' "
     r"\(--learner matching\)$"),
    # ----- where results go (test_hostile_input.py)
    ("out-names-a-file", lambda c: SINE + ["--iterations", "1", "--out", afile(c)], 2,
     TRAIN + r"<tmp>/afile: File exists \(a file is where a folder is needed: choose another "
     r"path\)$"),
    ("out-under-a-file", lambda c: SINE + ["--iterations", "1", "--out", afile(c) + "/sub"], 2,
     TRAIN + r"<tmp>/afile/sub: Not a directory \(a part of the path is a file, not a folder: "
     r"choose another path\)$"),
    ("eval-report-is-a-folder",
     lambda c: ["eval", "--checkpoint", c.ckpt, "--report", str(c.tmp)], 2,
     EVAL + r"--report <tmp> is a folder; give a file path \(the result is appended to it as "
     r"one JSON line\)$"),
    # ----- checkpoints given to eval
    ("eval-a-nan-checkpoint",
     lambda c: ["eval", "--checkpoint", nan_checkpoint(c.ckpt, c.tmp)], 2,
     EVAL + r"<tmp>/nan\.npz holds non-finite weights \(NaN or inf in model/param:0\.bias\): "
     r"its training diverged; evaluate an earlier checkpoint"),
    ("eval-another-architecture", another_architecture, 2,
     EVAL + r"<tmp>/other\.npz does not fit the maml its settings describe: load_state_dict: "
     r"the state is not this Sequential's \(another architecture\?\): missing \["),
    ("eval-a-checkpoint-without-settings", without("settings"), 2,
     EVAL + r"load: <tmp>/no_settings\.npz is a minimeta file but not a training checkpoint: "
     r"it lacks 'settings' \(minimeta train writes them\)$"),
    ("eval-a-checkpoint-without-iteration", without("iteration"), 2,
     EVAL + r"load: <tmp>/no_iteration\.npz is a minimeta file but not a training checkpoint: "
     r"it lacks 'iteration' \(minimeta train writes them\)$"),
    # ----- Omniglot data (test_hostile_input.py)
    ("truncated-omniglot-npz", truncated_omniglot, 2,
     EVAL + r"Omniglot: <tmp>/data/images_background\.npz has the wrong sha256 \(corrupt, "
     r"truncated or a different file\)"),
    ("offline-without-data", offline, 2,
     EVAL + r"Omniglot: could not download http://127\.0\.0\.1:9/images_background\.zip \(.*"
     r"Offline\? Put the two \.npz files in a folder and set MINIMETA_DATA_DIR"),
    ("omniglot-zip-with-a-non-png",
     lambda c: fetch.convert_zip(zip_of(c, (6, 5), b"not a png at all")), ValueError,
     r".*0001_02\.png in <tmp>/images_background\.zip is not a readable PNG image "
     r"\(UnidentifiedImageError\); delete the zip"),
    ("omniglot-zip-with-mixed-sizes",
     lambda c: fetch.convert_zip(zip_of(c, (6, 5), (7, 5))), ValueError,
     r".*0001_02\.png in <tmp>/images_background\.zip is 7×5 pixels, the images before it "
     r"6×5: not an Omniglot archive"),
    # ----- checkpoints from Python: io.save and io.load (test_hostile_input.py)
    ("save-an-int-beyond-64-bits", lambda c: io.save(str(c.tmp / "x.npz"), {"a": 2 ** 80}),
     ValueError, r".*does not fit in 64 bits"),
    ("save-keys-1-and-'1'", lambda c: io.save(str(c.tmp / "x.npz"), {1: 1, "1": 2}),
     ValueError, r".*keys 1 and '1' are both stored as '1'"),
    ("load-random-bytes", lambda c: io.load(random_bytes(c)), ValueError,
     NOT_A_CHECKPOINT.format("random\\.npz", "not an \\.npz archive")
     + r".*give the checkpoint\.npz"),
    ("load-a-npy", lambda c: io.load(npy(c)), ValueError,
     NOT_A_CHECKPOINT.format("array\\.npy", "it is a single \\.npy array, not an \\.npz archive")),
    ("load-a-malformed-__minimeta__", lambda c: io.load(malformed(c)), ValueError,
     r".*'__minimeta__' entry is not the JSON description"),
    # ----- the engine's input checks (test_hostile_input.py)
    ("grad-of-an-ndarray",
     lambda c: mm.grad(np.ones(1), [mm.tensor([1.0, 2.0], requires_grad=True)]), TypeError,
     r"grad: output 0 is of type ndarray, not a Tensor; outputs must be Tensors computed from "
     r"the inputs"),
    ("logsumexp-of-an-empty-tensor", lambda c: mm.logsumexp(mm.tensor(np.zeros(0))),
     ValueError, r"logsumexp: reducing an empty axis of shape \(0,\)"),
    ("ragged-lists", lambda c: mm.tensor([[1.0, 2.0], [3.0]]), ValueError,
     r"tensor: a ragged nested list \(its rows differ in length\) is not an array; give rows "
     r"of equal length"),
]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("make, expected, pattern", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_every_mistake_ends_in_one_line(make, expected, pattern, run6, tmp_path, monkeypatch,
                                        capsys):
    c = SimpleNamespace(tmp=tmp_path, run=run6, ckpt=f"{run6}/checkpoint.npz", mp=monkeypatch)
    pattern = pattern.replace("<tmp>", re.escape(str(tmp_path))).replace("<run>",
                                                                         re.escape(run6))
    if isinstance(expected, int):                    # the command line: exit code, stderr
        argv = make(c)
        capsys.readouterr()
        try:
            code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == expected, err
        assert "Traceback" not in err and len(lines) == 1, err
        line = lines[0]
    else:                                            # Python: the exception, one line
        with pytest.raises(expected) as info:
            make(c)
        line = str(info.value)
        assert line and "\n" not in line, line
    assert re.match(pattern, line), f"{pattern!r} does not match {line!r}"
