"""What a mutation audit of the checks (2026-12-04) found untested: ``mm.gradcheck``'s
refusals and the words of its failures (``gradcheck_explain``), ``minimeta.testing``'s
strategies and the primitive table's own checks (``selfcheck``).

Each test fails on the mutant its docstring names and passes on the code as it is.

Read next: ``test_thread_policy_audit.py`` (the same audit, of the thread policy).
"""
import sys

import numpy as np
import pytest
from hypothesis import given, settings

import minimeta as mm
from minimeta.testing import arrays


class Square(mm.Primitive):
    """a², its VJP off by a factor per entry (``OFF``; 1 where right)."""

    abstract = True  # a test's deliberate mutant: not one of the engine's primitives
    OFF = {}

    def forward(self, a):
        return a * a

    def vjp(self, g, out, a):
        w = np.ones(a.shape)
        for j, factor in self.OFF.items():
            w[j] = factor
        return (g * 2 * a * mm.tensor(w),)


def _square(off):
    return type("Off", (Square,), {"abstract": True, "OFF": off})


@pytest.mark.parametrize("name", ["atol", "rtol"])
def test_an_infinite_tolerance_is_refused(name):
    """An infinite ``atol`` or ``rtol`` passes every comparison: the check could not fail.
    Only ``eps=inf`` was tested; a mutant that dropped ``rtol`` from the finite-number check
    accepted ``rtol=inf`` and passed a VJP 50% off (mutation audit, 2026-12-04)."""
    bad = _square({0: 1.5})
    with pytest.raises(ValueError, match=f"^gradcheck: {name} must be a finite number, "
                                         "got inf$"):
        mm.gradcheck(lambda a: mm.apply(bad(), a), [np.array([0.3, -1.2])],
                     **{name: float("inf")})


def test_the_entry_named_is_the_one_off_the_most():
    """Of two entries off, the failure names the one off the most ("off the most"): a mutant
    naming the least (``min`` for ``max`` in ``entry``) passed, every test having one entry
    off only (mutation audit, 2026-12-04)."""
    bad = _square({2: 1.01, 6: 1.2})
    with pytest.raises(mm.GradcheckError, match=r"entry \(6,\) is off the most \(2 of 10 are "
                                                r"off\)"):
        mm.gradcheck(lambda a: mm.apply(bad(), a), [np.linspace(-1, 1.3, 10)])


def test_an_input_of_exactly_entries_entries_gets_its_entry_named():
    """``entry`` names the entry for inputs of up to ``ENTRIES`` (100) entries, that many
    included: a mutant with ``>=`` for ``>`` said nothing at 100 and passed (mutation audit,
    2026-12-04)."""
    from minimeta.gradcheck_explain import ENTRIES

    bad = _square({7: 1.05})
    with pytest.raises(mm.GradcheckError, match=r"entry \(7,\) is off the most \(1 of 100"):
        mm.gradcheck(lambda a: mm.apply(bad(), a), [np.linspace(0.5, 1.5, ENTRIES)],
                     directions=4)
    with pytest.raises(mm.GradcheckError) as info:          # one more: not named
        mm.gradcheck(lambda a: mm.apply(bad(), a), [np.linspace(0.5, 1.5, ENTRIES + 1)],
                     directions=4)
    assert "off the most" not in str(info.value)


def test_arrays_just_past_sparse_up_to_are_drawn_dense_too():
    """Past ``SPARSE_UP_TO`` (64) elements half the draws are dense; the only test drew 1500
    elements, so a mutant that raised the threshold to 640 passed (mutation audit,
    2026-12-04). 65 elements, as the module's docstring promises ("past 64")."""
    seen = []

    @settings(max_examples=30, derandomize=True, database=None, deadline=None)
    @given(arrays((65,), layouts=False))
    def draw(x):
        seen.append(len(np.unique(x)))

    draw()
    assert sum(n == 65 for n in seen) >= 5, seen


def test_arrays_refuse_an_empty_range():
    """``low == high`` is refused as ``low > high`` is ("need low < high"); a mutant that
    refused only ``low > high`` drew constants and passed (mutation audit, 2026-12-04)."""
    for low, high in ((1.0, 1.0), (2.0, -2.0)):
        @settings(max_examples=1, database=None, deadline=None)
        @given(arrays((3,), low, high))
        def draw(x):
            pass

        with pytest.raises(ValueError, match=f"^arrays: need low < high, got {low}, {high}\n"):
            draw()


