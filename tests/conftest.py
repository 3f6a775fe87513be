"""Shared test settings: hypothesis profiles ("ci" is the default; "dev" runs more examples).

Select with HYPOTHESIS_PROFILE=dev. Deadlines are off: the machines are shared and noisy, and
speed is measured in benchmarks/, never in tests.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=20, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def nothing_may_run(monkeypatch):
    """A command's work (training, the gradcheck, the demo's sinusoid part) made to fail the
    test at once: a refusal test whose check let the command through then fails in a second,
    not after the whole run (a mutation audit's mutants had trained for minutes, or hung)."""
    from minimeta import selfcheck
    from minimeta.experiments import sinusoid, training
    for module, name in ((training, "train"), (selfcheck, "run"), (sinusoid, "meta_train")):
        monkeypatch.setattr(module, name, lambda *_, **__: pytest.fail("not refused"))


@pytest.fixture
def fake_omniglot(tmp_path, monkeypatch):
    """Two small archives in the real layout (bool images, True = paper), found through
    ``MINIMETA_DATA_DIR``, with a cache of their own."""
    import numpy as np

    from minimeta.data import omniglot
    rng = np.random.default_rng(0)
    for part, n in (("background", 6), ("evaluation", 4)):
        images = rng.random((n, 20, 105, 105)) > 0.1
        np.savez_compressed(tmp_path / omniglot.FILES[part][0], images=images,
                            labels=np.repeat(np.arange(n)[:, None], 20, 1))
    monkeypatch.setenv("MINIMETA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path
