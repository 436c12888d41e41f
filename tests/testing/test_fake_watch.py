"""WATCH semantics of FakeApiServer (docs/protocol.md), read line by line."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from fakeserver_helpers import (
    ALL_WIDGETS,
    WIDGETS,
    get_json,
    register_widgets,
    session,
    watch,
    widget,
)
from kubernetes_asyncio import client

from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

CM = ("", "v1", "configmaps")


def _name(event: dict[str, Any]) -> str:
    return str(event["object"]["metadata"]["name"])


def _rv(event: dict[str, Any]) -> int:
    return int(event["object"]["metadata"]["resourceVersion"])


async def test_headers_flushed_before_any_event(fake_apiserver: FakeApiServer) -> None:
    """A watch answers 200 with Content-Type application/json before any event exists."""
    register_widgets(fake_apiserver)
    rv = fake_apiserver.resource_version
    async with session(fake_apiserver) as http:
        response = await asyncio.wait_for(
            http.get(WIDGETS, params={"watch": "1", "resourceVersion": str(rv)}), 2
        )
        async with response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Transfer-Encoding"] == "chunked"


async def test_watch_without_rv_sends_synthetic_added_in_key_order(
    fake_apiserver: FakeApiServer,
) -> None:
    """RV unset and RV 0: ADDED for current objects in key order, then live events."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("b"))
    fake_apiserver.create(widgets, widget("a"))
    for rv in (None, "0"):
        params = {} if rv is None else {"resourceVersion": rv}
        async with watch(fake_apiserver, **params) as stream:
            first = await stream.events(2)
            assert [(e["type"], _name(e)) for e in first] == [("ADDED", "a"), ("ADDED", "b")]
            assert _rv(first[0]) > _rv(first[1])  # each keeps its own RV
            fake_apiserver.patch(widgets, "a", {"spec": {"n": str(rv)}})  # a real change
            live = await stream.event()
            assert (live["type"], _name(live)) == ("MODIFIED", "a")
            assert live["object"]["apiVersion"] == "example.com/v1"
            assert live["object"]["kind"] == "Widget"


async def test_watch_from_rv_replays_only_newer_events(fake_apiserver: FakeApiServer) -> None:
    """RV N: only events with RV > N, no synthetic events, in RV order."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    rv = fake_apiserver.resource_version
    fake_apiserver.create(widgets, widget("b"))
    fake_apiserver.patch(widgets, "a", {"spec": {"n": 1}})
    fake_apiserver.delete(widgets, "b")
    async with watch(fake_apiserver, resourceVersion=rv) as stream:
        events = await stream.events(3)
        assert [(e["type"], _name(e)) for e in events] == [
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b"),
        ]
        rvs = [_rv(e) for e in events]
        assert rvs == sorted(rvs)
        assert rvs[0] > rv
        assert await stream.silent(0.1)


async def test_watch_future_rv_is_silent_until_events(fake_apiserver: FakeApiServer) -> None:
    """A plain watch from a future RV stays silent and then sends events above it."""
    widgets = register_widgets(fake_apiserver)
    future = fake_apiserver.resource_version + 2
    async with watch(fake_apiserver, resourceVersion=future) as stream:
        fake_apiserver.create(widgets, widget("a"))
        fake_apiserver.create(widgets, widget("b"))
        assert await stream.silent(0.1)
        fake_apiserver.create(widgets, widget("c"))
        event = await stream.event()
        assert (event["type"], _name(event)) == ("ADDED", "c")


async def test_deleted_event_carries_last_state_with_deletion_rv(
    fake_apiserver: FakeApiServer,
) -> None:
    """DELETED has the last stored object with its RV set to the deletion RV."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a", size=5))
    async with watch(fake_apiserver, resourceVersion=fake_apiserver.resource_version) as stream:
        fake_apiserver.delete(widgets, "a")
        event = await stream.event()
    assert event["type"] == "DELETED"
    assert event["object"]["spec"] == {"size": 5}
    assert _rv(event) == fake_apiserver.resource_version


