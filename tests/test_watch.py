"""End-to-end tests of ``crwatch.watch`` over real HTTP against ``FakeApiServer``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import crwatch
from _support import WidgetEnv, seeded, until, widget_cluster
from crwatch import Backoff, Event, EventType
from crwatch.testing import FakeApiServer, Fault

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")
FAST = Backoff(initial=0.01, maximum=0.05, max_retry_after=60)


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, "labels": {"tier": spec.pop("tier", "edge")}},
        "spec": spec,
    }


class Env(WidgetEnv):
    """A fake server with the widgets CRD, and a crwatch client for it."""

    def create(self, name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
        return self.server.create(self.rtype, widget(name, **spec), namespace=namespace)

    def watch(self, **options: Any) -> crwatch.Watch:
        options.setdefault("backoff", FAST)
        options.setdefault("namespace", "default")
        return crwatch.watch(self.client, WIDGETS, **options)


@contextlib.asynccontextmanager
async def _env(tmp_path: Path, **server_options: Any) -> AsyncIterator[Env]:
    async with widget_cluster(tmp_path, **server_options) as (server, rtype, client):
        yield Env(server, rtype, client)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with _env(tmp_path) as value:
        yield value


async def take(events: crwatch.EventStream, n: int, timeout: float = 5.0) -> list[Event]:
    got: list[Event] = []
    with anyio.fail_after(timeout):
        async for event in events:
            got.append(event)
            if len(got) == n:
                break
    return got


async def nothing_more(events: crwatch.EventStream, wait: float = 0.3) -> None:
    with anyio.move_on_after(wait):
        event = await events.__anext__()
        raise AssertionError(f"unexpected event {event}")


def summary(events: list[Event]) -> list[tuple[str, str]]:
    return [(str(e.type), e.key) for e in events]


# --- initial state and changes -------------------------------------------------------------


@pytest.mark.parametrize("streaming", [True, False])
async def test_initial_state_then_changes(env: Env, streaming: bool) -> None:
    """Initial objects arrive as ADDED, then live changes with ``old`` filled.

    Selector and namespace apply; by streaming list or by paginated list.
    """
    env.create("a", size=1)
    env.create("b", size=2)
    env.create("other-tier", tier="core")
    env.create("elsewhere", namespace="kube-public")
    async with env.watch(
        label_selector="tier=edge", streaming_list=streaming, page_size=1
    ) as events:
        initial = await take(events, 2)
        assert summary(initial) == [("ADDED", "default/a"), ("ADDED", "default/b")]
        assert initial[0].object["spec"] == {"size": 1}
        env.patch("a", size=5)
        env.delete("b")
        env.create("c")
        changes = await take(events, 3)
        assert summary(changes) == [
            ("MODIFIED", "default/a"),
            ("DELETED", "default/b"),
            ("ADDED", "default/c"),
        ]
        assert changes[0].old is not None
        assert changes[0].old["spec"] == {"size": 1}
        assert changes[0].object["spec"] == {"size": 5}
        assert not any(e.synthetic for e in changes)
        stats = events.statistics()
        assert stats.synced
        assert stats.lists == 1
        assert stats.resource_version == changes[-1].resource_version


async def test_streaming_list_needs_no_list_permission(env: Env) -> None:
    """The initial state comes from a streaming list where the server supports it.

    So the watch works even when the list verb is denied.
    """
    env.create("a")
    env.server.deny(verb="list")
    async with env.watch() as events:
        assert summary(await take(events, 1)) == [("ADDED", "default/a")]
        assert events.statistics().watches == 1


async def test_falls_back_to_paginated_list_without_watch_list(tmp_path: Path) -> None:
    """A server without streaming lists (422) gets a paginated list, then a watch."""
    async with _env(tmp_path, watch_list=False) as env:
        for i in range(5):
            env.create(f"w{i}")
        async with env.watch(page_size=2) as events:
            got = await take(events, 5)
            assert sorted(e.key for e in got) == [f"default/w{i}" for i in range(5)]
            env.create("late")
            assert summary(await take(events, 1)) == [("ADDED", "default/late")]
            stats = events.statistics()
            assert stats.lists == 1
            assert isinstance(stats.last_error, crwatch.InvalidError)


async def test_lists_freeze_their_pages_and_unfreeze_after(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default each list freezes the objects of every page, and unfreezes once complete.

    The first list and a relist (after a 410) alike: later pages are requested with the
    earlier ones frozen, and nothing is frozen once the consumer has the objects.
    """
    for i in range(6):
        env.create(f"w{i}")
    from crwatch._transport import Transport

    original = Transport.list_page
    frozen: list[int] = []  # how many objects were frozen as each page was requested

    async def list_page(self: Transport, *args: Any, **kwargs: Any) -> Any:
        frozen.append(gc.get_freeze_count())
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Transport, "list_page", list_page)
    gc.unfreeze()
    try:
        async with env.watch(
            streaming_list=False, page_size=2, gc_freeze="list", cache="objects"
        ) as events:
            await take(events, 6)
            assert len(frozen) == 3
            assert frozen[0] == 0
            assert all(n > 0 for n in frozen[1:])
            assert gc.get_freeze_count() == 0
            env.server.faults.add(Fault.expired(), verb="watch")
            env.server.close_watches()
            await until(lambda: events.statistics().lists == 2)
            assert len(frozen) == 6
            assert frozen[3] == 0
            assert all(n > 0 for n in frozen[4:])
            assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_a_list_that_fails_midway_unfreezes_before_it_starts_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page that fails after the first ends that list's freeze: the retry starts unfrozen.

    Otherwise the freeze would be held through the backoff, and every other list's
    unfreeze with it.
    """
    for i in range(6):
        env.create(f"w{i}")
    from crwatch._transport import Transport

    original = Transport.list_page
    frozen: list[int] = []

    async def list_page(self: Transport, *args: Any, **kwargs: Any) -> Any:
        frozen.append(gc.get_freeze_count())
        if len(frozen) == 2:
            env.server.faults.add(Fault.status(500), verb="list")  # the second page fails
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Transport, "list_page", list_page)
    gc.unfreeze()
    try:
        async with env.watch(
            streaming_list=False, page_size=2, gc_freeze="list", cache="objects"
        ) as events:
            got = await take(events, 6)
            assert sorted(e.key for e in got) == [f"default/w{i}" for i in range(6)]
            assert frozen[0] == 0
            assert frozen[1] > 0  # the page that failed
            assert frozen[2] == 0  # the list started again: the failed one's freeze undone
            assert all(n > 0 for n in frozen[3:])
            assert len(frozen) == 5
            assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_streaming_list_deadline_falls_back_to_paginated_list(env: Env) -> None:
    """A streaming list missing its end-bookmark deadline falls back to a paginated list.

    Each object is still delivered once.
    """
    for name in "abc":
        env.create(name)
    stall = env.server.faults.add(Fault.stall(30, after_events=1), verb="watch")
    async with env.watch(initial_list_deadline=0.3, stall_timeout=10) as events:
        got = await take(events, 3)
        assert sorted(e.key for e in got) == ["default/a", "default/b", "default/c"]
        assert stall.fired == 1
        await nothing_more(events, 0.2)
        assert events.statistics().lists == 1


async def test_expired_continue_token_falls_back_to_one_full_list(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 410 on a page after the first restarts with one unpaginated list.

    The continue token is compacted away; the consumer sees each object once.
    """
    for i in range(4):
        env.create(f"w{i}")
    from crwatch._transport import Transport

    original = Transport.list_page
    limits: list[int | None] = []

    async def list_page(self: Transport, *args: Any, **kwargs: Any) -> Any:
        limits.append(kwargs["limit"])
        result = await original(self, *args, **kwargs)
        if len(limits) == 1:
            # Workaround: FakeApiServer's faults cannot target only follow-up pages, so
            # expire the token by compacting between the first and second page.
            env.create("between")
            env.server.compact()
        return result

    monkeypatch.setattr(Transport, "list_page", list_page)
    async with env.watch(streaming_list=False, page_size=2) as events:
        got = await take(events, 5)
        assert sorted(e.key for e in got) == sorted(
            [f"default/w{i}" for i in range(4)] + ["default/between"]
        )
        assert limits == [2, 2, None]
        assert isinstance(events.statistics().last_error, crwatch.ExpiredError)


