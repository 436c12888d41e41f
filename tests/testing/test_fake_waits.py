"""FakeApiServer's awaitables (what tests wait on instead of sleeping) and its restarts."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from fakeserver_helpers import WIDGETS, get_json, register_widgets, watch, widget

from crwatch.testing import FakeApiServer, Fault

pytestmark = pytest.mark.anyio


async def test_wait_fired_returns_the_nth_firing(fake_apiserver: FakeApiServer) -> None:
    """rule.wait_fired(n) returns once the fault fired n times; it times out otherwise."""
    register_widgets(fake_apiserver)
    rule = fake_apiserver.faults.add(Fault.status(500), verb="list", times=2)
    with pytest.raises(TimeoutError, match="fired 0 times"):
        await rule.wait_fired(timeout=0.01)
    waiter = asyncio.ensure_future(rule.wait_fired(2))
    status, _, _ = await get_json(fake_apiserver, WIDGETS)
    assert status == 500
    assert not waiter.done()
    status, _, _ = await get_json(fake_apiserver, WIDGETS)
    firing = await asyncio.wait_for(waiter, 5)
    assert (firing.verb, firing.resource) == ("list", "widgets")
    assert firing is rule.firings[1]
    assert await rule.wait_fired(1) is rule.firings[0]  # already fired: at once


async def test_wait_for_watchers_counts_registered_watches(fake_apiserver: FakeApiServer) -> None:
    """wait_for_watchers(n) returns once n watches are registered, and 0 once they are gone.

    A change made right after it returns follows the streaming list's initial-events-end
    bookmark: the watch was registered before the change, not merely requested.
    """
    widgets = register_widgets(fake_apiserver)
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    async with watch(fake_apiserver, **params) as stream:
        await fake_apiserver.wait_for_watchers(1, resource=widgets)
        assert fake_apiserver.open_watches(widgets) == 1
        fake_apiserver.create(widgets, widget("a"), namespace="default")
        first, second = await stream.events(2)
        assert first["type"] == "BOOKMARK"
        assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "a")
        with pytest.raises(TimeoutError, match="1 open watches, not 2"):
            await fake_apiserver.wait_for_watchers(2, timeout=0.01)
    await fake_apiserver.wait_for_watchers(0)
    assert fake_apiserver.open_watches() == 0


async def test_wait_for_request_sees_a_list_before_it_is_answered() -> None:
    """wait_for_request returns while a list at a future resourceVersion is still waiting.

    So a write made then is the one that list waits for: it is served, not a 504.
    """
    async with FakeApiServer(too_large_rv_wait=5) as server:
        widgets = register_widgets(server)
        target = server.resource_version + 1
        listing = asyncio.ensure_future(get_json(server, WIDGETS, {"resourceVersion": target}))
        await server.wait_for_request(verb="list", resource="widgets")
        assert server.statistics().requests == 1  # it has arrived...
        assert not listing.done()  # ...and waits
        server.create(widgets, widget("late"), namespace="default")
        status, body, _ = await asyncio.wait_for(listing, 5)
    assert status == 200
    assert [i["metadata"]["name"] for i in body["items"]] == ["late"]
    with pytest.raises(TimeoutError, match="0 matching requests"):
        await server.wait_for_request(verb="delete", timeout=0.01)


async def test_wait_flushed_means_every_change_was_written(fake_apiserver: FakeApiServer) -> None:
    """After wait_flushed, every change made so far has been written to the watch's socket.

    The watch writes slowly (30 ms an event, 1.5 s for all): once wait_flushed returns,
    reading all 50 takes no time.
    """
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.faults.add(Fault.slow(0.03), verb="watch")
    async with watch(fake_apiserver, resourceVersion=fake_apiserver.resource_version) as stream:
        await fake_apiserver.wait_for_watchers(1)
        for i in range(50):
            fake_apiserver.create(widgets, widget(f"w{i}"), namespace="default")
        await fake_apiserver.wait_flushed()
        loop = asyncio.get_running_loop()
        start = loop.time()
        names = [(await stream.event())["object"]["metadata"]["name"] for _ in range(50)]
        assert loop.time() - start < 0.5
    assert names == [f"w{i}" for i in range(50)]


async def test_restart_cuts_watches_refuses_connections_and_keeps_objects() -> None:
    """restart(): watches end, the port refuses connections for the downtime, objects stay.

    The restarted watch cache has no history: a watch from an older resourceVersion gets
    410 Expired, unless keep_history=True.
    """
    async with FakeApiServer() as server:
        widgets = register_widgets(server)
        server.create(widgets, widget("a"), namespace="default")
        old_rv = server.resource_version
        server.create(widgets, widget("b"), namespace="default")
        rv = server.resource_version
        async with watch(server, resourceVersion=rv) as stream:
            await server.wait_for_watchers(1)
            restarting = asyncio.ensure_future(server.restart(downtime=0.3))
            assert await stream.rest() == []  # the stream ended
            await server.wait_for_watchers(0)
            with pytest.raises(aiohttp.ClientConnectionError):
                await get_json(server, WIDGETS)
            await asyncio.wait_for(restarting, 5)
        assert server.resource_version == rv
        assert [o["metadata"]["name"] for o in server.list(widgets)] == ["a", "b"]
        async with watch(server, resourceVersion=old_rv) as stream:
            [error] = await stream.rest()
        assert (error["type"], error["object"]["code"]) == ("ERROR", 410)
        server.create(widgets, widget("c"), namespace="default")
        await server.restart(keep_history=True)
        async with watch(server, resourceVersion=rv) as stream:
            event = await stream.event()
        assert event["object"]["metadata"]["name"] == "c"


async def test_restore_goes_back_in_resource_versions() -> None:
    """restore(snapshot): the objects and resourceVersion of the snapshot come back.

    A watch from a resourceVersion the restored server has not reached gets an ERROR 504
    "Too large resource version" (cause ResourceVersionTooLarge) after too_large_rv_wait.
    """
    async with FakeApiServer(too_large_rv_wait=0.05) as server:
        widgets = register_widgets(server)
        server.create(widgets, widget("a"), namespace="default")
        snapshot = server.snapshot()
        assert snapshot.resource_version == server.resource_version
        server.patch(widgets, "a", {"spec": {"size": 1}}, namespace="default")
        server.create(widgets, widget("b"), namespace="default")
        seen = server.resource_version
        await server.restore(snapshot)
        assert server.resource_version == snapshot.resource_version < seen
        [a] = server.list(widgets)
        assert (a["metadata"]["name"], a["spec"]) == ("a", {})
        async with watch(server, resourceVersion=seen) as stream:
            [error] = await stream.rest()
        status = error["object"]
        assert (error["type"], status["code"]) == ("ERROR", 504)
        assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
        # The snapshot can be restored again: it was not changed by the writes since.
        server.create(widgets, widget("c"), namespace="default")
        await server.restore(snapshot)
        assert [o["metadata"]["name"] for o in server.list(widgets)] == ["a"]
