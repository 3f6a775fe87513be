"""``mm.gradcheck`` and ``minimeta.testing`` checked themselves: verdicts a checker must not give.

Each case was found by probing the checker (2026-12-01) and failed before its fix:
- a false pass: the composition's post-map y + c·y² had slope 0 at y = −2, where a VJP that
  returns zeros passed order 2 (now log cosh maps, slopes within 1 ± c);
- false failures: the same map squared the values at every order (a correct x² failed order 2
  at x = 10⁵, exp at 200 gave NaN), and a fixed step failed x² at 10⁶;
- inputs made contiguous before they reached ``f``, so the layouts the strategies draw never
  reached a kernel (and at composed orders until 2026-12-03: ``test_gradcheck_layouts.py``);
- calls that checked something else than asked (an array for the list of inputs) or crashed
  (eps = 0), and strategies that broke their own bounds (``margin``) or drew subnormals
  (``test_strategies.py``);
- (a second probe, as a user checking their own functions) one step for a whole array, set by
  its largest entry, which failed correct functions at the small entries beside a large one;
  an AttributeError, not the one-line TypeError, for a function returning a tuple from order
  2; a correct relu failed beside its kink with no hint; float32 outputs of float64 inputs
  reported as float64; a single wrong entry of many passing the one direction checked.
"""
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import minimeta as mm
import minimeta.gradcheck  # noqa: F401  (the module, for the mutant)


class Zero(mm.Primitive):
    """The identity with a VJP that returns zeros: wrong at every order."""

    abstract = True  # a test's deliberate mutant: not one of the engine's primitives

    def forward(self, a):
        return a.copy()

    def vjp(self, g, out, a):
        return (g * 0.0,)


def test_a_zero_vjp_fails_at_every_output_value_even_minus_two():
    for value in (-2.0, 0.0, 3.0):  # −2: where y + y²/4 had slope 0 and hid it
        with pytest.raises(mm.GradcheckError, match="order-1"):
            mm.gradcheck(lambda a: mm.apply(Zero(), a), [np.full(3, value)], order=2)


def test_the_old_post_map_is_the_mutant_that_hides_it(monkeypatch):
    # the check above can fail: with the old map's slope 1 + 2cy = 0 at y = −2, it passes
    def old_composed(f, arrays, dtype, layouts):
        def f_tilde(*xs):
            y = f(*xs)
            return y + 0.25 * (y * y)
        return f_tilde

    module = sys.modules["minimeta.gradcheck"]
    monkeypatch.setattr(module, "_composed", old_composed)
    mm.gradcheck(lambda a: mm.apply(Zero(), a), [np.full(3, -2.0)], order=2)   # no error


@pytest.mark.parametrize("f, x", [
    (lambda a: (a * a).sum(), 1e5),
    (lambda a: a.exp().sum(), 200.0),
    (lambda a: (a * a).sum(), 1e6),
    (lambda a: (a * a * a).tanh().sum(), 0.3),
])
def test_correct_functions_pass_at_large_values_to_the_third_order(f, x):
    report = mm.gradcheck(f, [np.array([x, -0.5 * x])], order=3)
    assert sorted(report) == [1, 2, 3]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(inputs=np.ones(2)), TypeError, "gradcheck: inputs must be a list of arrays"),
    (dict(eps=0.0), ValueError, "gradcheck: eps must be > 0, got 0.0"),
    (dict(atol=-1.0), ValueError, "gradcheck: atol must be >= 0"),
    (dict(rtol=float("nan")), ValueError, "gradcheck: rtol must be >= 0, got nan"),
    (dict(compose="no"), TypeError, "gradcheck: compose must be True, False or None"),
    (dict(order=0), ValueError, "gradcheck: order must be an integer >= 1, got 0"),
    (dict(order=1.0), ValueError, "gradcheck: order must be an integer >= 1, got 1.0"),
    # (an audit of a user's checks: a Python error, a check of floats cast from a mask or of a
    # real part, "holds nan" for None, nothing checked, a TypeError once all had passed)
    (dict(f=3), TypeError, "gradcheck: f must be a function of Tensors, got an object of type "
                           "int$"),
    (dict(inputs=[]), TypeError, "gradcheck: inputs must be a list .* got an empty list"),
    (dict(inputs=[np.array([True, False])]), TypeError, "gradcheck: input 0 holds bool "
                                                       "values .* close over a side input"),
    (dict(inputs=[np.ones(2) + 1j]), TypeError, "gradcheck: input 0 holds complex128 values"),
    (dict(inputs=[None]), TypeError, "gradcheck: input 0 holds object values"),
    (dict(eps=np.inf), ValueError, "gradcheck: eps must be a finite number, got inf$"),
    (dict(eps="1e-6"), ValueError, "gradcheck: eps must be a finite number, got '1e-6'$"),
    (dict(atol=None), ValueError, "gradcheck: atol must be a finite number, got None$"),
    (dict(order=True), ValueError, "gradcheck: order must be an integer >= 1, got True$"),
    (dict(seed=None), ValueError, "gradcheck: seed must be an integer >= 0, got None$"),
])
def test_a_call_that_would_check_something_else_is_refused(kwargs, error, message):
    call = dict(f=lambda a: a.sum(), inputs=[np.ones(2)])
    call.update(kwargs)
    with pytest.raises(error, match="^" + message):
        mm.gradcheck(**call)


