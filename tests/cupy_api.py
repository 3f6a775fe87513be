"""What CuPy has, by name, so that the stand-in (``tests/fake_cupy.py``) refuses what CuPy
refuses: a NumPy function CuPy lacks, an ndarray method it lacks, a ufunc method it does not
support (CuPy scatters with ``.at`` only for the ufuncs listed, reduces only with ``add`` and
``multiply``), and the three flags of its arrays (``Flags``); the keywords its functions take
(``check_keywords``), the operands its matmul copies first (``matmul_copies``) and how it
reads an index (``wrapped_key``, ``advanced``).

The lists between the markers are generated from a real CuPy, which imports without a GPU:
``pip install cupy-cuda13x && python tests/cupy_api.py`` rewrites them in place.

Read next: ``tests/fake_cupy.py``.
"""
import inspect
import os
import re
import textwrap

import numpy


def _keywords(text):
    """{"name" (or "linalg.name"): frozenset of the keywords it takes, "**" for any} from the
    generated ``name(keyword, keyword)`` entries (wrapped anywhere at a space)."""
    return {name: frozenset(filter(None, args.replace(",", " ").split())) for name, args in
            re.findall(r"(\S+?)\(([^)]*)\)", text)}


# --- generated
VERSION = '14.2.0'
TOP = frozenset('''
AxisError ComplexWarning DataSource ElementwiseKernel Inf Infinity ModuleDeprecationWarning NAN
NINF NZERO NaN PINF PZERO RankWarning RawKernel RawModule ReductionKernel TooHardError
VisibleDeprecationWarning abs absolute acos acosh add all allclose alltrue amax amin angle
annotations any append apply_along_axis apply_over_axes arange arccos arccosh arcsin arcsinh arctan
arctan2 arctanh argmax argmin argpartition argsort argwhere around array array2string array_equal
array_equiv array_repr array_split array_str asanyarray asarray asarray_chkfinite ascontiguousarray
asfarray asfortranarray asin asinh asnumpy astype atan atan2 atanh atleast_1d atleast_2d atleast_3d
average bartlett base_repr binary_repr bincount bitwise_and bitwise_count bitwise_invert
bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift bitwise_xor blackman bool bool_
broadcast broadcast_arrays broadcast_shapes broadcast_to byte byte_bounds c_ can_cast cbrt cdouble
ceil cfloat choose clear_memo clip column_stack common_type complex128 complex64 complex_
complexfloating compress concat concatenate conj conjugate convolve copy copysign copyto corrcoef
correlate cos cosh count_nonzero cov cross csingle cuda cumprod cumproduct cumsum cumulative_prod
cumulative_sum deg2rad degrees delete diag diag_indices diag_indices_from diagflat diagonal diff
digitize disable_experimental_feature_warning disp divide divmod dot double dsplit dstack dtype e
ediff1d einsum empty empty_like equal euler_gamma exceptions exp exp2 expand_dims expm1 extract eye
fabs fft fill_diagonal find_common_type finfo fix flatiter flatnonzero flip fliplr flipud float16
float32 float64 float_ float_power floating floor floor_divide fmax fmin fmod
format_float_positional format_float_scientific format_parser frexp fromDlpack from_dlpack
frombuffer fromfile fromfunction fromiter fromstring full full_like fuse gcd generic genfromtxt
get_array_module get_array_wrap get_default_memory_pool get_default_pinned_memory_pool
get_printoptions gradient greater greater_equal half hamming hanning heaviside histogram
histogram2d histogramdd hsplit hstack hypot i0 identity iinfo imag in1d index_exp indices inexact
inf infty inner int16 int32 int64 int8 int_ intc integer interp intersect1d intp invert
is_available isclose iscomplex iscomplexobj isdtype isfinite isfortran isin isinf isnan isneginf
isposinf isreal isrealobj isscalar issctype issubclass_ issubdtype issubsctype iterable ix_ kaiser
kron lcm ldexp left_shift less less_equal lexsort lib linalg linspace load loadtxt log log10 log1p
log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor logspace long longlong
make_aligned_dtype mask_indices matmul matrix_transpose max maximum may_share_memory mean median
memoize meshgrid mgrid min min_scalar_type minimum mintypecode mod modf moveaxis msort multiply nan
nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax nanmean nanmedian nanmin nanprod nanstd
nansum nanvar ndarray ndim ndindex negative newaxis nextafter nonzero not_equal number obj2sctype
ogrid ones ones_like outer packbits pad partition percentile permute_dims pi piecewise place poly
poly1d polyadd polyfit polymul polynomial polysub polyval positive pow power printoptions prod
product promote_types ptp put put_along_axis putmask quantile r_ rad2deg radians random ravel
ravel_multi_index real real_if_close reciprocal remainder repeat require reshape resize result_type
right_shift rint roll rollaxis roots rot90 round round_ row_stack s_ safe_eval save savetxt savez
savez_compressed sctype2char searchsorted select set_printoptions set_string_function setdiff1d
setxor1d shape shares_memory short show_config sign signbit signedinteger sin sinc single
singlecomplex sinh size sometrue sort sort_complex split sqrt square squeeze stack std subtract sum
swapaxes take take_along_axis tan tanh tensordot testing tile trace transpose trapezoid trapz tri
tril tril_indices tril_indices_from trim_zeros triu triu_indices triu_indices_from true_divide
trunc typename typing ubyte ufunc uint uint16 uint32 uint64 uint8 uintc uintp ulong ulonglong
union1d unique unique_all unique_counts unique_inverse unique_values unpackbits unravel_index
unsignedinteger unwrap ushort vander var vdot vectorize vsplit vstack where who zeros zeros_like
'''.split())
LINALG = frozenset('''
LinAlgError annotations cholesky cond cross det eig eigh eigvals eigvalsh inv lstsq matmul
matrix_power matrix_rank matrix_transpose norm pinv qr slogdet solve svd tensorinv tensorsolve
'''.split())
STRIDE_TRICKS = frozenset('''
annotations as_strided np sliding_window_view
'''.split())
NDARRAY = frozenset('''
T all any argmax argmin argpartition argsort astype base byteswap choose clip compress conj
conjugate copy cstruct cumprod cumsum data device diagonal dot dtype dump dumps fill flags flat
flatten get imag item itemsize mT max mdspan mean min nbytes ndim nonzero partition prod ptp put
ravel real reduced_view repeat reshape round scatter_add scatter_max scatter_min searchsorted set
shape size sort squeeze std strides sum swapaxes take toDlpack tobytes tofile tolist trace
transpose var view
'''.split())
UFUNCS = frozenset('''
abs absolute acos acosh add arccos arccosh arcsin arcsinh arctan arctan2 arctanh asin asinh atan
atan2 atanh bitwise_and bitwise_count bitwise_invert bitwise_left_shift bitwise_not bitwise_or
bitwise_right_shift bitwise_xor cbrt ceil conj conjugate copysign cos cosh deg2rad degrees divide
divmod equal exp exp2 expm1 fabs fix float_power floor floor_divide fmax fmin fmod frexp gcd
greater greater_equal heaviside hypot i0 invert isfinite isinf isnan lcm ldexp left_shift less
less_equal log log10 log1p log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor
maximum minimum mod modf multiply negative nextafter not_equal positive pow power rad2deg radians
reciprocal remainder right_shift rint sign signbit sin sinc sinh sqrt square subtract tan tanh
true_divide trunc
'''.split())
UFUNC_AT = frozenset('''
add bitwise_and bitwise_or bitwise_xor maximum minimum subtract
'''.split())
UFUNC_REDUCE = frozenset('''
add multiply
'''.split())
UFUNC_ACCUMULATE = frozenset('''
add multiply
'''.split())
KEYWORDS = _keywords('''
all(a, axis, out, keepdims) allclose(a, b, rtol, atol, equal_nan) alltrue(a, axis, out, keepdims)
amax(a, axis, out, keepdims) amin(a, axis, out, keepdims) angle(z, deg) any(a, axis, out, keepdims)
append(arr, values, axis) apply_along_axis(func1d, axis, arr, **) apply_over_axes(func, a, axes)
arange(start, stop, step, dtype) argmax(a, axis, dtype, out, keepdims) argmin(a, axis, dtype, out,
keepdims) argpartition(a, kth, axis) argsort(a, axis, kind) argwhere(a) around(a, decimals, out)
array(obj, dtype, copy, order, subok, ndmin, blocking) array2string(a, **) array_equal(a1, a2,
equal_nan) array_equiv(a1, a2) array_repr(arr, max_line_width, precision, suppress_small)
array_split(ary, indices_or_sections, axis) array_str(arr, max_line_width, precision,
suppress_small) asanyarray(a, dtype, order, copy, blocking) asarray(a, dtype, order, copy,
blocking) asarray_chkfinite(a, dtype, order) ascontiguousarray(a, dtype) asfarray(a, dtype)
asfortranarray(a, dtype) asnumpy(a, stream, order, out, blocking) astype(copy) atleast_1d()
atleast_2d() atleast_3d() average(a, axis, weights, returned, keepdims) bartlett(M)
base_repr(number, base, padding) binary_repr(num, width) bincount(x, weights, minlength)
blackman(M) broadcast_arrays() broadcast_shapes() broadcast_to(array, shape) byte_bounds(a)
can_cast(from_, to, casting) choose(a, choices, out, mode) clip(a, a_min, a_max, out)
column_stack(tup) common_type() compress(condition, a, axis, out) concat(tup, axis, out, dtype,
casting) concatenate(tup, axis, out, dtype, casting) convolve(a, v, mode) copy(a, order)
copyto(dst, src, casting, where) corrcoef(a, y, rowvar, bias, ddof, dtype) correlate(a, v, mode)
count_nonzero(a, axis) cov(a, y, rowvar, bias, ddof, fweights, aweights, dtype) cross(a, b, axisa,
axisb, axisc, axis) cumprod(a, axis, dtype, out) cumproduct(a, axis, dtype, out) cumsum(a, axis,
dtype, out) cumulative_prod(axis, dtype, out, include_initial) cumulative_sum(axis, dtype, out,
include_initial) delete(arr, indices, axis) diag(v, k) diag_indices(n, ndim) diag_indices_from(arr)
diagflat(v, k) diagonal(a, offset, axis1, axis2) diff(a, n, axis, prepend, append) digitize(x,
bins, right) disp(**) dot(a, b, out) dsplit(ary, indices_or_sections) dstack(tup) ediff1d(arr,
to_end, to_begin) einsum(**) empty(shape, dtype, order) empty_like(prototype, dtype, order, subok,
shape) expand_dims(a, axis) extract(condition, a) eye(N, M, k, dtype, order) fill_diagonal(a, val,
wrap) find_common_type(**) flatnonzero(a) flip(a, axis) fliplr(a) flipud(a)
format_float_positional(x, **) format_float_scientific(x, **) frombuffer(**) fromfile(**)
fromfunction(**) fromiter(**) fromstring(**) full(shape, fill_value, dtype, order) full_like(a,
fill_value, dtype, order, subok, shape) genfromtxt(**) get_array_module() get_array_wrap(**)
get_default_memory_pool() get_default_pinned_memory_pool() get_printoptions() gradient(f, axis,
edge_order) hamming(M) hanning(M) histogram(x, bins, range, density, weights) histogram2d(x, y,
bins, range, weights, density) histogramdd(sample, bins, range, weights, density) hsplit(ary,
indices_or_sections) hstack(tup, dtype, casting) identity(n, dtype) imag(val) in1d(ar1, ar2,
assume_unique, invert) indices(dimensions, dtype) inner(a, b) interp(x, xp, fp, left, right,
period) intersect1d(arr1, arr2, assume_unique, return_indices) is_available() isclose(a, b, rtol,
atol, equal_nan) iscomplex(x) iscomplexobj(x) isdtype(dtype, kind) isfortran(a) isin(element,
test_elements, assume_unique, invert) isneginf(x, out) isposinf(x, out) isreal(x) isrealobj(x)
isscalar(element) issctype(rep) issubclass_(arg1, arg2) issubdtype(arg1, arg2) issubsctype(arg1,
arg2) iterable(y) ix_() kaiser(M, beta) kron(a, b) lexsort(keys) linspace(start, stop, num,
endpoint, retstep, dtype, axis) load(file, mmap_mode, allow_pickle) loadtxt(**) logspace(start,
stop, num, endpoint, base, dtype, axis) mask_indices(n, mask_func, k) matmul(axes, axis, keepdims,
casting, dtype, signature, order, out) matrix_transpose() max(a, axis, out, keepdims)
may_share_memory(a, b, max_work) mean(a, axis, dtype, out, keepdims) median(a, axis, out,
overwrite_input, keepdims) meshgrid(**) min(a, axis, out, keepdims) mintypecode(typechars, typeset,
default) moveaxis(a, source, destination) msort(a) nan_to_num(x, copy, nan, posinf, neginf)
nanargmax(a, axis, dtype, out, keepdims) nanargmin(a, axis, dtype, out, keepdims) nancumprod(a,
axis, dtype, out) nancumsum(a, axis, dtype, out) nanmax(a, axis, out, keepdims) nanmean(a, axis,
dtype, out, keepdims) nanmedian(a, axis, out, overwrite_input, keepdims) nanmin(a, axis, out,
keepdims) nanprod(a, axis, dtype, out, keepdims) nanstd(a, axis, dtype, out, ddof, keepdims)
nansum(a, axis, dtype, out, keepdims) nanvar(a, axis, dtype, out, ddof, keepdims) ndim(a)
nonzero(a) obj2sctype(rep, default) ones(shape, dtype, order) ones_like(a, dtype, order, subok,
shape) outer(a, b, out) packbits(a, axis, bitorder) pad(array, pad_width, mode, **) partition(a,
kth, axis) percentile(a, q, axis, out, overwrite_input, method, keepdims, interpolation)
permute_dims(a, axes) piecewise(x, condlist, funclist) place(arr, mask, vals) poly(seq_of_zeros)
polyadd(a1, a2) polyfit(x, y, deg, rcond, full, w, cov) polymul(a1, a2) polysub(a1, a2) polyval(p,
x) printoptions(**) prod(a, axis, dtype, out, keepdims) product(a, axis, dtype, out, keepdims)
promote_types() ptp(a, axis, out, keepdims) put(a, ind, v, mode) put_along_axis(arr, indices,
values, axis) putmask(a, mask, values) quantile(a, q, axis, out, overwrite_input, method, keepdims,
interpolation) ravel(a, order) ravel_multi_index(multi_index, dims, mode, order) real(val)
real_if_close(a, tol) repeat(a, repeats, axis) require(a, dtype, requirements) reshape(a, newshape,
order, copy) resize(a, new_shape) result_type() roll(a, shift, axis) rollaxis(a, axis, start)
roots(p) rot90(a, k, axes) round(a, decimals, out) round_(a, decimals, out) row_stack(tup, dtype,
casting) safe_eval(**) save(file, arr, allow_pickle) savetxt(fname, X, **) savez(file, **)
savez_compressed(file, **) sctype2char(sctype) searchsorted(a, v, side, sorter) select(condlist,
choicelist, default) set_printoptions(precision, threshold, edgeitems, linewidth, suppress, nanstr,
infstr, formatter, sign, floatmode, legacy, override_repr) set_string_function(**) setdiff1d(ar1,
ar2, assume_unique) setxor1d(ar1, ar2, assume_unique) shape(a) shares_memory(a, b, max_work)
show_config(_full) sometrue(a, axis, out, keepdims) sort(a, axis, kind) sort_complex(a) split(ary,
indices_or_sections, axis) squeeze(a, axis) stack(tup, axis, out, dtype, casting) std(a, axis,
dtype, out, ddof, keepdims) sum(a, axis, dtype, out, keepdims) swapaxes(a, axis1, axis2) take(a,
indices, axis, out) take_along_axis(a, indices, axis) tensordot(a, b, axes) tile(A, reps) trace(a,
offset, axis1, axis2, dtype, out) transpose(a, axes) trapezoid(y, x, dx, axis) trapz(y, x, dx,
axis) tri(N, M, k, dtype) tril(m, k) tril_indices(n, k, m) tril_indices_from(arr, k)
trim_zeros(filt, trim) triu(m, k) triu_indices(n, k, m) triu_indices_from(arr, k) typename(char)
union1d(arr1, arr2) unique(ar, return_index, return_inverse, return_counts, axis, equal_nan)
unique_all(x) unique_counts(x) unique_inverse(x) unique_values(x) unpackbits(a, axis, bitorder)
unravel_index(indices, dims, order) unwrap(p, discont, axis, period) vander(x, N, increasing)
var(a, axis, dtype, out, ddof, keepdims) vdot(a, b) vsplit(ary, indices_or_sections) vstack(tup,
dtype, casting) where(condition, x, y) who(vardict) zeros(shape, dtype, order) zeros_like(a, dtype,
order, subok, shape) linalg.cholesky(a) linalg.cond(x, p) linalg.cross(axis) linalg.det(a)
linalg.eig(a) linalg.eigh(a, UPLO) linalg.eigvals(a) linalg.eigvalsh(a, UPLO) linalg.inv(a)
linalg.lstsq(a, b, rcond) linalg.matmul(axes, axis, keepdims, casting, dtype, signature, order,
out) linalg.matrix_power(M, n) linalg.matrix_rank(M, tol) linalg.matrix_transpose(a) linalg.norm(x,
ord, axis, keepdims) linalg.pinv(a, rcond) linalg.qr(a, mode) linalg.slogdet(a) linalg.solve(a, b)
linalg.svd(a, full_matrices, compute_uv) linalg.tensorinv(a, ind) linalg.tensorsolve(a, b, axes)
lib.stride_tricks.as_strided(x, shape, strides) lib.stride_tricks.sliding_window_view(x,
window_shape, axis, subok, writeable) ndarray.all(axis, out, keepdims) ndarray.any(axis, out,
keepdims) ndarray.argmax(axis, out, dtype, keepdims) ndarray.argmin(axis, out, dtype, keepdims)
ndarray.argpartition(kth, axis) ndarray.argsort(axis, kind) ndarray.astype(dtype, order, casting,
subok, copy) ndarray.byteswap(inplace) ndarray.choose(choices, out, mode) ndarray.clip(min, max,
out) ndarray.compress(condition, axis, out) ndarray.conj() ndarray.conjugate() ndarray.copy(order)
ndarray.cumprod(axis, dtype, out) ndarray.cumsum(axis, dtype, out) ndarray.diagonal(offset, axis1,
axis2) ndarray.dot(b, out) ndarray.dump(file) ndarray.dumps() ndarray.fill(value)
ndarray.flatten(order) ndarray.get(stream, order, out, blocking) ndarray.item() ndarray.max(axis,
out, keepdims) ndarray.mdspan(index_type, allow_unsafe) ndarray.mean(axis, dtype, out, keepdims)
ndarray.min(axis, out, keepdims) ndarray.nonzero() ndarray.partition(kth, axis) ndarray.prod(axis,
dtype, out, keepdims) ndarray.ptp(axis, out, keepdims) ndarray.put(indices, values, mode)
ndarray.ravel(order) ndarray.reduced_view(dtype) ndarray.repeat(repeats, axis)
ndarray.reshape(order, copy) ndarray.round(decimals, out) ndarray.scatter_add(slices, value)
ndarray.scatter_max(slices, value) ndarray.scatter_min(slices, value) ndarray.searchsorted(v, side,
sorter) ndarray.set(arr, stream) ndarray.sort(axis, kind) ndarray.squeeze(axis) ndarray.std(axis,
dtype, out, ddof, keepdims) ndarray.sum(axis, dtype, out, keepdims) ndarray.swapaxes(axis1, axis2)
ndarray.take(indices, axis, out) ndarray.toDlpack() ndarray.tobytes(order) ndarray.tofile(fid, sep,
format) ndarray.tolist() ndarray.trace(offset, axis1, axis2, dtype, out) ndarray.transpose()
ndarray.var(axis, dtype, out, ddof, keepdims) ndarray.view(dtype, type) ufunc.accumulate(array,
axis, dtype, out) ufunc.at(a, indices, b) ufunc.outer(A, B, **) ufunc.reduce(array, axis, dtype,
out, keepdims) ufunc.reduceat(array, indices, axis, dtype, out) ufunc.__call__(out, casting, dtype)
''')
# --- end generated


