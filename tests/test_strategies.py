"""``minimeta.testing``'s hypothesis strategies, checked themselves (the checker's own verdicts
are in ``test_gradcheck_itself.py``): each case failed before its fix (probing, 2026-12-01).

Read next: ``test_meta_gradcheck.py`` (MAML's meta-gradient against finite differences).
"""
import numpy as np
import pytest
from hypothesis import given, settings

from minimeta.testing import arrays, distinct_arrays, shapes


@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(arrays(shapes(), low=-0.9, high=0.9, margin=0.2), arrays(shapes(), low=0.0, high=2.0,
                                                               margin=0.1))
def test_the_strategies_keep_their_bounds_and_margins(two_sided, positive):
    for x, low, high, margin in ((two_sided, -0.9, 0.9, 0.2), (positive, 0.0, 2.0, 0.1)):
        x = np.asarray(x)
        assert np.all((x >= low) & (x <= high)), x             # margin had pushed past ±0.9
        assert np.all(np.abs(x) >= margin - 1e-12), x


@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(arrays(shapes(), low=-5.0, high=2.0, margin=0.1), arrays(3, -7.0, 1.0, margin=0.3))
def test_a_margin_holds_exactly_on_an_uneven_range(a, b):
    # the map onto [−5, −0.1] had rounded a value near 0 to −0.09999999999999964 (an audit)
    assert np.all(np.abs(a) >= 0.1) and np.all((a >= -5.0) & (a <= 2.0)), a
    assert np.all(np.abs(b) >= 0.3) and np.all((b >= -7.0) & (b <= 1.0)), b


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(arrays((8,)))
def test_the_strategies_draw_no_subnormals(x):
    # with no margin (the default), where one could come (with a margin the bound above
    # already excludes them: a mutation audit found that check could not fail there)
    tiny = (x != 0) & (np.abs(x) < np.finfo(np.float64).tiny)
    assert not tiny.any(), x


@given(arrays(3), arrays([2, 3]), distinct_arrays(4))
@settings(max_examples=5)
def test_the_strategies_take_an_int_or_a_list_for_a_shape(a, b, c):
    """As hypothesis' own ``arrays``; both had been an AttributeError (probing, 2026-12-01)."""
    assert a.shape == (3,) and b.shape == (2, 3) and c.shape == (4,)


def test_a_shape_of_another_kind_is_a_one_line_error():
    with pytest.raises(TypeError, match="arrays: shape must be a tuple, an int or a shape "):
        given(arrays("3"))(lambda a: None)()


@given(arrays(()))
@settings(max_examples=20)
def test_a_zero_d_array_stays_zero_d_in_every_layout(a):
    """``np.asfortranarray`` turns a 0-d array into shape (1,): the scatter_add row drew such a
    g for a scalar slot and failed once its draws moved (2026-12-01)."""
    assert a.shape == ()


LAYOUTS = []


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(arrays((2, 3)))
def draw_layouts(x):
    LAYOUTS.append("C" if x.flags.c_contiguous else "F" if x.flags.f_contiguous else "strided")


def test_arrays_come_in_every_layout_and_distinct_arrays_are_distinct():
    """A kernel that reads its input as C-ordered is wrong on an F-ordered or strided one:
    ``arrays`` draws all three (drawing C only had passed every test: a mutation audit's);
    ``distinct_arrays`` keeps ``gap`` between any two values (max's ties)."""
    LAYOUTS.clear()
    draw_layouts()
    assert set(LAYOUTS) == {"C", "F", "strided"}

    @settings(max_examples=50, derandomize=True, database=None, deadline=None)
    @given(distinct_arrays((6,), gap=1e-3))
    def gaps(x):
        apart = np.abs(x[:, None] - x[None, :]) + np.eye(6)
        assert apart.min() >= 1e-3 - 1e-12, x

    gaps()


def test_large_arrays_are_drawn_dense_half_the_time_within_their_bounds():
    """Past 64 elements hypothesis' own arrays are mostly one fill value (1500 elements: a
    single distinct value in 7 of 30 draws): a kernel test at its fast paths' sizes compared
    constants. Half the draws are dense now; bounds and margins hold there too."""
    seen = []

    @settings(max_examples=40, derandomize=True, database=None, deadline=None)
    @given(arrays((1500,), low=-0.9, high=0.9, margin=0.2))
    def draw(x):
        assert np.all((x >= -0.9) & (x <= 0.9) & (np.abs(x) >= 0.2 - 1e-12)), x
        seen.append(len(np.unique(x)))

    draw()
    dense = sum(n == 1500 for n in seen)
    assert 10 <= dense <= 30 and min(seen) < 100, seen   # and the sparse kind is still drawn


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(arrays((8,), dtype=np.float32, margin=0.7), arrays((8,), 0.1, 0.3, dtype=np.float32),
       arrays((8,), -1e-40, 1e-40, dtype=np.float32))
def test_float32_arrays_keep_the_margin_the_bounds_and_no_subnormals(far, inside, tiny):
    """Drawn in float64 and cast, 0.7 had rounded below 0.7 (198 of 300 examples held one),
    0.3 above 0.3, and 1e-45 had become a float32 subnormal (an audit of the strategies)."""
    assert far.dtype == inside.dtype == tiny.dtype == np.float32
    assert np.all(np.abs(far.astype(np.float64)) >= 0.7)
    assert np.all((inside.astype(np.float64) >= 0.1) & (inside.astype(np.float64) <= 0.3))
    assert not np.any((tiny != 0) & (np.abs(tiny) < np.finfo(np.float32).tiny))
