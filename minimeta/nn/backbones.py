"""The backbones of the papers, built from the layers.

- ``conv4``: 4 × [conv 3×3 (padding 1), batch norm, ReLU, max-pool 2]; 28×28×1 → 1×1×64 → 64
  features (Vinyals et al. 2016; Finn et al. 2017; Snell et al. 2017), with an optional linear
  head to ``out_features`` classes (MAML) or none (embedding for metric learners).
- ``mlp``: fully connected ReLU network, e.g. the sinusoid regressor 1-40-40-1 of Finn et al.

Read next: ``../optim.py``.
"""
import numpy as np

from .layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential


def conv4(out_features=None, hidden=64, in_channels=1, image_size=28, seed=0,
          dtype=np.float32):
    """The 4-block conv net; ``out_features=None`` returns the flattened embedding.

    >>> net = conv4(5)
    >>> len(net.parameters())   # 4 × (conv w, b, bn w, b) + head w, b
    18
    """
    rng = np.random.default_rng(seed)
    layers, channels, size = [], in_channels, image_size
    for _ in range(4):
        layers += [Conv2d(channels, hidden, 3, padding=1, rng=rng, dtype=dtype),
                   BatchNorm2d(hidden, dtype=dtype), ReLU(), MaxPool2d(2)]
        channels, size = hidden, size // 2
    layers.append(Flatten())
    if out_features is not None:
        layers.append(Linear(hidden * size * size, out_features, rng=rng, dtype=dtype))
    return Sequential(*layers)


def mlp(sizes=(1, 40, 40, 1), seed=0, dtype=np.float32, init_std=None):
    """Linear layers of the given sizes with ReLU between them (none after the last).

    ``init_std=None`` uses Kaiming-normal weights; a number draws normal(0, init_std), as the
    MAML reference code does for the sinusoid regressor (0.01).
    """
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, rng=rng, dtype=dtype, init_std=init_std))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)
