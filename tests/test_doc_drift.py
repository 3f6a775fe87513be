"""The docs' command lines, Quickstart and dates, held to the code they describe.

Every command a reader may copy out of README.md or docs/*.md (a fenced or indented block, or
an inline span, which may wrap across lines) names options that exist: ``minimeta <command>``
against the command line's own parser (and values against its choices: ``--learner
maml|fomaml``, ``--device cuda``), ``python examples/….py`` or ``python benchmarks/….py``
against the script's ``add_argument`` strings. A renamed option had left the docs showing a
command that fails at once. The Quickstart keeps its two commands, and PERFORMANCE.md's "Last
measured" is the date of its newest section (it had said 2026-12-03 beside two sections of
2026-12-04). Each check is run on a broken copy too, so it is seen to catch one.
"""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT = re.compile(r"python3? ((?:examples|benchmarks|docs)/[\w.]+\.py)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def spans(text):
    """The command-like pieces of a Markdown text: lines of its code blocks (a ``\\`` at a
    line's end continues it) and its inline code spans, whitespace made single."""
    text = text.replace("\\\n", " ")
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    pieces = [line for block in fenced for line in block.splitlines()]
    pieces += [line for line in rest.splitlines() if line.startswith("    ")]
    pieces += re.findall(r"`([^`]+)`", rest)
    return [" ".join(p.split()).replace("| ", "|") for p in pieces]


def commands(text):
    """The ``minimeta …`` and ``python <script>.py …`` commands in ``text``."""
    found = []
    for piece in spans(text):
        piece = piece.split(" # ")[0]
        at = re.search(r"\bminimeta (demo|train|eval|gradcheck)\b|" + SCRIPT.pattern, piece)
        if at:
            found.append(piece[at.start():])
    return found


def cli_options():
    """{command: {option: its choices or None}} of the ``minimeta`` command line."""
    import argparse

    from minimeta.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {flag: action.choices for flag, action in parser._option_string_actions.items()}
            for name, parser in sub.choices.items()}


def script_options(path):
    """The option strings ``path`` (or a module of its own folder that it imports) passes to
    ``add_argument``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    sources = [tree]
    for node in ast.walk(tree):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        sources += [ast.parse((path.parent / f"{n}.py").read_text(encoding="utf-8"))
                    for n in names if (path.parent / f"{n}.py").exists()]
    return {arg.value for t in sources for call in ast.walk(t) if isinstance(call, ast.Call)
            and getattr(call.func, "attr", "") == "add_argument" for arg in call.args
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")}


def wrong_commands(text, cli=None):
    """'command: what is wrong' for each command of ``text`` that names an option its program
    lacks, a value outside an option's choices, or a script that is not there."""
    cli = cli or cli_options()
    problems = []
    for command in commands(text):
        words = command.split()
        if words[0] == "minimeta":
            options = cli[words[1]]
            for i, word in enumerate(words):
                flag = word.strip("[]")
                if not FLAG.fullmatch(flag):
                    continue
                if flag not in options:
                    problems.append(f"{command}: no option {flag}")
                elif options[flag] and i + 1 < len(words):
                    values = words[i + 1].strip("[]`,;.").split("|")
                    wrong = [v for v in values if v and v != "..." and v not in options[flag]]
                    problems += [f"{command}: {flag} {v} is not a choice" for v in wrong]
        else:
            path = ROOT / SCRIPT.match(command).group(1)
            if not path.exists():
                problems.append(f"{command}: no file {path.relative_to(ROOT)}")
                continue
            known = script_options(path)
            problems += [f"{command}: no option {flag}" for flag in FLAG.findall(command)
                         if flag not in known]
    return problems


def test_every_command_in_the_docs_names_options_that_exist():
    cli = cli_options()
    found = {doc.name: commands(doc.read_text(encoding="utf-8")) for doc in DOCS}
    assert sum(map(len, found.values())) > 100, "the docs' commands stopped being found"
    assert [p for doc in DOCS for p in wrong_commands(doc.read_text(encoding="utf-8"), cli)] == []
    # the check bites: an option renamed, a choice that is not one, a script moved
    broken = """Run `minimeta train --learner maml|fomaml|metasgd --ways 5 --val-sizes 100`, then

    python examples/sinusoid_maml.py --iterations 70000 --seed 1 \\
        --multi-step-los --out outputs/x
    minimeta eval --checkpoint c.npz --device tpu

and `python benchmarks/machine.py --rounds 3 --only maml5` or `python examples/gone.py`."""
    assert sorted(wrong_commands(broken, cli)) == [
        "minimeta eval --checkpoint c.npz --device tpu: --device tpu is not a choice",
        "minimeta train --learner maml|fomaml|metasgd --ways 5 --val-sizes 100: "
        "no option --val-sizes",
        "python examples/gone.py: no file examples/gone.py",
        "python examples/sinusoid_maml.py --iterations 70000 --seed 1 --multi-step-los "
        "--out outputs/x: no option --multi-step-los"]


