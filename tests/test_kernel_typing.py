"""float32 kernels compute in float32, but for the float64 values their design names.

numba types ``2 * v`` of a float32 v as float64 (an int64 with a float32: NumPy's rule), and a
``0.0``, an ``np.inf`` or an ``eps`` from Python is a float64 too: one such value in a float32
kernel runs the arithmetic downstream of it in float64, each number converted there and back
(Winograd's F(4×4) transforms, 1.1–1.6× slower; cosine attention's dot products, softmax and
sums, 1.1–1.8×). Here every numba kernel the library calls (the kernel table's CPU rows and
Winograd under ``conv_numba``) runs on float32 arrays, and numba's typing of each compiled
version is read: the statements where a float64 value is *born* (its result float64, from no
float64 operand computed at run time: ``2 * v``, ``np.float64(v)``, ``np.empty(n)``, a float64
argument, an accumulator started at ``0.0``) or where a float32 value *meets* a float64 one
(``z += v`` with z a float64, ``v < np.inf``) must be exactly the ``ALLOWED`` lines of that
kernel, each with the reason it is float64. Every other float64 value descends from those, so a
new accidental promotion adds a line and fails, and so does an allowed line that went away.

Read next: ``tests/test_winograd.py`` (the first such check, on Winograd's transforms alone).
"""
import importlib
import linecache
import pathlib

import numba
import numpy as np
import pytest
from numba.core import ir, types

from minimeta import kernels as K

# every kernels/ module with numba CPU kernels (the CUDA ones are numba.cuda: not these)
MODULES = ("attention_numba", "conv_numba", "norm_numba", "pool_numba", "select_numba",
           "winograd_numba")

# ---- the float64 values the batch-norm family means to have ------------------------------------
# norm_numba works per channel in float64 on purpose, as its references (norm_ref._wide): the
# sums (the module docstring's accumulators) and, from the float64 mean and 1/std, every x̂ and
# output (in float32, y = x·scale + shift cancels where |mean| ≫ std: the docstring's 1e4).
EPS = "eps from Python (a float64), added to the float64 variance"
SUM = "a per-channel (or per-plane) sum in float64: the module docstring's accumulators"
READ = "a float32 input read into those float64 sums (d = x − K, g, hx)"
COEF = "a per-channel coefficient: float32 w, b, hw or hb times the float64 statistics"
ELEM = "an element's x̂ and result from the float64 mean and 1/std, as norm_ref._wide"
STATS = "the float64 mean and variance, cast to x's dtype by ``batch_norm``"
SHIFT = {   # ``_shift``, inlined in the three batch-norm kernels
    "k = np.float64(x[t, 0, ch, 0]) if x.shape[1] * x.shape[3] else 0.0":
        "K, the channel's first value, in float64 (d = x − K, the sums' shift)",
    "return k if _finite(k) else 0.0": "K, or 0 where it is not finite (float64, as K)",
}
ALLOWED = {
    ("norm_numba", "_forward"): {
        **SHIFT, "argument eps": EPS, "s = 0.0": SUM, "s2 = 0.0": SUM,
        "v = np.float64(x[t, i, ch, k]) - shift0": READ,
        "scale = w[t, ch] / np.sqrt(sig2 + eps)": COEF,
        "shift = b[t, ch] - mu * scale": COEF,
        "y[t, i, ch, k] = x[t, i, ch, k] * scale + shift": ELEM,
        "mean = np.empty((tasks, c))": STATS, "var = np.empty((tasks, c))": STATS,
    },
    ("norm_numba", "_backward"): {
        **SHIFT, "argument eps": EPS,
        "sx = 0.0": SUM, "sx2 = 0.0": SUM, "sg = 0.0": SUM, "sgx = 0.0": SUM,
        "v = np.float64(x[t, i, ch, k]) - shift0": READ,
        "gv = np.float64(g[t, i, ch, k])": READ,
        "mean_gh = w[t, ch] * sg / count": COEF,
        "mean_ghx = w[t, ch] * sum_gxhat / count": COEF,
        "a = w[t, ch] * rstd": COEF,
        "xhat = (x[t, i, ch, k] - mu) * rstd": ELEM,
        "dx[t, i, ch, k] = a * g[t, i, ch, k] - rstd * (mean_gh + xhat * mean_ghx)": ELEM,
    },
    ("norm_numba", "_double_backward"): {
        **SHIFT, "argument eps": EPS,
        "sx = sx2 = sg = sgx = sh = shx = shg = 0.0": SUM,
        "v = np.float64(x[t, i, ch, k]) - shift0": READ,
        "gv, hv = np.float64(g[t, i, ch, k]), np.float64(hx[t, i, ch, k])": READ,
        "s = wv * hx_pg": COEF,
        "alpha = hwv - r * wv * mean_hxh": COEF,
        "beta = -r * wv * mean_gxh": COEF,
        "xh = (x[t, i, ch, k] - mu) * r": ELEM,
        "pg, ph = gv - mean_g - xh * mean_gxh, hv - mean_h - xh * mean_hxh": ELEM,
        "dg[t, i, ch, k] = hbv + hwv * xh + wv * r * ph": ELEM,
    },
    ("norm_numba", "_plane_sums"): {   # bias_grad: "the planes' sums ... in float64"
        "out = np.empty((tasks, n, c), dtype=np.float64)": SUM,
        "row, total = planes[ch], 0.0": SUM, "total += row[k]": SUM,
    },
}   # every other kernel: none (conv, Winograd, pooling, select and attention: all float32)