# --- resuming: clean close, stall, 410 --------------------------------------------------------


async def test_clean_close_rewatches_from_last_rv_including_bookmarks(tmp_path: Path) -> None:
    """When the server ends a watch, the next one starts at once from the last RV.

    Here that RV came from a bookmark only.
    """
    async with _env(tmp_path, bookmark_interval=0.05) as env:
        env.create("a")
        async with env.watch(streaming_list=False, watch_timeout=(1, 1)) as events:
            await take(events, 1)
            # Move the global RV with no event for us. Workaround: a change of another
            # *namespace* of the same resource does not do it, because the fake counts the
            # filtered event as sent and never bookmarks its RV; another resource does.
            gadgets = env.server.register_crd(
                group="example.com", version="v1", plural="gadgets", kind="Gadget"
            )
            env.server.create(gadgets, {"metadata": {"name": "g"}}, namespace="default")
            target = str(env.server.resource_version)
            await until(lambda: events.statistics().resource_version == target, 3)
            rewatch = env.server.faults.add(Fault.end_after(10**6), verb="watch")
            await until(lambda: rewatch.fired, 3)
            assert f"resourceVersion={target}" in rewatch.firings[0].query
            env.patch("a", size=2)
            assert summary(await take(events, 1)) == [("MODIFIED", "default/a")]
            assert events.statistics().errors == 0


