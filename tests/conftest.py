"""Shared test settings: hypothesis profiles ("ci" is the default; "dev" runs more examples).

Select with HYPOTHESIS_PROFILE=dev. Deadlines are off: the machines are shared and noisy, and
speed is measured in benchmarks/, never in tests.
"""
import os

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
