"""Hostile and mistaken input: every one is refused with one line naming the problem and what
to do (the command line: exit status 2, no traceback), before anything is written or run.

1. checkpoints (``minimeta.io``): values ``save`` could not read back, colliding keys, foreign
   and malformed files;
2. ``minimeta eval``: the report target, non-finite weights, another architecture, the counts;
3. ordinary mistakes that raised tracebacks: ``--out`` on a file, broken Omniglot archives,
   offline without data, the engine's input checks; programming errors keep theirs.

Next: ``tests/test_hostile_options.py``, any value of any numeric option, a property test.
"""
import io as text_io
import json
import os
import re
import zipfile

import numpy as np
import pytest

import minimeta as mm
from minimeta import cli, io
from minimeta.data import fetch, omniglot
from minimeta.experiments import fewshot
from minimeta.experiments.config import RunConfig
from minimeta.experiments.registry import build

REAL = os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0]))
PROGRESS = re.compile(r"^\S+ \d+/\d+  ")   # a progress bar's line (stderr), not an error


def one_line(err):
    text = str(err)
    assert text and "\n" not in text, text
    return text


def refused(argv, capsys, code=2):
    """The one line a refused command prints on stderr (no traceback, exit ``code``)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"minimeta {argv[0]}: "), lines[0]
    return lines[0]


def write_checkpoint(path, config, model_state=None, drop=(), **changes):
    """A checkpoint of an untrained model of ``config`` (no training: cheap)."""
    model, _ = build(config)
    state = {"model": model.state_dict() if model_state is None else model_state,
             "settings": config.settings(), "iteration": 0, "seconds": 0.0, "learner": {}}
    state.update(changes)
    for key in drop:
        del state[key]
    io.save(str(path), state)
    return str(path)


@pytest.fixture(scope="module")
def sine(tmp_path_factory):
    """A sinusoid MAML checkpoint, trained one iteration through the command line."""
    out = tmp_path_factory.mktemp("sine")
    assert cli.main(["train", "--learner", "maml", "--dataset", "sinusoid", "--iterations",
                     "1", "--meta-batch", "2", "--out", str(out / "run")]) == 0
    return str(out / "run" / "checkpoint.npz")


@pytest.fixture(scope="module")
def omni(tmp_path_factory):
    """An (untrained) 5-way ProtoNet checkpoint on Omniglot."""
    path = tmp_path_factory.mktemp("omni") / "protonet.npz"
    return write_checkpoint(path, RunConfig(learner="protonet", ways=5, queries=5))


# ----- 1. checkpoints -------------------------------------------------------------------------
def deep(x, levels):
    for _ in range(levels):
        x = [x]
    return x


def test_save_refuses_what_it_could_not_load_before_writing_anything(tmp_path):
    folder = tmp_path / "new"
    for value, kind, match in ((2 ** 80, ValueError, "does not fit in 64 bits"),
                               (-2 ** 63 - 1, ValueError, "does not fit in 64 bits"),
                               (np.array([{}, 1], dtype=object), TypeError, "not an array"),
                               ([1, "a"], TypeError, r"\(holding number, str\)"),  # 1 → '1'
                               (deep([1.0], 5000), TypeError, r"\(ragged\)"),
                               ({1: 1, "1": 2}, ValueError, "both stored as '1'"),
                               ({"__minimeta__": 1}, ValueError, "reserved")):
        obj = {"a": value} if kind is TypeError or isinstance(value, int) else value
        with pytest.raises(kind, match=match) as err:
            io.save(str(folder / "ckpt.npz"), obj)
        one_line(err.value)
        assert not folder.exists()   # nothing written, not even the folder
    with pytest.raises(ValueError, match=r"keys 1 and '1' are both stored as 'a/1'"):
        io.save(str(tmp_path / "x.npz"), {"a": {1: 1, "1": 2}})
    assert os.listdir(tmp_path) == []
    # what it stores comes back, at the edges too (np.float64 is a float: stored as one)
    obj = {"big": 2 ** 63 - 1, "small": -2 ** 63, "f": np.float64(0.5), "b": np.bool_(True),
           "i": 1, 1.5: "key made a string"}
    io.save(str(tmp_path / "ok.npz"), obj)
    back = io.load(str(tmp_path / "ok.npz"))
    assert back == {"big": 2 ** 63 - 1, "small": -2 ** 63, "f": 0.5, "b": True, "i": 1,
                    "1.5": "key made a string"}
    assert type(back["f"]) is float and type(back["b"]) is bool


def test_load_names_files_that_are_not_checkpoints(tmp_path):
    def message(path):
        with pytest.raises(ValueError) as err:
            io.load(str(path))
        return one_line(err.value)

    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(4000))
    text = message(tmp_path / "random.npz")
    assert "is not a minimeta checkpoint (not an .npz archive)" in text
    assert "pickle" not in text and "give the checkpoint.npz" in text
    np.save(tmp_path / "array.npy", np.ones(3))
    assert "a single .npy array" in message(tmp_path / "array.npy")
    assert "it is a folder" in message(tmp_path)
    # what io.save used to write for {"a": 2**80}: an object array
    np.savez(tmp_path / "old.npz", a=np.array(2 ** 80, dtype=object),
             __minimeta__=np.asarray('{"format": "minimeta-checkpoint-1", '
                                     '"kinds": {"a": "int"}}'))
    assert "holds pickled objects" in message(tmp_path / "old.npz")
    np.savez(tmp_path / "foreign.npz", x=np.ones(2))
    assert "without its '__minimeta__' entry" in message(tmp_path / "foreign.npz")
    io.save(str(tmp_path / "ckpt.npz"), {"a": np.ones(1000)})
    data = (tmp_path / "ckpt.npz").read_bytes()
    (tmp_path / "ckpt.npz").write_bytes(data[: len(data) // 2])
    assert "damaged, truncated or not a checkpoint" in message(tmp_path / "ckpt.npz")


@pytest.mark.parametrize("meta, entries, match", [
    ("{bad json", {}, "'__minimeta__' entry is not the JSON description"),
    ("[1]", {}, "'__minimeta__' entry is not the JSON description"),
    ('{"format": "minimeta-checkpoint-1"}', {}, "entry is not the JSON description"),
    (np.ones(3), {}, "entry is not the JSON description"),
    ('{"format": "other", "kinds": {}}', {}, "has format 'other', expected"),
    ('{"format": "minimeta-checkpoint-1", "kinds": {"a": "weird"}}', {"a": np.ones(2)},
     "entry 'a' has the unknown kind 'weird'"),
    ('{"format": "minimeta-checkpoint-1", "kinds": {"b": "array"}}', {},
     "does not match its entry 'b'"),
    ('{"format": "minimeta-checkpoint-1", "kinds": {"a": "int"}}', {"a": np.ones(2)},
     "entry 'a' is not the int"),
    ('{"format": "minimeta-checkpoint-1", "kinds": {"a": "array", "a/b": "none"}}',
     {"a": np.ones(2)}, "does not match its entry 'a/b'"),
])
def test_a_malformed_description_is_named(tmp_path, meta, entries, match):
    np.savez(tmp_path / "m.npz", __minimeta__=np.asarray(meta), **entries)
    with pytest.raises(ValueError, match=match) as err:
        io.load(str(tmp_path / "m.npz"))
    one_line(err.value)


def test_load_names_a_missing_top_level_key(tmp_path):
    io.save(str(tmp_path / "c.npz"), {"model": {}, "iteration": 3})
    with pytest.raises(ValueError, match=r"not a training checkpoint: it lacks 'settings' "):
        io.load(str(tmp_path / "c.npz"), require=("model", "settings", "iteration"))
    assert io.load(str(tmp_path / "c.npz"), require=("model",))["iteration"] == 3


# ----- 2. minimeta eval -------------------------------------------------------------------------
@pytest.fixture
def no_evaluation(monkeypatch):
    """Fail the test if an evaluation starts (the refusals come before it)."""
    def run_episodes(*args, **kwargs):
        raise AssertionError("the evaluation ran")
    monkeypatch.setattr(fewshot, "run_episodes", run_episodes)


def test_the_report_target_is_checked_before_evaluating(sine, tmp_path, capsys,
                                                        no_evaluation):
    base = ["eval", "--checkpoint", sine, "--episodes", "2", "--report"]
    assert refused(base + [str(tmp_path)], capsys) == (
        f"minimeta eval: --report {tmp_path} is a folder; give a file path (the result is "
        "appended to it as one JSON line)")
    (tmp_path / "afile").write_text("")
    assert refused(base + [str(tmp_path / "afile" / "r.jsonl")], capsys) == (
        f"minimeta eval: --report {tmp_path}/afile/r.jsonl: {tmp_path}/afile is a file, not "
        "a folder; give a file path in an existing folder")
    assert refused(base + [str(tmp_path / "nowhere" / "r.jsonl")], capsys).endswith(
        f"{tmp_path}/nowhere does not exist; give a file path in an existing folder")
    # a report file opened for a refused evaluation is not left behind, empty
    assert "non-finite" in refused(["eval", "--checkpoint", nan_checkpoint(sine, tmp_path),
                                    "--report", str(tmp_path / "r.jsonl")], capsys)
    assert sorted(os.listdir(tmp_path)) == ["afile", "nan.npz"]


def test_the_report_is_written_when_the_target_is_fine(sine, tmp_path):
    report = tmp_path / "r.jsonl"
    for _ in range(2):
        assert cli.main(["eval", "--checkpoint", sine, "--episodes", "2",
                         "--report", str(report)]) == 0
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["iterations"] == 1 and rows[0]["episodes"] == 2


def nan_checkpoint(source, folder):
    state = io.load(source)
    state["model"] = {k: v * np.nan if k.endswith("0.bias") else v
                      for k, v in state["model"].items()}
    io.save(str(folder / "nan.npz"), state)
    return str(folder / "nan.npz")


def test_non_finite_weights_and_outputs_are_refused(sine, tmp_path, capsys):
    assert refused(["eval", "--checkpoint", nan_checkpoint(sine, tmp_path)], capsys) == (
        f"minimeta eval: {tmp_path}/nan.npz holds non-finite weights (NaN or inf in "
        "model/param:0.bias): its training diverged; evaluate an earlier checkpoint, or train "
        "again with a smaller --outer-lr or with --clip-norm")
    # finite weights whose adaptation overflows: no "MSE nan ± nan"
    state = io.load(sine)
    state["settings"]["inner_lr"] = 1e300
    io.save(str(tmp_path / "wild.npz"), state)
    assert "the query loss of episode 0 is" in refused(
        ["eval", "--checkpoint", str(tmp_path / "wild.npz"), "--episodes", "3"], capsys)


def test_a_checkpoint_of_another_architecture_is_named(sine, tmp_path, capsys,
                                                       no_evaluation):
    # an MLP's weights under settings that describe conv4 (MAML on Omniglot)
    state = io.load(sine)
    path = write_checkpoint(tmp_path / "other.npz", RunConfig(learner="maml", ways=5),
                            model_state=state["model"])
    line = refused(["eval", "--checkpoint", path], capsys)
    assert line.startswith(f"minimeta eval: {path} does not fit the maml its settings "
                           "describe: load_state_dict: the state is not this Sequential's "
                           "(another architecture?): missing [")
    assert re.search(r"missing \[(buffer|param):.*\] and \d+ more; unexpected "
                     r"\[param:2.bias \(40,\), param:2.weight \(40, 40\)\]; other shapes "
                     r"\[param:0.bias \(40,\), expected \(64,\), ", line), line
    # the same architecture with another way count: the head's shape
    five = build(RunConfig(learner="maml", ways=5))[0].state_dict()
    path = write_checkpoint(tmp_path / "ways.npz", RunConfig(learner="maml", ways=20),
                            model_state=five)
    assert re.fullmatch(r"minimeta eval: .* has shape \(\d+, 5\), expected \(\d+, 20\) "
                        r"\(another architecture or way count\?\); nothing loaded",
                        refused(["eval", "--checkpoint", path], capsys))


def test_a_checkpoint_without_its_run_is_named(omni, tmp_path, capsys, no_evaluation):
    config = RunConfig(learner="protonet", ways=5, queries=5)
    for drop in ("settings", "iteration", "model"):
        path = write_checkpoint(tmp_path / f"no_{drop}.npz", config, drop=(drop,))
        assert refused(["eval", "--checkpoint", path], capsys) == (
            f"minimeta eval: load: {path} is a minimeta file but not a training checkpoint: "
            f"it lacks '{drop}' (minimeta train writes them)")
    path = write_checkpoint(tmp_path / "s.npz", config, settings=3)
    assert refused(["eval", "--checkpoint", path], capsys).endswith(
        "'settings' is not a dict of settings")
    path = write_checkpoint(tmp_path / "it.npz", config, iteration="many")
    assert refused(["eval", "--checkpoint", path], capsys).endswith(
        "'iteration' is 'many', not a count")
    path = write_checkpoint(tmp_path / "l.npz", config,
                            settings={**config.settings(), "learner": "nope"})
    assert "holds settings minimeta cannot use (--learner must be one of" in refused(
        ["eval", "--checkpoint", path], capsys)
    path = write_checkpoint(tmp_path / "m.npz", config, model_state=np.ones(3))
    assert "expects a dict of arrays (as state_dict makes), got ndarray" in refused(
        ["eval", "--checkpoint", path], capsys)


def test_eval_counts_are_checked(sine, omni, capsys, no_evaluation):
    def line(checkpoint, *args):
        return refused(["eval", "--checkpoint", checkpoint, *args], capsys)

    assert line(sine, "--episodes", "1") == "minimeta eval: --episodes must be at least 2, got 1"
    assert line(sine, "--episodes", str(10 ** 20)) == (
        f"minimeta eval: --episodes must be between 2 and 1000000, got {10 ** 20}")
    for name in ("ways", "shots"):
        assert line(sine, f"--{name}", "0") == f"minimeta eval: --{name} must be at least 1, got 0"
    assert line(sine, "--queries", "0") == (   # 0 only for MANN, which reads no queries
        "minimeta eval: --queries must be at least 1 for maml, got 0")
    assert line(sine, "--queries", "-1") == "minimeta eval: --queries must be at least 0, got -1"
    assert line(sine, "--seed", "-1") == "minimeta eval: --seed must be at least 0, got -1"
    for ways in ("3", "5"):     # 5, the default a sinusoid run's settings hold, was accepted
        assert line(sine, "--ways", ways) == (
            "minimeta eval: --ways does not apply to a sinusoid run: regression has no classes")
    assert line(sine, "--queries", str(10 ** 10)) == (
        f"minimeta eval: --queries must be at most 100000 points per sinusoid task, "
        f"got {10 ** 10}")
    assert line(omni, "--shots", "5", "--queries", "16") == (
        "minimeta eval: --shots + --queries = 5 + 16 must be at most 20, the drawings of "
        "each Omniglot character")
    assert line(sine, "--ways", "nan") == (
        "minimeta eval: error: argument --ways: invalid int value: 'nan' "
        "(see minimeta eval --help)")
    with pytest.raises(ValueError, match="--episodes must be an integer, got 2.5"):
        fewshot.evaluate(sine, episodes=2.5)
    path = write_checkpoint(os.path.join(os.path.dirname(omni), "noval.npz"),
                            RunConfig(learner="protonet", ways=5, queries=5, val_size=0))
    assert line(path, "--part", "val").endswith("no validation characters (--val-size 0): "
                                                "use --part test (or train)")


def broken_archives(folder):
    """Two truncated .npz archives, as an interrupted copy leaves them."""
    folder.mkdir()
    for part in ("background", "evaluation"):
        path = folder / omniglot.FILES[part][0]
        np.savez_compressed(path, images=np.random.default_rng(0).random((3, 20, 9, 9)) > 0.5)
        path.write_bytes(path.read_bytes()[:300])
    return folder


def test_a_truncated_omniglot_archive_is_named(omni, tmp_path, monkeypatch, capsys):
    folder = broken_archives(tmp_path / "data")
    with pytest.raises(ValueError, match="wrong sha256 .corrupt, truncated or a different"):
        omniglot.archive_path("background", folder=str(folder))
    monkeypatch.setenv("MINIMETA_DATA_DIR", str(folder))
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    assert refused(["eval", "--checkpoint", omni, "--episodes", "2"], capsys).startswith(
        f"minimeta eval: Omniglot: {folder}/images_background.npz has the wrong sha256 "
        "(corrupt, truncated or a different file)")


def test_offline_without_data_is_one_line(omni, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MINIMETA_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "URL", "http://127.0.0.1:9/images_{part}.zip")  # refused
    line = refused(["eval", "--checkpoint", omni, "--episodes", "2"], capsys)
    assert line.startswith("minimeta eval: Omniglot: could not download "
                           "http://127.0.0.1:9/images_background.zip (")
    assert "Offline? Put the two .npz files in a folder and set MINIMETA_DATA_DIR" in line
    folder = tmp_path / "home" / ".cache" / "minimeta" / "omniglot"
    assert os.listdir(folder) == []   # no partial download left


def test_an_omniglot_zip_with_a_bad_image_is_named(tmp_path):
    image = pytest.importorskip("PIL.Image")

    def png(width, height):
        buf = text_io.BytesIO()
        image.fromarray(np.zeros((height, width), np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    with zipfile.ZipFile(tmp_path / "junk.zip", "w") as z:
        z.writestr("images_background/A/character01/0001_01.png", png(6, 5))
        z.writestr("images_background/A/character01/0001_02.png", b"not a png at all")
    with pytest.raises(ValueError, match=r"0001_02.png in .*junk.zip is not a readable PNG "
                                         r"image \(UnidentifiedImageError\); delete the zip"):
        fetch.convert_zip(str(tmp_path / "junk.zip"))
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as z:
        z.writestr("images_background/A/character01/0001_01.png", png(6, 5))
        z.writestr("images_background/A/character01/0001_02.png", png(7, 5))
    with pytest.raises(ValueError, match=r"0001_02.png in .*mixed.zip is 7×5 pixels, the "
                                         r"images before it 6×5: not an Omniglot archive"):
        fetch.convert_zip(str(tmp_path / "mixed.zip"))


def test_engine_input_checks_are_one_line():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    for call, kind, text in (
            (lambda: mm.grad(np.ones(1), [x]), TypeError,
             "grad: output 0 is of type ndarray, not a Tensor; outputs must be Tensors "
             "computed from the inputs"),
            (lambda: mm.grad(x.sum(), [[1.0]]), TypeError,
             "grad: input 0 is of type list, not a Tensor; inputs must be Tensors that "
             "require grad"),
            (lambda: mm.logsumexp(mm.tensor(np.zeros(0))), ValueError,
             "logsumexp: reducing an empty axis of shape (0,)"),
            (lambda: mm.tensor(np.zeros((3, 0))).logsumexp(axis=1), ValueError,
             "logsumexp: reducing an empty axis of shape (3, 0)"),
            (lambda: mm.tensor([[1.0, 2.0], [3.0]]), ValueError,
             "tensor: a ragged nested list (its rows differ in length) is not an array; give "
             "rows of equal length"),
            (lambda: x + [[1.0], [2.0, 3.0]], ValueError, "tensor: a ragged nested list"),
            (lambda: mm.tensor([1.0, None]), TypeError,
             "tensor: cannot make a Tensor of list data (an array of Python objects); give "
             "numbers or a numeric array")):
        with pytest.raises(kind) as err:
            call()
        assert one_line(err.value).startswith(text)
    # an empty tensor reduced over a non-empty axis is fine
    assert mm.tensor(np.zeros((0, 3))).logsumexp(axis=1).shape == (0,)


def test_programming_errors_keep_their_traceback(monkeypatch, capsys):
    for kind in (KeyError, TypeError, AttributeError, RecursionError, NotImplementedError):
        def evaluate(*args, kind=kind, **kwargs):
            raise kind("a bug")
        monkeypatch.setattr(fewshot, "evaluate", evaluate)
        with pytest.raises(kind):
            cli.main(["eval", "--checkpoint", "x.npz"])

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB for an array")
    monkeypatch.setattr(fewshot, "evaluate", out_of_memory)
    assert refused(["eval", "--checkpoint", "x.npz"], capsys) == (
        "minimeta eval: out of memory (Unable to allocate 74.5 GiB for an array): ask for "
        "fewer or smaller tasks, episodes or batches")
