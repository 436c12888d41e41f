"""Tests of ``crwatch.Informer`` (against ``FakeApiServer``, with faults) and of its lanes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crwatch
from _support import WidgetEnv, seeded, until, widget_cluster
from crwatch import Backoff, Event, EventType, _gc
from crwatch._lanes import Lane, Overflow
from crwatch._store import Cache
from crwatch.testing import Fault

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")
FAST = Backoff(initial=0.01, maximum=0.05, max_retry_after=60)

anyio_mark = pytest.mark.anyio


def widget(name: str, owner: str | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"tier": spec.pop("tier", "edge")}}
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Owner", "name": owner, "uid": f"uid-{owner}"}
        ]
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, "spec": spec}


def owners(obj: dict[str, Any]) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences", [])]


class Env(WidgetEnv):
    """A fake server with the widgets CRD, and a crwatch client for it."""

    def create(self, name: str, owner: str | None = None, **spec: Any) -> dict[str, Any]:
        return self.server.create(self.rtype, widget(name, owner, **spec), namespace="default")

    def informer(self, **options: Any) -> crwatch.Informer:
        options.setdefault("backoff", FAST)
        options.setdefault("namespace", "default")
        return crwatch.Informer(self.client, WIDGETS, **options)


@contextlib.asynccontextmanager
async def _env(tmp_path: Path, **server_options: Any) -> AsyncIterator[Env]:
    async with widget_cluster(tmp_path, **server_options) as (server, rtype, client):
        yield Env(server, rtype, client)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with _env(tmp_path) as value:
        yield value


class View:
    """A subscriber's view: applies events in order, checking ``old`` and per-key order."""

    def __init__(self, done_key: str | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[Event] = []
        self.done = anyio.Event()
        self.done_key = done_key

    def apply(self, event: Event) -> None:
        self.events.append(event)
        previous = self.objects.get(event.key)
        if event.type is EventType.ADDED:
            assert previous is None, f"ADDED for a key already seen: {event.key}"
        else:
            assert previous is not None, f"{event.type} for an unseen key: {event.key}"
            assert event.old is not None
            assert (
                event.old["metadata"]["resourceVersion"]
                == (previous["metadata"]["resourceVersion"])
            ), "old is not the state this subscriber last saw"
            assert int(event.resource_version) >= int(previous["metadata"]["resourceVersion"])
        if event.type is EventType.DELETED:
            del self.objects[event.key]
        else:
            self.objects[event.key] = event.object
        if event.key == self.done_key:
            self.done.set()

    def state(self) -> dict[str, str]:
        return {k: o["metadata"]["resourceVersion"] for k, o in self.objects.items()}


def cache_state(informer: crwatch.Informer) -> dict[str, str]:
    store = informer.store
    return {
        k: o["metadata"]["resourceVersion"] for k, o in zip(store.keys(), store.list(), strict=True)
    }


# --- one list/watch, many subscribers ------------------------------------------------------------


@anyio_mark
async def test_one_list_watch_whatever_the_number_of_subscribers(env: Env) -> None:
    """Five subscribers share one request; each sees the cache already updated and old from it.

    With ``cache="objects"`` the cached dicts are the ones handed out: the identities show it.
    """
    env.create("a", size=1)
    env.create("b", size=1)
    informer = env.informer(indexes={"size": lambda o: [str(o["spec"]["size"])]}, cache="objects")
    views = [View("default/c") for _ in range(4)]
    cache_seen: list[bool] = []

    def first(event: Event) -> None:
        # Called after the cache and its indexes took the change.
        store = informer.store
        current = store.get(event.key)
        if event.type is EventType.DELETED:
            cache_seen.append(current is None)
        else:
            indexed = store.by_index("size", str(event.object["spec"]["size"]))
            cache_seen.append(current is event.object and any(o is current for o in indexed))
        views[0].apply(event)

    async def second(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        views[1].apply(event)

    informer.subscribe(first)
    informer.subscribe(second)
    informer.subscribe(views[2].apply, buffer_size=1, overflow="coalesce")
    before = env.server.statistics().requests
    async with informer, informer.stream() as events:
        await informer.wait_synced(timeout=5)
        env.patch("a", size=2)
        env.delete("b")
        env.create("c", size=3)
        with anyio.fail_after(5):
            async for event in events:
                views[3].apply(event)
                if event.key == "default/c":
                    break
            for view in views[:3]:
                await view.done.wait()
        assert env.server.statistics().requests - before == 1  # one streaming list, no more
        assert env.server.statistics().open_watches == 1
    expected = env.state()
    assert cache_state(informer) == expected
    for view in views:
        assert view.state() == expected
    assert [(str(e.type), e.key) for e in views[0].events] == [
        ("ADDED", "default/a"),
        ("ADDED", "default/b"),
        ("MODIFIED", "default/a"),
        ("DELETED", "default/b"),
        ("ADDED", "default/c"),
    ]
    assert views[0].events[2].old is views[0].events[0].object  # old from the cache
    assert all(cache_seen)
    assert [str(e.type) for e in views[1].events] == [str(e.type) for e in views[0].events]


@anyio_mark
async def test_slow_subscriber_delays_neither_cache_nor_others_through_faults(env: Env) -> None:
    """A subscriber blocked on an event does not delay the cache or a fast subscriber.

    Hundreds of changes go through a watch disconnect and a 410 relist while it is blocked;
    its lane stays bounded (excess coalesced per key) and, once released, it converges to
    the server's state without losing a deletion.
    """
    for i in range(6):
        env.create(f"w{i}", size=0)
    gate = anyio.Event()
    slow_view, fast_view = View("default/zz-last"), View("default/zz-last")

    async def slow(event: Event) -> None:
        await gate.wait()
        slow_view.apply(event)

    informer = env.informer(streaming_list=False)
    slow_sub = informer.subscribe(slow, buffer_size=4, overflow="wait")
    informer.subscribe(fast_view.apply, buffer_size=100_000)
    # The first watch ends after 40 events (a disconnect); the re-watch then gets 410.
    ended = env.server.faults.add(Fault.end_after(40), verb="watch")
    async with informer:
        await informer.wait_synced(timeout=5)
        for round in range(60):
            env.patch(f"w{round % 6}", size=round)
            if round % 10 == 0:
                env.create(f"new{round}")
            if round % 10 == 5:
                env.delete(f"new{round - 5}")
        env.delete("w0")
        env.create("w0", size=-1)  # deleted then re-created: both must reach the slow one
        env.server.compact()  # the resume after the disconnect gets 410 Expired
        for round in range(60, 120):
            env.patch(f"w{round % 6}", size=round)
        env.delete("w1")
        env.create("zz-last")
        with anyio.fail_after(10):
            await fast_view.done.wait()
        expected = env.state()
        assert fast_view.state() == expected
        assert cache_state(informer) == expected
        assert ended.fired == 1
        stats = informer.statistics()
        assert stats.relists >= 1
        assert stats.reconnects >= 1
        slow_stats = slow_sub.statistics()
        assert slow_view.events == []  # still blocked in its first call
        assert slow_stats.depth <= slow_stats.buffer_size + len(expected) + 2
        assert slow_stats.coalesced > 0
        gate.set()
        with anyio.fail_after(10):
            await slow_view.done.wait()
        assert slow_view.state() == expected
        w0 = [e for e in slow_view.events if e.key == "default/w0"]
        assert [str(e.type) for e in w0][-2:] == ["DELETED", "ADDED"]
        assert "default/w1" not in slow_view.objects


@anyio_mark
async def test_coalesce_policy_skips_to_the_latest_state(env: Env) -> None:
    """With overflow="coalesce" a late reader gets one event per changed key, the newest."""
    env.create("a", size=0)
    env.create("b", size=0)
    gate = anyio.Event()
    view, fast = View("default/done"), View("default/done")

    async def slow(event: Event) -> None:
        await gate.wait()
        view.apply(event)

    informer = env.informer()
    sub = informer.subscribe(slow, buffer_size=2, overflow="coalesce")
    informer.subscribe(fast.apply)
    # A 410 ERROR event in the middle of the changes: a relist while the reader is stuck.
    expired = env.server.faults.add(Fault.expired_event(after_events=20), verb="watch")
    async with informer:
        await informer.wait_synced(timeout=5)
        for i in range(1, 30):
            env.patch("a", size=i)
            env.patch("b", size=i)
        env.delete("b")
        env.create("done")
        with anyio.fail_after(5):
            await fast.done.wait()
        gate.set()
        with anyio.fail_after(5):
            await view.done.wait()
    assert expired.fired == 1
    assert informer.statistics().relists == 1
    assert view.state() == env.state()
    assert view.objects["default/a"]["spec"]["size"] == 29
    # Initial ADDED x2 (one in the call that blocked), then at most a few per key.
    assert len(view.events) <= 8
    assert sub.statistics().coalesced >= 10  # the relist already skipped some states


@anyio_mark
async def test_fail_policy_fails_only_that_subscriber(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """overflow="fail": the subscriber that falls behind fails, reported; others go on."""
    env.create("a")
    gate = anyio.Event()
    errors: list[tuple[str, BaseException]] = []
    fast = View("default/done")

    async def slow(event: Event) -> None:
        await gate.wait()

    informer = env.informer(on_error=lambda sub, exc: errors.append((sub.name, exc)))
    sub = informer.subscribe(slow, buffer_size=3, overflow="fail", name="slowpoke")
    informer.subscribe(fast.apply)
    with caplog.at_level(logging.ERROR, logger="crwatch"):
        async with informer:
            await informer.wait_synced(timeout=5)
            async with informer.stream(buffer_size=2, overflow="fail") as events:
                for i in range(10):
                    env.patch("a", size=i)
                env.create("done")
                with anyio.fail_after(5):
                    await fast.done.wait()
                with pytest.raises(crwatch.SubscriberOverflowError), anyio.fail_after(5):
                    async for _ in events:
                        pass
            await until(lambda: errors)
            assert fast.state() == env.state()
            (failed,) = [s for s in informer.statistics().subscribers if s.name == "slowpoke"]
            assert failed.closed
            assert isinstance(failed.last_error, crwatch.SubscriberOverflowError)
    assert [(name, type(exc)) for name, exc in errors] == [
        ("slowpoke", crwatch.SubscriberOverflowError)
    ]
    stats = sub.statistics()
    assert stats.closed
    assert stats.dropped > 0
    assert "slowpoke" in caplog.text


# --- failing subscribers -----------------------------------------------------------------------


@anyio_mark
async def test_raising_subscriber_is_isolated(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """A callback that raises is logged and reported; it and the others keep receiving."""
    env.create("a")
    calls: list[str] = []
    reported: list[BaseException] = []
    good = View("default/b")

    def bad(event: Event) -> None:
        calls.append(event.key)
        raise RuntimeError(f"boom on {event.key}")

    informer = env.informer(on_error=lambda sub, exc: reported.append(exc))
    sub = informer.subscribe(bad, name="bad")
    informer.subscribe(good.apply)
    with caplog.at_level(logging.ERROR, logger="crwatch"):
        async with informer:
            await informer.wait_synced(timeout=5)
            env.create("b")
            with anyio.fail_after(5):
                await good.done.wait()
            await until(lambda: len(calls) == 2)
    assert calls == ["default/a", "default/b"]
    assert [str(e) for e in reported] == ["boom on default/a", "boom on default/b"]
    assert sub.statistics().errors == 2
    assert "boom on default/a" in caplog.text


@anyio_mark
async def test_stop_policy_raises_the_subscriber_error_from_async_with(env: Env) -> None:
    """subscriber_errors="stop": a callback's error stops the informer and comes out of it."""
    env.create("a")

    def bad(event: Event) -> None:
        raise ZeroDivisionError("stop here")

    informer = env.informer(subscriber_errors="stop")
    informer.subscribe(bad)
    with pytest.raises(ZeroDivisionError, match="stop here"), anyio.fail_after(5):
        async with informer:
            await anyio.sleep_forever()


@anyio_mark
async def test_unsubscribe_policy_and_failing_middleware(env: Env) -> None:
    """subscriber_errors="unsubscribe" ends a raising callback; a raising middleware its own."""
    env.create("a")
    calls: list[str] = []
    good = View("default/b")

    def bad(event: Event) -> None:
        calls.append(event.key)
        raise RuntimeError("once")

    async def broken(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        async for event in events:
            if event.key:
                raise ValueError("middleware bug")
            yield event  # pragma: no cover

    reported: list[BaseException] = []
    informer = env.informer(
        subscriber_errors="unsubscribe", on_error=lambda s, e: reported.append(e)
    )
    informer.subscribe(bad)
    informer.subscribe(lambda e: None, broken)
    informer.subscribe(good.apply)
    async with informer:
        await informer.wait_synced(timeout=5)
        env.create("b")
        with anyio.fail_after(5):
            await good.done.wait()
        await until(lambda: len(reported) == 2)
        stats = informer.statistics().subscribers
        assert sorted((s.closed, type(s.last_error).__name__) for s in stats) == [
            (False, "NoneType"),
            (True, "RuntimeError"),
            (True, "ValueError"),
        ]
    assert calls == ["default/a"]
    assert sorted(type(e).__name__ for e in reported) == ["RuntimeError", "ValueError"]


# --- late subscribers --------------------------------------------------------------------------


@anyio_mark
async def test_late_subscriber_gets_the_cache_then_live_events(env: Env) -> None:
    """A subscriber added after sync gets each cached object once as ADDED, then changes.

    Changes made while it reads the initial state fold in: no gap, no duplicate.
    """
    for i in range(20):
        env.create(f"w{i:02}", size=0)
    informer = env.informer()
    # The streaming list (20 ADDED + bookmark) ends after one live event: a reconnect.
    ended = env.server.faults.add(Fault.end_after(22), verb="watch")
    async with informer:
        await informer.wait_synced(timeout=5)
        view = View("default/zz")
        async with informer.stream(buffer_size=4) as events:
            env.patch("w03", size=1)
            env.delete("w05")
            env.create("zz")
            with anyio.fail_after(5):
                async for event in events:
                    view.apply(event)
                    if event.key == "default/zz":
                        break
        late = View("default/zz")
        informer.subscribe(late.apply)
        with anyio.fail_after(5):
            await late.done.wait()
    assert ended.fired == 1
    assert informer.statistics().reconnects >= 1
    expected = env.state()
    for v in (view, late):
        assert v.state() == expected
        added = [e.key for e in v.events if e.type is EventType.ADDED]
        assert len(added) == len(set(added))


# --- cache, transform, indexes -----------------------------------------------------------------


@anyio_mark
async def test_transform_and_indexes_stay_consistent_through_a_relist(env: Env) -> None:
    """The transform runs before caching; indexes follow changes and a relist's deletes."""
    env.create("a", owner="x", blob="x" * 1000)
    env.create("b", owner="x")
    env.create("c", owner="y")
    seen: list[Event] = []

    def shrink(obj: dict[str, Any]) -> dict[str, Any]:
        obj["spec"].pop("blob", None)
        obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
        return crwatch.drop_managed_fields(obj)

    informer = env.informer(
        streaming_list=False, stall_timeout=0.3, transform=shrink, indexes={"owner": owners}
    )
    informer.subscribe(seen.append)
    env.server.faults.add(Fault.stall(30, after_events=0), verb="watch")
    async with informer:
        await informer.wait_synced(timeout=5)
        store = informer.store
        assert "blob" not in store.get("default/a")["spec"]  # type: ignore[index]
        assert "managedFields" not in store.get("default/a")["metadata"]  # type: ignore[index]
        assert [o["metadata"]["name"] for o in store.by_index("owner", "uid-x")] == ["a", "b"]
        # While the watch is stalled: b vanishes, c changes owner; compaction forces a relist.
        env.delete("b")
        env.server.patch(
            env.rtype,
            "c",
            {"metadata": {"ownerReferences": widget("c", "x")["metadata"]["ownerReferences"]}},
            namespace="default",
        )
        env.server.compact()
        await until(lambda: informer.statistics().relists == 1)
        assert [o["metadata"]["name"] for o in store.by_index("owner", "uid-x")] == ["a", "c"]
        assert store.by_index("owner", "uid-y") == []
        assert store.by_index("owner", "nobody") == []
        with pytest.raises(KeyError):
            store.by_index("missing", "x")
    deleted = [e for e in seen if e.type is EventType.DELETED]
    assert [(e.key, e.synthetic) for e in deleted] == [("default/b", True)]
    assert all("blob" not in e.object["spec"] for e in seen)


@pytest.mark.parametrize("streaming", [True, False])
@anyio_mark
async def test_transform_runs_once_per_object_on_lists_and_watch_events(
    env: Env, streaming: bool
) -> None:
    """Every listed object and every watch event goes through the transform exactly once.

    Deletions too (their object is the last state); the cached object and ``event.old`` are
    transformed ones.
    """
    for name in ("a", "b"):
        env.create(name, blob="x" * 100)
    calls: list[str] = []

    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        calls.append(obj["metadata"]["resourceVersion"])
        obj["spec"].pop("blob", None)
        return obj

    view = View("default/end")
    informer = env.informer(transform=strip, streaming_list=streaming)
    informer.subscribe(view.apply)
    async with informer:
        await informer.wait_synced(timeout=5)
        assert len(calls) == 2
        env.patch("a", blob="y" * 100, size=1)
        env.delete("b")
        env.create("end", blob="z")
        with anyio.fail_after(5):
            await view.done.wait()
    assert len(calls) == 5
    assert len(calls) == len(set(calls))  # no object transformed twice
    assert all("blob" not in e.object["spec"] for e in view.events)
    assert all(e.old is None or "blob" not in e.old["spec"] for e in view.events)


@anyio_mark
async def test_change_lost_to_a_skipped_line_converges_by_a_relist(env: Env) -> None:
    """Regression: a skipped over-size watch event left the cache's object stale.

    The skip schedules a relist: the cache, and what a subscriber saw, end equal to the
    server's state, and the events around the skipped one arrive meanwhile.
    """
    env.create("a")
    env.create("b")
    view: dict[str, str] = {}

    def see(event: Event) -> None:
        if event.type is EventType.DELETED:
            view.pop(event.key)
        else:
            view[event.key] = event.object["metadata"]["resourceVersion"]

    informer = env.informer(streaming_list=False, max_event_bytes=64 * 1024)
    informer.subscribe(see)
    async with informer:
        await informer.wait_synced(timeout=5)
        env.patch("a", blob="z" * 100_000)  # lost on the watch: over max_event_bytes
        env.patch("b", size=1)
        await until(lambda: informer.statistics().relists == 1)
        await until(lambda: view == env.state())
        store = informer.store
        assert {k: store.get(k)["metadata"]["resourceVersion"] for k in store} == env.state()  # type: ignore[index]
        assert store.get("default/a")["spec"]["blob"] == "z" * 100_000  # type: ignore[index]


def test_drop_managed_fields() -> None:
    """drop_managed_fields removes metadata.managedFields and returns the same object."""
    obj = {"metadata": {"name": "a", "managedFields": [{"manager": "x"}]}, "spec": {}}
    assert crwatch.drop_managed_fields(obj) is obj
    assert obj == {"metadata": {"name": "a"}, "spec": {}}
    assert crwatch.drop_managed_fields({"kind": "X"}) == {"kind": "X"}


# --- waiting -----------------------------------------------------------------------------------


@anyio_mark
async def test_wait_synced_timeout_says_why(env: Env) -> None:
    """wait_synced(timeout) raises SyncTimeout carrying the watcher's last error (403)."""
    env.server.deny(verb="watch")
    env.server.deny(verb="list")
    informer = env.informer(on_auth_error="retry")
    async with informer:
        with pytest.raises(crwatch.SyncTimeout) as info:
            await informer.wait_synced(timeout=0.3)
    assert isinstance(info.value.last_error, crwatch.ForbiddenError)
    assert "forbidden" in str(info.value).lower()


@anyio_mark
async def test_fatal_error_comes_out_of_wait_synced_and_async_with(env: Env) -> None:
    """With on_auth_error="raise" a 403 is raised by wait_synced and by the informer."""
    env.server.deny(verb="watch")
    informer = env.informer()
    with pytest.raises(crwatch.ForbiddenError), anyio.fail_after(5):
        async with informer:
            await informer.wait_synced()
    with pytest.raises(crwatch.ForbiddenError), anyio.fail_after(5):
        async with env.informer():
            await anyio.sleep_forever()


@anyio_mark
async def test_wait_for_resource_version(tmp_path: Path) -> None:
    """wait_for(rv) returns once the cache has seen rv, through events or bookmarks."""
    async with _env(tmp_path, bookmark_interval=0.05) as env:
        informer = env.informer()
        async with informer:
            await informer.wait_synced(timeout=5)
            created = env.create("a")
            rv = created["metadata"]["resourceVersion"]
            await informer.wait_for(rv, timeout=5)
            assert informer.store.get("default/a") is not None
            # A write elsewhere moves the RV; only a bookmark tells the informer.
            target = env.server.advance_resource_version(3)
            await informer.wait_for(target, timeout=5)
            assert int(informer.statistics().resource_version) >= target
            with pytest.raises(crwatch.SyncTimeout):
                await informer.wait_for(target + 1000, timeout=0.2)
            with pytest.raises(crwatch.InvalidOptionError):
                await informer.wait_for("abc")


@anyio_mark
async def test_statistics(env: Env) -> None:
    """statistics() reports objects, subscribers, RV, errors with their time, last byte."""
    env.create("a")
    env.server.faults.add(Fault.status(500), verb="watch")
    informer = env.informer()
    sub = informer.subscribe(lambda e: None, name="noop", buffer_size=7)
    async with informer:
        await informer.wait_synced(timeout=5)
        stats = informer.statistics()
    assert stats.objects == 1
    assert stats.synced
    assert stats.resource_version == env.state()["default/a"]
    assert isinstance(stats.last_error, crwatch.ServerError)
    assert stats.last_error_time is not None
    assert stats.seconds_since_last_byte is not None
    assert stats.seconds_since_last_byte >= 0
    (sub_stats,) = stats.subscribers
    assert (sub_stats.name, sub_stats.buffer_size, sub_stats.overflow) == ("noop", 7, "wait")
    assert sub.statistics().name == "noop"
    with pytest.raises(attrs_frozen_error()):
        stats.objects = 3  # type: ignore[misc]


def attrs_frozen_error() -> type[BaseException]:
    import attrs

    return attrs.exceptions.FrozenInstanceError


# --- middlewares -------------------------------------------------------------------------------


@anyio_mark
async def test_middlewares_compose_in_order_in_the_lane(env: Env) -> None:
    """Middlewares apply in the given order; the callback gets what the last one yields."""
    env.create("a")
    env.create("skip-me")
    got: list[Any] = []
    done = anyio.Event()

    async def no_skips(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        async for event in events:
            if not event.key.endswith("skip-me"):
                yield event

    async def pairs(events: AsyncIterator[Event]) -> AsyncIterator[tuple[str, str]]:
        async for event in events:
            yield (str(event.type), event.key)

    def record(item: Any) -> None:
        got.append(item)
        if item[1] == "default/b":
            done.set()

    informer = env.informer()
    informer.subscribe(record, no_skips, pairs)
    async with informer, informer.stream(no_skips, pairs) as stream:
        await informer.wait_synced(timeout=5)
        env.create("b")
        with anyio.fail_after(5):
            await done.wait()
            streamed = [item async for item, _ in zip_n(stream, 2)]
    assert got == [("ADDED", "default/a"), ("ADDED", "default/b")]
    assert streamed == got


@anyio_mark
async def test_a_stream_middleware_error_is_raised_to_its_reader(env: Env) -> None:
    """An error in a stream's middleware ends that stream by raising it to the reader."""
    env.create("a")

    async def broken(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        async for event in events:
            if event.key:
                raise ValueError("middleware bug")
            yield event  # pragma: no cover

    informer = env.informer()
    async with informer, informer.stream(broken) as stream:
        with pytest.raises(ValueError, match="middleware bug"), anyio.fail_after(5):
            await stream.__anext__()


async def zip_n(stream: AsyncIterator[Any], n: int) -> AsyncIterator[tuple[Any, int]]:
    for i in range(n):
        yield await stream.__anext__(), i


# --- lifecycle and options ---------------------------------------------------------------------


@anyio_mark
async def test_exit_leaves_nothing_behind(env: Env) -> None:
    """Leaving the async with ends every task and connection; streams end cleanly."""
    env.create("a")
    informer = env.informer()
    informer.subscribe(lambda e: None)
    async with informer:
        await informer.wait_synced(timeout=5)
        assert any(t.get_name().startswith("crwatch") for t in asyncio.all_tasks())
    assert not any(t.get_name().startswith("crwatch") for t in asyncio.all_tasks())
    await until(lambda: env.server.statistics().open_watches == 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    with pytest.raises(crwatch.CrwatchError):
        async with informer:
            pass


@anyio_mark
async def test_store_is_a_read_only_view(env: Env) -> None:
    """informer.store offers get/list/keys/by_index/len/in and no mutators."""
    env.create("a")
    informer = env.informer()
    store = informer.store
    assert isinstance(store, crwatch.Store)
    assert len(store) == 0
    async with informer:
        await informer.wait_synced(timeout=5)
        assert len(store) == 1
        assert "default/a" in store
        assert store.keys() == ["default/a"]
        assert store.list() == [store.get("default/a")]
        assert store.get("default/zz") is None
    public = {name for name in dir(store) if not name.startswith("_")}
    assert public == {"by_index", "get", "keys", "list", "typed"}  # typed: a read-only view


@pytest.mark.parametrize(
    "options",
    [
        {"transform": 3},
        {"indexes": {"x": 1}},
        {"indexes": [1]},
        {"on_error": "log"},
        {"subscriber_errors": "ignore"},
        {"stall_timeout": 0},
        {"namespace": ""},
        {"gc_freeze": "yes"},
        {"gc_freeze": True},
    ],
)
@anyio_mark
async def test_invalid_informer_options(env: Env, options: dict[str, Any]) -> None:
    """Bad Informer options raise InvalidOptionError at construction."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Informer(env.client, WIDGETS, **options)


@pytest.mark.parametrize(
    "options",
    [{"buffer_size": 0}, {"buffer_size": True}, {"overflow": "drop"}, {"name": 3}],
)
@anyio_mark
async def test_invalid_subscriber_options(env: Env, options: dict[str, Any]) -> None:
    """Bad subscribe()/stream() options raise InvalidOptionError at call time."""
    informer = crwatch.Informer(env.client, WIDGETS)
    with pytest.raises(crwatch.InvalidOptionError):
        informer.subscribe(print, **options)
    with pytest.raises(crwatch.InvalidOptionError):
        informer.stream(**options)
    with pytest.raises(crwatch.InvalidOptionError):
        informer.subscribe(3)  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError):
        informer.stream(3)  # type: ignore[arg-type]


# --- lanes (pure) -------------------------------------------------------------------------------


def _obj(name: str, rv: int, uid: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "d", "resourceVersion": str(rv), "uid": uid}}


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcd")),
        st.tuples(st.just("del"), st.sampled_from("abcd")),
        st.tuples(st.just("get"), st.integers(1, 5)),
        st.tuples(st.just("late"), st.just("")),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_ops, st.integers(1, 4), st.sampled_from(["wait", "coalesce"]))
def test_lane_subscriber_converges_in_order_without_losing_deletes(
    ops: list[tuple[str, Any]], size: int, overflow: str
) -> None:
    """Whatever the overflow, a lane's reader converges to the cache's exact state.

    It sees per-key order, ``old`` = what it last saw, and a deletion before any re-create;
    also for a lane attached late with a snapshot of the cache.
    """
    cache = Cache()
    lanes = [Lane("t", size, overflow)]  # type: ignore[arg-type]
    views: list[dict[str, dict[str, Any]]] = [{}]
    uids: dict[str, int] = {}
    rv = 0

    def check(view: dict[str, dict[str, Any]], event: Event) -> None:
        before = view.get(event.key)
        if event.type is EventType.ADDED:
            assert before is None
            assert event.old is None
        else:
            assert before is not None
            assert event.old is before
            assert event.object["metadata"]["uid"] == before["metadata"]["uid"]
            assert int(event.resource_version) >= int(before["metadata"]["resourceVersion"])
        if event.type is EventType.DELETED:
            del view[event.key]
        else:
            view[event.key] = event.object

    def take(i: int, n: int | None) -> None:
        count = 0
        while n is None or count < n:
            try:
                event = lanes[i].take_nowait()
            except anyio.WouldBlock:
                return
            check(views[i], event)
            count += 1

    for op, arg in ops:
        if op in ("put", "del"):
            rv += 1
            key = f"d/{arg}"
            if op == "put":
                new = key not in cache
                if new:
                    uids[arg] = rv
                event = cache.apply("ADDED" if new else "MODIFIED", _obj(arg, rv, f"u{uids[arg]}"))
            elif key in cache:
                event = cache.apply("DELETED", _obj(arg, rv, f"u{uids[arg]}"))
            else:
                continue
            assert event is not None
            for lane in lanes:
                lane.push(event)
                assert lane.backlog <= lane.size
        elif op == "get":
            for i in range(len(lanes)):
                take(i, arg)
        elif len(lanes) == 1:
            lane = Lane("late", size, overflow)  # type: ignore[arg-type]
            lane.push_snapshot(Event(EventType.ADDED, o, k) for k, o in cache.items())
            lanes.append(lane)
            views.append({})
    for i in range(len(lanes)):
        take(i, None)
        assert views[i] == dict(cache.items())
        assert lanes[i].depth == 0


def test_lane_fail_policy_and_close() -> None:
    """A "fail" lane raises SubscriberOverflowError at once; a closed lane drains then ends."""
    cache = Cache()
    lane = Lane("f", 2, "fail")
    for i in range(3):
        event = cache.apply("ADDED", _obj(f"k{i}", i + 1, "u"))
        assert event is not None
        lane.push(event)
    with pytest.raises(crwatch.SubscriberOverflowError) as info:
        lane.take_nowait()
    assert (info.value.subscriber, info.value.buffer_size) == ("f", 2)
    assert lane.dropped == 2
    closing = Lane("c", 4)
    event = cache.apply("ADDED", _obj("z", 9, "u"))
    assert event is not None
    closing.push(event)
    closing.close(crwatch.StallTimeout("no"))
    assert closing.take_nowait() is event
    with pytest.raises(crwatch.StallTimeout):
        closing.take_nowait()


@anyio_mark
async def test_bursts_end_with_a_yield_only_for_woken_readers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver yields after a burst only for readers it woke, and at least every so often.

    A caught-up sync callback is called as each change is applied and a reader busy with
    an earlier event takes nothing from a yield: no yield for them. A reader waiting on its
    lane that the burst woke gets one; after ``IDLE_BURSTS`` skipped yields in a row the
    driver yields anyway (fairness).
    """
    from crwatch import _lanes
    from crwatch._lanes import BURST, IDLE_BURSTS, FanOut

    # Bursts by count only: the allocation budget must not end one early in this test.
    monkeypatch.setattr(_lanes, "_gc_count", lambda: (0, 0, 0))
    fan = FanOut()
    called: list[Event] = []
    caught_up = Lane("direct", 4)
    caught_up.direct = called.append
    fan.attach(caught_up)
    cache = Cache()
    event = cache.apply("ADDED", _obj("a", 1, "u"))
    assert event is not None
    assert not fan.push(event)
    assert called == [event]

    async def burst_ends_with_yield() -> bool:
        ends = [fan.push(event) for _ in range(BURST)]
        assert not any(ends[:-1])
        if ends[-1]:
            await fan.pause()  # what the driver does when told to yield
        return ends[-1]

    await fan.pause()
    assert [await burst_ends_with_yield() for _ in range(IDLE_BURSTS + 1)] == [False] * (
        IDLE_BURSTS
    ) + [True]
    assert not await burst_ends_with_yield()  # counted again from there
    # A reader busy elsewhere (a slow callback) gains nothing from a yield.
    busy = Lane("busy", 4)
    fan.attach(busy)
    busy.push(event)
    assert not await burst_ends_with_yield()
    # A reader waiting on its lane, woken by the burst, gets one.
    waiting = Lane("waiting", 4 * BURST)
    fan.attach(waiting)
    reader = asyncio.ensure_future(waiting.__anext__())
    await asyncio.sleep(0)
    assert await burst_ends_with_yield()
    assert await reader is event
    # Before waiting for the network, the driver yields for a woken reader too.
    while waiting.readable():
        waiting.take_nowait()
    reader = asyncio.ensure_future(waiting.__anext__())
    await asyncio.sleep(0)
    assert not fan.busy()  # nothing pushed since the last yield
    assert not fan.push(event)
    assert fan.busy()
    await fan.pause()
    assert not fan.busy()
    assert await reader is event


def test_lane_full_folds_in_place() -> None:
    """A full "wait" lane folds changes per key: first type and ``old``, newest object."""
    cache = Cache()
    lane = Lane("w", 1)
    events = []
    for rv, (kind, name) in enumerate(
        [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "b"), ("MODIFIED", "b"), ("ADDED", "c")],
        start=1,
    ):
        event = cache.apply(kind, _obj(name, rv, "u"))
        assert event is not None
        events.append(event)
        lane.push(event)
    assert lane.depth == 3
    assert lane.coalesced == 2
    assert lane.take_nowait() is events[0]
    folded = lane.take_nowait()
    assert (folded.type, folded.key) == (EventType.ADDED, "d/b")
    assert folded.object is events[3].object
    assert folded.old is None
    assert lane.take_nowait() is events[4]
    # A deletion after folded changes keeps the old the subscriber last saw.
    for rv, kind in enumerate(["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"], start=6):
        event = cache.apply(kind, _obj("a", rv, "u"))
        assert event is not None
        events.append(event)
        lane.push(event)
    assert lane.take_nowait() is events[5]
    deleted = lane.take_nowait()
    assert deleted.type is EventType.DELETED
    assert deleted.old is events[5].object
    with pytest.raises(anyio.WouldBlock):
        lane.take_nowait()


# --- sync callbacks called directly ------------------------------------------------------------


@anyio_mark
async def test_sync_callback_runs_in_step_with_the_cache_and_keeps_the_order(env: Env) -> None:
    """A caught-up sync callback is called as each change is applied, in order.

    The store shows that change and no later one; a backlog (the snapshot) comes first.
    """
    for name in ("a", "b"):
        env.create(name)
    informer = env.informer()
    seen: list[tuple[str, str, str]] = []

    def check(event: Event) -> None:
        cached = informer.store.get(event.key)
        cached_rv = "" if cached is None else cached["metadata"]["resourceVersion"]
        seen.append((str(event.type), event.key, cached_rv))

    view = View("default/end")
    informer.subscribe(check)
    informer.subscribe(view.apply)
    async with informer:
        await informer.wait_synced(timeout=5)
        expected = [("ADDED", f"default/{n}", env.state()[f"default/{n}"]) for n in "ab"]
        for i in range(20):
            obj = env.patch("a", size=i)
            expected.append(("MODIFIED", "default/a", obj["metadata"]["resourceVersion"]))
        env.delete("b")
        expected.append(("DELETED", "default/b", ""))
        end = env.create("end")
        expected.append(("ADDED", "default/end", end["metadata"]["resourceVersion"]))
        with anyio.fail_after(5):
            await view.done.wait()
        await until(lambda: len(seen) == len(expected))
    assert seen == expected


@anyio_mark
async def test_sync_callable_returning_an_awaitable_is_awaited_in_order(env: Env) -> None:
    """A plain function returning a coroutine (a lambda around an async def) is awaited.

    Every event once and in order, whether it was called directly or from its buffer.
    """
    env.create("a")
    got: list[tuple[str, str]] = []
    done = anyio.Event()

    async def record(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        got.append((str(event.type), event.key))
        if event.key == "default/end":
            done.set()

    informer = env.informer()
    sub = informer.subscribe(lambda event: record(event), name="wrapped")
    async with informer:
        await informer.wait_synced(timeout=5)
        env.patch("a", size=1)
        env.create("b")
        env.create("end")
        with anyio.fail_after(5):
            await done.wait()
    assert got == [
        ("ADDED", "default/a"),
        ("MODIFIED", "default/a"),
        ("ADDED", "default/b"),
        ("ADDED", "default/end"),
    ]
    assert sub.statistics().errors == 0


def test_async_callables_are_told_from_sync_ones() -> None:
    """Only sync callbacks are called directly.

    Async defs, partials of them and objects with an ``async def __call__`` get a task.
    """
    import functools

    from crwatch._informer import _is_async_callable

    async def coro(event: Event) -> None: ...

    def plain(event: Event) -> None: ...

    class AsyncCall:
        async def __call__(self, event: Event) -> None: ...

    class SyncCall:
        def __call__(self, event: Event) -> None: ...

    assert _is_async_callable(coro)
    assert _is_async_callable(functools.partial(coro))
    assert _is_async_callable(AsyncCall())
    assert not _is_async_callable(plain)
    assert not _is_async_callable(SyncCall())
    assert not _is_async_callable(print)


# --- gc_freeze -----------------------------------------------------------------------------------


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test a collector with nothing frozen, and thaw what it froze."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class FreezeProbe:
    """A transform that records how many objects were frozen as listed objects came in.

    Every 50th object only: ``gc.get_freeze_count()`` walks the frozen objects.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[int] = []

    def __call__(self, obj: dict[str, Any]) -> dict[str, Any]:
        if not self.calls % 50:
            self.seen.append(gc.get_freeze_count())
        self.calls += 1
        return obj


@pytest.mark.parametrize("policy", ["list", "keep", "off"])
@pytest.mark.parametrize("streaming", [True, False])
@anyio_mark
async def test_gc_freeze_hides_listed_objects_from_the_collector(
    env: Env, streaming: bool, policy: str, unfrozen: None
) -> None:
    """Lists freeze the objects they collect (paged and streaming), as the policy says.

    "list" and "keep" freeze after each page, so later pages are listed with
    the earlier ones frozen; "list" unfreezes everything once the list is done, "keep"
    leaves the cache frozen; "off" never freezes. Frozen objects still behave as cache
    entries: replaced, deleted, and indexed as before.
    """
    for i in range(1100):  # more than two pages, and two freezes of a streaming list
        env.create(f"w{i:04}", owner="o1" if i % 2 else "o2")
    probe = FreezeProbe()
    informer = env.informer(
        cache="objects",  # the policy is about the parsed dicts an objects cache keeps
        gc_freeze=policy,
        streaming_list=streaming,
        page_size=500,
        indexes={"owner": owners},
        transform=probe,
    )
    store = informer.store
    async with informer:
        await informer.wait_synced(timeout=10)
        assert len(store) == 1100
        # Objects of the first page came in with nothing frozen; those of the third page
        # with at least the first two pages frozen, unless the policy is "off".
        assert probe.calls == 1100
        assert probe.seen[:10] == [0] * 10
        assert all((n > 1000) is (policy != "off") for n in probe.seen[20:])
        tracked = {id(o) for o in gc.get_objects()}
        listed = store.list()
        hidden = sum(id(o) not in tracked for o in listed)
        keep = policy == "keep"
        assert hidden == (len(listed) if keep else 0)
        assert (gc.get_freeze_count() > len(listed)) is keep
        if not keep:
            assert gc.get_freeze_count() == 0
        view = View("default/end")
        informer.subscribe(view.apply)
        env.patch("w0001", size=7)
        env.delete("w0000")
        env.create("end")
        with anyio.fail_after(5):
            await view.done.wait()
        changed = store.get("default/w0001")
        assert changed is not None
        assert changed["spec"] == {"size": 7}
        assert "default/w0000" not in store
        assert len(store.by_index("owner", "uid-o1")) == 550
        assert len(store.by_index("owner", "uid-o2")) == 549


@anyio_mark
async def test_gc_freeze_list_unfreezes_when_the_list_is_cut_short(
    env: Env, unfrozen: None
) -> None:
    """A list that never completes (the informer is left mid-list) unfreezes what it froze."""
    for i in range(800):
        env.create(f"w{i:04}")
    env.server.faults.add(Fault.stall(30, after_events=600), verb="watch")
    probe = FreezeProbe()
    async with env.informer(
        streaming_list=True, transform=probe, gc_freeze="list", cache="objects"
    ):
        await until(lambda: probe.calls == 600)
        assert gc.get_freeze_count() > 500  # the first 500 objects (and everything else)
    assert gc.get_freeze_count() == 0


@anyio_mark
async def test_gc_freeze_list_leaves_a_process_freeze_alone(env: Env, unfrozen: None) -> None:
    """When the process froze objects itself, "list" neither freezes more nor unfreezes."""
    for i in range(1100):
        env.create(f"w{i:04}")
    gc.freeze()
    frozen = gc.get_freeze_count()
    probe = FreezeProbe()
    informer = env.informer(
        streaming_list=False, page_size=500, transform=probe, gc_freeze="list", cache="objects"
    )
    async with informer:
        await informer.wait_synced(timeout=10)
    # Frozen objects that die still leave the count; none is added, and none unfrozen.
    assert frozen // 2 < min(probe.seen) <= max(probe.seen) <= frozen
    assert frozen // 2 < gc.get_freeze_count() <= frozen


def test_gc_freeze_list_is_shared_by_concurrent_lists(unfrozen: None) -> None:
    """Lists running at once share one freeze: it ends with the last, unless one kept it."""
    for kept in (False, True):
        first = _gc.begin()
        _gc.freeze()
        second = _gc.begin()  # a second list joins
        _gc.end(first)  # the first ends: the second still runs
        assert gc.get_freeze_count() > 0
        if kept:
            _gc.keep()  # an informer with gc_freeze="keep" finished meanwhile
        _gc.freeze()
        _gc.end(second)
        assert (gc.get_freeze_count() > 0) is kept
        gc.unfreeze()
    gc.disable()
    try:
        token = _gc.begin()  # nothing to gain with the collector off: left alone
        _gc.freeze()
        assert gc.get_freeze_count() == 0
        _gc.end(token)
    finally:
        gc.enable()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (not on Windows)")
def test_gc_freeze_list_is_undone_in_a_child_forked_mid_list(unfrozen: None) -> None:
    """A child forked while a list holds the freeze unfreezes, and its own lists work.

    The parent's list never ends in the child, so the child must not wait for it; the
    parent's list, when it ends in the parent, unfreezes there as usual.
    """
    token = _gc.begin()
    _gc.freeze()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            report = [gc.get_freeze_count()]
            child = _gc.begin()
            _gc.freeze()
            report.append(gc.get_freeze_count())
            _gc.end(child)
            _gc.end(token)  # the parent's list, were it to end here: ignored
            report.append(gc.get_freeze_count())
            os.write(write, " ".join(map(str, report)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)
    at_fork, frozen_by_child, after_child_list = map(int, report.split())
    assert at_fork == 0
    assert frozen_by_child > 0
    assert after_child_list == 0
    assert gc.get_freeze_count() > 0  # the parent still lists
    _gc.end(token)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("policy", ["continue", "unsubscribe", "stop"])
@anyio_mark
async def test_direct_sync_callback_errors_follow_the_policy(env: Env, policy: str) -> None:
    """A caught-up sync callback that raises on a live change is handled by the policy.

    continue: it gets the next change; unsubscribe: it gets nothing more, the others go on;
    stop: the error comes out of ``async with informer``.
    """
    env.create("a")
    calls: list[str] = []
    reported: list[BaseException] = []
    good = View("default/after")

    def picky(event: Event) -> None:
        calls.append(event.key)
        if event.key == "default/boom":
            raise RuntimeError("boom")

    informer = env.informer(subscriber_errors=policy, on_error=lambda s, e: reported.append(e))
    sub = informer.subscribe(picky, name="picky")
    informer.subscribe(good.apply)

    async def body() -> None:
        async with informer:
            await informer.wait_synced(timeout=5)
            await until(lambda: calls == ["default/a"])  # caught up: called directly now
            env.create("boom")
            await until(lambda: len(reported) == 1)
            env.create("after")
            with anyio.fail_after(5):
                await good.done.wait()
            await until(lambda: policy != "continue" or len(calls) == 3)
            closed_while_running.append(sub.statistics().closed)

    closed_while_running: list[bool] = []
    if policy == "stop":
        with pytest.raises(RuntimeError, match="boom"), anyio.fail_after(5):
            await body()
        return
    await body()
    stats = sub.statistics()
    assert stats.errors == 1
    if policy == "continue":
        assert calls == ["default/a", "default/boom", "default/after"]
        assert closed_while_running == [False]
    else:
        assert calls == ["default/a", "default/boom"]
        assert closed_while_running == [True]
        assert isinstance(stats.last_error, RuntimeError)


@pytest.mark.parametrize("streaming", [True, False])
@anyio_mark
async def test_a_transform_that_reshapes_metadata_keys_lists_and_watch_alike(
    env: Env, streaming: bool
) -> None:
    """Objects are keyed as the cache keeps them, whether they came by list or by watch."""

    def slim(obj: dict[str, Any]) -> dict[str, Any]:  # drops the namespace, among others
        meta = obj["metadata"]
        return {
            "metadata": {"name": meta["name"], "resourceVersion": meta["resourceVersion"]},
            "spec": obj.get("spec"),
        }

    env.create("a")
    view = View("end")
    informer = env.informer(transform=slim, streaming_list=streaming)
    informer.subscribe(view.apply)
    async with informer:
        await informer.wait_synced(timeout=5)
        env.patch("a", size=1)
        env.create("end")
        with anyio.fail_after(5):
            await view.done.wait()
        assert sorted(informer.store.keys()) == ["a", "end"]
    assert [(str(e.type), e.key) for e in view.events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("ADDED", "end"),
    ]


@pytest.mark.parametrize("late", [True, False])
@anyio_mark
async def test_sync_callable_returning_an_awaitable_never_runs_concurrently(
    env: Env, late: bool
) -> None:
    """A plain function that hands back a running future is not called again before it ends.

    Whether its first event came from its buffer (a snapshot, the first list) or not.
    """
    env.create("a")
    active = 0
    overlaps = 0
    done: list[tuple[str, int]] = []
    gate = anyio.Event()  # holds the first call until both changes have arrived

    async def work(event: Event) -> None:
        nonlocal active, overlaps
        active += 1
        overlaps += active > 1
        await gate.wait()
        active -= 1
        done.append((str(event.type), event.object["spec"].get("size", -1)))

    def offload(event: Event) -> Any:
        return asyncio.ensure_future(work(event))

    informer = env.informer()
    if not late:
        informer.subscribe(offload)
    async with informer:
        await informer.wait_synced(timeout=5)
        if late:
            informer.subscribe(offload)
        await until(lambda: active == 1)  # the ADDED is being awaited by its task
        env.patch("a", size=1)
        env.patch("a", size=2)
        await informer.wait_for(env.server.resource_version, timeout=5)
        await anyio.wait_all_tasks_blocked()  # a second call, if any, has started by now
        gate.set()
        await until(lambda: len(done) == 3)
    assert overlaps == 0
    assert done == [("ADDED", -1), ("MODIFIED", 1), ("MODIFIED", 2)]


@pytest.mark.parametrize(("seed", "overflow"), seeded([(0, "wait"), (1, "coalesce"), (2, "wait")]))
@anyio_mark
async def test_random_changes_faults_and_subscribers_converge(
    tmp_path: Path, seed: int, overflow: Overflow
) -> None:
    """Random changes and watch faults, with subscribers coming and going, converge.

    Small buffers, late subscribers, subscribers added from inside a direct callback: every
    subscriber's view stays consistent at every event (View checks ``old`` and order) and
    ends equal to the server, as does the cache.
    """
    rnd = random.Random(seed)
    faults = [
        lambda: Fault.malformed_line(after_events=rnd.randrange(3)),
        lambda: Fault.expired_event(after_events=rnd.randrange(3)),
        lambda: Fault.end_after(rnd.randrange(4)),
    ]
    async with _env(tmp_path, bookmark_interval=0.01) as env:
        for i in range(5):
            env.create(f"w{i}")
        informer = env.informer(streaming_list=seed % 2 == 0, page_size=3)
        views: list[View] = []

        def add_view() -> None:
            view = View()
            views.append(view)
            informer.subscribe(view.apply, buffer_size=rnd.choice([1, 2, 64]), overflow=overflow)

        def spawner(event: Event) -> None:  # a direct callback that subscribes others
            if len(views) < 8 and rnd.random() < 0.05:
                add_view()

        add_view()
        informer.subscribe(spawner)
        async with informer:
            await informer.wait_synced(timeout=5)
            for step in range(200):
                name = f"w{rnd.randrange(10)}"
                if f"default/{name}" not in env.state():
                    env.create(name)
                elif rnd.random() < 0.25:
                    env.delete(name)
                else:
                    env.patch(name, size=step)
                if rnd.random() < 0.06:
                    env.server.faults.add(rnd.choice(faults)(), verb="watch")
                if rnd.random() < 0.04:
                    env.server.close_watches()  # faults act on the next watch request
                if rnd.random() < 0.03:
                    add_view()
                if rnd.random() < 0.3:
                    await anyio.sleep(rnd.random() * 0.005)
            await until(lambda: all(view.state() == env.state() for view in views), 20)
            assert cache_state(informer) == env.state()
            assert len(views) >= 3
            stats = informer.statistics()
            assert stats.watches > 3
            assert stats.relists > 0  # the faults were met, not dodged