class ReadC(mm.Primitive):
    """The identity, computed by a kernel that reads its input's buffer in memory order as if
    it were C-ordered: wrong for a Fortran-ordered input."""

    abstract = True

    def forward(self, g):
        return np.reshape(np.ravel(g, order="K"), g.shape)

    def vjp(self, g, out, a):
        return (g,)


class DoubleC(mm.Primitive):
    """2a, whose VJP (differentiable) passes its incoming gradient through ``ReadC``."""

    abstract = True

    def forward(self, a):
        return 2 * a

    def vjp(self, g, out, a):
        return (2 * mm.apply(ReadC(), g),)


@pytest.mark.parametrize("kwargs", [dict(order=2), dict(order=1, compose=True)])
def test_a_composed_check_hands_f_a_fortran_ordered_gradient_too(kwargs):
    """BUG found by the mutation audit (2026-12-04): the check that a VJP's result does not
    change with the layout of its incoming gradient (``_same_in_any_layout``) was inert at
    every composed level, the post map's gradient reaching f being a new C-ordered array: a
    VJP assuming a C-ordered gradient failed ``order=1`` and passed ``order=2`` (and
    ``compose=True``). Composed levels now check f's own output's gradients as well."""
    a = np.array([[0.3, -1.2, 0.5], [0.7, 1.1, -0.4]])
    mm.gradcheck(lambda t: 2 * t, [a], **kwargs)                 # the right VJP passes
    with pytest.raises(mm.GradcheckError, match=r"^gradcheck: order-1 gradient w.r.t. input 0 "
                                                r"changes when the incoming gradient is "
                                                r"Fortran-ordered instead of C-ordered"):
        mm.gradcheck(lambda t: mm.apply(DoubleC(), t), [a], **kwargs)


class ReadContiguous(mm.Primitive):
    """The identity of a vector, computed by a kernel that reads its input's buffer as if it
    were contiguous: wrong for a strided view (it reads the entries between)."""

    abstract = True

    def forward(self, g):
        return np.lib.stride_tricks.as_strided(g, g.shape, (g.itemsize,)).copy()

    def vjp(self, g, out, a):
        return (g,)


class TwiceStrided(mm.Primitive):
    """2·a·g, the VJP of a²; its own VJP (order 2) reads its incoming gradient as contiguous."""

    abstract = True

    def forward(self, a, g):
        return 2.0 * a * g

    def vjp(self, h, out, a, g):
        read = mm.apply(ReadContiguous(), h)
        return (2.0 * g * read, 2.0 * a * read)


class SquareStrided(mm.Primitive):
    """a², right at order 1 in any layout; at order 2 wrong for a strided incoming gradient."""

    abstract = True

    def forward(self, a):
        return a * a

    def vjp(self, g, out, a):
        return (mm.apply(TwiceStrided(), a, g),)


def test_an_uncomposed_check_of_order_two_hands_each_level_a_strided_gradient(monkeypatch):
    """The survivor of the mutation audit (2026-12-04) left untested: the layout check of an
    uncomposed level past the first, here a vector's, whose incoming gradient at level 2 must
    also be a strided view. The mutant (the check skipped from level 2 on) passes."""
    a = np.array([0.3, -1.2, 0.5, 0.7])
    f = lambda t: mm.apply(SquareStrided(), t)                          # noqa: E731
    mm.gradcheck(f, [a], order=1)                                       # right at order 1
    mm.gradcheck(lambda t: t * t, [a], order=2, compose=False)          # the right VJP passes
    with pytest.raises(mm.GradcheckError, match=r"^gradcheck: order-2 gradient w.r.t. input 0 "
                                                r"changes when the incoming gradient is a "
                                                r"strided view instead of C-ordered"):
        mm.gradcheck(f, [a], order=2, compose=False)
    module = sys.modules["minimeta.gradcheck"]
    check = module._same_in_any_layout
    monkeypatch.setattr(module, "_same_in_any_layout", lambda y, xs, v, vjps, tols, level: (
        check(y, xs, v, vjps, tols, level) if level < 2 else None))
    mm.gradcheck(f, [a], order=2, compose=False)                        # the mutant passes


