"""Pytest fixtures for `crwatch.testing.FakeApiServer`.

Enable in a root ``conftest.py`` with ``pytest_plugins = ["crwatch.testing.pytest_plugin"]``
(or import the fixtures into a ``conftest.py``). The fixtures are async and need anyio's
pytest plugin with the asyncio backend (aiohttp is asyncio-only); mark tests with
``@pytest.mark.anyio``.

Fixtures:

- ``fake_apiserver_options``: keyword arguments for the server (default: bookmarks every
  0.05 s, too-large-RV wait 0.05 s); override this fixture to change the knobs.
- ``fake_apiserver``: a started `FakeApiServer` built from them, stopped after the test.
- ``fake_kubeconfig``: path of a kubeconfig file for ``fake_apiserver``.
- ``k8s_api_client``: a kubernetes-asyncio ``ApiClient`` connected to it, closed after the
  test.
- ``crwatch_client``: a `crwatch.Client` connected to it, closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ._server import FakeApiServer

__all__ = [
    "crwatch_client",
    "fake_apiserver",
    "fake_apiserver_options",
    "fake_kubeconfig",
    "k8s_api_client",
]


@pytest.fixture
def fake_apiserver_options() -> dict[str, Any]:
    """Return the keyword arguments for ``fake_apiserver``; override it to change knobs."""
    return {"bookmark_interval": 0.05, "too_large_rv_wait": 0.05}


@pytest.fixture
async def fake_apiserver(fake_apiserver_options: dict[str, Any]) -> AsyncIterator[FakeApiServer]:
    """Yield a started `FakeApiServer` built from ``fake_apiserver_options``."""
    async with FakeApiServer(**fake_apiserver_options) as server:
        yield server


@pytest.fixture
def fake_kubeconfig(fake_apiserver: FakeApiServer, tmp_path: Path) -> Path:
    """Path of a kubeconfig pointing at ``fake_apiserver``."""
    return fake_apiserver.kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def k8s_api_client(fake_kubeconfig: Path) -> AsyncIterator[Any]:
    """Yield a kubernetes-asyncio ``ApiClient`` for ``fake_apiserver``, closed after."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(fake_kubeconfig), client_configuration=configuration
    )
    api = client.ApiClient(configuration)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def crwatch_client(fake_kubeconfig: Path) -> AsyncIterator[Any]:
    """Yield a `crwatch.Client` for ``fake_apiserver``, closed after the test."""
    from crwatch import Client

    async with Client.from_kubeconfig(fake_kubeconfig) as client:
        yield client
