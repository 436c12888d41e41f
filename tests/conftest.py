"""Shared fixtures: anyio pinned to asyncio (aiohttp is asyncio-only)."""

from __future__ import annotations

import pytest

# The public plugin, opted into as users do: fake_apiserver, crwatch_client, ...
pytest_plugins = ["crwatch.testing.pytest_plugin"]


@pytest.fixture
def anyio_backend() -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio."""
    return "asyncio"