async def test_stalled_watch_resumes_without_loss_or_duplicates(env: Env) -> None:
    """A silent watch is dropped after stall_timeout and resumed from the last RV.

    Every change arrives exactly once.
    """
    env.create("a")
    stall = env.server.faults.add(Fault.stall(30, after_events=1), verb="watch")
    async with env.watch(streaming_list=False, stall_timeout=0.3) as events:
        await take(events, 1)
        env.patch("a", size=1)  # line 0 of the first watch: delivered
        env.patch("a", size=2)  # the server stalls before this one
        env.create("b")
        got = await take(events, 3)
        assert summary(got) == [
            ("MODIFIED", "default/a"),
            ("MODIFIED", "default/a"),
            ("ADDED", "default/b"),
        ]
        assert [e.object["spec"].get("size") for e in got[:2]] == [1, 2]
        await nothing_more(events, 0.2)
        stats = events.statistics()
        assert stats.stalls == 1
        assert stall.fired == 1
        assert isinstance(stats.last_error, crwatch.StallTimeout)


@pytest.mark.parametrize("how", ["error-event", "http-410"])
async def test_relist_after_410_emits_only_differences(env: Env, how: str) -> None:
    """After 410 (ERROR event or HTTP 410) the relist emits only the differences.

    ADDED, MODIFIED, synthetic DELETED (with the last known state); nothing for unchanged
    objects.
    """
    for name in ("keep", "change", "gone"):
        env.create(name, size=0)
    env.server.faults.add(Fault.stall(30, after_events=1), verb="watch")
    async with env.watch(streaming_list=False, stall_timeout=0.3) as events:
        assert len(await take(events, 3)) == 3
        env.patch("keep", size=1)  # line 0 of the watch: delivered live
        live = await take(events, 1)
        assert summary(live) == [("MODIFIED", "default/keep")]
        env.patch("change", size=2)  # from here on the watch is stalled
        env.delete("gone")
        env.create("new")
        if how == "error-event":
            env.server.compact()  # the resumed watch gets an ERROR 410 event
        else:
            env.server.faults.add(Fault.expired(), verb="watch")
        relisted = await take(events, 3)
        assert sorted((str(e.type), e.key, e.synthetic) for e in relisted) == [
            ("ADDED", "default/new", False),
            ("DELETED", "default/gone", True),
            ("MODIFIED", "default/change", False),
        ]
        deleted = next(e for e in relisted if e.type is EventType.DELETED)
        assert deleted.object["spec"] == {"size": 0}  # the last state we knew
        await nothing_more(events, 0.2)
        assert events.statistics().lists == 2
        env.create("after")
        assert summary(await take(events, 1)) == [("ADDED", "default/after")]


async def test_relist_after_410_uses_the_streaming_list_again(env: Env) -> None:
    """After a 410 a server with streaming lists is relisted by streaming list, quietly.

    Only the differences reach the consumer, and the new stream goes on as the watch.
    """
    env.create("a")
    env.create("b")
    # First request: 2 ADDED + end bookmark + 1 live event, then a clean end.
    env.server.faults.add(Fault.end_after(4), verb="watch")
    expired = env.server.faults.add(Fault.expired(), verb="watch")
    async with env.watch() as events:
        assert len(await take(events, 2)) == 2
        env.patch("a", size=1)
        assert summary(await take(events, 1)) == [("MODIFIED", "default/a")]
        env.patch("b", size=2)  # not sent: the first stream ends before it
        env.create("c")
        env.delete("a")
        relisted = await take(events, 3)
        assert sorted((str(e.type), e.key, e.synthetic) for e in relisted) == [
            ("ADDED", "default/c", False),
            ("DELETED", "default/a", True),
            ("MODIFIED", "default/b", False),
        ]
        assert expired.fired == 1
        env.create("d")
        assert summary(await take(events, 1)) == [("ADDED", "default/d")]
        stats = events.statistics()
        assert (stats.lists, stats.watches) == (2, 3)


