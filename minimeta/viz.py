"""Draw a computation graph as Graphviz DOT text (no graphviz dependency needed to produce it).

Each node shows the op that made the tensor (or "leaf"), its shape and dtype. Nodes recorded
during a backward pass with ``create_graph=True`` are drawn in orange: that is the graph of the
gradient, the one second-order MAML differentiates through.

    >>> import minimeta as mm
    >>> x = mm.tensor([1.0, 2.0], requires_grad=True)
    >>> (g,) = mm.grad((x * x).sum(), [x], create_graph=True)
    >>> print(to_dot(g).splitlines()[0])
    digraph minimeta {

Render with ``dot -Tpng graph.dot -o graph.png`` where Graphviz is installed.

Read next: ``minimeta/functional/__init__.py`` (compositions on top of the engine).
"""
from .engine.autodiff import toposort


def _label(t):
    op = type(t._op).__name__ if t._op is not None else ("leaf" if t.requires_grad else "const")
    escaped = str(t.name).replace("\\", "\\\\").replace('"', '\\"')   # DOT's quoting
    name = f"{escaped}\\n" if t.name else ""
    return f"{name}{op}\\n{tuple(t.shape)} {t.dtype}"


def to_dot(*outputs):
    """DOT text of the graph that produced ``outputs`` (tensors that require grad).

    Forward-pass nodes are light blue, backward-pass nodes (``create_graph=True``) orange, and
    leaves green. Constants that feed an op are drawn grey.
    """
    lines = ["digraph minimeta {", "  rankdir=BT;", '  node [shape=box, style=filled];']
    seen = {}  # id(t) -> its node number, in order of appearance: the same graph, the same text

    def node(t):
        if id(t) in seen:
            return
        seen[id(t)] = len(seen)
        if t._op is None:
            color = "palegreen" if t.requires_grad else "lightgrey"
        else:
            color = "orange" if t._from_backward else "lightblue"
        lines.append(f'  n{seen[id(t)]} [label="{_label(t)}", fillcolor={color}];')

    for t in toposort(list(outputs)):
        node(t)
        for p in t._parents:
            node(p)
            lines.append(f"  n{seen[id(p)]} -> n{seen[id(t)]};")
    for t in outputs:
        node(t)
    lines.append("}")
    return "\n".join(lines)
