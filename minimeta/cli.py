"""The ``minimeta`` command line (the top layer: it may import everything below).

    minimeta demo                 the sinusoid MAML experiment on a short budget, with its figure,
                                  then ProtoNet on Omniglot if its data are found
    minimeta gradcheck            the engine's property gradient checks, on this installation
    minimeta train --learner maml --dataset omniglot --ways 5 --shots 1 ...
    minimeta train --learner protonet --shots 5      (60-way training episodes, the paper's)
    minimeta eval --checkpoint outputs/run/checkpoint.npz --episodes 600 --ways 5 --shots 1

Read next: ``minimeta/_kernels_path.py`` (how a checkout imports kernels/ as minimeta.kernels).
"""
import argparse
import contextlib
import errno
import os
import sys
import tempfile
import zipfile
from functools import partial

import numpy as np


def _gradcheck(args):
    try:
        from . import selfcheck
    except ImportError as err:
        print(f"minimeta gradcheck needs hypothesis ({err}); pip install 'minimeta[test]'",
              file=sys.stderr)
        return 2
    if args.order is not None and args.order > MAX_ORDER:   # each order costs some times more
        raise ValueError(f"--order must be at most {MAX_ORDER}, got {args.order}")
    orders = None if args.order is None else tuple(range(1, args.order + 1))
    print(f"gradcheck of all {len(selfcheck.ROWS)} rows of the primitive table "
          f"({len(selfcheck.primitive_classes())} primitives), orders "
          f"{'1-2, conv family 1-3' if orders is None else orders}, {args.examples} hypothesis "
          "examples each (float64, central differences; orders >= 2 composed)")
    try:
        with _hypothesis_home():
            report = selfcheck.run(args.examples, orders)
    except AssertionError as err:  # GradcheckError, or a forward differing from NumPy
        print(f"FAILED: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    exact = {row.name for row in selfcheck.ROWS if row.dtype == np.float64 and
             row.tol != selfcheck.F32}  # (the casts to and from float32 round to it)
    for order in sorted({k for r in report.values() for k in r}):
        rows = [(r[order], r.relative[order], name) for name, r in report.items()
                if order in r and name in exact]
        (err, _, at), (_, rel, rel_at) = max(rows), max(rows, key=lambda t: t[1])
        print(f"order {order}: largest error {err:.2e} ({at}), largest relative error "
              f"{rel:.2e} ({rel_at})")
    print(f"(float64 rows; the two float32 cast rows check at eps 1e-3: largest error "
          f"{max(r[1] for n, r in report.items() if n not in exact and 1 in r):.1e})")
    trivial = sorted(f"{name} (order {k})" for name, r in report.items()
                     for k in r if not r.scale.get(k, 0.0) > 1e-12)
    if trivial:  # passed, but compared 0 with 0: no evidence either way
        print(f"{len(trivial)} checks compared only zeros (a derivative 0 = 0): "
              f"{', '.join(trivial[:4])}{' ...' if len(trivial) > 4 else ''}; raise --examples")
    print(f"all {len(report)} rows passed")
    return 0


@contextlib.contextmanager
def _hypothesis_home():
    """hypothesis' storage in a temporary folder for the block: it keeps a cache of constants
    there (even with no example database), by default in ``.hypothesis/`` of the folder the
    command runs in, which a user's own folder should not get (found by probing, 2026-12-01);
    unless the user chose one (HYPOTHESIS_STORAGE_DIRECTORY)."""
    from hypothesis import configuration
    before = vars(configuration).get("__hypothesis_home_directory")
    if before is not None or os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield                  # a folder the user chose: theirs
        return
    with tempfile.TemporaryDirectory(prefix="minimeta-hypothesis-") as home:
        configuration.set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            configuration.set_hypothesis_home_dir(before)


MAX_ORDER = 4   # gradcheck --order: order 4 of every row takes minutes, each order more


def _demo(args):
    from .experiments import demo
    return demo.run(args)


def _train(args):
    from .engine import AnomalyError
    from .experiments.config import RunConfig
    from .experiments.training import NonFiniteError, train
    from .threads import configure, release

    config = RunConfig.from_args(args)
    configure(threads=config.threads)
    try:  # NumPy's overflow warnings stay quiet: the loop reports a non-finite value itself
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            train(config, announce="minimeta train: " + config.describe())
    except NonFiniteError as err:  # the run failed (exit 1); a refused one exits 2
        print(f"\nminimeta train: {err}" if sys.stderr.isatty() else f"minimeta train: {err}",
              file=sys.stderr)
        _draw(config.out)
        return 1
    except (KeyboardInterrupt, AnomalyError, MemoryError) as err:  # stopped, iterations saved
        release(err)      # the run's arrays (its frames' locals) freed for the figure
        _draw(config.out)
        raise
    _say(f"checkpoint: {os.path.join(config.out, 'checkpoint.npz')}\n"
         f"metrics: {config.out}/metrics.jsonl")
    _draw(config.out)
    return 0


