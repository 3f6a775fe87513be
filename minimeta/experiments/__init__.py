"""``minimeta.experiments``: the papers' experiments as functions, shared by the command line and
the example scripts (top layer: imports learners, nn, data).

A run is a ``RunConfig`` (``config.py``: every setting, its default and its check), its
learner comes from the registry (``registry.py``: name → family, builder, paper defaults), and
every run trains through one loop (``training.py``); ``evaluation.py`` measures (the 95%
interval, test episodes, fine-tuning curves) and ``curve.py`` draws a run's learning curve
(``curve.png``). ``sinusoid.py`` is Finn et al.'s sinusoid experiment, ``fewshot.py`` the
evaluation of a checkpoint (``minimeta eval``).

Read next: ``minimeta/experiments/registry.py`` (the learners by name, with their papers' defaults).
"""
