"""What a run's command line takes: the fields' option helper, the bounds of every count, the
flag of a field, and the ``argparse`` type of the scripts' counts.

``RunConfig`` (``config.py``) declares each setting with ``option``: its type, its choices, its
bounds. The bounds are the ones a typo would cross: no count of a run is larger than ``MOST``;
examples a class, tasks a batch and inner steps stop at ``MOST_PER_TASK``; an Omniglot
character has ``DRAWINGS`` drawings. The examples and benchmarks read their counts with
``count``, which takes what ``MOST`` allows.

    >>> flag("inner_lr")
    '--inner-lr'

Read next: ``minimeta/experiments/config.py`` (a run's settings, checked: RunConfig).
"""
from dataclasses import field


def option(default, kind, help=None, choices=None, least=None, above=None, flag=True,
           most=None):
    """A field with what the command line and the checks need: its type (``kind``), the
    ``choices``, an int's ``least`` and ``most`` values (``most`` defaults to ``MOST``), a
    float's ``least`` or ``above`` (strict) bound."""
    return field(default=default, metadata=dict(kind=kind, help=help, choices=choices,
                                                least=least, above=above, flag=flag,
                                                most=most))


MOST = 10 ** 9  # no count of a run is larger: beyond it a run is a typo, or never ends
MOST_PER_TASK = 10 ** 4  # examples per class, tasks per batch, inner steps
DRAWINGS = 20  # an Omniglot character has 20 drawings: shots + queries at most


def count(least=1):
    """An argparse ``type`` for the scripts' counts: an integer from ``least`` to ``MOST``.

    >>> count(2)("3"), count()("1")
    (3, 1)
    >>> count(2)("1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be >= 2, got 1
    """
    import argparse

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not least <= value <= MOST:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}" if value < least
                                             else f"must be <= {MOST}, got {value}")
        return value
    return parse


def flag(name):
    """The command-line option of field ``name``: ``inner_lr`` → ``--inner-lr``."""
    return "--" + name.replace("_", "-")