def _draw(folder):
    """``<folder>/curve.png``, said in one line (``experiments/curve.py``); it never raises."""
    from .experiments.curve import plot_after_run
    plot_after_run(folder, _say, partial(print, "minimeta train:", file=sys.stderr), message)


def _say(*text):
    """``print`` for a command whose work is done and on disk: a stdout gone away (``| head``,
    a full disk) is no failure (a finished run had exited 2, saying "--resume"), and what
    is left unwritten is dropped, not flushed into the same error at exit."""
    try:
        print(*text, flush=True)
    except OSError:
        with contextlib.suppress(OSError), open(os.devnull, "wb") as null:  # (its fd closed)
            os.dup2(null.fileno(), sys.stdout.fileno())


def _eval(args):
    from .experiments import fewshot
    from .threads import configure

    configure()
    fewshot.evaluate(args.checkpoint, args.episodes, args.seed, args.part, args.ways, args.shots,
                     args.queries, args.report, args.device,
                     log=_say if args.report else print,   # (the report holds the result)
                     test_steps=args.test_steps)
    return 0


def build_parser():
    from .experiments.config import add_arguments

    parser = _Parser(prog="minimeta", description="minimeta: autodiff of any order for "
                     "meta-learning")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the sinusoid MAML experiment on a short budget, with "
                          "its figure, then ProtoNet on Omniglot if its data are found (about "
                          "3 minutes on 2 cores)")
    demo.add_argument("--iterations", type=int, default=10000,
                      help="sinusoid MAML meta-iterations (default 10000)")
    demo.add_argument("--tasks", type=int, default=600,
                      help="held-out sinusoid tasks to test on (default 600)")
    demo.add_argument("--seed", type=int, default=0, help="default 0")
    demo.add_argument("--out", default="outputs/demo",
                      help="where the figure and the ProtoNet run go (default outputs/demo)")
    demo.add_argument("--omniglot-iterations", type=int, default=200,
                      help="ProtoNet training episodes when Omniglot is found (0: skip; "
                      "default 200)")
    demo.add_argument("--omniglot-episodes", type=int, default=200,
                      help="5-way 1-shot test episodes (default 200)")
    demo.set_defaults(run=_demo)
    check = sub.add_parser("gradcheck", help="check the engine's derivatives on this machine")
    check.add_argument("--examples", type=int, default=10,
                       help="hypothesis examples per row (default 10)")
    check.add_argument("--order", type=int, default=None,
                       help="check orders 1..N for every row, N at most 4 (default: each "
                       "row's own)")
    check.set_defaults(run=_gradcheck)
    train = sub.add_parser("train", help="meta-train a learner (checkpoints, curve.png, --resume)")
    add_arguments(train)  # one option per field of RunConfig, which holds the defaults
    train.set_defaults(run=_train)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on test episodes")
    ev.add_argument("--checkpoint", required=True, help="a run's checkpoint.npz")
    ev.add_argument("--episodes", type=int, default=600, help="test episodes (default: 600)")
    ev.add_argument("--seed", type=int, default=12345,
                    help="of the test episodes (default: 12345)")
    ev.add_argument("--part", default="test", choices=["train", "val", "test"],
                    help="the split's part to draw from (default: test)")
    ev.add_argument("--ways", type=int, default=None, help="default: the training run's")
    ev.add_argument("--shots", type=int, default=None, help="default: the training run's")
    ev.add_argument("--queries", type=int, default=None,
                    help="default: the training run's (0: only for mann, which reads none)")
    ev.add_argument("--test-steps", type=int, default=None,
                    help="inner steps before scoring, for the MAML family and Reptile "
                    "(default: the training run's)")
    ev.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="(default: cpu)")
    ev.add_argument("--report", default=None,
                    help="append the result and its protocol as a JSON line to this file")
    ev.set_defaults(run=_eval)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is ``--help``'s), and no abbreviated
    options (``--lr 100`` had been read as ``--lr-halve-every 100``); the subcommands'
    parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# what a mistake in the arguments or the files raises: one line and exit 2; any other
# exception (a bug) keeps its traceback
EXPECTED = (OSError, ValueError, RuntimeError, FloatingPointError, EOFError, MemoryError,
            zipfile.BadZipFile)