async def test_finalizer_flow_events(fake_apiserver: FakeApiServer) -> None:
    """DELETE with finalizers is MODIFIED; removing the last finalizer is one DELETED."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "a", "finalizers": ["f/x"]}})
    async with watch(fake_apiserver, resourceVersion=fake_apiserver.resource_version) as stream:
        fake_apiserver.delete(widgets, "a")
        marked = await stream.event()
        assert marked["type"] == "MODIFIED"
        assert marked["object"]["metadata"]["deletionTimestamp"]
        current = fake_apiserver.get(widgets, "a")
        current["metadata"]["finalizers"] = []
        fake_apiserver.update(widgets, current)
        gone = await stream.event()
        assert gone["type"] == "DELETED"
        assert gone["object"]["metadata"]["finalizers"] == ["f/x"]  # last *stored* state
        assert gone["object"]["metadata"]["deletionTimestamp"]
        assert _rv(gone) == fake_apiserver.resource_version > _rv(marked)
        assert await stream.silent(0.05)


async def test_compacted_rv_gets_error_410_event(fake_apiserver: FakeApiServer) -> None:
    """A watch from a compacted RV gets the exact ERROR 410 event in a 200 stream, then EOF."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    fake_apiserver.patch(widgets, "a", {"spec": {"n": 1}})
    fake_apiserver.compact()
    floor = fake_apiserver.resource_version
    async with watch(fake_apiserver, resourceVersion=1) as stream:
        events = await stream.rest()
    assert events == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: 1 ({floor})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]


async def test_bounded_history_expires_old_rvs() -> None:
    """With history_size=3, a watch from before the last 3 events gets ERROR 410."""
    async with FakeApiServer(history_size=3) as server:
        widgets = register_widgets(server)
        start = server.resource_version
        for name in "abcde":
            server.create(widgets, widget(name))
        async with watch(server, resourceVersion=start) as stream:
            [event] = await stream.rest()
            assert event["type"] == "ERROR"
            assert event["object"]["code"] == 410
        async with watch(server, resourceVersion=server.resource_version - 3) as stream:
            events = await stream.events(3)
            assert [_name(e) for e in events] == ["c", "d", "e"]


