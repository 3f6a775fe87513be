"""Regenerate ``docs/tour_graph.svg``: tanh and its first three derivatives (TOUR.md, section 3).

    python docs/make_tour_graph.py                  # Graphviz's dot if installed, else matplotlib
    python docs/make_tour_graph.py --engine dot     # or --engine matplotlib; --out FILE; --dot

The graph is built by ``tour_dot`` below with the same code as the tour and drawn from the DOT
text that ``minimeta.viz.to_dot`` returns (its nodes numbered in the order met, so the same
graph gives the same file). Graphviz (``apt-get install
graphviz``) renders it with ``dot -Tsvg``: that is the drawing checked in. Without Graphviz,
matplotlib (``pip install matplotlib``) draws the same nodes and colours in layers, with a
simpler layout. The format follows the ``--out`` suffix (.svg or .png).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository root: run from a checkout

import minimeta as mm  # noqa: E402
from minimeta.viz import to_dot  # noqa: E402


def tour_dot(x0=0.5):
    """DOT text of the graphs of tanh's first three derivatives at ``x0``, as in the tour."""
    x = mm.tensor(x0, requires_grad=True)
    y = mm.tanh(x)
    (d1,) = mm.grad(y, [x], create_graph=True)
    (d2,) = mm.grad(d1, [x], create_graph=True)
    (d3,) = mm.grad(d2, [x], create_graph=True)
    x.name, y.name, d1.name, d2.name, d3.name = "x", "y", "dy/dx", "d2y/dx2", "d3y/dx3"
    return to_dot(d1, d2, d3)


def render_with_dot(dot, out):
    """Graphviz's layout: ``dot -Tsvg`` (or ``-Tpng``, by the suffix of ``out``)."""
    fmt = os.path.splitext(out)[1].lstrip(".") or "svg"
    subprocess.run(["dot", f"-T{fmt}", "-o", out], input=dot.encode(), check=True)


def parse(dot):
    """Nodes {id: (label lines, colour)} and edges [(parent id, child id)] of ``to_dot`` text."""
    nodes = {m[1]: (m[2].split("\\n"), m[3]) for m in
             re.finditer(r'^\s*(n\d+) \[label="(.*)", fillcolor=(\w+)\];$', dot, re.M)}
    edges = re.findall(r"^\s*(n\d+) -> (n\d+);$", dot, re.M)
    return nodes, edges


def render_with_matplotlib(dot, out):
    """A layered drawing: each node one row above its highest parent (leaves at the bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes, edges = parse(dot)
    parents = {n: [p for p, c in edges if c == n] for n in nodes}
    level = {}

    def depth(n):
        if n not in level:
            level[n] = 1 + max((depth(p) for p in parents[n]), default=-1)
        return level[n]

    rows = {}
    for n in nodes:  # DOT order: parents first, so a row keeps the graph's reading order
        rows.setdefault(depth(n), []).append(n)
    width = max(len(r) for r in rows.values())
    pos = {n: ((i + 0.5) * width / len(r), lvl) for lvl, r in rows.items()
           for i, n in enumerate(r)}
    fig, ax = plt.subplots(figsize=(1.4 * width + 1, 1.1 * len(rows) + 1))
    for p, c in set(edges):
        ax.annotate("", xy=pos[c], xytext=pos[p], arrowprops=dict(
            arrowstyle="-|>", color="0.3", shrinkA=16, shrinkB=16, lw=0.8))
    for n, (label, colour) in nodes.items():
        ax.text(*pos[n], "\n".join(label), ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="square", facecolor=colour, edgecolor="black"))
    ax.set_xlim(0, width)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axis("off")
    fig.savefig(out, dpi=120, bbox_inches="tight", metadata={"Date": None}
                if out.endswith(".svg") else None)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "tour_graph.svg"))
    parser.add_argument("--engine", choices=("auto", "dot", "matplotlib"), default="auto")
    parser.add_argument("--dot", action="store_true", help="print the DOT text and stop")
    args = parser.parse_args(argv)
    dot = tour_dot()
    if args.dot:
        print(dot)
        return
    engine = args.engine
    if engine == "auto":
        engine = "dot" if shutil.which("dot") else "matplotlib"
    (render_with_dot if engine == "dot" else render_with_matplotlib)(dot, args.out)
    print(f"wrote {args.out} ({engine})")


if __name__ == "__main__":
    main()
