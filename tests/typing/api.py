"""Typing-only use of the public API: checked by ``mypy --strict``, never executed by pytest.

If a public signature changes in a way that breaks users' type checking, this file stops
type-checking.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import crwatch
from crwatch.testing import FakeApiServer, Fault


async def watch_widgets(path: str) -> list[str]:
    widgets = crwatch.Resource("example.com", "v1", "widgets")
    assert_type(crwatch.Resource.parse("widgets.v1.example.com"), crwatch.Resource)
    keys: list[str] = []
    async with (
        crwatch.Client.from_kubeconfig(path, context="kind") as client,
        crwatch.watch(
            client,
            widgets,
            namespace="default",
            label_selector="tier=edge",
            stall_timeout=90.0,
            backoff=crwatch.Backoff(initial=0.1, maximum=1.0),
        ) as events,
    ):
        async for event in events:
            assert_type(event, crwatch.Event)
            assert_type(event.object, dict[str, Any])
            assert_type(event.old, dict[str, Any] | None)
            assert_type(event.synthetic, bool)
            if event.type is crwatch.EventType.DELETED:
                keys.append(event.key)
        assert_type(events.statistics().resource_version, str)
    return keys


async def fake_server() -> int:
    async with FakeApiServer(bookmark_interval=0.1) as server:
        widgets = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        server.create(widgets, {"metadata": {"name": "a", "namespace": "default"}})
        return server.resource_version


def errors(err: crwatch.ApiError) -> float | None:
    if isinstance(err, crwatch.TooManyRequestsError):
        return err.retry_after
    assert_type(err.code, int)
    return None


async def restarts_and_waits() -> int:
    async with FakeApiServer() as server:
        rule = server.faults.add(Fault.status(500), verb="watch")
        firing = await rule.wait_fired(1, timeout=1.0)
        assert_type(firing.verb, str)
        await server.wait_for_watchers(0)
        await server.wait_for_request(verb="list", n=1)
        await server.wait_flushed()
        snapshot = server.snapshot()
        assert_type(snapshot.resource_version, int)
        await server.restart(downtime=0.1)
        await server.restore(snapshot)
        return server.open_watches()


def rollback(err: crwatch.ResourceVersionRollbackError) -> str:
    assert_type(err.resource_version, int)
    return err.previous + err.current