QUIET = dict(out=lambda line: None, shrink=False, max_examples=20)


def _table_row(name):
    from minimeta import selfcheck

    return next(row for row in selfcheck.ROWS if row.name == name)


def test_the_table_checks_a_two_input_row_with_one_input_held_constant(monkeypatch):
    """The table checks each row of several inputs again with some held constant: Mul's VJP
    with its two ``requires_grad`` tests swapped fails the mul row. A mutant that did so only
    for rows of three inputs or more passed (mutation audit, 2026-12-04)."""
    from minimeta import selfcheck
    from minimeta.engine.primitives import elementwise as E

    def swapped(self, g, out, a, b):
        return (g * b if b.requires_grad else None, g * a if a.requires_grad else None)

    row = _table_row("mul")
    selfcheck.run(rows=[row], orders=(1,), **QUIET)
    monkeypatch.setattr(E.Mul, "vjp", swapped)
    with pytest.raises(selfcheck.RowFailure, match="^row mul: gradcheck: order-1"):
        selfcheck.run(rows=[row], orders=(1,), **QUIET)


def test_the_table_compares_a_forward_with_numpy_to_1e_12():
    """A forward off by 1e-9 of its value fails its row ("forward differs from NumPy"); a
    mutant that compared to rtol 1e-2 passed (mutation audit, 2026-12-04)."""
    import dataclasses

    from minimeta import selfcheck

    row = dataclasses.replace(_table_row("add"), ref=lambda a, b: np.add(a, b) * (1 + 1e-9))
    with pytest.raises(selfcheck.RowFailure, match="^row add: forward differs from NumPy"):
        selfcheck.run(rows=[row], orders=(1,), **QUIET)


def test_the_table_checks_the_power_zero_on_its_own_branch(monkeypatch):
    """``a ** 0`` has a VJP branch of its own (``PowScalar``); a VJP wrong there only fails
    the pow_scalar_exponents row, which draws the exponent 0. A strategy that left 0 out
    passed every test (mutation audit, 2026-12-04)."""
    from minimeta import selfcheck
    from minimeta.engine.primitives import elementwise as E

    right = E.PowScalar.vjp
    monkeypatch.setattr(E.PowScalar, "vjp", lambda self, g, out, a: (g,) if self.c == 0
                        else right(self, g, out, a))
    with pytest.raises(selfcheck.RowFailure, match="^row pow_scalar_exponents: gradcheck: "
                                                   "order-1"):
        selfcheck.run(rows=[_table_row("pow_scalar_exponents")], orders=(1,), **QUIET)


class Prod(mm.Primitive):
    """a · b; ``DETACH``: its VJP for b detaches a (right at order 1, wrong at order 2)."""

    abstract = True
    DETACH = False

    def forward(self, a, b):
        return a * b

    def vjp(self, g, out, a, b):
        return g * b, g * (a.detach() if self.DETACH else a)


def test_device_parity_sees_a_difference_in_the_forward_and_at_order_two():
    """``device_parity`` (the GPU tests' comparison with the CPU) measures the forward, the
    VJP and the VJP's own VJP in every input: mutants that compared the CPU's values with
    themselves, or took the VJP's VJP of the first input's gradient only, passed every CPU
    test (mutation audit, 2026-12-04). The "device" run is the function's third call here."""
    import dataclasses

    from minimeta import selfcheck

    calls = []

    def third_differs(forward_factor=1.0, detach=False):
        def fn(a, b):
            calls.append(1)
            third = len(calls) % 3 == 0
            op = type("P", (Prod,), {"abstract": True, "DETACH": detach and third})()
            return mm.apply(op, a, b) * (forward_factor if third else 1.0)
        return dataclasses.replace(_table_row("mul"), name="probe", fn=fn)

    xs = [np.array([0.3, -1.2, 0.5]), np.array([0.7, 1.1, -0.4])]
    assert selfcheck.device_parity(third_differs(), xs, (), "cpu") == 0.0
    assert selfcheck.device_parity(third_differs(forward_factor=1.01), xs, (), "cpu") > 1e-3
    assert selfcheck.device_parity(third_differs(detach=True), xs, (), "cpu") > 1e-2