class Flags:
    """CuPy's ``ndarray.flags``: three of NumPy's (no ``writeable``, ``aligned``; CuPy's arrays
    are always writeable), by attribute or by their full upper-case names."""
    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, flags):
        self.c_contiguous, self.f_contiguous = flags.c_contiguous, flags.f_contiguous
        self.owndata = flags.owndata

    fnc = property(lambda self: self.f_contiguous and not self.c_contiguous)
    forc = property(lambda self: self.f_contiguous or self.c_contiguous)

    def __getitem__(self, name):
        if name not in ("C_CONTIGUOUS", "F_CONTIGUOUS", "OWNDATA"):
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags")
        return getattr(self, name.lower())


def wrapped_key(key, shape):
    """An index (of host or stand-in arrays unwrapped) as CuPy reads it: an integer array's
    out-of-range entries wrap around (CuPy's documented difference from NumPy, which raises
    IndexError)."""
    from minimeta.engine.primitives.shape import integer_arrays

    items = list(key) if isinstance(key, tuple) else [key]
    for position, axis, arr in integer_arrays(tuple(items), len(shape)):
        if axis < len(shape) and shape[axis]:
            items[position] = arr % shape[axis]
    return tuple(items) if isinstance(key, tuple) else items[0]


def advanced(key):
    """True when the (unwrapped) index holds an integer or boolean array or a list."""
    items = key if isinstance(key, tuple) else (key,)
    return any(isinstance(i, (numpy.ndarray, list)) for i in items)


