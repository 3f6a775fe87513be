"""SGD and Adam step their parameters in flat groups (``optim.Group``): the same bits as
stepping each parameter alone, whatever the parameters' shapes, dtypes and layouts, gradients
that are missing at some steps, a clipped norm, weight decay, momentum, a checkpoint in between
or a parameter's array changed by hand. Each check below is also shown to fail on a mutant of
the grouping (a cut one element off, Adam's step counts ignored, a flat array reused after its
parameter's array was replaced)."""
import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minimeta as mm
from minimeta.optim import SGD, Adam, Group

SHAPES = st.lists(st.lists(st.integers(0, 4), max_size=3).map(tuple), min_size=1, max_size=5)
MAKERS = {
    "adam": lambda ps, **kw: Adam(ps, lr=0.1, **kw),
    "adam_decay": lambda ps, **kw: Adam(ps, lr=0.1, betas=(0.5, 0.7), weight_decay=0.3, **kw),
    "sgd": lambda ps, **kw: SGD(ps, lr=0.1, **kw),
    "sgd_momentum": lambda ps, **kw: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, **kw),
}


def alone(opt):
    """``opt`` made to step each parameter alone (the path of an optimizer not elementwise)."""
    opt.elementwise = False
    return opt


def params_for(shapes, dtypes, fortran, seed):
    rng = np.random.default_rng(seed)
    out = []
    for k, shape in enumerate(shapes):
        a = rng.normal(size=shape).astype(dtypes[k % len(dtypes)])
        out.append(mm.tensor(a, requires_grad=True))
        if fortran and k == 0:   # (a Tensor is made C-contiguous; an array set later is not)
            out[-1].data = np.asfortranarray(a)
    return out


def grads_for(params, steps, missing, seed):
    """A gradient list a step; parameter ``missing`` has none at step 1 (Adam's count falls
    behind the others')."""
    rng = np.random.default_rng(seed)
    return [[None if (s == 1 and k == missing) else
             rng.normal(scale=3.0, size=p.shape).astype(p.dtype) for k, p in enumerate(params)]
            for s in range(steps)]


def run_both(make, shapes, dtypes=(np.float64,), fortran=False, missing=None, steps=3,
             clip=None, between=None):
    """The grouped optimizer's and the one-by-one optimizer's parameters and state after the
    same steps; ``between(opt, params)`` runs on both after the first step."""
    kw = {} if clip is None else {"clip_norm": clip}
    out = []
    for grouped in (True, False):
        ps = params_for(shapes, dtypes, fortran, 0)
        opt = make(ps, **kw)
        if not grouped:
            alone(opt)
        for s, grads in enumerate(grads_for(ps, steps, missing, 1)):
            opt.step(grads)
            if s == 0 and between is not None:
                opt = between(opt, ps) or opt
        out.append(([p.numpy().copy() for p in ps], opt.state_dict(), ps))
    return out


def assert_same(both):
    (pa, sa, _), (pb, sb, _) = both
    for a, b in zip(pa, pb):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize("name", sorted(MAKERS))
@given(shapes=SHAPES, mixed=st.booleans(), fortran=st.booleans(),
       missing=st.one_of(st.none(), st.integers(0, 4)), clip=st.sampled_from([None, 0.5]))
def test_a_grouped_step_gives_the_bits_of_one_parameter_at_a_time(name, shapes, mixed, fortran,
                                                                   missing, clip):
    dtypes = (np.float64, np.float32) if mixed else (np.float32,)
    assert_same(run_both(MAKERS[name], shapes, dtypes, fortran, missing, clip=clip))


def test_the_parameters_of_a_small_network_are_one_group_and_keep_their_own_arrays():
    ps = params_for([(1, 40), (40,), (40, 40), (40,), ()], (np.float32,), False, 0)
    opt = Adam(ps, lr=0.1)
    seen = []
    update = opt._update
    opt._update = lambda i, p, g: seen.append(i) or update(i, p, g)
    old = [p.data for p in ps]
    opt.step(grads_for(ps, 1, None, 1)[0])
    assert len(seen) == 1 and isinstance(seen[0], Group) and list(seen[0]) == [0, 1, 2, 3, 4]
    for p, before in zip(ps, old):   # new arrays, in their shapes; the old ones untouched
        assert p.data is not before and p.shape == before.shape and p.data.flags.c_contiguous
    assert ps[4].data.ndim == 0
    assert all(m.base is opt.state["m"][0].base for m in opt.state["m"])


