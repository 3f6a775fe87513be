"""A run's episodes: where each iteration's meta-batch and the validation tasks come from.

``task_source`` makes the tasks of a dataset's split (Omniglot's train, val or test part, or
sinusoids), checking first that the split can give the episodes asked for, with a one-line
error naming the options at fault (``fits_published`` knows it from the published archives'
sizes, before anything is downloaded). ``batches`` gives iteration i's meta-batch: drawn from a
generator seeded with (seed, i), so a resumed run draws what the uninterrupted one drew; the
sinusoid experiment's single task stream skips the iterations done instead.

Read next: ``minimeta/experiments/training.py`` (the one training loop).
"""
from ..data import EpisodeSampler, SinusoidTasks, fetch, omniglot
from .registry import unread


def task_source(config, part, ways=None, shots=None, queries=None):
    """A function (seed sequence, n) → n tasks of the dataset's split ``part``; ``ways``,
    ``shots`` and ``queries`` default to the config's."""
    ways, shots = ways or config.ways, shots or config.shots
    queries = config.queries if queries is None else queries
    if config.dataset == "sinusoid":
        return lambda seq, n: SinusoidTasks(seed=seq).sample(n, shots, queries)
    fits_published(config, part, ways, shots, queries)
    classes = omniglot.class_images(config.split, part, val_size=config.val_size or 0)
    try:
        EpisodeSampler(classes, ways, shots, queries)  # its checks now, not mid-run
    except ValueError:
        raise ValueError(_at_fault(config, part, classes.shape[:2], ways, shots, queries)) \
            from None
    return lambda seq, n: EpisodeSampler(classes, ways, shots, queries, seed=seq).batch(n)


def fits_published(config, part, ways=None, shots=None, queries=None):
    """``ValueError`` (``_at_fault``'s line) for episodes more ways wide than the part of the
    published archives has classes: known without loading them (a fresh machine had
    downloaded Omniglot, then refused the run)."""
    ways, shots = ways or config.ways, shots or config.shots
    queries = config.queries if queries is None else queries
    most = omniglot.published_classes(config.split, part, config.val_size or 0)
    if config.dataset == "omniglot" and ways > most:
        raise ValueError(_at_fault(config, part, (most, fetch.DRAWERS), ways, shots, queries))


def _at_fault(config, part, sizes, ways, shots, queries):
    """The options that ask for episodes the split cannot give, in one line."""
    (n_classes, per_class) = sizes
    name = {"train": "training", "val": "validation"}.get(part, part)
    if shots + queries > per_class:
        return (f"--shots {shots} + --queries {queries} ask for {shots + queries} drawings of a "
                f"class; each {config.dataset} class has {per_class}"
                f"{unread(config.learner, queries)}")
    if part == "val":
        return (f"--val-size {config.val_size} leaves {n_classes} validation classes, fewer "
                f"than the {ways} ways of validation: raise --val-size, or validate never "
                "(--validate-every 0)")
    held = f" (with --val-size {config.val_size} held out)" if part == "train" and \
        config.val_size else ""
    return f"--ways {ways} needs {ways} classes; the {name} part has {n_classes}{held}"


def batches(config, start=0):
    """A function iteration → that iteration's meta-batch, for iterations ``start``, ``start``
    + 1, … in order (the one-stream case depends on it)."""
    if config.stream_seed is None:
        tasks = task_source(config, "train")
        return lambda it: tasks([config.seed, it], config.meta_batch)
    stream = SinusoidTasks(seed=config.stream_seed)

    def sample(it=None):
        return stream.sample(config.meta_batch, config.shots, config.queries)

    stream.skip(start, config.meta_batch, config.shots, config.queries)   # a resumed run's
    return sample
