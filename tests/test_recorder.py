"""Tests of ``crwatch.EventRecorder``: core/v1 Events written over HTTP to FakeApiServer.

Aggregation windows and the spam filter's refill run on a ManualClock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch
from crwatch._recorder import TokenBucket
from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

EVENTS_REF = ("", "v1", "events")


class Env:
    def __init__(self, server: FakeApiServer, client: crwatch.Client, widget: dict[str, Any]):
        self.server = server
        self.client = client
        self.widget = widget
        self.clock = crwatch.ManualClock()

    def recorder(self, **options: Any) -> crwatch.EventRecorder:
        options.setdefault("clock", self.clock)
        return crwatch.EventRecorder(
            self.client, component="widgets-controller", host="node-1", **options
        )

    def events(self, namespace: str | None = "default") -> list[dict[str, Any]]:
        return self.server.list(EVENTS_REF, namespace=namespace)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with FakeApiServer() as server:
        rtype = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        widget = server.create(
            rtype, {"metadata": {"name": "w1", "namespace": "default"}, "spec": {}}
        )
        async with crwatch.Client.from_kubeconfig(server.kubeconfig(tmp_path / "kc")) as client:
            yield Env(server, client, widget)


async def test_an_event_carries_the_object_reference_and_source(env: Env) -> None:
    """One record() writes one Event: involvedObject, reason, message, type, source, count 1."""
    async with env.recorder() as recorder:
        recorder.record(env.widget, "Synced", "created 2 config maps", action="Reconcile")
        await recorder.flush()
    [event] = env.events()
    meta = env.widget["metadata"]
    assert event["involvedObject"] == {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "name": "w1",
        "namespace": "default",
        "uid": meta["uid"],
        "resourceVersion": meta["resourceVersion"],
    }
    assert event["metadata"]["name"].startswith("w1.")
    assert (event["reason"], event["message"], event["type"]) == (
        "Synced",
        "created 2 config maps",
        "Normal",
    )
    assert event["source"] == {"component": "widgets-controller", "host": "node-1"}
    assert event["action"] == "Reconcile"
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"]
    assert recorder.statistics().created == 1


async def test_repeats_within_the_window_bump_the_count(env: Env) -> None:
    """The same event three times is one Event with count 3; another message is another Event."""
    async with env.recorder() as recorder:
        for _ in range(3):
            recorder.record(env.widget, "Synced", "all good")
            env.clock.advance(10)
        recorder.record(env.widget, "Synced", "something else")
        await recorder.flush()
        stats = recorder.statistics()
    events = sorted(env.events(), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in events] == [("all good", 3), ("something else", 1)]
    assert (stats.created, stats.aggregated) == (2, 2)


async def test_a_repeat_after_the_window_is_a_new_event(env: Env) -> None:
    """After aggregation_window has passed, the same event creates a new Event object."""
    async with env.recorder(aggregation_window=600) as recorder:
        recorder.record(env.widget, "Synced", "all good")
        await recorder.flush()
        env.clock.advance(601)
        recorder.record(env.widget, "Synced", "all good")
        await recorder.flush()
    assert sorted(e["count"] for e in env.events()) == [1, 1]


async def test_the_spam_filter_drops_over_the_burst_then_refills(env: Env) -> None:
    """With client-go's defaults 25 pass at once, the rest are throttled; 300 s later one more."""
    async with env.recorder() as recorder:
        for _ in range(30):
            recorder.record(env.widget, "Failing", "still failing", type="Warning")
        await recorder.flush()
        assert recorder.statistics().throttled == 5
        [event] = env.events()
        assert event["count"] == 25
        env.clock.advance(300)
        recorder.record(env.widget, "Failing", "still failing", type="Warning")
        recorder.record(env.widget, "Failing", "still failing", type="Warning")
        await recorder.flush()
    [event] = env.events()
    assert event["count"] == 26
    assert recorder.statistics().throttled == 6


