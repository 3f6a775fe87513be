"""N-way K-shot episodes from an array of classes, seeded and reproducible (NumPy only).

``classes`` is an array (C, M, H, W): M examples of each of C classes. An episode draws N
distinct classes, then K + Q distinct examples of each: K for the support set, Q for the
query set. Labels are remapped to 0..N−1 in the order the classes were drawn; images come out
shaped (N·K, 1, H, W) for the conv backbones. The same seed gives the same episodes on any
machine (NumPy's PCG64 generator).

    >>> classes = np.zeros((10, 20, 28, 28), np.float32)
    >>> xs, ys, xq, yq = EpisodeSampler(classes, ways=5, shots=1, queries=15, seed=0).sample()
    >>> xs.shape, ys.tolist(), xq.shape
    ((5, 1, 28, 28), [0, 1, 2, 3, 4], (75, 1, 28, 28))

Read next: ``minimeta/data/sinusoid.py`` (sinusoid regression tasks).
"""
import numbers

import numpy as np


def count(who, name, value, least):
    """``value`` if it is an integer of at least ``least``, else a one-line ``ValueError``
    naming ``who`` and ``name`` (NumPy's own errors, deep inside, had named neither)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < least:
        raise ValueError(f"{who}: {name} must be an integer of at least {least}, got "
                         f"{value!r}")
    return int(value)


class EpisodeSampler:
    """Draws (x_support, y_support, x_query, y_query) episodes from ``classes``."""

    def __init__(self, classes, ways, shots, queries, seed=0):
        if np.ndim(classes) != 4:
            raise ValueError(f"EpisodeSampler: classes must be an array (classes, examples, "
                             f"H, W), got shape {np.shape(classes)}")
        ways, shots, queries = (count("EpisodeSampler", name, value, least) for name, value, least
                                in (("ways", ways, 1), ("shots", shots, 1),
                                    ("queries", queries, 0)))
        n_classes, per_class = classes.shape[:2]
        if ways > n_classes:
            fix = f"ask for at most {n_classes} ways" if n_classes else "no classes to draw"
            raise ValueError(f"EpisodeSampler: {ways}-way episodes need at least {ways} "
                             f"classes, got {n_classes}: {fix}")
        if shots < 1 or queries < 0 or shots + queries > per_class:
            raise ValueError(f"EpisodeSampler: shots + queries = {shots} + {queries} must be "
                             f"at most the {per_class} examples per class (shots >= 1)")
        self.classes, self.ways, self.shots, self.queries = classes, ways, shots, queries
        self.rng = np.random.default_rng(seed)

    def indices(self):
        """The drawn class ids (ways,) and example ids (ways, shots + queries)."""
        n_classes, per_class = self.classes.shape[:2]
        chosen = self.rng.choice(n_classes, self.ways, replace=False)
        examples = np.stack([self.rng.choice(per_class, self.shots + self.queries,
                                             replace=False) for _ in range(self.ways)])
        return chosen, examples

    def sample(self):
        """One episode: support (ways·shots) and query (ways·queries) images and labels."""
        chosen, examples = self.indices()
        images = self.classes[chosen[:, None], examples]          # (ways, shots + queries, H, W)
        shape = images.shape[2:]
        labels = np.arange(self.ways)
        xs = images[:, :self.shots].reshape((-1, 1) + shape)
        xq = images[:, self.shots:].reshape((-1, 1) + shape)
        return (np.ascontiguousarray(xs), np.repeat(labels, self.shots),
                np.ascontiguousarray(xq), np.repeat(labels, self.queries))

    def batch(self, n_tasks):
        """A meta-batch: a list of ``n_tasks`` episodes."""
        return [self.sample() for _ in range(count("EpisodeSampler.batch", "n_tasks",
                                                   n_tasks, 1))]
