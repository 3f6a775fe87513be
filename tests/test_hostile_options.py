"""The command line under any numeric value: a property test that any value of any numeric
option of ``train`` and ``eval`` either runs or is refused in one line (exit status != 0, no
traceback). Hostile values (0, negatives, nan, inf, numbers beyond 64 bits) as often as ordinary
ones; a run that works is stopped by a budget (progress updates, module calls, seconds).

The named mistakes, one by one, are in ``tests/test_hostile_input.py`` (read that first).
"""
import contextlib
import io as text_io
import os
import signal
import warnings
from dataclasses import fields
from unittest import mock

from hypothesis import HealthCheck, given, settings, strategies as st

from minimeta import cli
from minimeta.experiments.config import RunConfig
from minimeta.experiments.progress import Progress
from minimeta.nn.module import Module
from test_hostile_input import REAL, omni, sine  # noqa: F401  (fixtures: two checkpoints)

class Budget(Exception):
    """Raised to stop a run that is working (its budget is spent): the outcome is "it ran"."""


class Hang(Exception):
    """A run that neither progressed nor ended in time (a C loop the budgets cannot stop)."""


@contextlib.contextmanager
def budget(updates=2, forwards=5000, seconds=60):
    """Stop a run after ``updates`` progress updates (iterations or episodes) or ``forwards``
    module calls (an inner loop of 2**63 - 1 steps); fail it after ``seconds``."""
    calls, forward = [], Module.__call__

    def update(self, i, **metrics):
        calls.append(i)
        if len(calls) > updates:
            raise Budget

    def counted(self, *args, **kwargs):
        calls.append(None)
        if len(calls) > forwards:
            raise Budget
        return forward(self, *args, **kwargs)

    def alarm(signum, frame):
        raise Hang(f"no end and no progress in {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with mock.patch.object(Progress, "update", update), \
                mock.patch.object(Module, "__call__", counted):
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(argv):
    """'ran' (finished or stopped by the budget) or 'refused' (one line on stderr, exit != 0);
    a traceback propagates."""
    out, err = text_io.StringIO(), text_io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow: not an error
        try:
            with budget():
                code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
        except Budget:
            code = 0
    text = err.getvalue()
    assert "Traceback" not in text, (argv, text)
    if code == 0:
        return "ran"
    lines = [line for line in text.splitlines() if line.strip()]
    assert code and len(lines) == 1 and lines[0].startswith(f"minimeta {argv[0]}"), (argv, text)
    return "refused"


# hostile: 0, negatives, nan, inf, huge (beyond 64 bits; the largest 64-bit int, where
# allocations fail at once and loops run into the budget; 1e300); and ordinary values, as
# often (a value of the wrong type is an argparse error)
VALUES = st.one_of(
    st.sampled_from(["0", "-1", "-5", "nan", "inf", "-inf", "1e300", "-1e300", "1e-300",
                     str(10 ** 21), str(2 ** 63 - 1)]),
    st.sampled_from(["1", "2", "3", "5", "0.5", "1e-3", "1.5"]))
TRAIN_OPTIONS = sorted(f"--{f.name.replace('_', '-')}" for f in fields(RunConfig)
                       if f.metadata["flag"] and f.metadata["kind"] in (int, float))
EVAL_OPTIONS = sorted(a.option_strings[0] for a in
                      cli.build_parser()._subparsers._group_actions[0].choices["eval"]._actions
                      if a.type in (int, float))


def test_the_property_test_sees_every_numeric_option():
    assert {"--iterations", "--inner-lr", "--clip-norm", "--val-size", "--seed",
            "--checkpoint-every"} <= set(TRAIN_OPTIONS)
    assert EVAL_OPTIONS == ["--episodes", "--queries", "--seed", "--shots", "--test-steps",
                            "--ways"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(learner=st.sampled_from(["maml", "fomaml", "metasgd", "anil", "reptile", "protonet"]),
       options=st.dictionaries(st.sampled_from(TRAIN_OPTIONS), VALUES, max_size=3))
def test_train_runs_or_refuses_in_one_line(tmp_path_factory, learner, options):
    out = tmp_path_factory.mktemp("prop")
    argv = ["train", "--learner", learner, "--dataset", "sinusoid", "--iterations", "1",
            "--meta-batch", "2", "--val-size", "1", "--val-episodes", "2", "--out",
            str(out / "run")]
    outcome(argv + [x for option, value in options.items() for x in (option, value)])


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["sine", "omni"] if REAL else ["sine"]),
       options=st.dictionaries(st.sampled_from(EVAL_OPTIONS), VALUES, max_size=3))
def test_eval_runs_or_refuses_in_one_line(sine, omni, tmp_path_factory, which, options):
    argv = ["eval", "--checkpoint", sine if which == "sine" else omni, "--episodes", "2"]
    cache = {"MINIMETA_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "omniglot-cache")}
    with mock.patch.dict(os.environ, cache):
        outcome(argv + [x for option, value in options.items() for x in (option, value)])