@pytest.mark.parametrize("fault", [Fault.stall(30), Fault.reset(), Fault.status(500)])
async def test_failure_before_the_response_is_retried(env: Env, fault: Fault) -> None:
    """No response headers within stall_timeout, a reset connection or a 500: retried."""
    env.create("a")
    # aiohttp itself retries an idempotent request once when the connection is reset, so
    # a reset has to happen twice to reach crwatch.
    times = 2 if fault.action == "reset" else 1
    rule = env.server.faults.add(fault, verb="watch", times=times)
    async with env.watch(stall_timeout=0.3) as events:
        assert summary(await take(events, 1)) == [("ADDED", "default/a")]
        assert rule.fired == times
        stats = events.statistics()
        assert stats.errors == 1
        expected = {
            "stall": crwatch.StallTimeout,
            "reset": crwatch.TransportError,
            "status": crwatch.ServerError,
        }[fault.action]
        assert isinstance(stats.last_error, expected)


async def test_error_event_410_mid_stream_relists(env: Env) -> None:
    """An ERROR 410 event in the middle of a watch leads to a relist and a quiet resync."""
    env.create("a")
    env.server.faults.add(Fault.expired_event(after_events=1), verb="watch")
    async with env.watch(streaming_list=False) as events:
        await take(events, 1)
        env.patch("a", size=1)
        env.patch("a", size=2)  # replaced by the ERROR event; arrives through the relist
        got = await take(events, 2)
        assert [e.object["spec"]["size"] for e in got] == [1, 2]
        assert events.statistics().lists == 2


# --- backoff and Retry-After -----------------------------------------------------------------


async def test_retry_after_on_429_is_honoured(env: Env) -> None:
    """A 429 with Retry-After: 1 delays the retry by a second, not the tiny backoff."""
    throttle = env.server.faults.add(Fault.status(429, retry_after=1), verb="watch")
    retry = env.server.faults.add(Fault.end_after(10**6), verb="watch")
    env.create("a")
    async with env.watch(streaming_list=False) as events:
        await take(events, 1)
        await until(lambda: retry.fired, 5)
        gap = retry.firings[0].at - throttle.firings[0].at
        assert 1.0 <= gap < 2.0
        error = events.statistics().last_error
        assert isinstance(error, crwatch.TooManyRequestsError)
        assert error.retry_after == 1.0


async def test_retry_after_on_503_is_capped_by_backoff_option(env: Env) -> None:
    """503 with Retry-After is read, and capped by Backoff.max_retry_after."""
    unavailable = env.server.faults.add(Fault.status(503, retry_after=30), verb="list")
    env.create("a")
    backoff = Backoff(initial=0.01, maximum=0.05, max_retry_after=0.2)
    start = time.time()
    async with env.watch(streaming_list=False, backoff=backoff) as events:
        await take(events, 1)
        elapsed = time.time() - start
        assert unavailable.fired == 1
        assert 0.2 <= elapsed < 5
        error = events.statistics().last_error
        assert isinstance(error, crwatch.ServerError)
        assert error.retry_after == 30.0


async def test_outage_backs_off_and_recovers(env: Env) -> None:
    """Repeated 500s are retried within the backoff bounds; the watch then recovers."""
    failing = env.server.faults.add(Fault.status(500), verb="list", times=4)
    env.create("a")
    backoff = Backoff(initial=0.02, maximum=0.2)
    async with env.watch(streaming_list=False, backoff=backoff, seed=7) as events:
        await take(events, 1)
    at = [f.at for f in failing.firings]
    assert len(at) == 4
    # Full jitter makes single gaps random; the total is bounded by the caps' sum.
    assert at[-1] - at[0] <= 0.02 + 0.04 + 0.08 + 0.5


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("verb", "streaming"), [("watch", True), ("list", False)])
async def test_forbidden_raises_naming_verb_and_resource(
    env: Env, verb: str, streaming: bool
) -> None:
    """403 ends the stream with ForbiddenError naming the verb and the resource."""
    env.server.deny(verb=verb, resource="widgets")
    async with env.watch(streaming_list=streaming) as events:
        with pytest.raises(crwatch.ForbiddenError) as info, anyio.fail_after(5):
            await events.__anext__()
    assert info.value.verb == verb
    assert info.value.resource == "widgets.v1.example.com"
    assert f"{verb} widgets.v1.example.com" in str(info.value)


