"""The Python API's edges that probes of the data pipeline and of the optimizers, layers and
checkpoints against PyTorch found (2026-12-03); the command line checked most of these values
already, the library did not. Each test failed on the code before its fix:
- ``EpisodeSampler``, ``SinusoidTasks`` and the Omniglot splits name a bad count, shape, range
  or ``val_size`` (NumPy's errors had named none, or the value was ignored, or a part empty);
- ``fewshot.evaluate`` checks its seed before it loads anything;
- ``Module.load_state_dict`` converts every value before it copies any (a value that could
  not be cast had left the model half loaded);
- ``io.save`` refuses a key with a NUL (the archive cut the name there, and the atomic save
  replaced a good checkpoint with one that could not be read back);
- an optimizer refuses one Tensor for its parameter list, and names a learning rate or
  clip_norm that is not a number; ``Module.train`` takes True or False only; ``Linear`` and
  ``Conv2d`` name a size below 1 and ``init_std`` NaN (division by zero, NaN weights).

Read next: ``tests/test_user_traps.py`` (what a NumPy or PyTorch user expects).
"""
import os

import numpy as np
import pytest

import minimeta as mm
from minimeta import io, nn
from minimeta.data import EpisodeSampler, SinusoidTasks, omniglot
from minimeta.experiments import fewshot
from minimeta.optim import SGD, Adam

CLASSES = np.zeros((10, 20, 2, 2), np.float32)


@pytest.mark.parametrize("call, message", [
    (lambda: EpisodeSampler(CLASSES, 0, 1, 1), "ways must be an integer of at least 1, got 0"),
    (lambda: EpisodeSampler(CLASSES, 2.5, 1, 1), "ways must be an integer of at least 1, got 2.5"),
    (lambda: EpisodeSampler(CLASSES, 2, 1, -1), "queries must be an integer of at least 0"),
    (lambda: EpisodeSampler(np.zeros((10, 20)), 2, 1, 1), r"classes must be an array \(classes,"),
    (lambda: EpisodeSampler(CLASSES, 2, 1, 1).batch(-1), "batch: n_tasks must be an integer"),
    (lambda: SinusoidTasks().sample(1, 5, -1), "sample: queries must be an integer of at least 0"),
    (lambda: SinusoidTasks(amplitude=(5, 0.1)), r"amplitude must be a range \(low, high\)"),
    (lambda: omniglot.class_images("lake", "train", val_size=100), "'lake' split holds no"),
    (lambda: omniglot.class_images("vinyals", "val", val_size=0), "'val' part is empty"),
    (lambda: omniglot.class_images("vinyals", "val", val_size=2.5), "val_size must be an int"),
    (lambda: fewshot.evaluate("/nonexistent.npz", 2, seed=-1), "--seed must be at least 0"),
])
def test_the_data_and_eval_name_a_bad_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_load_state_dict_converts_everything_before_it_copies_anything():
    model = nn.mlp((2, 3, 1), dtype=np.float64, seed=0)
    before = model.state_dict()
    state = {k: v + 1 for k, v in before.items()}
    state["param:2.bias"] = np.array(["x"])       # the right shape, not a number
    with pytest.raises(ValueError, match="load_state_dict: 2.bias cannot be float64 .*nothing "
                                         "loaded"):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_save_refuses_a_nul_key_or_a_mask_and_keeps_the_checkpoint_there(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    io.save(path, {"step": 1})
    for state in ({"run\0x": 2}, {"x": {"a\0": np.ones(2)}}):
        with pytest.raises(ValueError, match="contains a NUL character"):
            io.save(path, state)
    assert io.load(path) == {"step": 1}
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    with pytest.raises(TypeError, match="at 'x/m' is a masked array, whose mask would be lost"):
        io.save(path, {"x": {"m": np.ma.masked_array([1.0, 2.0], mask=[0, 1])}})
    assert io.load(path) == {"step": 1}


@pytest.mark.parametrize("call, error, message", [
    (lambda w: Adam(w), TypeError, "Adam: params must be a list of Tensors .* got one Tensor"),
    (lambda w: SGD([w], lr="0.1"), ValueError, "SGD: learning rate must be a finite number"),
    (lambda w: SGD([w], lr=None), ValueError, "SGD: learning rate must be a finite number"),
    (lambda w: Adam([w], clip_norm="1"), ValueError, "Adam: clip_norm must be a finite number"),
    (lambda w: nn.Linear(2, 1).train("no"), TypeError, "Linear.train: mode must be True or Fa"),
    (lambda w: nn.Linear(0, 3), ValueError, "Linear: in_features must be an int >= 1, got 0"),
    (lambda w: nn.mlp((1, 0, 1)), ValueError, "Linear: out_features must be an int >= 1"),
    (lambda w: nn.Conv2d(0, 3, 3), ValueError, "Conv2d: in_channels must be an int >= 1"),
    (lambda w: nn.Linear(2, 3, init_std=float("nan")), ValueError, "init_std must be a finite"),
])
def test_optimizers_and_layers_name_a_bad_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(mm.tensor(np.ones(3), requires_grad=True))
    assert nn.Linear(2, 3, init_std=0.0).named_parameters()["weight"].numpy().sum() == 0