def check_keywords(name, kwargs):
    """Refuse, as Python would for CuPy's ``name``, a keyword its signature lacks (NumPy's take
    more: ``np.sum(where=...)``, ``np.argsort(stable=...)``); CuPy's Cython functions whose
    signatures can be read neither by ``inspect`` nor from their docstring are not checked
    (``KEYWORDS``; ``ndarray.sum``, ``ufunc.reduce``: its methods')."""
    taken = KEYWORDS.get(name, {"**"})
    bad = sorted(set(kwargs) - taken) if "**" not in taken else []
    if bad:
        raise TypeError(f"{name.rsplit('.', 1)[-1]}() got an unexpected keyword argument "
                        f"{bad[0]!r}")
    if name.rsplit(".", 1)[-1] in ("sort", "argsort") and kwargs.get("kind") not in (
            None, "stable"):          # CuPy's sorts are all stable: no other kind is taken
        raise ValueError("kind can only be None or 'stable'")


def matmul_copies(inputs):
    """The sizes in bytes of the operands CuPy's matmul copies first (a kernel each): above two
    dimensions, any not C-contiguous (a transpose's view: cuBLAS's transpose flags go unused)
    or not of the product's dtype; up to two (``dot``), those neither C- nor F-contiguous."""
    arrays = [x for x in inputs if isinstance(x, numpy.ndarray)]
    dtype = numpy.result_type(*inputs)
    wide = max(a.ndim for a in arrays) > 2
    return [a.size * dtype.itemsize for a in arrays if a.dtype != dtype or not (
        a.flags.c_contiguous or (not wide and a.flags.f_contiguous))]


