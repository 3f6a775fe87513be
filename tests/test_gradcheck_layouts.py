"""``mm.gradcheck`` and memory layouts: the inputs reach ``f`` in the layout they were given in
(Fortran order, strided views), at every order, composed levels included.

Until 2026-12-03 a composed level handed ``f`` pre(x) in C order, whatever the caller's layout:
the layouts ``minimeta.testing`` draws reached a kernel at order 1 only, and an order-2 VJP that
misread an input in Fortran order passed (the mutant below, which the check now catches).
"""
import sys

import numpy as np
import pytest

import minimeta as mm
import minimeta.gradcheck  # noqa: F401  (the module, for the mutant)


def test_the_inputs_reach_f_in_the_layout_they_were_given_in():
    seen = []

    def f(a):
        seen.append((a.data.flags.c_contiguous, a.data.flags.f_contiguous))
        return (a * a).sum()

    base = np.arange(12.0).reshape(3, 4) / 10
    for compose in (False, True):               # composed, f gets pre(x): in x's layout too
        mm.gradcheck(f, [base[:, ::2]], order=2, compose=compose)
        assert seen and set(seen) == {(False, False)}                   # strided, every call
        seen.clear()
        mm.gradcheck(f, [np.asfortranarray(base)], order=3)
        assert set(seen) == {(False, True)}
        seen.clear()


class MemoryOrderMul(mm.Primitive):
    """a · h paired by position in memory, not by index: right only where a and h share a
    layout (as a kernel that assumed C order reads wrong pairs of an F-ordered a)."""

    abstract = True

    def forward(self, a, h):
        return (a.ravel(order="K") * h.ravel(order="K")).reshape(h.shape)

    def vjp(self, k, out, a, h):
        return (k * h, k * a)


class Twice(mm.Primitive):
    """2·a·g, the VJP of a²; its own VJP (order 2) pairs a with its gradient by memory."""

    abstract = True

    def forward(self, a, g):
        return 2.0 * a * g

    def vjp(self, h, out, a, g):
        return (2.0 * g * h, 2.0 * mm.apply(MemoryOrderMul(), a, h))


class Square(mm.Primitive):
    """a², right at order 1 in any layout, wrong at order 2 for an input not in C order."""

    abstract = True

    def forward(self, a):
        return a * a

    def vjp(self, g, out, a):
        return (mm.apply(Twice(), a, g),)


def test_a_layout_bug_of_order_two_only_is_caught(monkeypatch):
    # composed levels had handed f pre(x) in C order: an order-2 VJP that misread an
    # F-ordered input passed (a known gap until 2026-12-03); the mutant below is that checker
    x = np.asfortranarray([[0.3, -1.2, 0.5], [1.1, 0.2, -0.7]])
    f = lambda a: mm.apply(Square(), a).tanh().sum()                    # noqa: E731
    mm.gradcheck(f, [x], order=1)                                       # right at order 1
    mm.gradcheck(f, [np.ascontiguousarray(x)], order=2)                 # and in C order
    with pytest.raises(mm.GradcheckError, match=r"order-2 .*Fortran-ordered\) is wrong"):
        mm.gradcheck(f, [x], order=2)
    monkeypatch.setattr(sys.modules["minimeta.gradcheck"], "_relaid", lambda t, kind: t)
    mm.gradcheck(f, [x], order=2)                                       # the old gap: passes