def test_a_failure_says_what_was_checked_and_a_nan_says_where_to_look():
    with pytest.raises(mm.GradcheckError, match=r"of the composed function .*step "
                                                r"1e-06·max\(1, \|x\|\), float64\); entry "
                                                r"\(\d,\) is off the most [^;]*$"):
        mm.gradcheck(lambda a: mm.apply(Zero(), a), [np.ones(2)], order=2)
    with pytest.raises(mm.GradcheckError, match="a NaN: is the point outside f's domain"):
        mm.gradcheck(lambda a: a.log().sum(), [np.array([-1.0])])


def test_the_gradcheck_command_says_when_a_check_compared_only_zeros(monkeypatch, capsys):
    from minimeta import cli, selfcheck
    from minimeta.gradcheck import GradcheckReport

    def fake_run(examples, orders):      # one row whose order 2 saw only 0 = 0
        report = GradcheckReport()
        report[1], report[2] = 1e-9, 0.0
        report.scale.update({1: 3.0, 2: 0.0})
        report.relative.update({1: 1e-9, 2: 0.0})
        cast = GradcheckReport()
        cast[1], cast.scale[1], cast.relative[1] = 1e-6, 1.0, 1e-6
        return {"mul": report, "cast": cast}

    monkeypatch.setattr(selfcheck, "run", fake_run)
    assert cli.main(["gradcheck", "--examples", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 checks compared only zeros (a derivative 0 = 0): mul (order 2); raise --examples" \
        in out


@pytest.mark.parametrize("f, x, order", [
    (lambda a: a.log(), [0.5, 2e4], 1),      # failed: |difference| 3.5e-5 > 2.6e-6
    (lambda a: a.tanh(), [0.3, 1e4], 2),
    (lambda a: a.log(), [0.01, 1e5], 1),     # NaN: a step of 0.1 crossed 0
])
def test_one_large_entry_does_not_coarsen_the_step_of_the_small_ones(f, x, order):
    assert sorted(mm.gradcheck(f, [np.array(x)], order=order)) == list(range(1, order + 1))


def test_a_function_that_returns_no_tensor_is_refused_in_one_line_at_every_order():
    for order in (1, 2):
        with pytest.raises(TypeError, match="^gradcheck: the function must return a Tensor, "
                                            "got tuple$"):
            mm.gradcheck(lambda a: (a.exp(), a), [np.array([0.3, -1.2])], order=order)


def test_a_kink_within_the_step_is_named_and_a_wrong_vjp_is_not_blamed_on_one():
    with pytest.raises(mm.GradcheckError, match="moves with the step .* a kink or a jump of "
                                                "f within a step of the point"):
        mm.gradcheck(lambda a: a.relu().sum(), [np.array([1e-7, 1.0, -2.0])])   # correct relu
    with pytest.raises(mm.GradcheckError, match="one-sided quotients differ .* a kink or a "
                                                "jump of f at the point"):
        mm.gradcheck(lambda a: a.relu().sum(), [np.array([0.0, 0.5])])  # on it (had no hint)
    with pytest.raises(mm.GradcheckError) as info:
        mm.gradcheck(lambda a: mm.apply(Zero(), a).sum(), [np.array([0.5, 1.5])])
    assert "kink" not in str(info.value) and "round" not in str(info.value)


def test_an_input_mixing_large_and_small_entries_passes_where_the_check_can_tell():
    """The outputs are differenced before they are weighted: a correct ``a * a`` had failed at
    [1e4, 0.5], the rounding of its large outputs swamping the small entry's slope, with a
    hint blaming a kink (found by probing, 2026-12-01). Where the rounding of one large output
    does swamp it (a sum), the failure says so, not kink."""
    mm.gradcheck(lambda a: a * a, [np.array([1e4, 0.5])])
    mm.gradcheck(lambda a: a * a, [np.array([1e5, 0.5, 3e4])])
    with pytest.raises(mm.GradcheckError, match=r"f's values \(up to 1e\+08\) round by about "
                                                ".* the check cannot tell here"):
        mm.gradcheck(lambda a: (a * a).sum(), [np.array([1e4, 0.3, -0.7])])
    # a step that moves no value at all (had no hint: the rounding was measured over the
    # values that moved; found by probing, 2026-12-03)
    with pytest.raises(mm.GradcheckError, match=r"numeric 0, .*f's values \(up to 1e\+12\) "
                                                "round by about .* the check cannot tell here"):
        mm.gradcheck(lambda a: (a * a).sum(), [np.array([1e6, 0.5])])
    # but a function that is flat there, with a VJP that says otherwise, is simply wrong
    with pytest.raises(mm.GradcheckError) as info:
        mm.gradcheck(lambda a: mm.apply(Flat(), a).sum(), [np.array([1e6, 0.5])])
    assert "numeric 0," in str(info.value) and "round" not in str(info.value)


class Flat(mm.Primitive):
    """out = 0 · a, with the identity's VJP: wrong, where no step moves any value."""

    abstract = True  # a test's deliberate mutant: not one of the engine's primitives

    def forward(self, a):
        return a * 0.0

    def vjp(self, g, out, a):
        return (g,)


def test_a_check_that_compares_only_zeros_warns_that_it_proved_nothing():
    """``lambda *ps: loss(model(x))``, a model using its own parameters, not those passed in,
    had passed at every order without a word (found by probing, 2026-12-01)."""
    w = mm.tensor(np.array([0.3, -1.2]))
    with pytest.warns(mm.GradcheckWarning, match="does not depend on its inputs"):
        report = mm.gradcheck(lambda a: (w * w).sum(), [np.array([0.5, 1.5])], order=2)
    assert report == {1: 0.0, 2: 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error", mm.GradcheckWarning)
        mm.gradcheck(lambda a: (a * w).sum(), [np.array([0.5, 1.5])], order=2)


def test_a_failure_names_the_layout_of_an_input_not_in_c_order():
    x = np.asfortranarray(np.array([[0.5, 1.5], [-0.3, 0.8]]))
    with pytest.raises(mm.GradcheckError, match=r"shape \(2, 2\), Fortran-ordered\)"):
        mm.gradcheck(lambda a: mm.apply(Zero(), a).sum(), [x])


def test_a_failure_names_an_output_dtype_other_than_the_inputs():
    with pytest.raises(mm.GradcheckError, match=r"float64 inputs, float32 output\); f's "
                                                r"values are float32, whose rounding swamps"):
        mm.gradcheck(lambda a: mm.apply(Zero(), a).astype(np.float32).sum(),
                     [np.array([0.5, 1.5])])


class OneOff(mm.Primitive):
    """x², with a VJP 1% off in entry 7 of 100 only."""

    abstract = True

    def forward(self, a):
        return a * a

    def vjp(self, g, out, a):
        w = np.full(a.shape, 2.0)
        w[7] *= 1.01
        return (g * a * mm.tensor(w),)


def test_more_directions_catch_a_single_wrong_entry_that_one_direction_misses():
    x, f = np.linspace(0.5, 1.5, 100), lambda a: mm.apply(OneOff(), a)
    mm.gradcheck(f, [x], seed=19)        # one direction: entry 7's share within rtol
    with pytest.raises(mm.GradcheckError, match="order-1"):
        mm.gradcheck(f, [x], seed=19, directions=4)
    with pytest.raises(ValueError, match="^gradcheck: directions must be an integer >= 1"):
        mm.gradcheck(f, [x], directions=0)


class OffBesideLarge(mm.Primitive):
    """2a, with a VJP 1% off in the last entry."""

    abstract = True

    def forward(self, a):
        return 2 * a

    def vjp(self, g, out, a):
        return (g * 2 * mm.tensor(np.array([1.0, 1.0, 1.0, 1.01])),)


def test_a_large_entry_does_not_drown_an_error_in_a_small_one():
    # with the step's scale in one direction, the entry of 1e4 outweighed the 1% error at
    # 0.2 and the tolerance grew with it: missed in 43 seeds of 50 (found by review)
    x = np.array([1e4, 0.3, -0.4, 0.2])
    for seed in range(10):
        with pytest.raises(mm.GradcheckError, match=r"shape \(4,\), its entries of size "
                                                    r"1e\+00 to 1e\+01\)"):
            mm.gradcheck(lambda t: mm.apply(OffBesideLarge(), t), [x], seed=seed)
    mm.gradcheck(lambda t: 2 * t, [x])                   # the correct one passes


def test_the_gradcheck_command_leaves_no_hypothesis_folder_where_it_runs(tmp_path):
    """hypothesis keeps a cache of constants even without an example database, by default in
    ``.hypothesis/`` of the working folder: ``minimeta gradcheck`` run in a user's folder had
    left one there (found by probing, 2026-12-01). It goes to a temporary folder now."""
    code = "import sys, minimeta.cli as c; sys.exit(c.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "gradcheck", "--examples", "1",
                           "--order", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and re.search(r"all \d+ rows passed", done.stdout), \
        done.stderr[-500:]
    assert os.listdir(tmp_path) == []


class HalfAgain(mm.Primitive):
    """x², with a VJP 1.5 times too large."""

    abstract = True

    def forward(self, a):
        return a * a

    def vjp(self, g, out, a):
        return (g * a * 3.0,)


def test_the_hints_do_not_excuse_a_wrong_vjp():
    """Beside outputs the step leaves alone, or at a smooth point of large curvature, a wrong
    VJP had been blamed on rounding or on a kink (found by the review, 2026-12-01)."""
    bad = lambda a: mm.apply(HalfAgain(), a)                         # noqa: E731
    far = mm.tensor(np.full(2000, 1e6))
    for f in (lambda a: mm.concatenate([bad(a), far]), lambda a: bad(a) + 1e8):
        with pytest.raises(mm.GradcheckError) as info:
            mm.gradcheck(f, [np.array([0.3, -0.7])])
        assert "round" not in str(info.value) and "kink" not in str(info.value)
    with pytest.raises(mm.GradcheckError) as info:
        mm.gradcheck(lambda a: mm.apply(SteepExp(), a), [np.array([0.01, 0.02])])
    assert "kink" not in str(info.value)


class SteepExp(mm.Primitive):
    """exp(3000 a), smooth everywhere, with a VJP 0.02% too large: its one-sided quotients
    differ by its curvature times the step, which shrinks with the step (a kink's does not)."""

    abstract = True

    def forward(self, a):
        return np.exp(3000.0 * a)

    def vjp(self, g, out, a):
        return (g * out * 3000.6,)


def test_no_warning_when_the_numeric_side_saw_a_slope():
    with warnings.catch_warnings():
        warnings.simplefilter("error", mm.GradcheckWarning)
        mm.gradcheck(lambda a: a * 0.0 + a.detach() * 5e-7, [np.array([0.5, 1.5])])


class DetachesA(mm.Primitive):
    """a·b², whose VJP for b detaches a: right at order 1, its derivative in a is lost."""

    abstract = True

    def forward(self, a, b):
        return a * b * b

    def vjp(self, g, out, a, b):
        return (g * b * b, 2 * g * a.detach() * b)


class ThroughNumPy(mm.Primitive):
    """a², whose VJP goes through NumPy: right at order 1, no graph for order 2."""

    abstract = True

    def forward(self, a):
        return a * a

    def vjp(self, g, out, a):
        return (mm.tensor(2 * g.numpy() * a.numpy()),)


def test_what_a_third_probe_found_a_user_would_misread():
    """(A user checking their own functions, 2026-12-01; each failed before its fix.)"""
    point = [np.array([0.3, -1.2]), np.array([0.7, 1.1])]
    # at order 2 the failure had named input 0, whose VJP is right: now the wrong block too
    with pytest.raises(mm.GradcheckError, match="w.r.t. input 0 .*; the wrong part is the "
                       "order-1 gradient w.r.t. input 1, as input 0 moves"):
        mm.gradcheck(lambda a, b: mm.apply(DetachesA(), a, b), point, order=2)
    # a correct log near its singularity had been blamed on a kink
    with pytest.raises(mm.GradcheckError, match="moves toward the analytic value as the step "
                       "shrinks .*near a singularity"):
        mm.gradcheck(lambda a: a.log(), [np.full(3, 0.002)], order=3)
    mm.gradcheck(lambda a: a.log(), [np.full(3, 0.002)], order=3, eps=1e-7)
    # under no_grad every analytic derivative had been 0; an output cut from its inputs says so
    with mm.no_grad():
        mm.gradcheck(lambda a: (a * a).sum(), [point[0]])
    with pytest.raises(mm.GradcheckError, match="f's output does not require grad"):
        mm.gradcheck(lambda a: mm.tensor(np.tanh(a.numpy())).sum(), [point[0]])
    with pytest.raises(mm.GradcheckError, match="the order-1 gradient does not require grad: "
                       "a VJP made it outside the graph"):
        mm.gradcheck(lambda a: mm.apply(ThroughNumPy(), a), [point[0]], order=2, compose=False)
    with pytest.raises(ValueError, match="^gradcheck: input 1 holds nan: check at a finite"):
        mm.gradcheck(lambda a, b: a * b, [point[0], np.array([np.nan, 1.0])])


def test_apply_names_an_input_that_is_no_tensor_and_a_forward_that_gives_no_array():
    """A NumPy array's .data is a memoryview: forward had failed on it with NumPy's words;
    a Python number from forward had failed only in the backward pass."""
    class Square(mm.Primitive):
        abstract = True

        def forward(self, a):
            return a * a

        def vjp(self, g, out, a):
            return (2 * g * a,)

    class Scalar(Square):
        def forward(self, a):
            return float((a * a).sum())

    with pytest.raises(TypeError, match="^apply: input 0 of Square is a ndarray, not a Tensor"):
        mm.apply(Square(), np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="^Scalar.forward returned a float, not an array"):
        mm.apply(Scalar(), mm.tensor([1.0, 2.0], requires_grad=True))
    assert mm.apply(Square(), mm.tensor([3.0])).numpy().tolist() == [9.0]


class OffInOneEntry(mm.Primitive):
    """a * a with a VJP 2% off in entry 3 only."""

    abstract = True  # a test's deliberate mutant

    def forward(self, a):
        return a * a

    def vjp(self, g, out, a):
        return (g * 2 * a * mm.tensor(np.where(np.arange(a.size) == 3, 1.02, 1.0)),)


def test_a_failure_names_the_entry_that_is_off_and_a_random_f_as_random():
    # an audit of a user's checks: the words named the input only, and a random f a kink
    with pytest.raises(mm.GradcheckError, match=r"entry \(3,\) is off the most \(1 of 10 are "
                                                r"off\): analytic -0\.049.*, numeric -0\.048"):
        mm.gradcheck(lambda a: mm.apply(OffInOneEntry(), a), [np.linspace(-1, 1.3, 10)])
    noise = np.random.default_rng(0)
    with pytest.raises(mm.GradcheckError, match="other values at the same point when called "
                                                r"again: is it random \(dropout"):
        mm.gradcheck(lambda a: a * mm.tensor(noise.random(3) > 0.5), [np.array([0.3, -1.2, 0.7])])
