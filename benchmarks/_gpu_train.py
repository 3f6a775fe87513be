"""``gpu_check.py``'s ``train`` phase: second-order MAML trained on the GPU for the minutes left,
then evaluated, each a ``minimeta`` command in a child process bounded in time (``bounded``:
SIGTERM first, on which minimeta saves its checkpoint, SIGKILL after a grace). Each command's
limit is taken when it starts, from the time then left; the training's figures are kept when
the evaluation fails or runs out of time."""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")


def train(out, minutes, episodes, device, simulate, left, say=print):
    """``minimeta train`` for ``minutes`` of training, then ``minimeta eval`` of its checkpoint,
    their output streamed to the console; ``left()``: the seconds left of the whole check.
    The training gets its minutes and a minute to start (data, compilation), but never the
    last minute, which the evaluation gets with whatever training left. A result dict; an
    evaluation that fails is ``eval_error`` in it, beside the training's figures."""
    run_dir = os.path.join(out, "maml5w1s")
    checkpoint = os.path.join(run_dir, "checkpoint.npz")
    mm = [sys.executable, "-m", "minimeta.cli"]
    size = ["--iterations", "2", "--meta-batch", "2"] if simulate else ["--iterations", "1000000"]
    cmds = [mm + ["train", "--learner", "maml", "--ways", "5", "--shots", "1", "--device", device,
                  "--minutes", f"{minutes:.2f}", "--validate-every", "0", "--out", run_dir,
                  "--overwrite"] + size,
            mm + ["eval", "--checkpoint", checkpoint, "--episodes", str(episodes), "--device",
                  device, "--report", os.path.join(out, "eval.jsonl")]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    if simulate:       # the child processes stand CuPy in too
        env["PYTHONPATH"] = os.pathsep.join([TESTS, env["PYTHONPATH"]])
        cmds = [[sys.executable, os.path.join(HERE, "gpu_check.py"), "--as-simulated"]
                + c[len(mm):] for c in cmds]
    result = {"episodes": episodes, "minutes": minutes}
    say("$ " + " ".join(cmds[0]))
    code = result["train_exit"] = bounded(
        cmds[0], env, max(30, min(minutes * 60 + 60, left() - 60)), say=say)
    if code != 0 and not (code == "timed out" and os.path.exists(checkpoint)):
        raise RuntimeError("training " + ("ran out of time before its first checkpoint"
                                          if code == "timed out" else f"failed (exit {code})"))
    last = json.loads(open(os.path.join(run_dir, "metrics.jsonl")).readlines()[-1])
    result.update(iterations=last["iteration"], train_seconds=last.get("train_seconds"))
    say("$ " + " ".join(cmds[1]))                # its limit: what is left now
    code = result["eval_exit"] = bounded(cmds[1], env, max(30, left()), say=say)
    if code != 0:
        result["eval_error"] = "ran out of time" if code == "timed out" else f"exit {code}"
        return result
    row = json.loads(open(os.path.join(out, "eval.jsonl")).readlines()[-1])
    result.update(accuracy=row.get("accuracy"), interval=row.get("interval"))
    return result


def bounded(cmd, env, seconds, grace=30, say=print, group=False):
    """Run ``cmd`` (its output to this console) for at most ``seconds``; past them, SIGTERM
    (minimeta saves the iterations done and stops), then SIGKILL ``grace`` seconds later, or at
    once for a ``grace`` of 0. ``group``: the child leads a process group of its own and the
    signals go to the whole group (a child of its own may hold the GPU too). Its exit code, or
    "timed out"."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, start_new_session=group)

    def send(sig):
        if group:
            os.killpg(child.pid, sig)
        else:
            child.send_signal(sig)
    try:
        return child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        say(f"past its {time.perf_counter() - start:.0f} s: {'SIGTERM' if grace else 'SIGKILL'}")
        if grace:
            send(signal.SIGTERM)
            try:
                child.wait(timeout=grace)
                return "timed out"
            except subprocess.TimeoutExpired:
                pass
        send(signal.SIGKILL)
        child.wait()
        return "timed out"
