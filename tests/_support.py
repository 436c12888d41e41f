"""Helpers shared by the test modules (importable as ``_support``: pytest puts tests/ first)."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

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


class Seen:
    """What a callback saw, with a wait for a count of items (woken per item, no polling)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = anyio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, count: int, timeout: float = 20) -> None:
        """Wait until ``count`` items were added; a real-time guard against hangs."""
        with anyio.fail_after(timeout):
            while len(self.items) < count:
                await self._changed.wait()


class WidgetEnv:
    """A fake server with the widgets CRD and a crwatch client for it; changes in "default".

    Each test module adds its own ``create`` (its widgets differ) and its way to watch.
    """

    def __init__(self, server: FakeApiServer, rtype: ResourceType, client: crwatch.Client):
        self.server = server
        self.rtype = rtype
        self.client = client

    def patch(self, name: str, **spec: Any) -> dict[str, Any]:
        return self.server.patch(self.rtype, name, {"spec": spec}, namespace="default")

    def delete(self, name: str) -> dict[str, Any]:
        return self.server.delete(self.rtype, name, namespace="default")

    def state(self) -> dict[str, str]:
        """Return the server's objects in "default": key -> resourceVersion."""
        return {
            f"default/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for o in self.server.list(self.rtype, namespace="default")
        }


def seeded(cases: Sequence[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Return the fixed ``(seed, ...)`` cases of a randomized test, plus fresh ones on demand.

    ``CRWATCH_CHAOS_SEEDS=N`` (set by ``nox -s chaos``) appends N cases with random seeds,
    cycling through the fixed cases' other parameters. The seed is part of the test id, so
    a failure is replayed with ``pytest -k <seed>``.
    """
    extra = int(os.environ.get("CRWATCH_CHAOS_SEEDS", "0") or 0)
    fresh = random.SystemRandom()
    out = list(cases)
    for i in range(extra):
        base = cases[i % len(cases)]
        out.append((fresh.randrange(1 << 32), *base[1:]))
    return out


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait for a condition on client-side state that has no event to wait on.

    For what the fake server knows (watches, requests, fault firings, writes flushed), wait
    on its awaitables instead: ``server.wait_for_watchers``, ``rule.wait_fired``, ...

    Raises:
        TimeoutError: the condition still fails after ``timeout`` seconds.
    """
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - a subscriber's view has no event to wait on
            await anyio.sleep(0.005)
