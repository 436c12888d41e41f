"""API server restarts and restores from a backup: watch() and Informer relist and converge.

A restart cuts every watch, refuses connections for a while and comes back with an empty
watch cache (resuming from an older resourceVersion gets 410); a restore from an older
state brings the resourceVersion below what the client has seen (resuming gets "Too large
resource version"). Both must end in a relist, never in a wait for a version that will not
come.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import crwatch
from _support import until, widget_cluster
from crwatch import Backoff, Event, EventType
from crwatch.testing import FakeApiServer, ResourceType

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")
FAST = Backoff(initial=0.02, maximum=0.1)


def _state(server: FakeApiServer, rtype: ResourceType) -> dict[str, Any]:
    return {
        f"default/{o['metadata']['name']}": (o["metadata"]["uid"], o.get("spec"))
        for o in server.list(rtype, namespace="default")
    }


def _view_state(view: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {k: (o["metadata"]["uid"], o.get("spec")) for k, o in view.items()}


def _apply(view: dict[str, dict[str, Any]], event: Event) -> None:
    if event.type is EventType.DELETED:
        assert event.key in view, f"DELETED for an unseen key {event.key}"
        del view[event.key]
    else:
        if event.type is EventType.ADDED:
            assert event.key not in view, f"ADDED for a key already seen {event.key}"
        view[event.key] = event.object


def _widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": spec}


async def _consume(events: crwatch.Watch, view: dict[str, dict[str, Any]]) -> None:
    async for event in events:
        _apply(view, event)


async def test_watch_relists_and_converges_after_a_restart(tmp_path: Path) -> None:
    """watch() rides through a restart: refused connections, then 410, then a relist.

    Changes made while the server was down (through another API server, as it were)
    reach the consumer; a re-created name arrives as DELETED then ADDED (new uid).
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        for name in "abc":
            server.create(rtype, _widget(name), namespace="default")
        view: dict[str, dict[str, Any]] = {}
        async with (
            crwatch.watch(client, WIDGETS, namespace="default", backoff=FAST) as events,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_consume, events, view)
            await until(lambda: _view_state(view) == _state(server, rtype))
            await server.stop()  # as restart() does, with changes during the downtime
            server.patch(rtype, "a", {"spec": {"size": 1}}, namespace="default")
            server.delete(rtype, "b", namespace="default")
            server.create(rtype, _widget("b", size=2), namespace="default")  # a new uid
            server.delete(rtype, "c", namespace="default")
            server.compact()  # the new watch cache has no history
            errors = events.statistics().errors
            await until(lambda: events.statistics().errors > errors)  # refused, retrying
            await server.start()
            await until(lambda: _view_state(view) == _state(server, rtype))
            server.create(rtype, _widget("d"), namespace="default")
            await until(lambda: _view_state(view) == _state(server, rtype))
            stats = events.statistics()
            tg.cancel_scope.cancel()
    assert stats.lists >= 2


async def _restart_scenario(
    server: FakeApiServer, rtype: ResourceType, converged: Any, *, restore: bool
) -> None:
    for name in "abc":
        server.create(rtype, _widget(name), namespace="default")
    await until(converged)
    snapshot = server.snapshot()
    server.patch(rtype, "a", {"spec": {"size": 1}}, namespace="default")
    server.delete(rtype, "c", namespace="default")
    server.create(rtype, _widget("d"), namespace="default")
    await until(converged)
    if restore:
        await server.restore(snapshot, downtime=0.05)
    else:
        await server.restart(downtime=0.05)
    await until(converged)
    server.create(rtype, _widget("e"), namespace="default")
    server.patch(rtype, "b", {"spec": {"size": 7}}, namespace="default")
    await until(converged)


@pytest.mark.parametrize("restore", [False, True], ids=["restart", "restore"])
async def test_watch_converges_after_restart_and_restore(tmp_path: Path, restore: bool) -> None:
    """watch() converges after a restart and after a restore to an older resourceVersion.

    After the restore its resourceVersion is in the server's future: the re-watch gets
    "Too large resource version" and a relist follows, instead of a silent wait.
    """
    async with widget_cluster(tmp_path, too_large_rv_wait=0.05) as (server, rtype, client):
        view: dict[str, dict[str, Any]] = {}
        async with (
            crwatch.watch(client, WIDGETS, namespace="default", backoff=FAST) as events,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_consume, events, view)
            await _restart_scenario(
                server, rtype, lambda: _view_state(view) == _state(server, rtype), restore=restore
            )
            stats = events.statistics()
            assert stats.resource_version == str(server.resource_version)
            if restore:
                assert stats.lists >= 2  # the relist after "Too large resource version"
            tg.cancel_scope.cancel()