async def test_record_never_blocks_and_a_full_buffer_drops(env: Env) -> None:
    """record() before the drain runs fills the buffer; the rest is dropped and counted."""
    recorder = env.recorder(buffer_size=2)
    for i in range(5):
        recorder.record(env.widget, "Synced", f"message {i}")
    assert recorder.statistics().dropped == 3
    assert recorder.statistics().pending == 2
    async with recorder:
        await recorder.flush()
    assert len(env.events()) == 2
    # After the block, record() still neither blocks nor raises: the event is dropped.
    recorder.record(env.widget, "Synced", "late")
    assert recorder.statistics().dropped == 4


async def test_failures_are_counted_and_logged_once_per_interval(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused writes never raise: each is counted, and logged at most once per interval."""
    env.server.deny(verb="create", resource="events")
    with caplog.at_level(logging.WARNING, logger="crwatch.events"):
        async with env.recorder(error_log_interval=60) as recorder:
            for i in range(4):
                recorder.record(env.widget, "Synced", f"message {i}")
            await recorder.flush()
            env.clock.advance(60)
            recorder.record(env.widget, "Synced", "after the interval")
            await recorder.flush()
    stats = recorder.statistics()
    assert stats.failed == 5
    assert isinstance(stats.last_error, crwatch.ForbiddenError)
    assert len([r for r in caplog.records if "writing an event failed" in r.message]) == 2


async def test_bad_input_is_counted_not_raised(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """A bad type, reason or object is logged and counted as invalid; nothing is written."""
    async with env.recorder() as recorder:
        recorder.record(env.widget, "Synced", "x", type="Bogus")
        recorder.record(env.widget, "", "x")
        recorder.record({"spec": {}}, "Synced", "x")
        recorder.record("w1", "Synced", "x")  # type: ignore[arg-type]
        await recorder.flush()
    assert recorder.statistics().invalid == 4
    assert env.events() == []


async def test_a_cluster_scoped_object_gets_its_events_in_default(env: Env) -> None:
    """Events about a cluster-scoped object live in the default namespace, as client-go does."""
    node = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops", "uid": "u-1"}}
    async with env.recorder() as recorder:
        recorder.record(node, "Seen", "a namespace")
        await recorder.flush()
    [event] = env.events("default")
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "name": "ops",
        "uid": "u-1",
    }


def test_bad_options_are_refused() -> None:
    """Options are checked when the recorder is made."""
    for options in (
        {"component": ""},
        {"component": "c", "buffer_size": 0},
        {"component": "c", "refill_per_second": -1},
    ):
        with pytest.raises(crwatch.InvalidOptionError):
            crwatch.EventRecorder(object(), **options)  # type: ignore[arg-type]


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=60))
def test_token_bucket_never_exceeds_burst_plus_refill(gaps: list[float]) -> None:
    """Over any sequence of takes, granted tokens <= burst + rate * elapsed time."""
    bucket = TokenBucket.full(5, 0.01, 0.0)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        granted += bucket.take(now)
        assert granted <= 5 + 0.01 * now + 1e-9
    assert 0 <= bucket.tokens <= 5


async def test_events_are_written_on_exit_after_the_callers_scope_was_cancelled(
    env: Env,
) -> None:
    """Regression: a recorder whose enclosing scope is cancelled still writes its buffer.

    A controller cancelled at shutdown drains its reconciles under a shield, then leaves its
    recorder normally; the recorder's writer task had already been cancelled with the
    caller's scope, so the exit waited its whole ``flush_timeout`` and dropped the events.
    """
    with anyio.CancelScope() as outer:
        async with env.recorder(flush_timeout=2.0) as recorder:
            outer.cancel()
            with anyio.CancelScope(shield=True):
                await anyio.wait_all_tasks_blocked()  # the writer has seen the cancellation
                recorder.record(env.widget, "Stopped", "recorded while shutting down")
                started = anyio.current_time()
    assert anyio.current_time() - started < 1.0
    [event] = env.events()
    assert event["reason"] == "Stopped"
    assert recorder.statistics().dropped == 0
