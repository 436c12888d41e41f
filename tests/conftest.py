"""Shared fixtures: anyio pinned to asyncio (aiohttp is asyncio-only)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles. "ci" is derandomized, so a CI run is reproducible (the same examples
# every run); it is the default when $CI is set, and `nox -s tests` selects it. "chaos" and
# "nightly" draw fresh random examples, more of them (`nox -s chaos`). Pick one with
# HYPOTHESIS_PROFILE=<name>.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.register_profile(
    "chaos",
    derandomize=False,
    deadline=None,
    max_examples=500,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "nightly",
    parent=settings.get_profile("chaos"),
    max_examples=2000,
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# The public plugin, opted into as users do: fake_apiserver, crwatch_client, ...
pytest_plugins = ["crwatch.testing.pytest_plugin"]


@pytest.fixture
def anyio_backend() -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio."""
    return "asyncio"


@pytest.fixture(autouse=True)
def no_list_left_frozen() -> Iterator[None]:
    """Fail a test that leaves a list holding the process-wide GC freeze (crwatch._gc)."""
    yield
    from crwatch import _gc

    assert (_gc._holders, _gc._active) == (0, False), "a list still holds the GC freeze"


@pytest.fixture(autouse=True)
def leaks_reported_by_their_own_test() -> Iterator[None]:
    """Collect garbage after each test, so an unclosed socket fails the test that leaked it.

    Without it the ResourceWarning surfaces whenever the collector happens to run, in
    whichever test is running then.
    """
    yield
    # The young generations hold a test's garbage; a full walk tripled the suite's time.
    gc.collect(1)
