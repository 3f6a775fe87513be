"""Make the top-level ``kernels/`` folder importable as ``minimeta.kernels``.

An installed copy has the folder mapped to ``minimeta/kernels`` by ``pyproject.toml``
(``kernels`` alone is a name taken on PyPI, so it never installs as a top-level package). A source
checkout keeps it beside ``minimeta/``: there we load it under the same name from its folder.

Read next: ``minimeta/reading.py`` (this reading order).
"""
import importlib.util
import os
import sys

_NAME = "minimeta.kernels"

if _NAME not in sys.modules and importlib.util.find_spec(_NAME) is None:
    _folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
    _spec = importlib.util.spec_from_file_location(
        _NAME, os.path.join(_folder, "__init__.py"), submodule_search_locations=[_folder]
    )
    if _spec is not None and os.path.exists(_spec.origin):
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_NAME] = _module
        _spec.loader.exec_module(_module)
        setattr(sys.modules["minimeta"], "kernels", _module)
