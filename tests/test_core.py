"""The list/watch driver's handling of bad watch events, through ``watch()`` and ``Informer``.

Regression tests for issue 14 ("an event whose object has no metadata is cached under the
key ``""`` and the cache never converges again"): such an event is a malformed line,
counted, logged once and repaired by a relist, for both consumers of the driver.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

import crwatch
from _support import until, widget_cluster
from crwatch import Backoff, Event
from crwatch.testing import FakeApiServer, Fault, ResourceType

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")
FAST = Backoff(initial=0.01, maximum=0.05)

#: Watch events whose object cannot be cached: each must be skipped, never keyed.
BAD_EVENTS = {
    # The reproduction from issue 14.
    "no metadata": b'{"type":"ADDED","object":{"apiVersion":"v1","kind":"Widget","spec":{}}}',
    "no name": b'{"type":"ADDED","object":{"kind":"Widget","metadata":{"resourceVersion":"9"}}}',
    "empty name": b'{"type":"ADDED","object":{"metadata":{"name":"","namespace":"default",'
    b'"resourceVersion":"9"}}}',
    "no resourceVersion": b'{"type":"MODIFIED","object":{"metadata":{"name":"a",'
    b'"namespace":"default"}}}',
    "another namespace": b'{"type":"ADDED","object":{"metadata":{"name":"x",'
    b'"namespace":"elsewhere","resourceVersion":"9"}}}',
    "no namespace": b'{"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"9"}}}',
    "metadata not an object": b'{"type":"ADDED","object":{"metadata":["a"]}}',
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def skip_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "malformed line" in r.getMessage()]


def server_keys(server: FakeApiServer, rtype: ResourceType) -> dict[str, str]:
    return {
        f"default/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in server.list(rtype, namespace="default")
    }


@pytest.mark.parametrize("line", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
async def test_watch_skips_an_event_without_usable_metadata_and_relists(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: bytes
) -> None:
    """``watch()`` skips an event it cannot key and relists.

    The bad event is never handed out, it is counted and logged once, a relist follows,
    and the events after it still arrive.
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.create(rtype, widget("a"), namespace="default")
        server.faults.add(Fault.malformed_line(after_events=0, line=line), verb="watch")
        got: list[Event] = []
        async with (
            crwatch.watch(
                client, WIDGETS, namespace="default", streaming_list=False, backoff=FAST, seed=1
            ) as events,
            anyio.create_task_group() as tg,
        ):

            async def consume() -> None:
                async for event in events:
                    got.append(event)

            tg.start_soon(consume)
            await until(lambda: events.statistics().lists == 2)
            server.create(rtype, widget("b"), namespace="default")
            await until(lambda: len(got) == 2)
            stats = events.statistics()
            tg.cancel_scope.cancel()
    assert [(str(e.type), e.key) for e in got] == [("ADDED", "default/a"), ("ADDED", "default/b")]
    assert (stats.malformed_lines, stats.oversized_events) == (1, 0)
    assert isinstance(stats.last_error, crwatch.MalformedLineError)
    assert len(skip_warnings(caplog)) == 1


