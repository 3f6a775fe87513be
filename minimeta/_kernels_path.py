"""Make the top-level ``kernels/`` folder importable as ``minimeta.kernels``.

An installed copy has the folder mapped to ``minimeta/kernels`` by ``pyproject.toml``
(``kernels`` alone is a name taken on PyPI, so it never installs as a top-level package). A source
checkout keeps it beside ``minimeta/``: there we load it under the same name from its folder,
even when another checkout is installed (editable) in the same environment.

Read next: ``minimeta/reading.py`` (this reading order).
"""
import importlib.util
import os
import sys

_NAME = "minimeta.kernels"
_HERE = os.path.dirname(os.path.abspath(__file__))
_FOLDER = os.path.join(os.path.dirname(_HERE), "kernels")
# a checkout: its own kernels/ beside minimeta/ (and no installed minimeta/kernels inside). It
# wins over any installed mapping: with an editable install of another checkout on the path,
# that checkout's kernels would otherwise run under this one's engine (it did, in a before /
# after benchmark).
_CHECKOUT = not os.path.isdir(os.path.join(_HERE, "kernels")) and \
    os.path.exists(os.path.join(_FOLDER, "conv_ref.py"))

if _NAME not in sys.modules and (_CHECKOUT or importlib.util.find_spec(_NAME) is None):
    _spec = importlib.util.spec_from_file_location(
        _NAME, os.path.join(_FOLDER, "__init__.py"), submodule_search_locations=[_FOLDER]
    )
    if _spec is not None and os.path.exists(_spec.origin):
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_NAME] = _module
        _spec.loader.exec_module(_module)
        setattr(sys.modules["minimeta"], "kernels", _module)