def _wide(t):
    return t == types.float64 or isinstance(t, types.Array) and t.dtype == types.float64


def _text(loc):
    return linecache.getline(loc.filename, loc.line).split("#")[0].strip()


def promotions(py_func, sig):
    """(the lines of ``py_func`` compiled for ``sig`` where a float64 value is born or meets a
    float32 one (see the module docstring), with "argument <name>" for a float64 argument;
    the (dispatcher, signature) of each numba function it calls). It is compiled afresh, serial
    and uncached: numba's typing is the kernel's (``parallel`` and ``fastmath`` change the code
    made from it, not the types), and the serial IR keeps every statement with its line (the
    parallel lowering rewrites the blocks that the annotation holds)."""
    fresh = numba.njit(py_func)
    fresh.compile(sig)
    note = fresh.overloads[sig].type_annotation
    typemap, rows, calls = note.typemap, [], []
    for block in note.blocks.values():
        for st in block.body:
            if isinstance(st, ir.Assign):
                value = st.value
                used = value.list_vars() if isinstance(value, ir.Expr) else \
                    [value] if isinstance(value, ir.Var) else []
                rows.append((st, st.target.name, [v.name for v in used]))
                callee = typemap.get(value.func.name) if isinstance(value, ir.Expr) and \
                    value.op == "call" else None
                if isinstance(callee, types.Dispatcher):
                    calls.append((callee.dispatcher, note.calltypes[value].args))
            else:
                rows.append((st, None, [v.name for v in st.list_vars()]))
    # run-time values: the arguments and what is computed from them (not constants)
    runtime = {name for st, name, _ in rows if name and isinstance(st.value, ir.Arg)}
    grew = True
    while grew:
        grew = False
        for _, name, used in rows:
            if name and name not in runtime and any(u in runtime for u in used):
                runtime.add(name)
                grew = True
    found = set()
    for st, name, used in rows:
        wide = [u for u in used if _wide(typemap.get(u))]
        if name and isinstance(st.value, ir.Arg):
            if _wide(typemap[name]):
                found.add(f"argument {st.value.name}")
            continue
        born = name in runtime and _wide(typemap[name]) and not set(wide) & runtime
        meets = any(u in runtime and typemap.get(u) == types.float32 for u in used) and \
            (wide or name is not None and _wide(typemap[name]))
        if born or meets:
            found.add(_text(st.loc))
    return found, calls


def _drive():
    """Every numba kernel the library calls, on float32 arrays, through each of its paths."""
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def cpu(name):
        return K.resolve(K.TABLE[name].cpu)

    from minimeta.kernels import winograd_numba as W
    for n, c, h, o, s, p in [(2, 1, 6, 3, 1, 1),      # one channel: _patches
                             (2, 3, 7, 4, 2, 1),      # im2col + GEMM, col2im at stride 2
                             (16, 32, 4, 32, 1, 1)]:  # Winograd (F(4×4): 16 images)
        x, w = r(n, c, h, h), r(o, c, 3, 3)
        y = cpu("conv2d")(x, w, s, p)
        g = r(*y.shape)
        cpu("conv2d_input_grad")(g, w, x.shape, s, p)
        cpu("conv2d_weight_grad")(x, g, w.shape, s, p)
    x, w = r(4, 32, 4, 4), r(32, 32, 3, 3)       # Winograd itself (MINIMETA_WINOGRAD=off too)
    W.conv2d_weight_grad(x, W.conv2d(x, w, 1, 2), 1, 2)
    for shape, k, s in [((2, 3, 8, 8), 2, 2), ((2, 3, 7, 7), 2, 2), ((2, 3, 9, 9), 3, 2)]:
        x = r(*shape)
        y, idx = cpu("max_pool2d")(x, k, s)
        cpu("max_pool2d_backward")(r(*y.shape), idx, x.shape)
    v = r(4096)
    for where in (cpu("where"), cpu("where").serial):    # prange, and its serial twin
        where(v > 0, v, r(4096))
        where(v > 0, v, np.float32(0))
    for relu_grad in (cpu("relu_grad"), cpu("relu_grad").serial):
        relu_grad(v, r(*v.shape))
    q, sup, lab = r(2, 5, 8), r(2, 6, 8), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
    cpu("cosine_attention")(q, sup, lab.reshape(2, 6, 3))
    cpu("cosine_attention_backward")(q, sup, lab.reshape(2, 6, 3), r(2, 5, 3))
    for x, w in [(r(4, 3, 5, 5), r(3)), (r(2, 4, 3, 5, 5), r(2, 3))]:
        b, g = r(*w.shape), r(*x.shape)
        cpu("batch_norm")(x, w, b, 1e-5)
        cpu("batch_norm_backward")(x, w, b, g, 1e-5)
        cpu("batch_norm_double_backward")(x, w, b, g, r(x.size + 2 * w.size), 1e-5)
        cpu("add_bias")(x, b)
        cpu("bias_grad")(x, w.ndim == 2)


