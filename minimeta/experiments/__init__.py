"""``minimeta.experiments``: the papers' experiments as functions, shared by the command line and
the example scripts (top layer: imports learners, nn, data).

Read ``sinusoid.py`` first.
"""