async def test_label_selector_transitions(fake_apiserver: FakeApiServer) -> None:
    """Entering a selector is ADDED, staying MODIFIED, leaving DELETED (old object)."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "a", "labels": {"x": "no"}}})
    async with watch(fake_apiserver, labelSelector="x=yes") as stream:
        assert await stream.silent(0.05)
        fake_apiserver.patch(widgets, "a", {"metadata": {"labels": {"x": "yes"}}})
        fake_apiserver.patch(widgets, "a", {"spec": {"n": 1}})
        fake_apiserver.patch(widgets, "a", {"metadata": {"labels": {"x": "no"}}})
        fake_apiserver.patch(widgets, "a", {"spec": {"n": 2}})
        fake_apiserver.patch(widgets, "a", {"metadata": {"labels": {"x": "yes"}}})
        events = await stream.events(4)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED", "ADDED"]
    deleted = events[2]
    assert deleted["object"]["metadata"]["labels"] == {"x": "yes"}  # the old object
    assert deleted["object"]["spec"] == {"n": 1}
    assert _rv(deleted) > _rv(events[1])
    assert events[3]["object"]["spec"] == {"n": 2}


async def test_field_selector_watch_and_named_watch(fake_apiserver: FakeApiServer) -> None:
    """Field selectors (selectableFields, metadata.name) filter watches; /NAME?watch works."""
    widgets = register_widgets(fake_apiserver)
    async with (
        watch(fake_apiserver, fieldSelector="spec.color=red") as by_color,
        watch(fake_apiserver, f"{WIDGETS}/b") as by_path,
        watch(fake_apiserver, ALL_WIDGETS, fieldSelector="metadata.name=b") as by_name,
    ):
        fake_apiserver.create(widgets, widget("a", color="red"))
        fake_apiserver.create(widgets, widget("b", color="blue"))
        fake_apiserver.patch(widgets, "b", {"spec": {"color": "red"}})
        color = await by_color.events(2)
        assert [(e["type"], _name(e)) for e in color] == [("ADDED", "a"), ("ADDED", "b")]
        for stream in (by_path, by_name):
            events = await stream.events(2)
            assert [(e["type"], _name(e)) for e in events] == [("ADDED", "b"), ("MODIFIED", "b")]


async def test_namespace_watch_sees_only_its_namespace(fake_apiserver: FakeApiServer) -> None:
    """A namespaced watch ignores other namespaces; the all-namespaces watch sees both."""
    widgets = register_widgets(fake_apiserver)
    async with watch(fake_apiserver) as mine, watch(fake_apiserver, ALL_WIDGETS) as everything:
        fake_apiserver.create(widgets, widget("x"), namespace="other")
        fake_apiserver.create(widgets, widget("y"))
        assert _name(await mine.event()) == "y"
        assert [_name(e) for e in await everything.events(2)] == ["x", "y"]


async def test_bookmarks_carry_current_global_rv() -> None:
    """Periodic bookmarks have the watched GVK, only metadata.resourceVersion, global RV."""
    async with FakeApiServer(bookmark_interval=0.05) as server:
        widgets = register_widgets(server)
        server.create(widgets, widget("a"))
        async with watch(
            server, resourceVersion=server.resource_version, allowWatchBookmarks="true"
        ) as stream:
            assert await stream.silent(0.15)  # RV did not move: no bookmark at the start RV
            server.create(CM, {"metadata": {"name": "progress"}})  # other resource moves RV
            event = await stream.event()
        assert event == {
            "type": "BOOKMARK",
            "object": {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"resourceVersion": str(server.resource_version)},
            },
        }


async def test_no_bookmarks_unless_asked() -> None:
    """Without allowWatchBookmarks no BOOKMARK is ever sent."""
    async with FakeApiServer(bookmark_interval=0.02) as server:
        register_widgets(server)
        async with watch(server, resourceVersion=server.resource_version) as stream:
            server.create(CM, {"metadata": {"name": "progress"}})
            assert await stream.silent(0.1)


async def test_streaming_list(fake_apiserver: FakeApiServer) -> None:
    """sendInitialEvents: ADDED in key order, one annotated BOOKMARK at the snapshot RV, live."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("b"))
    fake_apiserver.create(widgets, widget("a"))
    snapshot = fake_apiserver.resource_version
    async with watch(
        fake_apiserver,
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true",
    ) as stream:
        events = await stream.events(3)
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("BOOKMARK", None),
        ]
        assert events[2]["object"] == {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {
                "annotations": {"k8s.io/initial-events-end": "true"},
                "resourceVersion": str(snapshot),
            },
        }
        fake_apiserver.delete(widgets, "b")
        live = await stream.event()
        assert (live["type"], _name(live)) == ("DELETED", "b")
        fake_apiserver.create(CM, {"metadata": {"name": "tick"}})
        later = await stream.event()  # periodic bookmark: no annotation any more
        assert later["type"] == "BOOKMARK"
        assert "annotations" not in later["object"]["metadata"]


