"""Helpers shared by the test modules (importable as ``_support``: pytest puts tests/ first)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import crwatch
from crwatch.testing import FakeApiServer, ResourceType


@contextlib.asynccontextmanager
async def widget_cluster(
    tmp_path: Path, **server_options: Any
) -> AsyncIterator[tuple[FakeApiServer, ResourceType, crwatch.Client]]:
    """Run a FakeApiServer serving the ``widgets.example.com`` CRD, with a Client for it.

    No periodic bookmarks unless ``bookmark_interval`` is given.
    """
    server_options.setdefault("bookmark_interval", 60.0)
    async with FakeApiServer(**server_options) as server:
        rtype = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        path = server.kubeconfig(tmp_path / "kubeconfig")
        async with crwatch.Client.from_kubeconfig(path) as client:
            yield server, rtype, client