@pytest.mark.parametrize("line", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
async def test_informer_never_caches_an_event_without_usable_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: bytes
) -> None:
    """The Informer never caches an event it cannot key.

    No key ``""``, no stray key: the event is counted as a malformed line, logged once, a
    relist follows, and the cache converges to the server's state.
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.create(rtype, widget("a"), namespace="default")
        server.faults.add(Fault.malformed_line(after_events=0, line=line), verb="watch")
        seen: list[Event] = []
        informer = crwatch.Informer(
            client, WIDGETS, namespace="default", streaming_list=False, backoff=FAST, seed=1
        )
        informer.subscribe(seen.append)
        async with informer:
            await informer.wait_synced(timeout=5)
            await until(lambda: informer.statistics().relists == 1)
            created = server.create(rtype, widget("b"), namespace="default")
            await informer.wait_for(created["metadata"]["resourceVersion"], timeout=5)
            stats = informer.statistics()
            assert {
                k: o["metadata"]["resourceVersion"]
                for k, o in zip(informer.store.keys(), informer.store.list(), strict=True)
            } == server_keys(server, rtype)
    assert [e.key for e in seen] == ["default/a", "default/b"]
    assert (stats.malformed_lines, stats.oversized_events) == (1, 0)
    assert len(skip_warnings(caplog)) == 1


async def test_informer_statistics_count_oversized_events(tmp_path: Path) -> None:
    """The Informer's statistics count events over ``max_event_bytes``, as ``watch()``'s do.

    The relist that follows brings the object in (a list has no per-line limit).
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        informer = crwatch.Informer(
            client,
            WIDGETS,
            namespace="default",
            streaming_list=False,
            backoff=FAST,
            max_event_bytes=1024,
            seed=1,
        )
        async with informer:
            await informer.wait_synced(timeout=5)
            big = server.create(rtype, widget("big", blob="x" * 2048), namespace="default")
            await informer.wait_for(big["metadata"]["resourceVersion"], timeout=5)
            stats = informer.statistics()
            assert "default/big" in informer.store
    assert (stats.oversized_events, stats.malformed_lines) == (1, 0)
    assert stats.relists == 1
    assert isinstance(stats.last_error, crwatch.EventTooLargeError)


async def test_bad_event_in_a_streaming_list_falls_back_to_a_paginated_list(
    tmp_path: Path,
) -> None:
    """A streaming list that carries an object without metadata is not used.

    An object may be missing from it: the informer lists again, paginated, and syncs on
    the server's objects alone.
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.create(rtype, widget("a"), namespace="default")
        server.faults.add(
            Fault.malformed_line(after_events=0, line=BAD_EVENTS["no metadata"]), verb="watch"
        )
        informer = crwatch.Informer(client, WIDGETS, namespace="default", backoff=FAST, seed=1)
        async with informer:
            await informer.wait_synced(timeout=5)
            assert informer.store.keys() == ["default/a"]
            assert informer.statistics().malformed_lines == 1


@pytest.mark.parametrize(
    ("namespace", "namespaced", "meta", "key"),
    [
        (
            "default",
            None,
            {"name": "a", "namespace": "default", "resourceVersion": "1"},
            "default/a",
        ),
        ("default", True, {"name": "a", "namespace": "other", "resourceVersion": "1"}, None),
        ("default", None, {"name": "a", "resourceVersion": "1"}, None),
        (None, None, {"name": "a", "namespace": "ns", "resourceVersion": "1"}, "ns/a"),
        (None, None, {"name": "a", "resourceVersion": "1"}, "a"),
        (None, True, {"name": "a", "resourceVersion": "1"}, None),
        (None, True, {"name": "a", "namespace": "", "resourceVersion": "1"}, None),
        (None, False, {"name": "a", "namespace": "ns", "resourceVersion": "1"}, None),
        (None, False, {"name": "a", "resourceVersion": "1"}, "a"),
        (None, None, {"name": "a", "namespace": 5, "resourceVersion": "1"}, None),
        (None, None, {"name": "", "resourceVersion": "1"}, None),
        (None, None, {"name": 1, "resourceVersion": "1"}, None),
        (None, None, {"name": "a", "resourceVersion": ""}, None),
        (None, None, {"name": "a", "resourceVersion": 1}, None),
        (None, None, {"name": "a"}, None),
        (None, None, None, None),
        ("default", None, ["a"], None),
    ],
)
def test_admission_keys_only_objects_that_fit_the_watch(
    namespace: str | None, namespaced: bool | None, meta: Any, key: str | None
) -> None:
    """The driver's check gives the cache key of a well-formed object in scope, else None."""
    from crwatch._core import admission

    assert admission(namespace, namespaced)(meta) == key
