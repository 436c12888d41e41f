"""Typing-only use of the public API: checked by ``mypy --strict``, never executed by pytest.

If a public signature changes in a way that breaks users' type checking, this file stops
type-checking.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import crwatch
from crwatch.testing import FakeApiServer


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
            group="example.com",
            version="v1",
            plural="widgets",
            kind="Widget",
            schema={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            printer_columns=[{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
        )
        server.create(widgets, {"metadata": {"name": "a", "namespace": "default"}})
        return server.resource_version


def errors(err: crwatch.ApiError) -> float | None:
    if isinstance(err, crwatch.TooManyRequestsError):
        return err.retry_after
    assert_type(err.code, int)
    return None