async def test_forbidden_with_retry_policy_recovers(env: Env) -> None:
    """With on_auth_error="retry" a 403 is retried slowly until RBAC allows the watch."""
    env.create("a")
    rule = env.server.deny(verb="watch")
    async with env.watch(on_auth_error="retry", backoff=FAST) as events:
        await until(lambda: not (events.statistics().errors < 2), 5)
        rule.remove()
        assert summary(await take(events, 1)) == [("ADDED", "default/a")]
        assert isinstance(events.statistics().last_error, crwatch.ForbiddenError)


async def test_unknown_resource_raises_not_found(env: Env) -> None:
    """A resource the server does not serve raises NotFoundError (plain-text 404 body)."""
    gadgets = crwatch.Resource("example.com", "v1", "gadgets")
    async with crwatch.watch(env.client, gadgets, streaming_list=False) as events:
        with pytest.raises(crwatch.NotFoundError) as info, anyio.fail_after(5):
            await events.__anext__()
    assert info.value.verb == "list"
    assert "404 page not found" in str(info.value)


async def test_bad_token_raises_unauthorized(tmp_path: Path) -> None:
    """A wrong bearer token raises UnauthorizedError; the right one works."""
    async with FakeApiServer(token="s3cret-token") as server:
        server.register_crd(group="example.com", version="v1", plural="widgets", kind="Widget")
        good = server.kubeconfig(tmp_path / "good")
        bad = tmp_path / "bad"
        bad.write_text(good.read_text().replace("s3cret-token", "wrong"))
        async with (
            crwatch.Client.from_kubeconfig(bad) as client,
            crwatch.watch(client, WIDGETS) as events,
        ):
            with pytest.raises(crwatch.UnauthorizedError), anyio.fail_after(5):
                await events.__anext__()
        async with crwatch.Client.from_kubeconfig(good) as client:
            assert "s3cret" not in repr(client)
            async with crwatch.watch(client, WIDGETS) as events:
                await nothing_more(events, 0.2)
                assert events.statistics().synced


# --- framing -------------------------------------------------------------------------------------


async def test_huge_objects_arrive_intact(env: Env) -> None:
    """3 MiB objects pass through list, streaming list and watch intact."""
    size = 3 * 1024 * 1024
    env.create("big", blob="x" * size)
    for streaming, before, after in ((True, "x", "y"), (False, "y", "z")):
        async with env.watch(streaming_list=streaming) as events:
            (added,) = await take(events, 1)
            assert added.object["spec"]["blob"] == before * size
            env.patch("big", blob=after * size)
            (changed,) = await take(events, 1)
            assert changed.object["spec"]["blob"] == after * size