def test_a_parameter_in_fortran_order_keeps_its_layout_and_is_stepped_alone():
    ps = params_for([(3, 4), (3, 4), (2,)], (np.float64,), True, 0)
    opt = Adam(ps, lr=0.1)
    opt.step(grads_for(ps, 1, None, 1)[0])
    assert ps[0].data.flags.f_contiguous and not ps[0].data.flags.c_contiguous
    assert ps[1].data.base is ps[2].data.base is not None


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_an_array_replaced_or_written_by_hand_between_steps_is_the_one_stepped(name):
    def by_hand(opt, ps):
        ps[1].data = np.full(ps[1].shape, 2.0)       # a new array in its place
        ps[2].data[...] = -1.0                        # the group's own view, written in place
        slot = next(iter(opt.state.values()), None)   # Adam's m, SGD's velocity (plain: none)
        if slot is not None:
            slot[0].fill(0.25)                        # a state's view, written in place
    assert_same(run_both(MAKERS[name], [(2, 3), (3,), (4,), ()], between=by_hand))


@pytest.mark.parametrize("name", ["adam", "sgd_momentum"])
def test_a_checkpoint_between_steps_continues_with_the_same_bits(name):
    def reload(opt, ps):
        fresh = MAKERS[name](ps)
        if not opt.elementwise:
            alone(fresh)
        fresh.load_state_dict(opt.state_dict())
        return fresh
    both = run_both(MAKERS[name], [(2, 3), (3,), (4, 1)], missing=1, between=reload)
    assert_same(both)
    plain = run_both(MAKERS[name], [(2, 3), (3,), (4, 1)], missing=1)
    assert_same([both[0], plain[0]])


def test_the_checks_fail_on_a_grouping_that_is_wrong(monkeypatch):
    """Mutants of the grouping, each caught by a check above."""
    shapes = [(2, 3), (3,), (4,), ()]
    cut = Group.cut
    monkeypatch.setattr(Group, "cut", lambda self, flat: cut(self, np.roll(flat, 1)))
    with pytest.raises(AssertionError):   # each part one element off
        assert_same(run_both(MAKERS["sgd"], shapes))
    monkeypatch.setattr(Group, "cut", cut)

    monkeypatch.setattr(Adam, "_group_key", lambda self, i: None)
    with pytest.raises(AssertionError):   # a count behind the others' shares their update
        assert_same(run_both(MAKERS["adam"], shapes, missing=1))
    monkeypatch.undo()

    def stale(self, name, group, arrays, like=None):
        kept = self._flats.get((name, group))
        return kept[0] if kept is not None else gather(self, name, group, arrays, like)
    gather = mm.optim.Optimizer._gather
    monkeypatch.setattr(mm.optim.Optimizer, "_gather", stale)

    def replace(opt, ps):
        ps[1].data = np.full(ps[1].shape, 2.0)
    with pytest.raises(AssertionError):   # the last flat array reused after a replacement
        assert_same(run_both(MAKERS["sgd"], shapes, between=replace))


def test_a_failed_grouped_step_leaves_the_next_one_the_bits_of_an_unbroken_run():
    ps = params_for([(3,), (3,), (2, 2)], (np.float32,), False, 0)
    twin = params_for([(3,), (3,), (2, 2)], (np.float32,), False, 0)
    opt, ref = Adam(ps, lr=0.1), alone(Adam(twin, lr=0.1))
    good = grads_for(ps, 2, None, 1)
    opt.step(good[0])
    ref.step(good[0])
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        opt.step([good[1][0], np.full(3, 1e38, np.float32), good[1][2]])
    opt.step(good[1])
    ref.step(good[1])
    for p, q in zip(ps, twin):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    assert opt.counts == ref.counts == [2, 2, 2]


@pytest.mark.parametrize("how", [copy.deepcopy, lambda x: pickle.loads(pickle.dumps(x))],
                         ids=["deepcopy", "pickle"])
def test_a_copied_optimizer_steps_its_copied_parameters_as_they_are_then(how):
    """A copy's parameter arrays share no memory with the original's flat arrays, so the copy
    gathers its own: a value written into a copied parameter by hand is the one it steps (a
    copy that kept the flat arrays had stepped the value before the write)."""
    shapes = [(2, 3), (3,), (4,)]
    ps = params_for(shapes, (np.float64,), False, 0)
    opt = Adam(ps, lr=0.1)
    grads = grads_for(ps, 2, None, 1)
    opt.step(grads[0])
    ps2, opt2 = how((ps, opt))
    ps2[1].data[...] = 5.0
    opt2.step(grads[1])
    twin = params_for(shapes, (np.float64,), False, 0)
    ref = alone(Adam(twin, lr=0.1))
    ref.step(grads[0])
    twin[1].data[...] = 5.0
    ref.step(grads[1])
    for p, q in zip(ps2, twin):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