async def test_streaming_list_without_bookmarks_has_no_end_marker(
    fake_apiserver: FakeApiServer,
) -> None:
    """SendInitialEvents without allowWatchBookmarks never sends the end bookmark."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    async with watch(
        fake_apiserver, sendInitialEvents="true", resourceVersionMatch="NotOlderThan"
    ) as stream:
        assert (await stream.event())["type"] == "ADDED"
        assert await stream.silent(0.1)


async def test_streaming_list_empty_and_start_now(fake_apiserver: FakeApiServer) -> None:
    """An empty collection gives only the bookmark; sendInitialEvents=false starts now."""
    widgets = register_widgets(fake_apiserver)
    async with watch(
        fake_apiserver,
        sendInitialEvents="1",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="1",
        resourceVersion="0",
    ) as stream:
        assert (await stream.event())["type"] == "BOOKMARK"
    fake_apiserver.create(widgets, widget("old"))
    async with watch(
        fake_apiserver, sendInitialEvents="false", resourceVersionMatch="NotOlderThan"
    ) as stream:
        assert await stream.silent(0.05)
        fake_apiserver.create(widgets, widget("new"))
        assert _name(await stream.event()) == "new"


async def test_streaming_list_future_rv_is_error_504(fake_apiserver: FakeApiServer) -> None:
    """A streaming list at a future RV waits, then sends ERROR 504 Too large RV, then EOF."""
    register_widgets(fake_apiserver)
    future = fake_apiserver.resource_version + 50
    async with watch(
        fake_apiserver,
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        resourceVersion=future,
    ) as stream:
        [event] = await stream.rest()
    assert event["type"] == "ERROR"
    status = event["object"]
    assert status["code"] == 504
    assert status["reason"] == "Timeout"
    assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


@pytest.mark.parametrize(
    "params",
    [
        {"sendInitialEvents": "true"},
        {"sendInitialEvents": "false", "resourceVersionMatch": "Exact"},
        {"resourceVersionMatch": "NotOlderThan"},
    ],
)
async def test_watch_option_validation_is_422(
    fake_apiserver: FakeApiServer, params: dict[str, str]
) -> None:
    """Bad watch parameter combinations are 422 Invalid (§1.4)."""
    register_widgets(fake_apiserver)
    status, body, _ = await get_json(fake_apiserver, WIDGETS, {"watch": "true", **params})
    assert status == 422
    assert body["details"] | {"causes": None} == {
        "kind": "ListOptions",
        "group": "meta.k8s.io",
        "causes": None,
    }


async def test_watch_list_gate_off_is_422_forbidden() -> None:
    """watch_list=False answers sendInitialEvents with the 422 Forbidden of a gate-off server."""
    async with FakeApiServer(watch_list=False) as server:
        register_widgets(server)
        status, body, _ = await get_json(
            server,
            WIDGETS,
            {"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"},
        )
    assert status == 422
    [cause] = body["details"]["causes"]
    assert cause["field"] == "sendInitialEvents"
    assert cause["reason"] == "FieldValueForbidden"
    assert "WatchList feature gate" in cause["message"]


async def test_non_numeric_watch_rv_is_500(fake_apiserver: FakeApiServer) -> None:
    """A watch with resourceVersion=abc is HTTP 500 with an empty reason (§1.4)."""
    register_widgets(fake_apiserver)
    status, body, _ = await get_json(
        fake_apiserver, WIDGETS, {"watch": "true", "resourceVersion": "abc"}
    )
    assert status == 500
    assert "reason" not in body
    assert body["message"].startswith('resourceVersion: Invalid value: "abc"')


async def test_timeout_seconds_ends_cleanly(fake_apiserver: FakeApiServer) -> None:
    """TimeoutSeconds ends the body with a clean chunked EOF at the deadline."""
    register_widgets(fake_apiserver)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with watch(fake_apiserver, timeoutSeconds=1) as stream:
        assert await stream.rest(timeout=3) == []
        assert stream.response.content.at_eof()
    assert 0.9 < loop.time() - started < 5  # generous: a shared, busy machine


async def test_kubernetes_asyncio_raw_stream(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """kubernetes-asyncio's watch request (_preload_content=False) reads events line by line."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    api = client.CustomObjectsApi(k8s_api_client)
    response = await api.list_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        watch=True,
        _preload_content=False,
        timeout_seconds=5,
    )
    try:
        first = orjson.loads(await response.content.readline())
        assert (first["type"], _name(first)) == ("ADDED", "a")
        fake_apiserver.patch(widgets, "a", {"spec": {"n": 2}})
        second = orjson.loads(await response.content.readline())
        assert second["type"] == "MODIFIED"
    finally:
        response.release()