async def test_oversize_event_is_skipped_and_counted(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """An event over max_event_bytes is skipped (logged, counted); the stream goes on."""
    env.create("a")
    async with env.watch(streaming_list=False, max_event_bytes=64 * 1024) as events:
        await take(events, 1)
        with caplog.at_level(logging.WARNING, logger="crwatch"):
            env.patch("a", blob="z" * 100_000)
            env.create("b")
            assert summary(await take(events, 1)) == [("ADDED", "default/b")]
        assert events.statistics().oversized_events == 1
        assert "max_event_bytes" in caplog.text


async def test_malformed_line_is_skipped_and_reported(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A line that is not JSON is logged with its first bytes and counted.

    The events around it arrive.
    """
    env.create("a")
    env.server.faults.add(Fault.malformed_line(after_events=1), verb="watch")
    async with env.watch(streaming_list=False) as events:
        await take(events, 1)
        with caplog.at_level(logging.WARNING, logger="crwatch"):
            env.patch("a", size=1)
            env.patch("a", size=2)
            got = await take(events, 2)
        assert [e.object["spec"]["size"] for e in got] == [1, 2]
        assert events.statistics().malformed_lines == 1
        assert "this is not json" in caplog.text


@pytest.mark.parametrize("streaming", [True, False])
async def test_change_lost_to_a_skipped_line_is_recovered_by_a_relist(
    env: Env, streaming: bool
) -> None:
    """Regression: a skipped over-size event left its object stale until it changed again.

    The skip now schedules a relist (after a backoff) whose quiet difference brings the
    consumer's view back to the server's state; the events around it arrive.
    """
    env.create("a")
    env.create("b")
    env.create("c")
    view: dict[str, dict[str, Any]] = {}

    def see(events: list[Event]) -> None:
        for event in events:
            if event.type is EventType.DELETED:
                view.pop(event.key)
            else:
                view[event.key] = event.object

    options: dict[str, Any] = {"streaming_list": streaming, "max_event_bytes": 64 * 1024}
    async with env.watch(**options) as events:
        see(await take(events, 3))
        env.patch("a", blob="z" * 100_000)  # lost: over max_event_bytes on the watch
        env.patch("b", size=1)
        env.delete("c")
        # b's change and c's deletion as they happen, then the relist's MODIFIED a.
        got = await take(events, 3)
        see(got)
        assert summary(got) == [
            ("MODIFIED", "default/b"),
            ("DELETED", "default/c"),
            ("MODIFIED", "default/a"),
        ]
        assert not any(e.synthetic for e in got)
        await nothing_more(events, 0.2)
        assert view == {
            f"default/{o['metadata']['name']}": o
            for o in env.server.list(env.rtype, namespace="default")
        }
        stats = events.statistics()
        # With streaming lists, the relist's snapshot carries the over-size object too: it
        # is skipped again, and the watch falls back to a paginated list (no line limit).
        assert stats.oversized_events == (2 if streaming else 1)
        assert stats.lists == 2


async def test_skipped_lines_relist_with_backoff(env: Env) -> None:
    """A proxy that corrupts a line in every watch cannot cause a relist loop.

    Each relist a skip causes doubles the next one's backoff cap.
    """
    env.create("a")
    for _ in range(20):
        env.server.faults.add(Fault.malformed_line(after_events=0), verb="watch")
    backoff = Backoff(initial=0.05, maximum=0.4)
    async with env.watch(streaming_list=False, backoff=backoff, seed=7) as events:
        await take(events, 1)
        with anyio.move_on_after(0.6):
            await events.__anext__()
        stats = events.statistics()
        # With a 1 ms backoff all 20 corrupted watches relist within 0.6 s (21 lists,
        # measured); the growing caps (0.05, 0.1, 0.2, 0.4, 0.4 s, full jitter, seeded)
        # leave room for a handful.
        assert 2 <= stats.lists <= 12
        assert stats.malformed_lines >= stats.lists - 1


async def test_slow_consumer_holds_back_the_reading_within_buffer_size(env: Env) -> None:
    """Backpressure: at most buffer_size events wait for a slow consumer, none lost.

    Regression: the core's bursts once counted events since its last yield, not what was
    still buffered, and a slow consumer's buffer grew past buffer_size.
    """
    for i in range(30):
        env.create(f"o{i}")
    async with env.watch(streaming_list=False, buffer_size=3) as events:
        depths = []
        got = []
        for _ in range(30):
            got += await take(events, 1)
            depths.append(events._lane.depth)
            await anyio.sleep(0.001)
        for i in range(30):
            env.patch(f"o{i}", size=1)
        for _ in range(30):
            got += await take(events, 1)
            depths.append(events._lane.depth)
            await anyio.sleep(0.001)
    assert max(depths) <= 3
    assert [e.key for e in got[30:]] == [f"default/o{i}" for i in range(30)]
    assert all(e.type is EventType.MODIFIED for e in got[30:])


async def test_truncated_line_is_redelivered_by_the_rewatch(env: Env) -> None:
    """A stream cut mid-event reports the partial line and the re-watch delivers it."""
    env.create("a")
    env.server.faults.add(Fault.truncated_line(after_events=1), verb="watch")
    async with env.watch(streaming_list=False) as events:
        await take(events, 1)
        env.patch("a", size=1)
        env.patch("a", size=2)
        got = await take(events, 2)
        assert [e.object["spec"]["size"] for e in got] == [1, 2]
        await nothing_more(events, 0.2)
        stats = events.statistics()
        assert stats.malformed_lines == 1
        assert stats.lists == 1  # the re-watch recovers the event: no relist needed


# --- lifecycle -----------------------------------------------------------------------------------


async def test_exit_mid_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    """Leaving the async with mid-stream ends the task and closes the connection.

    No task, no server-side watch, no ResourceWarning is left.
    """
    async with _env(tmp_path) as env:
        env.create("a")
        async with env.watch() as events:
            await take(events, 1)
            assert env.server.statistics().open_watches == 1
            assert any(t.get_name().startswith("crwatch") for t in asyncio.all_tasks())
        assert not any(t.get_name().startswith("crwatch") for t in asyncio.all_tasks())
        await until(lambda: env.server.statistics().open_watches == 0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_cancellation_propagates_and_closes(env: Env) -> None:
    """Cancelling the consumer cancels the watch; cancellation is not swallowed."""
    env.create("a")
    with anyio.move_on_after(0.3) as scope:
        async with env.watch() as events:
            async for _ in events:
                pass
    assert scope.cancelled_caught
    assert not any(t.get_name().startswith("crwatch") for t in asyncio.all_tasks())


async def test_consumer_errors_propagate_unwrapped(env: Env) -> None:
    """An exception raised in the async with body comes out as itself, not in a group."""
    env.create("a")

    async def consume() -> None:
        async with env.watch() as events:
            async for _ in events:
                1 / 0  # noqa: B018

    with pytest.raises(ZeroDivisionError):
        await consume()


async def test_borrowed_api_client_is_left_open(env: Env) -> None:
    """A Client wrapping a user's ApiClient never closes it."""
    borrowed = crwatch.Client(env.client.api_client)
    env.create("a")
    async with borrowed, crwatch.watch(borrowed, WIDGETS, namespace="default") as events:
        await take(events, 1)
    assert not env.client.api_client.rest_client.pool_manager.closed
    assert "borrowed" in repr(borrowed)


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"stall_timeout": 0},
        {"stall_timeout": float("nan")},
        {"initial_list_deadline": -1},
        {"page_size": 0},
        {"page_size": True},
        {"max_event_bytes": 10},
        {"on_auth_error": "ignore"},
        {"streaming_list": "yes"},
        {"backoff": 3},
        {"namespace": ""},
        {"label_selector": 5},
        {"buffer_size": -1},
        {"watch_timeout": (10, 5)},
        {"seed": "x"},
        {"gc_freeze": 1},
    ],
)
async def test_invalid_options_raise_at_call_time(env: Env, options: dict[str, Any]) -> None:
    """Bad options raise InvalidOptionError when watch() is called, before any iteration."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.watch(env.client, WIDGETS, **options)


async def test_iterating_without_async_with_explains_itself(env: Env) -> None:
    """Forgetting the async with gives a TypeError that shows the right form."""
    with pytest.raises(TypeError, match="async with"):
        async for _ in env.watch():
            pass


async def test_resource_as_text_and_bad_client() -> None:
    """The resource may be given as text; the client must be a crwatch.Client."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.watch(object(), "widgets.v1.example.com")  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.watch(crwatch.Client.from_incluster(), "widgets.v1.example.com")


