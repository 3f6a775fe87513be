"""The package's shape, read from its source: layers import only downward, and nothing cycles.

The import graph is built with ``ast`` from every module of ``minimeta`` and ``kernels`` (all
imports, those inside functions too). Layers, lowest first:

    kernels → engine → gradcheck, testing, viz, selfcheck (the checks) → functional →
    nn, optim, io → learners → experiments, cli, threads;   data apart (NumPy only)

and inside the engine, files in their reading order (each imports only those before it).
"""
import ast
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

ENGINE_ORDER = [
    "backend", "tensor", "anomaly", "grad_mode", "autodiff", "primitives.elementwise",
    "primitives.shape",
    "primitives.reductions", "primitives.linalg", "primitives.fused", "primitives.attention",
    "primitives.normalization", "primitives.conv", "primitives.causal", "primitives", "ops",
    "workers", "derivatives", "replay", "",
]
LAYERS = [  # (rank, module prefixes): a module takes the rank of its longest matching prefix
    (0, ["minimeta.kernels", "minimeta._kernels_path"]),
    (1, ["minimeta.engine"]),
    (2, ["minimeta.gradcheck", "minimeta.testing", "minimeta.viz", "minimeta.selfcheck",
         "minimeta.selfcheck_inputs", "minimeta.reading", "minimeta"]),
    (3, ["minimeta.functional"]),
    (4, ["minimeta.nn", "minimeta.optim", "minimeta.io"]),
    (5, ["minimeta.learners"]),
    (6, ["minimeta.experiments", "minimeta.cli", "minimeta.threads"]),
]