def quickstart_problems(readme, pyproject):
    """What keeps the README's Quickstart from being two commands for a fresh machine: one
    that installs an extra and runs the main job, one that installs the test extra and runs
    the tests, each making its own virtual environment."""
    section = readme.split("## Quickstart")[1].split("\n## ")[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    if len(blocks) != 2 or any(len(b.strip().splitlines()) != 1 for b in blocks):
        return [f"the Quickstart holds {len(blocks)} command blocks, not two one-line ones"]
    extras = set(re.findall(r"^([\w-]+) = \[", pyproject.split("[project.optional-dependencies]")
                            [1].split("\n[")[0], re.M))
    problems = []
    for block, last in zip(blocks, ("minimeta demo", "python -m pytest")):
        steps = [s.strip() for s in block.strip().split("&&")]
        if not steps[0].startswith("python3 -m venv .venv") or steps[-1] != last:
            problems.append(f"{block.strip()}: not 'python3 -m venv .venv && … && {last}'")
        for extra in re.findall(r'pip install [^"]*-e "\.\[([\w-]+)\]"', block):
            if extra not in extras:
                problems.append(f"{block.strip()}: pyproject.toml has no extra {extra!r}")
    if '[project.scripts]\nminimeta = "minimeta.cli:main"' not in pyproject:
        problems.append("pyproject.toml installs no minimeta command")
    return problems


def test_the_quickstart_is_two_commands_that_a_fresh_machine_can_run():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert quickstart_problems(readme, pyproject) == []
    third = readme.replace("## Quickstart\n", "## Quickstart\n\n```bash\nminimeta gradcheck\n```\n")
    assert quickstart_problems(third, pyproject) == [
        "the Quickstart holds 3 command blocks, not two one-line ones"]
    renamed = readme.replace('".[examples]"', '".[example]"')
    assert [p.split(": ")[1] for p in quickstart_problems(renamed, pyproject)] == [
        "pyproject.toml has no extra 'example'"]


def measured_problems(text):
    """PERFORMANCE.md's "Last measured: <date>" against the newest date of a section heading,
    and the sections it names there against the headings: each named is one, and each of the
    newest date is named."""
    heads = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("##")]
    newest = max(d for h in heads for d in re.findall(r"\d{4}-\d\d-\d\d", h))
    said = re.search(r"Last measured: (\d{4}-\d\d-\d\d)", text)
    problems = [] if said and said.group(1) == newest else \
        [f"Last measured: {said and said.group(1)}, but a section is of {newest}"]
    intro = " ".join(text.split("\n## ")[0].split())
    named = re.findall(r'"([^"]+)"', intro.split("Last measured:")[1])
    problems += [f'no section "{n}"' for n in named if not any(h.startswith(n) for h in heads)]
    problems += [f'"{h}" not named' for h in heads if newest in h
                 and not any(h.startswith(n) for n in named)]
    return problems


def test_performance_says_when_it_was_last_measured():
    text = (ROOT / "docs" / "PERFORMANCE.md").read_text(encoding="utf-8")
    assert measured_problems(text) == []
    stale = re.sub(r"Last measured: \d{4}-\d\d-\d\d", "Last measured: 2026-11-30", text)
    assert measured_problems(stale)[0].startswith("Last measured: 2026-11-30, but a section is")
    renamed = text.replace('"Where it stands"', '"Where it stood"', 1)
    assert measured_problems(renamed) == ['no section "Where it stood"']
    now = re.search(r"Last measured: (\d{4}-\d\d-\d\d)", text).group(1)
    newer = text.replace("\n## ", "\n## A run (2099-12-31)\n\n## ", 1)
    assert measured_problems(newer) == [
        f"Last measured: {now}, but a section is of 2099-12-31",
        '"A run (2099-12-31)" not named']
