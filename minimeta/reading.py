"""The reading order of the source, as data: one line through every module.

``ORDER`` lists every module once, each with a few words on what it holds. The last paragraph
of each module's docstring, its "Read next:" line, is generated from this list: it names the
next module (by its path from the repository root) and what that module holds. So the line
through the package is written once, here. ``python -m minimeta.reading`` prints the order,
``--check`` names the modules whose line is stale and those ``ORDER`` leaves out, ``--write``
rewrites the lines after an edit, and ``tests/test_structure.py`` checks that every module's
line matches and that ``ORDER`` names every module of the package exactly once.

    >>> ORDER[0][0], ORDER[-1][0]
    ('minimeta/__init__.py', 'minimeta/reading.py')

Read next: nothing: this is the end of the line (back to ``README.md`` and ``docs/TOUR.md``).
"""
import os
import re
import sys
import textwrap

ORDER = [  # (path from the repository root, what it holds)
    ("minimeta/__init__.py", "the layers of the package"),
    ("minimeta/engine/__init__.py", "the engine, and its reading order"),
    ("minimeta/engine/backend.py", "devices: NumPy on the CPU, CuPy on a GPU"),
    ("minimeta/engine/tensor.py", "the Tensor, and making Tensors"),
    ("minimeta/engine/anomaly.py", "finding the first NaN or inf"),
    ("minimeta/engine/grad_mode.py", "no_grad: whether ops are recorded"),
    ("minimeta/engine/autodiff.py", "the Primitive contract, apply, the backward pass"),
    ("minimeta/engine/primitives/__init__.py", "the primitive set, file by file"),
    ("minimeta/engine/primitives/elementwise.py", "arithmetic and elementwise primitives"),
    ("minimeta/engine/primitives/shape.py", "reshape, transpose, broadcast, indexing"),
    ("minimeta/engine/primitives/reductions.py", "sum, max, logsumexp, and the unbroadcast"),
    ("minimeta/engine/primitives/linalg.py", "the matrix product with transpose flags"),
    ("minimeta/engine/primitives/fused.py", "fused primitives: kernel VJPs, composite orders"),
    ("minimeta/engine/primitives/attention.py", "fused cosine attention"),
    ("minimeta/engine/primitives/normalization.py", "fused batch normalisation"),
    ("minimeta/engine/primitives/conv.py", "the convolution family and max pooling"),
    ("minimeta/engine/primitives/causal.py", "the causal dilated 1-D convolution (SNAIL's)"),
    ("kernels/__init__.py", "the kernel table"),
    ("kernels/conv_ref.py", "convolution in NumPy: the spec"),
    ("kernels/causal_ref.py", "the causal dilated 1-D convolution in NumPy: the spec"),
    ("kernels/pool_ref.py", "max pooling in NumPy: the spec"),
    ("kernels/attention_ref.py", "cosine attention in NumPy: the spec"),
    ("kernels/norm_ref.py", "batch norm in NumPy: the spec"),
    ("kernels/select_ref.py", "the elementwise select in NumPy: the spec"),
    ("kernels/optim_ref.py", "Adam's update in NumPy: the spec"),
    ("kernels/threads.py", "one kernel's work split over the cores; per-thread switches"),
    ("kernels/conv_numba.py", "convolution with numba on the CPU"),
    ("kernels/winograd_numba.py", "3×3 convolution in fewer multiplies (Winograd)"),
    ("kernels/causal_cpu.py", "the causal 1-D convolution on the CPU: a GEMM per tap"),
    ("kernels/pool_numba.py", "max pooling with numba"),
    ("kernels/attention_numba.py", "cosine attention with numba"),
    ("kernels/norm_numba.py", "batch norm with numba"),
    ("kernels/select_numba.py", "the elementwise select with numba"),
    ("kernels/_cuda.py", "what the CUDA kernels share"),
    ("kernels/_cuda_raw.py", "launching a numba.cuda kernel through CuPy"),
    ("kernels/conv_cuda.py", "convolution on a GPU"),
    ("kernels/causal_cuda.py", "the causal 1-D convolution on a GPU"),
    ("kernels/pool_cuda.py", "max pooling on a GPU"),
    ("kernels/attention_cuda.py", "cosine attention on a GPU"),
    ("kernels/norm_cuda.py", "batch normalisation on a GPU"),
    ("kernels/optim_cuda.py", "Adam's update on a GPU"),
    ("minimeta/engine/ops.py", "the user-facing namespace and the Tensor's operators"),
    ("minimeta/engine/workers.py", "the tasks of a meta-batch on worker threads"),
    ("minimeta/engine/derivatives.py", "hvp, jacobian, hessian"),
    ("minimeta/engine/replay.py", "a call recorded once, then replayed: Traced"),
    ("minimeta/gradcheck.py", "numerical gradient checks of any order"),
    ("minimeta/gradcheck_explain.py", "why a gradient check failed, in words"),
    ("minimeta/testing.py", "hypothesis strategies for property tests"),
    ("minimeta/selfcheck_inputs.py", "the input domains of the primitive table"),
    ("minimeta/selfcheck.py", "the primitive table and its self-check"),
    ("minimeta/viz.py", "a graph as Graphviz DOT text"),
    ("minimeta/functional/__init__.py", "compositions on top of the engine"),
    ("minimeta/functional/losses.py", "softmax, cross-entropy, MSE"),
    ("minimeta/functional/layers.py", "linear, conv2d, pooling, batch norm"),
    ("minimeta/functional/metric.py", "similarities and the Matching read-out"),
    ("minimeta/functional/sequence.py", "SNAIL's gated causal convolution and attention"),
    ("minimeta/functional/recurrent.py", "the LSTM cell"),
    ("minimeta/nn/__init__.py", "modules with functional parameters"),
    ("minimeta/nn/module.py", "the Module: model(x, params)"),
    ("minimeta/nn/layers.py", "the layers as modules"),
    ("minimeta/nn/snail.py", "SNAIL's blocks: temporal convolutions and causal attention"),
    ("minimeta/nn/fce.py", "Matching Networks' full context embeddings"),
    ("minimeta/nn/backbones.py", "conv4, the MLP, Relation Networks' parts"),
    ("minimeta/optim.py", "SGD and Adam"),
    ("minimeta/io.py", "atomic .npz checkpoints"),
    ("minimeta/learners/__init__.py", "the learners"),
    ("minimeta/learners/base.py", "what every learner shares"),
    ("minimeta/learners/maml.py", "MAML, first-order MAML, Meta-SGD, ANIL"),
    ("minimeta/learners/stacked.py", "a meta-batch as one stacked batch"),
    ("minimeta/learners/reptile.py", "Reptile"),
    ("minimeta/learners/metric.py", "Prototypical, Matching and Relation Networks"),
    ("minimeta/learners/snail.py", "SNAIL: an episode read as a sequence"),
    ("minimeta/learners/mann.py", "a memory-augmented network (MANN)"),
    ("minimeta/learners/cnp.py", "conditional neural processes: the model-based family"),
    ("minimeta/data/__init__.py", "task families as NumPy arrays"),
    ("minimeta/data/episodes.py", "the episode sampler"),
    ("minimeta/data/sinusoid.py", "sinusoid regression tasks"),
    ("minimeta/data/fetch.py", "downloading the originals"),
    ("minimeta/data/omniglot.py", "Omniglot: conversion and splits"),
    ("minimeta/experiments/__init__.py", "the papers' experiments"),
    ("minimeta/experiments/registry.py", "the learners by name, with their papers' defaults"),
    ("minimeta/experiments/options.py", "what a run's command line takes: bounds, flags"),
    ("minimeta/experiments/config.py", "a run's settings, checked: RunConfig"),
    ("minimeta/experiments/episodes.py", "a run's episodes, drawn by iteration"),
    ("minimeta/experiments/training.py", "the one training loop"),
    ("minimeta/experiments/runfolder.py", "a run's folder: what may start there, and resume"),
    ("minimeta/experiments/stopping.py", "how a run stops without losing work: signals"),
    ("minimeta/experiments/evaluation.py", "the 95% interval, test episodes, fine-tuning"),
    ("minimeta/experiments/progress.py", "a progress line"),
    ("minimeta/experiments/curve.py", "a run's learning curve: curve.png"),
    ("minimeta/experiments/sinusoid.py", "the sinusoid experiment"),
    ("minimeta/experiments/fewshot.py", "evaluating a checkpoint: minimeta eval"),
    ("minimeta/threads.py", "the process policy: threads and malloc"),
    ("minimeta/experiments/demo.py", "minimeta demo: both families in minutes"),
    ("minimeta/cli.py", "the command line"),
    ("minimeta/_kernels_path.py", "how a checkout imports kernels/ as minimeta.kernels"),
    ("minimeta/reading.py", "this reading order"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a checkout has kernels/ beside minimeta/; an installed copy has it as minimeta/kernels/
CHECKOUT = os.path.isfile(os.path.join(ROOT, "kernels", "__init__.py"))


def where(path, root=None):
    """The file of ``ORDER``'s ``path`` under ``root`` (default ``ROOT``): in an installed copy
    ``kernels/`` lives in ``minimeta/kernels/``."""
    root = ROOT if root is None else root
    if path.startswith("kernels/") and not os.path.isfile(os.path.join(root, path)):
        path = "minimeta/" + path
    return os.path.join(root, path)


# the line and its earlier forms ("Read ``x`` next.", "Start reading at ``x``."), with the lines
# it wraps onto; not another paragraph that opens with "Read ``x``" ("... first: ...")
_LINE = re.compile(r"\n(Read next|Read ``[^`\n]*`` next|Start reading)[^\n]*(\n(?!\n)[^\n]*)*")


def line_after(i):
    """The "Read next:" paragraph of the module at position ``i`` of ``ORDER``."""
    if i + 1 == len(ORDER):
        text = "Read next: nothing: this is the end of the line (back to ``README.md`` and " \
               "``docs/TOUR.md``)."
    else:
        path, what = ORDER[i + 1]
        text = f"Read next: ``{path}`` ({what})."
    return textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False)


def _docstring_end(source):
    """Index of the closing quotes of the module docstring (which must open the file)."""
    if not source.startswith('"""'):
        raise ValueError("the module must open with a docstring")
    return source.index('"""', 3)


def with_line(source, i):
    """``source`` with its docstring's last paragraph set to the generated "Read next:" line."""
    end = _docstring_end(source)
    body = _LINE.sub("", source[:end]).rstrip("\n")  # every earlier reading line, dropped
    return body + "\n\n" + line_after(i) + "\n" + source[end:]


def stale(root=None):
    """Paths whose "Read next:" line differs from the one ``ORDER`` generates."""
    out = []
    for i, (path, _) in enumerate(ORDER):
        with open(where(path, root), encoding="utf-8") as f:
            source = f.read()
        if with_line(source, i) != source:
            out.append(path)
    return out


def unlisted(root=None):
    """Modules on disk that ``ORDER`` does not name (a new file, say), by their ``ORDER`` path
    (``kernels/`` for ``minimeta/kernels/`` in an installed copy)."""
    root = ROOT if root is None else root
    listed, found = {path for path, _ in ORDER}, []
    for top in ("minimeta", "kernels"):
        for folder, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                path = path[len("minimeta/"):] if path.startswith("minimeta/kernels/") else path
                if path not in listed:
                    found.append(path)
    return found


def write(root=None):
    """Rewrite every module's "Read next:" line from ``ORDER``; return the paths changed."""
    changed = stale(root)
    for i, (path, _) in enumerate(ORDER):
        if path in changed:
            full = where(path, root)
            with open(full, encoding="utf-8") as f:
                source = f.read()
            with open(full, "w", encoding="utf-8") as f:
                f.write(with_line(source, i))
    return changed


def listing():
    """The reading order, one numbered line per module (``python -m minimeta.reading``), and
    where the files are when that is not a checkout (``kernels/`` installs in ``minimeta/``).
    """
    width = max(len(path) for path, _ in ORDER)
    lines = [f"{i:2d}. {path:<{width}}  {what}" for i, (path, what) in enumerate(ORDER, 1)]
    if not CHECKOUT:
        lines.append(f"(an installed copy: the files are under {ROOT}, kernels/ in "
                     "minimeta/kernels/)")
    return "\n".join(lines)


def main(argv=None):
    """``python -m minimeta.reading [--check | --write]``; an exit status, 2 for bad use."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m minimeta.reading", allow_abbrev=False,
                                     description="The reading order of the source.")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true",
                      help="name the modules whose Read next line is stale, and those the order "
                      "leaves out (exit 1 if any)")
    what.add_argument("--write", action="store_true",
                      help="rewrite the stale Read next lines (in a checkout only)")
    args = parser.parse_args(argv)
    if args.write and not CHECKOUT:
        parser.error(f"--write edits the source of a checkout; {ROOT} is an installed copy")
    if args.write:
        print("\n".join(write()) or "every Read next line was up to date")
    elif args.check:
        old, new = stale(), unlisted()
        print("\n".join(old + [f"{path}: not in the reading order (add it to ORDER)"
                               for path in new])
              or "every module is in the reading order, and its Read next line up to date")
        return 1 if old or new else 0
    else:
        print(listing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
