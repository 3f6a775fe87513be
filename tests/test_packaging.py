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


def test_the_source_distribution_carries_what_its_tests_need(tmp_path):
    """Every tracked file of tests/, examples/, benchmarks/, docs/ and .ci/ (a test reads
    .ci/run: the sdist's suite had failed there, an audit of packaging, 2026-12-03) and the
    LICENSE are in
    the sdist (found by probing, 2026-12-01: setuptools alone took only tests/test*.py, so the
    sdist's tests failed without conftest.py, fake_cupy.py, the examples they run; no
    LICENSE for its MIT licence)."""
    import shutil
    import tarfile
    pytest.importorskip("setuptools")
    if shutil.which("git") is None or not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("needs a git checkout, to know the tracked files")
    tracked = subprocess.run(["git", "ls-files", "tests", "examples", "benchmarks", "docs", ".ci"],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    source = tmp_path / "source"       # the tracked files alone: a checkout's egg-info lists
    every = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.split()   # what its MANIFEST.in once took
    for name in every:
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(source / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), source / name)
    code = ("import sys; from setuptools import build_meta as b; "
            "print(b.build_sdist(sys.argv[1]))")
    built = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=source, check=True,
                           capture_output=True, text=True)
    # the licence as a TOML table was deprecated, builds to fail from 2027-02-18 (found by
    # probing, 2026-12-01)
    assert "SetuptoolsDeprecationWarning" not in built.stderr, built.stderr[-800:]
    (sdist,) = tmp_path.glob("minimeta-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert "LICENSE" in names
    missing = sorted(set(tracked) - names)
    assert len(tracked) > 50 and not missing, missing[:10]
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".nbi", ".npz"))]
