"""An installed (non-editable) copy imports from outside the checkout, kernels included."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_installs_kernels_under_minimeta(tmp_path):
    pytest.importorskip("setuptools")
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), ROOT], check=True,
                   cwd=tmp_path)
    (wheel,) = wheels.glob("minimeta-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True)
    assert not (target / "kernels").exists(), "kernels/ must not install as a top-level package"
    code = ("import minimeta, minimeta.kernels as k; "
            "print(minimeta.__file__); print(k.__file__)")
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env,
                         capture_output=True, text=True).stdout.split()
    assert all(path.startswith(str(target)) for path in out), out
    # every package folder of the checkout made it into the wheel
    source = {os.path.relpath(d, ROOT) for d, _, files in os.walk(os.path.join(ROOT, "minimeta"))
              if "__init__.py" in files}
    installed = {os.path.relpath(d, target) for d, _, files in os.walk(target / "minimeta")
                 if "__init__.py" in files}
    assert source <= installed, sorted(source - installed)
