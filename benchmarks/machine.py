"""Benchmark: the whole machine. minimeta and PyTorch, each at its best setting and both on one
thread, each in a process of its own, interleaved round by round.

Workloads (float32, conv4 on 28×28 images):
- ``conv4``: forward + backward on 640 images;
- ``maml5``: one second-order MAML meta-iteration, 5-way 1-shot, 15 queries per class,
  32 tasks, 1 inner step, α 0.4, Adam step;
- ``maml20``: the same, 20-way 1-shot, 5 queries per class, 16 tasks, 5 inner steps;
- ``protonet``: one ProtoNet episode, 60-way 5-shot 5-query, Adam step;
- ``maml5_stacked``, ``maml20_stacked`` (not in the default set): the two MAML meta-iterations
  with the meta-batch stacked into one graph (minimeta's ``StackedTasks``; PyTorch's grouped
  convolutions, ``workloads.torch_maml_stacked``): the GPU's way, slower than the loop on
  worker threads on a CPU;
- ``sinusoid``, ``sinusoid5`` (not in the default set): ten meta-iterations of the sinusoid
  experiment's second-order MAML (``sinusoid_maml.py``'s, tasks stacked, as the example trains),
  1 and 5 inner steps: tiny matrices, so the engine's own cost per op (minimeta replays them:
  ``engine/replay.py``).

Settings: minimeta's best is its policy (``minimeta/threads.py``): one BLAS thread, the tasks
of a meta-batch on one worker per core, a large kernel split over the cores, OpenMP threads
that sleep after a loop; its single-thread setting has one worker, no split, one numba thread.
PyTorch's best is the fastest of ``set_num_threads`` = cores (its default), 1, and, for the
MAML meta-iterations, the tasks on one Python thread per core with one intra-op thread each
(``workloads.torch_maml(workers=...)``, minimeta's own strategy: autograd releases the GIL;
added 2026-12-01 after a review: here 1.7× faster than its loop at 2 threads), those again
with the conv weights channels_last; for conv4 and ProtoNet, both thread counts again with
channels_last weights (NHWC activations, oneDNN's faster layout) and with channels_last and
``torch.compile`` (fused, as minimeta's kernels are; compiled in the warm-up: added 2026-12-03,
10–20% faster than NCHW eager); for the MAML loops and the sinusoid, both thread counts with
the meta-iteration in ``torch.func``'s transforms, compiled ("2-compile", "1-compile";
``workloads.torch_maml_compiled``; autograd's double backward does not compile; added
2026-12-05, 1.5× faster than the eager loop); its OpenMP runtime at its default (spinning;
``--torch-omp-wait PASSIVE`` for the other). Both take minimeta's malloc policy.

**Each library runs in a process of its own** (``serve``), driven round by round by this one,
which times nothing itself: a process has one OpenMP runtime. Imported first, PyTorch loads its
own ``libgomp.so.1`` and numba's ``prange`` loops bind to it (``LD_DEBUG=bindings`` shows
``GOMP_parallel`` resolved in ``torch/lib``), so in one process minimeta ran under PyTorch's
spinning wait policy, whatever it asked for: ProtoNet 25–30% slower at 2 threads, conv4 about
10% (docs/PERFORMANCE.md, "One OpenMP runtime a process"). Each round times every (workload,
setting) once, so a noisy moment hits all of them (odd rounds in reverse order, so that no case
always runs first); the table gives the median over rounds and the range, and the paired
ratio: minimeta's time over PyTorch's in the same round, its median and range over the rounds.

``--memory`` instead runs the 5-way MAML meta-iteration alone in a fresh process per library
(and per minimeta worker count) and prints its peak RSS.

``--before <checkout>`` also times that checkout's minimeta (say a ``git worktree`` of an older
commit) in a third process, in the same rounds: each round's ratio of this tree's time over
the other's, at all cores and at one thread, is the before/after figure a change needs.

Run: python benchmarks/machine.py [--rounds 5] [--only maml5 maml5_stacked] [--memory]
[--before /tmp/old-checkout]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from minimeta import nn
from minimeta.engine.backend import to_device
from minimeta.learners import MAML, StackedTasks
from minimeta.optim import Adam
from minimeta.threads import omp_wait_policy
from _timing import apply_malloc_policy, blas_threads, torch_installed, try_torch
from workloads import (maml_tasks, mm_conv4, mm_protonet, torch_maml, torch_maml_compiled,
                       torch_maml_stacked, torch_workloads)

try:
    from minimeta.kernels import threads as kernel_threads
except ImportError:  # an older tree (before the kernel split), timed as "before"
    kernel_threads = None
# The cores this process may use: the affinity mask bounded by a cgroup CPU quota (both
# libraries get the same count; an older tree without ``cores()`` counts the mask).
CORES = kernel_threads.cores() if hasattr(kernel_threads, "cores") else len(
    os.sched_getaffinity(0))
SHAPES = {"maml5": dict(ways=5, queries=15, n_tasks=32, steps=1),
          "maml20": dict(ways=20, queries=5, n_tasks=16, steps=5)}


KEYS = ["conv4", "maml5", "maml20", "protonet", "maml5_stacked", "maml20_stacked"]  # GPU's too
SINUSOID = {"sinusoid": 1, "sinusoid5": 5}     # inner steps (CPU only: not in KEYS)
SINUSOID_CALLS = 10                             # meta-iterations a timed call (~6 ms each)


def repeated(run):
    """``run`` called ``SINUSOID_CALLS`` times a timed call (a sinusoid meta-iteration alone is
    too short for one reading of the clock)."""
    def calls():
        for _ in range(SINUSOID_CALLS):
            run()
    return calls


def mm_maml(ways, queries, n_tasks, steps, device="cpu", stacked=False):
    """The MAML meta-iteration, from images already where the computation runs: on a GPU,
    uploaded once, as PyTorch's (``workloads.torch_maml``) always were (until 2026-12-05 each
    call had stacked and uploaded them again, 8 MB at 5-way). The labels stay on the host,
    where minimeta checks them."""
    learner = MAML(nn.conv4(ways).to(device), 0.4, steps)
    tasks = [(to_device(xs, device), ys, to_device(xq, device), yq)
             for xs, ys, xq, yq in maml_tasks(n_tasks, ways, 1, queries)]
    opt = Adam(learner.meta_parameters(), 1e-3)
    meta = StackedTasks(learner) if stacked else learner

    def run():
        meta.outer_step(tasks)
        opt.step()
        opt.zero_grad()
    return run, learner


def minimeta_cases(key, device="cpu", shapes=SHAPES):
    """(the call that times case ``key``, its MAML learner or None)."""
    shape, stacked = key.removesuffix("_stacked"), key.endswith("_stacked")
    if shape in shapes:
        return mm_maml(**shapes[shape], device=device, stacked=stacked)
    if key in SINUSOID:
        from sinusoid_maml import ours
        return repeated(ours(SINUSOID[key], vectorize=True)), None
    return {"conv4": mm_conv4, "protonet": mm_protonet}[key](device=device), None


def torch_case(torch, key, device="cpu", shapes=SHAPES):
    shape, stacked = key.removesuffix("_stacked"), key.endswith("_stacked")
    if shape in shapes:
        return (torch_maml_stacked if stacked else torch_maml)(torch, **shapes[shape],
                                                               device=device)
    if key in SINUSOID:
        from sinusoid_maml import theirs
        return repeated(theirs(torch, SINUSOID[key], vectorize=True))
    return torch_workloads(torch, device)[key]()


def set_minimeta(threads, learner):
    """minimeta on ``threads`` cores: workers, kernel split and numba threads."""
    import numba

    if kernel_threads is not None:
        kernel_threads.set_split_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # a preset cap
    if learner is not None:
        learner.workers = threads


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=KEYS + list(SINUSOID))
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-child", choices=["minimeta", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=["minimeta", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the table as JSON here")
    parser.add_argument("--before", metavar="CHECKOUT",
                        help="also time this checkout's minimeta, in the same rounds")
    parser.add_argument("--default-omp-wait", action="store_true",
                        help="leave numba's OpenMP threads spinning after each loop "
                             "(GNU OpenMP's default) instead of minimeta's passive policy")
    parser.add_argument("--torch-omp-wait", choices=["PASSIVE", "ACTIVE"],
                        help="OMP_WAIT_POLICY for PyTorch's process (default: unset, its own)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    apply_malloc_policy()
    if args.memory_child:
        return memory_child(args.memory_child, args.workers)
    if args.memory:
        return memory()
    keys = args.only or KEYS[:4]
    if args.serve:
        return serve(args.serve, keys, args.default_omp_wait)
    servers = {"minimeta": Server("minimeta", keys, args)}
    if args.before:
        if not os.path.isdir(os.path.join(args.before, "minimeta")):
            parser.error(f"--before: {args.before} holds no minimeta package")
        servers["before"] = Server("before", keys, args)
    if torch_installed():
        servers["torch"] = Server("torch", keys, args)
    cases = [(key, lib, n) for key in keys for lib in servers for n in settings(lib, key)]
    print(f"{CORES} cores; each library in its own process; BLAS 1 thread for minimeta; "
          f"{args.rounds} interleaved rounds", flush=True)
    cap = os.environ.get("NUMBA_NUM_THREADS")
    if cap and cap.isdigit() and int(cap) < CORES:
        print(f"note: NUMBA_NUM_THREADS={cap} caps minimeta's kernels below the {CORES} "
              "threads PyTorch gets: unset it for a fair table", flush=True)
    samples = {case: [] for case in cases}
    try:
        for server in servers.values():
            server.ready()
        for r in range(args.rounds):
            for case in cases[::-1] if r % 2 else cases:   # no side always first
                samples[case].append(servers[case[1]].time(case[0], case[2]))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.close()
    report(keys, samples, "torch" in servers, args.json)
    if args.before:
        report_before(keys, samples)


class Server:
    """One library's timing process (``serve``): it builds and warms up its cases, then times
    the case named on each line it reads and writes back the seconds."""

    def __init__(self, lib, keys, args):
        env = dict(os.environ)
        if lib == "torch":
            env.pop("OMP_WAIT_POLICY", None)
            if args.torch_omp_wait:
                env["OMP_WAIT_POLICY"] = args.torch_omp_wait
        if args.before and lib != "torch":  # each side's minimeta from its own tree
            tree = args.before if lib == "before" else \
                os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
            env["PYTHONPATH"] = os.path.abspath(tree)
        command = [sys.executable, os.path.abspath(__file__), "--serve",
                   "torch" if lib == "torch" else "minimeta", "--only", *keys]
        if args.default_omp_wait:
            command.append("--default-omp-wait")
        self.lib = lib
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env, cwd=os.path.dirname(command[1]))

    def _answer(self):
        for line in self.process.stdout:
            if line.startswith(ANSWER):
                return line[len(ANSWER):].strip()
        raise RuntimeError(f"machine.py: the {self.lib} process ended "
                           f"(exit {self.process.wait()}) before it answered")

    def ready(self):
        self._answer()

    def time(self, key, threads):
        self.process.stdin.write(f"{key} {threads}\n")
        self.process.stdin.flush()
        return float(self._answer())

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


ANSWER = "machine.py> "   # the prefix of a server's answers, apart from anything else it prints
TASKS = f"{CORES}tasks"   # PyTorch's MAML with its tasks on CORES threads, one intra-op each

LAYOUTS = ("cl", "compile")   # PyTorch's conv4 and ProtoNet: channels_last, and compiled too
COMPILABLE = ("conv4", "protonet")   # the layouts (MAML's compiled cases: torch.func's)
THREADS = [str(n) for n in sorted({CORES, 1}, reverse=True)]  # one core: one, not twice


def settings(lib, key):
    """The settings ``lib`` is timed at for workload ``key``: all cores, one thread; for
    PyTorch's looped MAML its tasks on threads, NCHW and channels_last; for its conv4 and
    ProtoNet both thread counts again, channels_last ("2-cl") and compiled ("2-compile")
    (labels, as the servers read them)."""
    if lib != "torch":
        return THREADS
    if key in SHAPES:
        return THREADS + ([TASKS, f"{TASKS}-cl"] if CORES > 1 else []) + \
            [f"{n}-compile" for n in THREADS]
    if key in COMPILABLE:
        return THREADS + [f"{n}-{layout}" for layout in LAYOUTS for n in THREADS]
    if key in SINUSOID:
        return THREADS + [f"{n}-compile" for n in THREADS]
    return THREADS


def serve(lib, keys, default_omp_wait=False):
    """The timing process of one library: its cases at CORES threads and at 1, warmed up
    (numba compilation, first-touch memory), then one timed call per request."""
    cases = {}
    if lib == "minimeta":
        if not default_omp_wait:
            omp_wait_policy()                      # before numba's runtime loads
        blas_threads(1)
        for key in keys:
            run, learner = minimeta_cases(key)
            cases[key, str(CORES)] = (run, lambda n=CORES, lr=learner: set_minimeta(n, lr))
            cases[key, "1"] = (run, lambda lr=learner: set_minimeta(1, lr))
    else:
        torch = try_torch()
        for key in keys:
            run = torch_case(torch, key)
            cases[key, str(CORES)] = (run, lambda: torch.set_num_threads(CORES))
            cases[key, "1"] = (run, lambda: torch.set_num_threads(1))
            if TASKS in settings(lib, key):
                cases[key, TASKS] = (torch_maml(torch, **SHAPES[key], workers=CORES),
                                     lambda: torch.set_num_threads(1))
                cases[key, f"{TASKS}-cl"] = (torch_maml(torch, **SHAPES[key], workers=CORES,
                                                        channels_last=True),
                                             lambda: torch.set_num_threads(1))
            if key in SHAPES:       # torch.func's transforms, compiled: one compile
                run = torch_maml_compiled(torch, **SHAPES[key])
                for n in THREADS:
                    cases[key, f"{n}-compile"] = (run, lambda n=int(n): torch.set_num_threads(n))
            if key in SINUSOID:     # torch.func's transforms, compiled: one compile
                from sinusoid_maml import theirs_compiled
                run = repeated(theirs_compiled(torch, SINUSOID[key]))
                for n in THREADS:
                    cases[key, f"{n}-compile"] = (run, lambda n=int(n): torch.set_num_threads(n))
            for layout in LAYOUTS if key in COMPILABLE else ():
                run = torch_workloads(torch, layout=layout)[key]()   # one compile, both counts
                for n in THREADS:
                    cases[key, f"{n}-{layout}"] = (run,
                                                   lambda n=int(n): torch.set_num_threads(n))
    for run, setup in cases.values():
        setup()
        run()
    print(ANSWER + "ready", flush=True)
    for line in sys.stdin:
        key, setting = line.split()
        run, setup = cases[key, setting]
        setup()
        print(f"{ANSWER}{timed(run)!r}", flush=True)


def report(keys, samples, with_torch, json_path):
    """The table: medians and ranges, ratios best to best and one thread each, paired."""
    table = {}
    all_cores = str(CORES)
    for key in keys:
        row = {}
        for (k, lib, n), s in samples.items():
            if k == key and s:
                row[f"{lib}@{n}"] = (statistics.median(s), min(s), max(s))
        table[key] = row

        def cell(name, label):
            med, low, high = row[name]
            return f"{label} {med:7.3f} s [{low:.3f}-{high:.3f}]"
        best_mm, one_mm = row[f"minimeta@{all_cores}"][0], row["minimeta@1"][0]
        line = (f"{key:9s} {cell(f'minimeta@{all_cores}', f'minimeta {CORES} threads')}"
                f" | 1 thread {one_mm:7.3f} s")
        if with_torch:
            torch_settings = settings("torch", key)
            best_t = min(row[f"torch@{n}"][0] for n in torch_settings)
            line += f" || {cell(f'torch@{all_cores}', f'torch {CORES} threads')}"
            line += f" | 1 thread {row['torch@1'][0]:7.3f} s"
            if TASKS in torch_settings:
                line += f" | {cell(f'torch@{TASKS}', f'tasks on {CORES} threads')}"
            for name in (n for n in torch_settings if "-" in n):   # the layouts
                line += f" | {cell(f'torch@{name}', name)}"
            one_t = min(row[f"torch@{n}"][0] for n in torch_settings  # its best on one thread
                        if n == "1" or n.startswith("1-"))
            line += (f" || ratio best/best {best_mm / best_t:5.2f}, "
                     f"1/1 {one_mm / one_t:5.2f}")
            paired = paired_ratios(samples, key)
            row["paired"] = paired
            line += (f" || paired: median {statistics.median(paired):.2f} "
                     f"[{min(paired):.2f}-{max(paired):.2f}], minimeta faster in "
                     f"{sum(r < 1 for r in paired)} of {len(paired)} rounds")
        print(line, flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(table, f, indent=1)


def report_before(keys, samples):
    """This tree's minimeta over the ``--before`` checkout's, round by round (paired)."""
    for key in keys:
        line = f"{key:9s} after / before, paired:"
        for n in settings("minimeta", key):
            after, before = samples[key, "minimeta", n], samples[key, "before", n]
            ratios = [a / b for a, b in zip(after, before)]
            line += (f" | {n} thread(s) median {statistics.median(ratios):.3f} "
                     f"[{min(ratios):.3f}-{max(ratios):.3f}] (before "
                     f"{statistics.median(before):.3f} s, after {statistics.median(after):.3f} s)")
        print(line, flush=True)


def paired_ratios(samples, key):
    """Round by round, minimeta's time at its best setting over PyTorch's best (the fastest
    of its settings) in the same round: a slow spell of the machine that lasts a round hits
    both sides of each ratio, so these scatter less than a ratio of medians over all rounds."""
    mine = samples[key, "minimeta", str(CORES)]
    theirs = [samples[key, "torch", n] for n in settings("torch", key)]
    return [m / min(t) for m, *t in zip(mine, *theirs)]


def memory_child(lib, workers):
    """One 5-way MAML meta-iteration (2 runs), alone in this process: print peak RSS."""
    shape = SHAPES["maml5"]
    if lib == "minimeta":
        blas_threads(1)
        run, learner = mm_maml(**shape)
        set_minimeta(workers, learner)
    else:
        import torch

        run = torch_maml(torch, **shape)
    run()
    run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"lib": lib, "workers": workers, "peak_rss_mib": round(peak, 1)}))


def memory():
    runs = [("minimeta", 1), ("minimeta", CORES)] + ([("torch", 1)] if torch_installed() else [])
    for lib, workers in runs:
        out = subprocess.run([sys.executable, __file__, "--memory-child", lib, "--workers",
                              str(workers)], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    sys.exit(main())