@pytest.fixture
async def cluster(
    tmp_path: Path,
) -> AsyncIterator[tuple[FakeApiServer, ResourceType, crwatch.Client]]:
    async with widget_cluster(tmp_path, too_large_rv_wait=0.05) as env:
        yield env


@pytest.mark.parametrize("restore", [False, True], ids=["restart", "restore"])
async def test_informer_converges_after_restart_and_restore(
    cluster: tuple[FakeApiServer, ResourceType, crwatch.Client],
    restore: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Informer's cache and a subscriber's view converge after a restart and a restore.

    Going back in resourceVersions is logged once, as a warning.
    """
    server, rtype, client = cluster
    view: dict[str, dict[str, Any]] = {}
    informer = crwatch.Informer(client, WIDGETS, namespace="default", backoff=FAST)
    informer.subscribe(lambda event: _apply(view, event))

    def converged() -> bool:
        cache = {o["metadata"]["name"]: o for o in informer.store.list()}
        cache_view = {f"default/{k}": o for k, o in cache.items()}
        return _view_state(view) == _state(server, rtype) == _view_state(cache_view)

    async with informer:
        await informer.wait_synced(timeout=5)
        with caplog.at_level("WARNING", logger="crwatch"):
            await _restart_scenario(server, rtype, converged, restore=restore)
        went_back = [r for r in caplog.records if "resourceVersion went back" in r.getMessage()]
        assert len(went_back) == (1 if restore else 0)
        # After a plain restart the client was up to date: resuming at the current
        # resourceVersion is allowed, no relist needed. After a restore one is.
        assert informer.statistics().relists >= (1 if restore else 0)


async def test_wait_for_fails_when_the_server_goes_back_in_time(
    cluster: tuple[FakeApiServer, ResourceType, crwatch.Client],
) -> None:
    """wait_for(rv) pending when the server is restored to an older state fails clearly.

    The resourceVersion it waits for belonged to a history the server forgot; the wait
    raises ResourceVersionRollbackError naming both versions instead of hanging. A
    wait_for of a version the restored server then reaches works as usual.
    """
    server, rtype, client = cluster
    informer = crwatch.Informer(client, WIDGETS, namespace="default", backoff=FAST)
    async with informer:
        await informer.wait_synced(timeout=5)
        snapshot = server.snapshot()
        for i in range(5):
            server.create(rtype, _widget(f"w{i}"), namespace="default")
        seen = server.resource_version
        await informer.wait_for(seen, timeout=5)
        failure: list[BaseException] = []

        async def wait_far() -> None:
            try:
                await informer.wait_for(seen + 3, timeout=10)
            except crwatch.CrwatchError as exc:
                failure.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_far)
            await anyio.wait_all_tasks_blocked()
            await server.restore(snapshot)
        (error,) = failure
        assert isinstance(error, crwatch.ResourceVersionRollbackError)
        assert error.resource_version == seen + 3
        assert int(error.current) <= snapshot.resource_version
        assert str(seen + 3) in str(error)
        written = server.create(rtype, _widget("after"), namespace="default")
        await informer.wait_for(written["metadata"]["resourceVersion"], timeout=5)
        assert informer.store.get("default/after") is not None
        assert informer.store.get("default/w0") is None


async def test_a_silent_watch_after_a_restore_ends_in_a_relist(tmp_path: Path) -> None:
    """A restored server that keeps a future-version watch silent still gets a relist.

    kube-apiserver's watch cache sends nothing at all on a plain watch from a version it
    has not reached (and no bookmark, since it has nothing newer): the watch is dropped
    after ``stall_timeout`` and, having delivered nothing, replaced by a relist.
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        view: dict[str, dict[str, Any]] = {}
        options: dict[str, Any] = {"namespace": "default", "backoff": FAST, "stall_timeout": 0.3}
        async with (
            crwatch.watch(client, WIDGETS, **options) as events,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_consume, events, view)
            server.create(rtype, _widget("a"), namespace="default")
            snapshot = server.snapshot()
            server.create(rtype, _widget("b"), namespace="default")
            await until(lambda: _view_state(view) == _state(server, rtype))
            await server.restore(snapshot)
            server.reject_future_watches = False  # silent, as a plain watch is
            server.create(rtype, _widget("c"), namespace="default")  # below our version
            await until(lambda: _view_state(view) == _state(server, rtype))
            stats = events.statistics()
            tg.cancel_scope.cancel()
    assert stats.stalls >= 1
    assert sorted(view) == ["default/a", "default/c"]