async def test_kubernetes_asyncio_watch_helper(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """kubernetes-asyncio's Watch decodes our events (and handles timeout EOF)."""
    from kubernetes_asyncio import watch as k8s_watch

    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    api = client.CustomObjectsApi(k8s_api_client)
    seen = []
    async with k8s_watch.Watch() as w:
        async for event in w.stream(
            api.list_namespaced_custom_object,
            "example.com",
            "v1",
            "default",
            "widgets",
            timeout_seconds=1,
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 1:
                fake_apiserver.delete(widgets, "a")
            if len(seen) == 2:
                break
    assert seen == [("ADDED", "a"), ("DELETED", "a")]


async def test_events_encoded_once_for_all_watchers(fake_apiserver: FakeApiServer) -> None:
    """Watchers seeing the same event receive byte-identical lines."""
    widgets = register_widgets(fake_apiserver)
    rv = fake_apiserver.resource_version
    async with session(fake_apiserver) as http:
        responses = [
            await http.get(WIDGETS, params={"watch": "1", "resourceVersion": str(rv)})
            for _ in range(3)
        ]
        try:
            fake_apiserver.create(widgets, widget("a", data=list(range(50))))
            lines = [await asyncio.wait_for(r.content.readline(), 2) for r in responses]
        finally:
            for r in responses:
                r.release()
    assert lines[0] == lines[1] == lines[2]
    assert lines[0].endswith(b"}\n")
    assert b"\n" not in lines[0][:-1]


async def test_crd_deletion_closes_watchers(fake_apiserver: FakeApiServer) -> None:
    """Deleting the CRD sends DELETED for its objects and ends open watches cleanly."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    async with watch(fake_apiserver, resourceVersion=fake_apiserver.resource_version) as stream:
        fake_apiserver.delete(
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions"), "widgets.example.com"
        )
        events = await stream.rest()
    assert [(e["type"], _name(e)) for e in events] == [("DELETED", "a")]


async def test_stop_closes_open_watches() -> None:
    """Stopping the server ends open watch streams cleanly."""
    server = FakeApiServer()
    await server.start()
    register_widgets(server)
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + WIDGETS, params={"watch": "1"}) as response,
    ):
        await server.stop()
        assert await asyncio.wait_for(response.content.read(), 3) == b""
        assert response.content.at_eof()


async def test_bookmark_after_simulated_cluster_traffic() -> None:
    """advance_resource_version() lets periodic bookmarks move forward on an idle resource."""
    async with FakeApiServer(bookmark_interval=0.05) as server:
        register_widgets(server)
        async with watch(
            server, resourceVersion=server.resource_version, allowWatchBookmarks="true"
        ) as stream:
            rv = server.advance_resource_version()
            event = await stream.event()
        assert event["type"] == "BOOKMARK"
        assert event["object"]["metadata"] == {"resourceVersion": str(rv)}


async def test_client_disconnect_releases_the_watcher(fake_apiserver: FakeApiServer) -> None:
    """When a client goes away its watcher is unregistered (no leak)."""
    register_widgets(fake_apiserver)
    async with watch(fake_apiserver):
        assert fake_apiserver.statistics().open_watches == 1
    await fake_apiserver.wait_for_watchers(0, timeout=5)
    assert fake_apiserver.statistics().open_watches == 0


async def test_too_old_bound_is_oldest_retained_event_minus_one() -> None:
    """After evictions, the 410 message names "oldest retained RV - 1" like the watch cache."""
    async with FakeApiServer(history_size=2) as server:
        widgets = register_widgets(server)
        server.create(widgets, widget("a"))
        server.advance_resource_version(5)  # other resources move the global RV
        server.create(widgets, widget("b"))
        server.create(widgets, widget("c"))  # evicts "a"; oldest retained is "b"
        oldest = int(server.get(widgets, "b")["metadata"]["resourceVersion"])
        async with watch(server, resourceVersion=oldest - 2) as stream:
            [event] = await stream.rest()
        assert (
            event["object"]["message"] == f"too old resource version: {oldest - 2} ({oldest - 1})"
        )
        async with watch(server, resourceVersion=oldest - 1) as stream:
            assert [_name(e) for e in await stream.events(2)] == ["b", "c"]


async def test_deprecated_watch_prefix(fake_apiserver: FakeApiServer) -> None:
    """The deprecated /watch/ path prefix starts a watch without ?watch=true."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    path = "/apis/example.com/v1/watch/namespaces/default/widgets"
    async with session(fake_apiserver) as http, http.get(path) as response:
        event = orjson.loads(await asyncio.wait_for(response.content.readline(), 3))
    assert (event["type"], _name(event)) == ("ADDED", "a")


async def test_bookmark_shortly_before_deadline() -> None:
    """With timeoutSeconds, a bookmark goes out about 2 s before the deadline."""
    async with FakeApiServer(bookmark_interval=60) as server:
        register_widgets(server)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with watch(
            server,
            resourceVersion=server.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=3,
        ) as stream:
            rv = server.advance_resource_version()
            event = await stream.event(timeout=3)
            assert 0.8 < loop.time() - started < 2.9  # due at 1 s; 3 s is the deadline
        assert event["type"] == "BOOKMARK"
        assert event["object"]["metadata"]["resourceVersion"] == str(rv)