BUGS = (RecursionError, NotImplementedError)  # RuntimeErrors that are programming errors
FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC),   # a full disk, a quota,
        errno.EFBIG}                                             # a file size limit
OS_HINTS = {
    FileExistsError: "a file is where a folder is needed: choose another path",
    NotADirectoryError: "a part of the path is a file, not a folder: choose another path",
    IsADirectoryError: "it is a folder: give a file path",
    PermissionError: "choose a path you may write to",
}


def script(main, argv=None):
    """Run an example's ``main(argv)`` as ``minimeta`` runs a command: a mistake in the input
    (an ``EXPECTED`` error) is one line on stderr, ``<script>: <what>``, and exit 2, not a
    traceback; a bug keeps its traceback. The examples end with
    ``raise SystemExit(script(main))``."""
    prog = os.path.basename(sys.argv[0]) or "script"
    try:
        main() if argv is None else main(argv)    # what it returns is its own (a count, say)
        return 0
    except BUGS:
        raise
    except EXPECTED as err:
        print(f"{prog}: {message(err)}", file=sys.stderr)
        return 2


def message(err, command=""):
    """One line saying what ``err`` (an ``EXPECTED`` error) is (without a leading
    ``command: ``, which the caller prints)."""
    from .engine.backend import out_of_memory
    if out_of_memory(err):      # the host's, or a GPU's (cuBLAS: CUBLAS_STATUS_ALLOC_FAILED)
        text = (f"out of memory ({str(err) or 'an allocation failed'}): ask for fewer or "
                "smaller tasks, episodes or batches")
    elif isinstance(err, OSError) and err.errno in FULL:
        kept = "" if command != "train" else " (nothing was saved: then rerun)" if getattr(
            err, "nothing_saved", False) else " (the run's last checkpoint is kept: then --resume)"
        where = f"{err.filename}: " if err.filename else ""
        fix = "a file size limit (ulimit -f, or the file system's)" if \
            err.errno == errno.EFBIG else "free some space"
        text = f"{where}{err.strerror}: {fix}{kept}"
    elif isinstance(err, OSError) and err.strerror and err.filename:
        hint = OS_HINTS.get(type(err))
        text = f"{err.filename}: {err.strerror}" + (f" ({hint})" if hint else "")
    else:
        text = str(err) or type(err).__name__
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text[len(command) + 2:] if command and text.startswith(f"{command}: ") else text


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:   # named against the subcommand, whose --help lists what it takes, if after it
        where = f"minimeta {args.command}" if argv.index(extra[0]) > argv.index(
            args.command) else "minimeta"
        parser.exit(2, f"{where}: error: unrecognized arguments: {' '.join(extra)} (see "
                    f"{where} --help)\n")
    checks = () if args.command == "train" else (  # train's options: RunConfig checks them
        ("iterations", 1), ("tasks", 2), ("examples", 1), ("order", 1), ("ways", 1),
        ("shots", 1), ("queries", 0), ("episodes", 2), ("omniglot_iterations", 0),
        ("omniglot_episodes", 2), ("seed", 0))
    for name, least in checks:
        value = getattr(args, name, None)
        if value is not None and value < least:
            parser.exit(2, f"minimeta {args.command}: --{name.replace('_', '-')} must be at "
                        f"least {least}, got {value}\n")
    from .threads import memory_ceiling   # an allocation past the memory: a MemoryError
    try:
        with memory_ceiling() if getattr(args, "device", None) in (None, "cpu") else \
                contextlib.nullcontext():   # (not a GPU's driver, which maps more than it uses)
            return args.run(args)
    except BUGS:
        raise
    except EXPECTED as err:
        parser.exit(2, f"minimeta {args.command}: {message(err, args.command)}\n")
    except (KeyboardInterrupt, SystemError) as err:  # Ctrl-C; SIGTERM, SIGHUP in training
        stop = interrupt_in(err)
        if stop is None:
            raise
        from .experiments.stopping import Terminated

        stopped = isinstance(stop, Terminated)
        try:
            print(f"\nstopped by {stop}" if stopped else "\ninterrupted", file=sys.stderr)
        except OSError:                                # SIGHUP: the terminal is gone
            pass
        return 128 + (stop.signum if stopped else 2)  # as a shell reports the signal's end


def interrupt_in(err):
    """The KeyboardInterrupt ``err`` is or was caused by, or None. Outside training, Ctrl-C
    raises at once, and when that is inside a numba kernel (which calls back into Python as it
    returns its arrays) numba reports a SystemError caused by the KeyboardInterrupt."""
    while err is not None and not isinstance(err, KeyboardInterrupt):
        err = err.__cause__ or err.__context__
    return err


if __name__ == "__main__":
    sys.exit(main())
