"""Long checks kept out of the default test command: ``python -m pytest -m slow`` runs them.

- the engine's self-check (``minimeta.selfcheck``: forward against the NumPy reference, then
  gradcheck) of every primitive to the third order, with ten times the examples of
  ``minimeta gradcheck``;
- MAML on the sinusoid tasks of Finn et al. 2017 trained for 10,000 iterations (about a minute):
  its loss falls, and after fine-tuning it beats the pretrained baseline by a wide margin.
"""
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_selfcheck_of_every_primitive_to_the_third_order():
    from minimeta import selfcheck   # imported here: it needs hypothesis, and is slow to build

    lines = []
    report = selfcheck.run(max_examples=100, orders=(1, 2, 3), out=lines.append)  # raises if off
    names = [row.name for row in selfcheck.ROWS]
    assert sorted(report) == sorted(names) and len(lines) == len(names)  # every row ran
    for name, errors in report.items():
        assert sorted(errors) == [1, 2, 3], name                         # every order ran
        assert all(np.isfinite(v) for v in errors.values()), (name, errors)
        # and compared a derivative that is not 0 = 0, as test_primitives does at its orders
        assert all(errors.scale[k] > 1e-2 for k in (1, 2, 3)), (name, errors.scale)


def test_maml_sinusoid_training_converges_and_beats_pretraining():
    from minimeta.experiments import sinusoid as S

    config = S.maml_config(10000, seed=0)
    model, _, curve = S.meta_train(config)
    baseline, _ = S.pretrain(config)
    # a measured run (seed 0): training loss 3.58 → 0.57 (first/last 500 iterations); 10-shot
    # MSE on 100 held-out tasks, MAML 3.10 / 0.66 / 0.26 after 0 / 1 / 10 steps, pretrained
    # 1.69 after 10 steps. The bounds leave about a factor of two of room.
    assert np.mean(curve[-500:]) < 0.25 * np.mean(curve[:500]), curve[-10:]
    results = S.evaluate({"maml": model, "pretrained": baseline}, shots_list=(10,),
                         n_tasks=100)
    maml, pre = results[("maml", 10)], results[("pretrained", 10)]   # steps -> (mean, ..)
    assert maml[10][3] == 0 and pre[10][3] == 0                       # nothing diverged
    assert maml[1][0] < 0.35 * maml[0][0], maml                       # one step adapts
    assert maml[10][0] < 0.5 and maml[10][0] < 0.4 * pre[10][0], (maml, pre)
