"""Device calls of one meta-iteration on the GPU path, counted without a GPU.

Every call on a device array costs the host time on a GPU, and all but the views a launch:
a CuPy function or method (views and no-op casts included), a ufunc, a numba.cuda launch. The
strict stand-in CuPy (``tests/fake_cupy.py``) counts them. The kernels' launches are counted,
not run, so ``machine.py``'s full-size cases take about a minute each on a CPU. The count is
of one call of the case (``outer_step`` and the optimizer's step) after a first one (which
makes state, Adam's moments). Each device call is put to the primitive whose ``forward`` made
it, or, outside any primitive, to the library function that made it (``optim.py _update``).
Copies from host to device (``uploads``: each a CUDA memcpy) are counted apart, by place; so
are the bytes copied on the device: by layout calls that must copy (a reshape of a transpose) and
by CuPy's matmul (its operands that are not C-contiguous: its ``copy`` calls).
Figures: docs/PERFORMANCE.md, "The GPU backend".

Run: python benchmarks/device_calls.py [--only maml5_stacked maml20_stacked maml5] [--top 12]
     [--tasks T --queries Q] [--json out.json]
"""
import argparse
import collections
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(os.path.dirname(HERE), "tests"), os.path.dirname(HERE)]


def where(frame):
    """The primitive whose ``forward`` is on the stack (innermost), else ``file function`` of
    the innermost minimeta frame, for a device call made in ``frame``."""
    f = frame
    while f is not None:
        owner = f.f_locals.get("self")
        if f.f_code.co_name == "forward" and owner is not None and \
                os.sep + "primitives" + os.sep in f.f_code.co_filename:
            return type(owner).__name__
        f = f.f_back
    f = frame
    while f is not None and (os.sep + "minimeta" + os.sep not in f.f_code.co_filename
                             or "fake_cupy" in f.f_code.co_filename):
        f = f.f_back
    return "?" if f is None else f"{os.path.basename(f.f_code.co_filename)} {f.f_code.co_name}"


def count(key, shapes):
    """{"calls", "ops", "reads", "copied_mib": {function: MiB copied on the device}, "uploads":
    {place: host → device copies}, "by": {place: {kind: calls}}, "ops_by": {primitive: ops}}
    of case ``key`` of ``machine.py`` at ``shapes``."""
    import fake_cupy
    import machine
    from minimeta.engine import autodiff

    by, ops = collections.defaultdict(collections.Counter), collections.Counter()

    class Attributed(collections.Counter):
        def __init__(self, places):
            super().__init__()
            self.places = places

        def __setitem__(self, kind, value):       # counter[kind] += n: n to the caller's place
            self.places[where(sys._getframe(1))][kind] += value - self[kind]
            super().__setitem__(kind, value)

    fake_cupy.DEVICE_CALLS = Attributed(by)
    fake_cupy.UPLOADS = Attributed(collections.defaultdict(collections.Counter))
    call, _ = machine.minimeta_cases(key, "cuda", shapes)
    call()
    apply = autodiff.apply

    def counted(op, *args, **kwargs):
        ops[type(op).__name__] += 1
        return apply(op, *args, **kwargs)

    modules = [m for m in list(sys.modules.values())
               if getattr(m, "__name__", "").startswith("minimeta")
               and getattr(m, "apply", None) is apply]
    by.clear()
    fake_cupy.UPLOADS.places.clear()
    fake_cupy.TRANSFERS.clear()
    fake_cupy.COPIED.clear()
    for m in modules:
        m.apply = counted
    try:
        call()
    finally:
        for m in modules:
            m.apply = apply
    return {"calls": sum(sum(c.values()) for c in by.values()), "ops": sum(ops.values()),
            "reads": sum(fake_cupy.TRANSFERS.values()),
            "copied_mib": {k: v / 2 ** 20 for k, v in fake_cupy.COPIED.items()},
            "uploads": {k: sum(v.values()) for k, v in fake_cupy.UPLOADS.places.items()},
            "by": {k: dict(v) for k, v in by.items()}, "ops_by": dict(ops)}


def by_place(counts, spec):
    return ", ".join(f"{k} {n:{spec}}" for k, n in sorted(counts.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=["maml5_stacked", "maml20_stacked",
                                                      "maml5"],
                        choices=["maml5", "maml20", "maml5_stacked", "maml20_stacked"])
    parser.add_argument("--top", type=int, default=12, help="places listed (default 12)")
    parser.add_argument("--tasks", type=int, help="tasks a meta-batch (default: machine.py's)")
    parser.add_argument("--queries", type=int, help="queries a class (default: machine.py's)")
    parser.add_argument("--json", help="write the counts there too")
    args = parser.parse_args()
    import fake_cupy
    import machine

    fake_cupy.install(run=False)    # for this process: CuPy stood in, launches not run
    shapes = {k: dict(v, **{name: value for name, value in (("n_tasks", args.tasks),
                                                            ("queries", args.queries))
                            if value is not None}) for k, v in machine.SHAPES.items()}
    report = {}
    for key in args.only:
        report[key] = counted = count(key, shapes)
        print(f"{key}: {counted['calls']} device calls, {counted['ops']} engine ops, "
              f"{counted['reads']} device reads, {sum(counted['copied_mib'].values()):.0f} MiB "
              f"copied ({by_place(counted['copied_mib'], '.0f')}), "
              f"{sum(counted['uploads'].values())} uploads "
              f"({by_place(counted['uploads'], 'd')})")
        places = sorted(counted["by"].items(), key=lambda kv: -sum(kv[1].values()))
        for place, kinds in places[:args.top]:
            made = counted["ops_by"].get(place, 0)
            print(f"  {sum(kinds.values()):7d}  {place:32s} ops {made:6d}  "
                  + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
