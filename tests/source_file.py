"""A file of the repository run as a fresh module: the one loader of the tests that call an
example, a benchmark script or a docs script by its functions (each call its own module, so a
monkeypatch of one stays in its test)."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(relative, name=None):
    """The module of ``<repository>/<relative>``, run afresh, named ``name`` (default: the
    file's name without ``.py``)."""
    path = os.path.join(ROOT, relative)
    spec = importlib.util.spec_from_file_location(
        name or os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