def modules():
    """{module name: path} for the package (``kernels/`` installs as ``minimeta.kernels``)."""
    found = {}
    for path in sorted((ROOT / "minimeta").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    for path in sorted((ROOT / "kernels").glob("*.py")):
        found["minimeta.kernels" + ("" if path.stem == "__init__" else "." + path.stem)] = path
    return found


def import_graph(mods):
    """{module: set of minimeta modules it imports}, relative imports resolved."""
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rpartition(".")[0]
                if target in mods and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def rank(name):
    if name == "minimeta.data" or name.startswith("minimeta.data."):
        return None  # apart
    best = max(((len(p), r) for r, prefixes in LAYERS for p in prefixes
                if name == p or name.startswith(p + ".")), default=None)
    assert best is not None, f"{name} has no layer: add it to LAYERS"
    return best[1]


def engine_position(name):
    return ENGINE_ORDER.index(name[len("minimeta.engine"):].lstrip("."))


def violations(graph):
    """Imports against the layer order, and cycles, as readable lines (empty: all good)."""
    bad = []
    for a, deps in graph.items():
        for b in deps:
            ra, rb = rank(a), rank(b)
            if ra is None or rb is None:
                if (ra is None) != (rb is None) and ra is None:
                    bad.append(f"{a} (data: NumPy only) imports {b}")
                continue
            if rb > ra:
                bad.append(f"{a} (layer {ra}) imports {b} (layer {rb}), above it")
            elif ra == rb == 1 and engine_position(b) >= engine_position(a):
                bad.append(f"{a} imports {b}, which comes after it in the engine's order")
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                bad.append("cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return bad


def test_every_engine_module_has_a_place_in_the_order():
    engine = {m for m in modules() if m.startswith("minimeta.engine")}
    assert {("minimeta.engine." + m).rstrip(".") for m in ENGINE_ORDER} == engine


def test_imports_follow_the_layers_and_never_cycle():
    assert violations(import_graph(modules())) == []


@pytest.mark.parametrize("edge, message", [
    (("minimeta.engine.autodiff", "minimeta.engine.ops"), "comes after it"),
    (("minimeta.engine.primitives.attention", "minimeta.functional.metric"), "above it"),
    (("minimeta.kernels", "minimeta.engine.backend"), "above it"),
    (("minimeta.data.episodes", "minimeta.engine"), "NumPy only"),
    (("minimeta.functional.layers", "minimeta.learners.maml"), "above it"),
])
def test_the_check_catches_an_upward_import(edge, message):
    graph = import_graph(modules())
    graph[edge[0]] = graph[edge[0]] | {edge[1]}
    assert any(message in line and edge[0] in line for line in violations(graph))


def test_the_check_catches_a_cycle():
    graph = import_graph(modules())
    graph["minimeta.nn.layers"] = graph["minimeta.nn.layers"] | {"minimeta.nn.fce"}
    assert any(line.startswith("cycle:") for line in violations(graph))


# ----- the reading order: one line through every module ----------------------------------------

def test_the_reading_order_names_every_module_once():
    from minimeta.reading import ORDER

    paths = [path for path, _ in ORDER]
    assert len(paths) == len(set(paths)), "a module is named twice"
    on_disk = {str(p.relative_to(ROOT)) for p in modules().values()}
    assert set(paths) == on_disk, (sorted(on_disk - set(paths)), sorted(set(paths) - on_disk))


def test_every_read_next_line_is_the_one_the_order_generates():
    from minimeta.reading import stale

    assert stale(str(ROOT)) == [], "run: python -m minimeta.reading --write"


def test_the_reading_check_sees_a_hand_edited_line(tmp_path):
    import shutil

    from minimeta import reading

    for path, _ in reading.ORDER:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    target = tmp_path / "minimeta/engine/tensor.py"
    target.write_text(target.read_text(encoding="utf-8").replace(
        "Read next: ``minimeta/engine/anomaly.py``", "Read next: ``minimeta/engine/ops.py``"),
        encoding="utf-8")
    assert reading.stale(str(tmp_path)) == ["minimeta/engine/tensor.py"]
    assert reading.write(str(tmp_path)) == ["minimeta/engine/tensor.py"]
    assert reading.stale(str(tmp_path)) == []
    assert reading.unlisted(str(tmp_path)) == []
    (tmp_path / "minimeta/learners/mine.py").write_text('"""Not in ORDER."""\n')  # --check
    assert reading.unlisted(str(tmp_path)) == ["minimeta/learners/mine.py"]  # had passed it


def test_the_reading_order_works_in_an_installed_copy_and_refuses_unknown_options(
        tmp_path, monkeypatch, capsys):
    """In an installed copy kernels/ is minimeta/kernels/: ``--check`` had crashed there with
    a FileNotFoundError, ``--write`` would have edited site-packages, and an unknown option
    had been ignored (found by probing, 2026-12-01)."""
    import shutil

    from minimeta import reading

    for path, _ in reading.ORDER:
        copy = tmp_path / ("minimeta/" + path if path.startswith("kernels/") else path)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, copy)
    assert reading.stale(str(tmp_path)) == [] and reading.unlisted(str(tmp_path)) == []
    monkeypatch.setattr(reading, "ROOT", str(tmp_path))
    monkeypatch.setattr(reading, "CHECKOUT", False)
    (tmp_path / "minimeta/kernels/extra.py").write_text('"""Not in ORDER."""\n')
    assert reading.main(["--check"]) == 1
    assert capsys.readouterr().out == "kernels/extra.py: not in the reading order (add it to " \
        "ORDER)\n"
    (tmp_path / "minimeta/kernels/extra.py").unlink()
    with pytest.raises(SystemExit) as stop:
        reading.main(["--write"])
    assert stop.value.code == 2 and "an installed copy" in capsys.readouterr().err
    assert reading.main([]) == 0 and "installed copy" in capsys.readouterr().out
    assert reading.main(["--check"]) == 0 and "up to date" in capsys.readouterr().out
    (tmp_path / "minimeta/kernels/conv_ref.py").write_text('"""stale"""\n', encoding="utf-8")
    assert reading.main(["--check"]) == 1 and "kernels/conv_ref.py" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        reading.main(["--bogus"])
    assert stop.value.code == 2 and "--bogus" in capsys.readouterr().err


def test_a_checkout_runs_its_own_kernels(tmp_path):
    """A second checkout put first on PYTHONPATH imports its own kernels/, not those of the
    checkout installed (editable) in the environment: a before / after benchmark once timed
    the old engine on the new kernels. The copy's kernel table is marked; the original's not."""
    import os
    import shutil
    import subprocess
    import sys

    for folder in ("minimeta", "kernels"):
        shutil.copytree(ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    table = tmp_path / "kernels" / "__init__.py"
    table.write_text(table.read_text() + "\nCOPY_MARK = True\n")
    code = ("import minimeta.kernels as k, minimeta.kernels.conv_numba as c; "
            "print(getattr(k, 'COPY_MARK', False), c.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                         check=True)
    mark, path = out.stdout.split()
    assert mark == "True" and path.startswith(str(tmp_path)), out.stdout



def test_the_kernels_folder_refuses_to_be_imported_as_a_top_level_package():
    """``import kernels`` from a checkout's root had worked, and numba's cache then recorded
    kernels compiled under the name "kernels": every later run of minimeta failed loading
    them (ModuleNotFoundError from numba's cache loader). The folder now refuses that name,
    in one line, before anything compiles."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import kernels.select_numba"], cwd=ROOT,
                         capture_output=True, text=True)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and last == ("ImportError: kernels: import the kernels as "
                                            "minimeta.kernels (from minimeta import kernels), "
                                            "not as a top-level package"), out.stderr

def unlisted(text, classes):
    """The names of ``classes`` that ``text`` does not mention as a word, and whether it states
    their number ("these N classes" or "set (N)")."""
    import re

    words = set(re.findall(r"\w+", text))
    counted = re.search(rf"\b(these {len(classes)} classes|set \({len(classes)}\))", text)
    return sorted(c.__name__ for c in classes if c.__name__ not in words), bool(counted)


def test_the_primitive_lists_in_the_docs_name_every_primitive():
    from minimeta.engine import primitives
    from minimeta.selfcheck import primitive_classes

    classes = primitive_classes()
    engine_md = (ROOT / "docs" / "ENGINE.md").read_text(encoding="utf-8")
    for where, text in (("primitives/__init__.py", primitives.__doc__),
                        ("docs/ENGINE.md", engine_md)):
        assert unlisted(text, classes) == ([], True), where
    # the check fails on a list that lost a name, or a count gone stale
    assert unlisted(primitives.__doc__.replace("BiasGrad", ""), classes)[0] == ["BiasGrad"]
    assert unlisted(primitives.__doc__.replace("45 classes", "40 classes"), classes)[1] is False


def vjp_rule_breaks(source, name):
    """Where a ``vjp`` in ``source`` reads ``.data`` or calls NumPy or a kernel (``np.``,
    ``K.``): the rule of docs/ENGINE.md, "a vjp never touches .data, never calls NumPy or a
    kernel directly: only Tensor ops", which
    keeps every VJP differentiable (a mask made from arrays is a constant either way, but a
    value read off ``.data`` would silently cut the graph)."""
    breaks = []
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, ast.FunctionDef) and fn.name == "vjp":
            for node in ast.walk(fn):
                name_of = node.value.id if isinstance(node, ast.Attribute) and \
                    isinstance(node.value, ast.Name) else None
                if isinstance(node, ast.Attribute) and (   # (K.norm_ref.layout: shapes only)
                        node.attr == "data" or name_of == "np" or
                        name_of == "K" and node.attr in ("lookup", "resolve", "TABLE")):
                    breaks.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    return breaks


def test_no_vjp_reads_data_or_calls_numpy_or_a_kernel():
    folder = ROOT / "minimeta" / "engine" / "primitives"
    sources = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.py"))}
    assert len(sources) >= 9 and sum(s.count("def vjp(") for s in sources.values()) >= 40
    assert [b for name, s in sources.items() for b in vjp_rule_breaks(s, name)] == []
    # the check sees Pow's masks as they were written before (2026-12-03), on arrays, and a
    # kernel called in place of the VJP primitive
    was = sources["elementwise.py"].replace('compare("equal", a, 0)', "a.data == 0")
    line = next(i for i, text in enumerate(was.splitlines(), 1) if "a.data == 0" in text)
    assert vjp_rule_breaks(was, "elementwise.py") == [f"elementwise.py:{line} a.data"]
    was = sources["conv.py"].replace("gb = bias_grad(g,", "gb = K.lookup('bias_grad', g)(g,")
    assert [b.split(" ")[1] for b in vjp_rule_breaks(was, "conv.py")] == ["K.lookup"]


def test_every_warning_names_the_users_line():
    """Each ``warnings.warn`` of minimeta passes ``stacklevel=user_stacklevel()`` (its copy in
    the data layer: ``_user_stacklevel()``), which names the first line outside minimeta: the
    fixed counts had named minimeta's own lines when the call came from deeper inside
    (``test_machine_limits.py`` and ``test_data.py`` check two of them run)."""
    calls, fixed = 0, []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "warnings.warn":
                calls += 1
                level = [ast.unparse(k.value) for k in node.keywords if k.arg == "stacklevel"]
                if level not in (["user_stacklevel()"], ["_user_stacklevel()"]):
                    fixed.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls >= 7 and fixed == []


def unmapped(readme, mods):
    """The modules of ``mods`` (``modules()``) that README's map of the source names neither
    by their path (`minimeta/engine/tensor.py`) nor by their folder (`minimeta/functional/`);
    a package's ``__init__`` is named by any path in its folder (`minimeta/engine/...`)."""
    missing = []
    for path in mods.values():
        rel = path.relative_to(ROOT)
        folder = rel.parent.as_posix() + "/"
        named = f"`{folder}" if rel.name == "__init__.py" else f"`{rel.as_posix()}`"
        if named not in readme and f"`{folder}`" not in readme:
            missing.append(rel.as_posix())
    return missing


def test_the_readme_map_names_every_module():
    """The README's "map of the source" is where a reader starts: a module it omits is one they
    never find from there (grad_mode.py and workers.py were missing)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = readme.split("## A map of the source")[1].split("\n## ")[0]   # the map alone
    mods = modules()
    assert unmapped(readme, mods) == []
    row = "| | `minimeta/engine/workers.py` |"
    assert row in readme
    assert unmapped(readme.replace(row, "| |"), mods) == ["minimeta/engine/workers.py"]


def _source_files(folders):
    """The files under ``folders`` that git tracks (a scratch file of one's own, untracked, is
    not the source); every file where this is not a git checkout (an unpacked sdist)."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *folders], cwd=ROOT,
                                capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        listed = b""
    tracked = [ROOT / os.fsdecode(name) for name in sorted(listed.split(b"\0")) if name]
    if not tracked:     # no git, or this tree untracked inside another repository
        return [p for folder in folders for p in sorted((ROOT / folder).rglob("*"))]
    return [p for p in tracked if p.is_file()]     # (deleted, not yet committed: gone)


def test_lines_within_100_characters_and_files_within_about_400_lines():
    """The house style, which a reader of the source relies on: no line over 100 characters
    (Markdown tables apart: a row cannot wrap) and no Python file over 420 lines."""
    folders = ("minimeta", "kernels", "tests", "examples", "benchmarks", "docs")
    paths = [p for p in _source_files(folders) if p.suffix in (".py", ".md", ".sh")]
    paths += [ROOT / "README.md", ROOT / ".ci" / "run"]
    long_lines, long_files = [], []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        long_lines += [f"{path.relative_to(ROOT)}:{i}" for i, line in enumerate(lines, 1)
                       if len(line) > 100 and not line.startswith("|")]
        if path.suffix == ".py" and len(lines) > 420:
            long_files.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert len(paths) > 100
    assert not long_lines, long_lines
    assert not long_files, long_files