async def test_cancelled_waits_and_a_paused_consumer_lose_nothing(env: Env) -> None:
    """The consumer drives the per-event work; timing out its waits changes nothing.

    Many ``__anext__`` calls cancelled while nothing arrives, then a burst of changes made
    while the consumer does not iterate: every change comes once, in order, and the watch
    request is the same one throughout.
    """
    env.create("a")
    async with env.watch(streaming_list=False) as events:
        assert summary(await take(events, 1)) == [("ADDED", "default/a")]
        for _ in range(20):
            await nothing_more(events, 0.01)
        for i in range(50):
            env.patch("a", size=i)
        env.create("b")
        got = await take(events, 51)
        assert summary(got) == [("MODIFIED", "default/a")] * 50 + [("ADDED", "default/b")]
        assert [e.object["spec"]["size"] for e in got[:50]] == list(range(50))
        assert [e.old["spec"]["size"] for e in got[1:50] if e.old] == list(range(49))
        stats = events.statistics()
        assert (stats.watches, stats.errors, stats.events) == (1, 0, 52)
        assert stats.resource_version == got[-1].resource_version


async def test_consumer_frames_bytes_that_arrived_while_it_was_busy(env: Env) -> None:
    """Changes received while the consumer holds an event are framed by the consumer itself.

    They come in order, once each, on the same watch request, with ``old`` chained.
    """
    env.create("a")
    async with env.watch(streaming_list=False) as events:
        assert summary(await take(events, 1)) == [("ADDED", "default/a")]
        for i in range(10):
            env.patch("a", size=i)
        first = await take(events, 1)  # the loop parks with nine lines still to use
        for i in range(10, 20):
            env.patch("a", size=i)
        # The server has sent them all; with every task parked, the loop has read them into
        # the client's buffer, and nothing has framed them yet.
        await env.server.wait_flushed()
        await anyio.wait_all_tasks_blocked()
        rest = await take(events, 19)
        got = first + rest
        assert [e.object["spec"]["size"] for e in got] == list(range(20))
        assert all(e.old is not None for e in got)
        assert [e.old["spec"].get("size") for e in got[1:] if e.old] == list(range(19))
        stats = events.statistics()
        assert (stats.watches, stats.errors) == (1, 0)


