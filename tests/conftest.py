"""Shared fixtures: anyio pinned to asyncio (aiohttp is asyncio-only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