def _generate():
    import cupy

    def names(label, values):
        body = textwrap.fill(" ".join(sorted(values)), 99)
        return f"{label} = frozenset('''\n{body}\n'''.split())\n"

    def supports(method, *args):
        def ok(name):
            try:
                getattr(getattr(cupy, name), method)(*args)
            except NotImplementedError:
                return False
            except Exception:   # any other error: past CuPy's "not supported" check
                return True
            return True
        return sorted(n for n in ufuncs if ok(n))

    def keywords(namespace, prefix):
        """``name(keyword,...)`` per function whose signature Python can read (CuPy's Cython
        ones it cannot: those stay unchecked); ``**`` where any keyword goes."""
        entries = []
        for n in sorted(n for n in dir(namespace) if not n.startswith("_")):
            f = getattr(namespace, n)
            if isinstance(f, (type, cupy.ufunc)) or not callable(f):
                continue
            try:
                params = inspect.signature(f).parameters.values()
            except (TypeError, ValueError):
                continue
            kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            names = [p.name for p in params if p.kind in kinds]
            names += ["**"] * any(p.kind == p.VAR_KEYWORD for p in params)
            entries.append(f"{prefix}{n}({', '.join(names)})")
        return entries

    def documented(owner, prefix):
        """``prefix.name(keyword,...)`` per method of ``owner`` (ndarray, ufunc) from the
        signature Cython writes at the head of its docstring, which ``inspect`` cannot read:
        ``_ndarray_base.sum(self, axis=None, dtype=None, out=None, keepdims=False) -> ...``."""
        entries = []
        for n in sorted(n for n in dir(owner) if not n.startswith("_")):
            doc = (getattr(getattr(owner, n), "__doc__", None) or "").strip()
            found = re.match(rf"[\w.]*\b{n}\(self,?(.*?)\)( ->|$|\n)", doc)
            if found:
                params = [p.strip() for p in found.group(1).split(",") if p.strip()]
                names = ["**" if p.startswith("**") else p.split("=")[0].split()[-1]
                         for p in params if not p.startswith("*") or p.startswith("**")]
                entries.append(f"{prefix}{n}({', '.join(names)})")
        return entries

    def ufunc_call():
        """The keywords a CuPy ufunc's call takes (``**kwargs`` read by hand: it answers
        ``Wrong arguments`` to the others, ``where=`` among them, before it touches a GPU)."""
        taken = []
        for k in ("out", "where", "casting", "order", "dtype", "subok", "signature", "axes",
                  "axis", "keepdims"):
            try:
                cupy.add(1, 2, **{k: None})
            except TypeError as err:
                if "Wrong arguments" in str(err):
                    continue
            except Exception:   # past the check (no GPU; a bad value)
                pass
            taken.append(k)
        return [f"ufunc.__call__({', '.join(taken)})"]

    signatures = (keywords(cupy, "") + keywords(cupy.linalg, "linalg.")
                  + keywords(cupy.lib.stride_tricks, "lib.stride_tricks.")
                  + documented(cupy.ndarray, "ndarray.") + documented(cupy.ufunc, "ufunc.")
                  + ufunc_call())
    public = [n for n in dir(cupy) if not n.startswith("_")]
    ufuncs = [n for n in public if isinstance(getattr(cupy, n), cupy.ufunc)]
    at = [n for n in ufuncs if getattr(getattr(cupy, n), "_scatter_op", None)]
    return (f"VERSION = {cupy.__version__!r}\n"
            + names("TOP", public)
            + names("LINALG", [n for n in dir(cupy.linalg) if not n.startswith("_")])
            + names("STRIDE_TRICKS", [n for n in dir(cupy.lib.stride_tricks)
                                      if not n.startswith("_")])
            + names("NDARRAY", [n for n in dir(cupy.ndarray) if not n.startswith("_")])
            + names("UFUNCS", ufuncs)
            + names("UFUNC_AT", at)
            + names("UFUNC_REDUCE", supports("reduce", None))
            + names("UFUNC_ACCUMULATE", supports("accumulate", None))
            + "KEYWORDS = _keywords('''\n" + textwrap.fill(" ".join(signatures), 99)
            + "\n''')\n")


if __name__ == "__main__":
    path = os.path.abspath(__file__)
    source = open(path).read()
    start, end = "# --- generated\n", "# --- end generated\n"
    head, rest = source.split(start)
    generated = _generate()     # first: an error leaves the file as it was
    with open(path, "w") as f:
        f.write(head + start + generated + end + rest.split(end)[1])