@pytest.fixture(scope="module")
def float32_kernels():
    """{(module, function): {signature: its ``promotions`` lines}} for every numba kernel of
    ``MODULES`` that ``_drive`` runs on float32 arrays: the ones called from Python, and those
    they call in turn (compiled into their callers; the inlined ones, ``inline="always"``, are
    read inside them)."""
    _drive()
    modules = {f"{K.__name__}.{m}": m for m in MODULES}
    todo = [(f, sig) for m in modules for f in vars(importlib.import_module(m)).values()
            if isinstance(f, numba.core.registry.CPUDispatcher) for sig in f.signatures
            if not any(isinstance(a, types.Array) and a.dtype == types.float64 for a in sig)]
    kernels = {}
    while todo:
        f, sig = todo.pop()
        key = modules.get(f.py_func.__module__), f.__name__
        if key[0] and sig not in kernels.setdefault(key, {}):
            kernels[key][sig], calls = promotions(f.py_func, sig)
            todo += calls
    return kernels


def test_every_numba_module_is_audited():
    here = pathlib.Path(K.__file__).parent
    found = sorted(f.stem for f in here.glob("*.py") if "@njit" in f.read_text("utf-8"))
    assert tuple(found) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_float32_kernels_compute_in_float32_but_the_allowed_lines(module, float32_kernels):
    """Every numba kernel of ``module`` (the inlined ones inside their callers) is compiled by
    the drive for float32, and where a float64 value is born or meets a float32 value in it is
    exactly its ``ALLOWED`` lines."""
    mod = importlib.import_module(f"{K.__name__}.{module}")
    for name, f in sorted(vars(mod).items()):
        if isinstance(f, numba.core.registry.CPUDispatcher) and \
                f.py_func.__module__ == mod.__name__ and f.targetoptions.get("inline") != "always":
            assert (module, name) in float32_kernels, f"{module}.{name}: not run by _drive"
    for key, found in sorted(float32_kernels.items()):
        for sig, lines in found.items() if key[0] == module else ():
            allowed = set(ALLOWED.get(key, {}))
            assert lines == allowed, (f"{key}{sig}: float64 not in ALLOWED: "
                                      f"{sorted(lines - allowed)}; allowed but gone: "
                                      f"{sorted(allowed - lines)}")


def test_allowed_names_only_kernels_that_exist():
    assert {m for m, _ in ALLOWED} <= set(MODULES)
    for module, name in ALLOWED:
        assert hasattr(importlib.import_module(f"{K.__name__}.{module}"), name), (module, name)


# ---- the check itself, on small functions of each kind -----------------------------------------
def _twice(v, out):
    for i in range(v.size):
        out[i] = 2 * v[i]


def _twice_typed(v, out):
    c = v.dtype.type
    for i in range(v.size):
        out[i] = c(2) * v[i]


def _sum_from_float(v, out):
    z = 0.0
    for i in range(v.size):
        z += v[i]
    out[0] = z


def _sum_typed(v, out):
    z = v.dtype.type(0)
    for i in range(v.size):
        z += v[i]
    out[0] = z


def _below_inf(v, out):
    for i in range(v.size):
        out[i] = v[i] if v[i] < np.inf else 0


def _widened(v, out):
    out[0] = np.float64(v[0]) + 1


F32 = (types.float32[::1], types.float32[::1])


@pytest.mark.parametrize("func, lines", [
    (_twice, {"out[i] = 2 * v[i]"}), (_twice_typed, set()),
    (_sum_from_float, {"z = 0.0", "z += v[i]"}), (_sum_typed, set()),
    (_below_inf, {"out[i] = v[i] if v[i] < np.inf else 0"}),
    (_widened, {"out[0] = np.float64(v[0]) + 1"}),
])
def test_the_check_finds_each_kind_of_promotion(func, lines):
    assert promotions(func, F32)[0] == lines
