"""The backbones of the papers, built from the layers.

- ``conv4``: 4 × [conv 3×3 (padding 1), batch norm, ReLU, max-pool 2]; 28×28×1 → 1×1×64 → 64
  features (Vinyals et al. 2016; Finn et al. 2017; Snell et al. 2017), with an optional linear
  head to ``out_features`` classes (MAML) or none (embedding for metric learners). The layers
  run pool before ReLU: the same function (ReLU is monotone, so it commutes with a max), with
  the ReLU and its VJP on a quarter of the elements.
- ``mlp``: fully connected ReLU network, e.g. the sinusoid regressor 1-40-40-1 of Finn et al.
- ``relation_embedding`` and ``relation_module``: the two halves of a Relation Network (Sung et
  al. 2018, Omniglot version): 28×28×1 → 64×5×5 feature maps, and a pair of them stacked on the
  channel axis (128×5×5) → one relation score (a logit; the learner applies the sigmoid).

Read next: ``minimeta/optim.py`` (SGD and Adam).
"""
import numpy as np

from .layers import (BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential,
                     generator)


def conv4(out_features=None, hidden=64, in_channels=1, image_size=28, seed=0,
          dtype=np.float32):
    """The 4-block conv net; ``out_features=None`` returns the flattened embedding.

    >>> net = conv4(5)
    >>> len(net.parameters())   # 4 × (conv w, b, bn w, b) + head w, b
    18
    """
    if image_size < 16:
        raise ValueError(f"conv4: image_size {image_size} is too small: four 2×2 poolings "
                         "need 16 pixels or more")
    rng = generator(seed)
    layers, channels, size = [], in_channels, image_size
    for _ in range(4):
        layers += [Conv2d(channels, hidden, 3, padding=1, rng=rng, dtype=dtype),
                   BatchNorm2d(hidden, dtype=dtype), MaxPool2d(2), ReLU()]
        channels, size = hidden, size // 2
    layers.append(Flatten())
    if out_features is not None:
        layers.append(Linear(hidden * size * size, out_features, rng=rng, dtype=dtype))
    return Sequential(*layers)


def _block(layers, c_in, c_out, padding, pool, rng, dtype):
    layers += [Conv2d(c_in, c_out, 3, padding=padding, rng=rng, dtype=dtype),
               BatchNorm2d(c_out, dtype=dtype)] + ([MaxPool2d(2)] if pool else []) + [ReLU()]


def relation_embedding(hidden=64, in_channels=1, seed=0, dtype=np.float32):
    """Sung et al.'s embedding: 2 blocks unpadded with pooling, 2 padded without (28 → 5).

    >>> import minimeta as mm
    >>> relation_embedding()(mm.tensor(np.zeros((2, 1, 28, 28), np.float32))).shape
    (2, 64, 5, 5)
    """
    rng, layers = generator(seed), []
    for c_in, padding, pool in ((in_channels, 0, True), (hidden, 0, True), (hidden, 1, False),
                                (hidden, 1, False)):
        _block(layers, c_in, hidden, padding, pool, rng, dtype)
    return Sequential(*layers)


def relation_module(hidden=64, fc=8, seed=1, dtype=np.float32):
    """Sung et al.'s relation module: 2 padded blocks with pooling (5 → 1), then 64 → 8 → 1."""
    rng, layers = generator(seed), []
    _block(layers, 2 * hidden, hidden, 1, True, rng, dtype)
    _block(layers, hidden, hidden, 1, True, rng, dtype)
    layers += [Flatten(), Linear(hidden, fc, rng=rng, dtype=dtype), ReLU(),
               Linear(fc, 1, rng=rng, dtype=dtype)]
    return Sequential(*layers)


def mlp(sizes=(1, 40, 40, 1), seed=0, dtype=np.float32, init_std=None):
    """Linear layers of the given sizes with ReLU between them (none after the last).

    ``init_std=None`` uses Kaiming-normal weights; a number draws normal(0, init_std), as the
    MAML reference code does for the sinusoid regressor (0.01).
    """
    rng = generator(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, rng=rng, dtype=dtype, init_std=init_std))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)