@pytest.mark.parametrize(("seed", "buffer_size"), seeded([(0, 0), (1, 3), (2, 128), (3, 128)]))
async def test_random_changes_faults_and_a_fickle_consumer_converge(
    tmp_path: Path, seed: int, buffer_size: int
) -> None:
    """Random changes and watch faults, and a consumer that times out or pauses, converge.

    Frequent bookmarks; the consumer sometimes cancels its ``__anext__`` at once or sleeps.
    The consumer's view stays consistent at every event (``old`` is what it last saw,
    resourceVersions never go back, no ADDED for a known key) and ends equal to the server.
    """
    rnd = random.Random(seed)
    faults = [
        lambda: Fault.malformed_line(after_events=rnd.randrange(3)),
        lambda: Fault.expired_event(after_events=rnd.randrange(3)),
        lambda: Fault.truncated_line(after_events=rnd.randrange(3)),
        lambda: Fault.end_after(rnd.randrange(4)),
    ]
    seen: dict[str, Event] = {}
    added: list[Any] = []

    def apply(event: Event) -> None:
        last = seen.get(event.key)
        if event.type is EventType.ADDED:
            assert last is None or last.type is EventType.DELETED, event
        else:
            assert last is not None, event
            assert last.type is not EventType.DELETED, event
            assert event.old is not None
            assert event.old["metadata"] == last.object["metadata"]
            assert int(event.resource_version) >= int(last.resource_version)
        seen[event.key] = event

    def view() -> dict[str, str]:
        return {k: e.resource_version for k, e in seen.items() if e.type is not EventType.DELETED}

    async with _env(tmp_path, bookmark_interval=0.01) as env:
        for i in range(5):
            env.create(f"w{i}")
        watch = env.watch(buffer_size=buffer_size, streaming_list=seed % 2 == 0, page_size=3)
        async with watch as events:

            async def consume() -> None:
                while True:
                    roll = rnd.random()
                    if roll < 0.1:
                        with anyio.move_on_after(0):
                            apply(await events.__anext__())
                        continue
                    if roll < 0.15:
                        await anyio.sleep(rnd.random() * 0.01)
                    apply(await events.__anext__())

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                for step in range(200):
                    name = f"w{rnd.randrange(10)}"
                    if f"default/{name}" not in env.state():
                        env.create(name)
                    elif rnd.random() < 0.25:
                        env.delete(name)
                    else:
                        env.patch(name, size=step)
                    if rnd.random() < 0.06:
                        added.append(env.server.faults.add(rnd.choice(faults)(), verb="watch"))
                    if rnd.random() < 0.04:
                        # Faults act on the next watch request: end the open one.
                        env.server.close_watches()
                    elif rnd.random() < 0.01:
                        env.server.compact()  # a resume from an old RV meets 410
                    if rnd.random() < 0.3:
                        await anyio.sleep(rnd.random() * 0.005)
                await until(lambda: view() == env.state(), 20)
                tg.cancel_scope.cancel()
        stats = events.statistics()
        assert sum(fault.fired for fault in added) >= 3
        assert stats.watches > 3
        assert stats.errors + stats.malformed_lines > 0  # the faults were met, not dodged


@pytest.mark.parametrize("progress", [False, True])
async def test_a_410_is_logged_once_at_info_with_its_context(
    env: Env, progress: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A routine 410 is one INFO line, whether relisted at once or after a backoff.

    It used to be an INFO "relisting" and then a WARNING "retrying in ..." for the same
    error. The record carries ``extra=`` fields (resource, namespace, reason, attempt) for
    structured log processors.
    """
    env.create("a")
    if progress:  # the first stream delivers (initial events + bookmark + one change)
        env.server.faults.add(Fault.end_after(3), verb="watch")
    expired = env.server.faults.add(Fault.expired(), verb="watch")
    caplog.set_level(logging.DEBUG, logger="crwatch")
    async with env.watch() as events:
        assert len(await take(events, 1)) == 1
        if progress:
            env.patch("a", size=1)
        env.create("b")
        got = await take(events, 2 if progress else 1)
        assert got[-1].key == "default/b"
        assert expired.fired == 1
    about_410 = [
        r for r in caplog.records if "Expired" in r.getMessage() or "410" in r.getMessage()
    ]
    assert len(about_410) == 1, [r.getMessage() for r in about_410]
    (record,) = about_410
    assert record.levelno == logging.INFO
    assert "relisting" in record.getMessage()
    assert record.__dict__["resource"] == str(WIDGETS)
    assert record.__dict__["namespace"] == "default"
    assert record.__dict__["reason"] == "ExpiredError"
    assert isinstance(record.__dict__["attempt"], int)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
