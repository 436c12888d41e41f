"""Metrics: statistics() exported through prometheus-client and the OpenTelemetry SDK.

Real informers, watches, queues and controllers (against FakeApiServer where a server is
needed) are read through a real ``CollectorRegistry`` and the SDK's ``InMemoryMetricReader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import crwatch
import crwatch.metrics
import crwatch.otel
import crwatch.prometheus
from _support import Seen, widget_cluster
from crwatch.metrics import Registry
from crwatch.testing import Fault

GUARD = 20  # seconds: a real-time guard against hangs, never waited out when tests pass
FAST = crwatch.Backoff(initial=0.01, maximum=0.05)


def scrape(registry: Registry) -> prometheus_client.CollectorRegistry:
    """Return a prometheus-client registry holding one crwatch collector of ``registry``."""
    prom = prometheus_client.CollectorRegistry()
    prom.register(crwatch.prometheus.Collector(registry))
    return prom


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


pytestmark = pytest.mark.anyio


async def test_informer_series_follow_its_statistics(tmp_path: Path) -> None:
    """Cache size, events, synced, subscriber counters and relists after a 410 are scraped."""
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.create(rtype, widget("a"))
        server.create(rtype, widget("b"))
        informer = crwatch.Informer(
            client, "widgets.v1.example.com", backoff=FAST, streaming_list=False
        )
        # The first watch ends with a 410 after one event: the informer relists.
        server.faults.add(Fault.expired_event(after_events=1), verb="watch")
        seen = Seen()
        informer.subscribe(seen.add, name="audit")
        registry = Registry()
        registry.register(informer, name="widgets")
        prom = scrape(registry)
        labels = {"resource": "widgets"}
        sub = {"resource": "widgets", "subscriber": "audit"}
        assert prom.get_sample_value("crwatch_watch_synced", labels) == 0.0
        async with informer:
            await informer.wait_synced(GUARD)
            await seen.until(2)
            assert prom.get_sample_value("crwatch_watch_synced", labels) == 1.0
            assert prom.get_sample_value("crwatch_informer_objects", labels) == 2.0
            assert prom.get_sample_value("crwatch_watch_lists_total", labels) == 1.0
            assert prom.get_sample_value("crwatch_watch_relists_total", labels) == 0.0
            assert prom.get_sample_value("crwatch_subscriber_delivered_total", sub) == 2.0
            assert prom.get_sample_value("crwatch_subscriber_depth", sub) == 0.0
            assert prom.get_sample_value("crwatch_subscriber_buffer_size", sub) == 1024.0
            # The next watch meets a 410: the informer relists and finds "c" there.
            server.create(rtype, widget("c"))  # on the first watch, then the 410
            await seen.until(3)
            server.create(rtype, widget("d"))  # after the relist, on the second watch
            await seen.until(4)
            stats = informer.statistics()
            assert stats.relists == 1
            assert prom.get_sample_value("crwatch_watch_relists_total", labels) == 1.0
            assert prom.get_sample_value("crwatch_watch_events_total", labels) == stats.events
            assert prom.get_sample_value("crwatch_watch_reconnects_total", labels) == float(
                stats.reconnects
            )
            assert prom.get_sample_value("crwatch_informer_objects", labels) == 4.0
            age = prom.get_sample_value("crwatch_watch_last_byte_age_seconds", labels)
            assert age is not None
            assert 0 <= age < GUARD
            text = prometheus_client.generate_latest(prom).decode()
            assert "# TYPE crwatch_watch_events_total counter" in text
            sample = 'crwatch_subscriber_coalesced_total{resource="widgets",subscriber="audit"} 0.0'
            assert sample in text


async def test_informer_exports_skipped_lines(tmp_path: Path) -> None:
    """An informer's malformed and oversized lines are exported, as a watch()'s are.

    The server sends one line that is not JSON and one event over ``max_event_bytes``; both
    are skipped and counted by ``statistics()``, and both reach prometheus-client and the
    OpenTelemetry SDK's in-memory reader with the ``resource`` label only.
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.faults.add(Fault.malformed_line(), verb="watch")
        informer = crwatch.Informer(
            client,
            "widgets.v1.example.com",
            backoff=FAST,
            streaming_list=False,
            max_event_bytes=2048,
        )
        seen = Seen()
        informer.subscribe(seen.add, name="audit")
        registry = Registry()
        registry.register(informer, name="widgets")
        prom = scrape(registry)
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        crwatch.otel.instrument(meter_provider=provider, registry=registry)
        labels = {"resource": "widgets"}
        async with informer:
            await informer.wait_synced(GUARD)
            server.create(rtype, widget("big", blob="x" * 4096))
            server.create(rtype, widget("small"))
            await seen.until(1)
            stats = informer.statistics()
            assert (stats.malformed_lines, stats.oversized_events) == (1, 1)
            assert prom.get_sample_value("crwatch_watch_malformed_lines_total", labels) == 1.0
            assert prom.get_sample_value("crwatch_watch_oversized_events_total", labels) == 1.0
            data = reader.get_metrics_data()
            assert data is not None
            got = {
                metric.name: [
                    (dict(p.attributes or {}), p.value)  # type: ignore[union-attr]
                    for p in metric.data.data_points
                ]
                for rm in data.resource_metrics
                for scope in rm.scope_metrics
                for metric in scope.metrics
            }
            assert got["crwatch_watch_malformed_lines"] == [(labels, 1)]
            assert got["crwatch_watch_oversized_events"] == [(labels, 1)]
        provider.shutdown()


async def test_watch_stream_series_derive_relists_and_reconnects(tmp_path: Path) -> None:
    """A watch() stream exports its counters; relists and reconnects count after the first."""
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.create(rtype, widget("a"))
        registry = Registry()
        prom = scrape(registry)
        labels = {"resource": "w"}
        # The first watch ends cleanly after one event: the stream reconnects.
        server.faults.add(Fault.end_after(1), verb="watch")
        watch = crwatch.watch(client, "widgets.v1.example.com", backoff=FAST, streaming_list=False)
        async with watch as events:
            registry.register(events, name="w")
            assert (await events.__anext__()).key == "default/a"
            server.create(rtype, widget("b"))
            assert (await events.__anext__()).key == "default/b"
            server.create(rtype, widget("c"))
            assert (await events.__anext__()).key == "default/c"
            stats = events.statistics()
            assert prom.get_sample_value("crwatch_watch_events_total", labels) == 3.0
            assert prom.get_sample_value("crwatch_watch_requests_total", labels) == stats.watches
            assert stats.watches == 2
            assert prom.get_sample_value("crwatch_watch_reconnects_total", labels) == float(
                stats.watches - 1
            )
            assert prom.get_sample_value("crwatch_watch_malformed_lines_total", labels) == 0.0


async def test_workqueue_series_use_client_go_names() -> None:
    """Depth, adds, retries and the latency histograms come out under workqueue_* names."""
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock, name="widgets")
    registry = Registry()
    registry.register(queue)
    prom = scrape(registry)
    name = {"name": "widgets"}
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert prom.get_sample_value("workqueue_depth", name) == 2.0
    assert prom.get_sample_value("workqueue_adds_total", name) == 2.0
    clock.advance(0.5)
    key = await queue.get()
    clock.advance(2.0)
    assert prom.get_sample_value("workqueue_longest_running_processor_seconds", name) == 2.0
    assert prom.get_sample_value("workqueue_unfinished_work_seconds", name) == 2.0
    queue.done(key)
    queue.add_rate_limited("c")
    assert prom.get_sample_value("workqueue_retries_total", name) == 1.0
    assert prom.get_sample_value("workqueue_queue_duration_seconds_count", name) == 1.0
    assert prom.get_sample_value("workqueue_queue_duration_seconds_sum", name) == 0.5
    le = {"name": "widgets", "le": "0.1"}
    assert prom.get_sample_value("workqueue_queue_duration_seconds_bucket", le) == 0.0
    le = {"name": "widgets", "le": "1.0"}
    assert prom.get_sample_value("workqueue_queue_duration_seconds_bucket", le) == 1.0
    assert prom.get_sample_value("workqueue_work_duration_seconds_sum", name) == 2.0
    le = {"name": "widgets", "le": "+Inf"}
    assert prom.get_sample_value("workqueue_work_duration_seconds_bucket", le) == 1.0


async def test_controller_series_use_controller_runtime_names(tmp_path: Path) -> None:
    """Reconciles by result, errors, durations and the controller's queue are scraped."""
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.create(rtype, widget("ok"))
        server.create(rtype, widget("bad"))
        server.create(rtype, widget("again"))
        done = Seen()

        async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
            done.add(ctx.key)
            first = done.items.count(ctx.key) == 1
            if ctx.key == "default/bad" and first:
                raise RuntimeError("boom")
            if ctx.key == "default/again" and first:
                return crwatch.Action.requeue(after=0.001)
            return None

        controller = crwatch.Controller(
            client,
            "widgets.v1.example.com",
            reconcile,
            name="widgets",
            informers=crwatch.SharedInformers(backoff=FAST),
            rate_limiter=crwatch.ExponentialRateLimiter(base=0.001, maximum=0.01),
        )
        registry = Registry()
        registry.register(controller)
        prom = scrape(registry)
        ctl = {"controller": "widgets"}
        async with controller:
            await controller.wait_synced(GUARD)
            await done.until(5)
            await controller.queue.wait_idle()
            assert (
                prom.get_sample_value(
                    "controller_runtime_reconcile_total", {**ctl, "result": "success"}
                )
                == 3.0
            )
            assert (
                prom.get_sample_value(
                    "controller_runtime_reconcile_total", {**ctl, "result": "error"}
                )
                == 1.0
            )
            assert (
                prom.get_sample_value(
                    "controller_runtime_reconcile_total", {**ctl, "result": "requeue"}
                )
                == 1.0
            )
            assert prom.get_sample_value("controller_runtime_reconcile_errors_total", ctl) == 1.0
            count = prom.get_sample_value("controller_runtime_reconcile_time_seconds_count", ctl)
            assert count == 5.0
            assert prom.get_sample_value("controller_runtime_max_concurrent_reconciles", ctl) == 4.0
            assert prom.get_sample_value("crwatch_controller_synced", ctl) == 1.0
            queue = controller.statistics().queue.name
            assert prom.get_sample_value("workqueue_adds_total", {"name": queue}) is not None


async def test_opentelemetry_reader_sees_the_same_values() -> None:
    """The SDK's in-memory reader gets counters, gauges and histogram count/sum.

    Each collection reads the registered objects' statistics once.
    """
    clock = crwatch.ManualClock()
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(clock=clock, name="q")
    reads: list[None] = []

    class Counted:
        """The queue, counting how often the exporter reads its statistics."""

        def statistics(self) -> crwatch.WorkQueueStatistics:
            reads.append(None)
            return queue.statistics()

    registry = Registry()
    registry.register(Counted())
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    crwatch.otel.instrument(meter_provider=provider, registry=registry)
    queue.add("a")
    queue.add("b")
    clock.advance(0.25)
    queue.done(await queue.get())

    def points() -> dict[str, list[tuple[dict[str, Any], float]]]:
        data = reader.get_metrics_data()
        assert data is not None
        out: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                assert scope.scope.name == "crwatch"
                for metric in scope.metrics:
                    out[metric.name] = [
                        (dict(p.attributes or {}), p.value)  # type: ignore[union-attr]
                        for p in metric.data.data_points
                    ]
        return out

    reads.clear()
    got = points()
    assert len(reads) == 1  # one read per collection, whatever the number of instruments
    assert got["workqueue_depth"] == [({"name": "q"}, 1)]
    assert got["workqueue_adds"] == [({"name": "q"}, 2)]
    assert got["workqueue_queue_duration_seconds_count"] == [({"name": "q"}, 1)]
    assert got["workqueue_queue_duration_seconds_sum"] == [({"name": "q"}, 0.25)]
    queue.add("c")
    assert points()["workqueue_adds"] == [({"name": "q"}, 3)]
    provider.shutdown()


def test_register_rejects_what_it_cannot_label() -> None:
    """Objects without statistics, unnamed watches and duplicate names are typed errors."""
    registry = Registry()
    with pytest.raises(crwatch.InvalidOptionError, match="no statistics"):
        registry.register(object())  # type: ignore[arg-type]
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(name="q")
    registry.register(queue)
    with pytest.raises(crwatch.InvalidOptionError, match="already registered"):
        registry.register(queue)
    with pytest.raises(crwatch.InvalidOptionError, match="named 'q'"):
        registry.register(crwatch.WorkQueue(name="q"))
    registry.register(crwatch.WorkQueue(name="q"), name="q2")
    with pytest.raises(crwatch.InvalidOptionError, match="non-empty"):
        registry.register(crwatch.WorkQueue(), name="")

    class Odd:
        def statistics(self) -> int:
            return 1

    with pytest.raises(crwatch.InvalidOptionError, match="cannot export"):
        registry.register(Odd())


async def test_informer_needs_a_name_and_unregister_removes_its_series(tmp_path: Path) -> None:
    """An informer has no label of its own; once unregistered its series disappear."""
    async with widget_cluster(tmp_path) as (_, _rtype, client):
        informer = crwatch.Informer(client, "widgets.v1.example.com")
        registry = Registry()
        with pytest.raises(crwatch.InvalidOptionError, match="with a name"):
            registry.register(informer)
        registry.register(informer, name="widgets")
        assert informer in registry
        prom = scrape(registry)
        assert prom.get_sample_value("crwatch_informer_objects", {"resource": "widgets"}) == 0
        registry.unregister(informer)
        assert informer not in registry
        assert prom.get_sample_value("crwatch_informer_objects", {"resource": "widgets"}) is None


def test_default_registry_is_what_exporters_read() -> None:
    """register() fills crwatch.metrics.default_registry, which a Collector() reads by default."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(name="default-registry-test")
    crwatch.metrics.register(queue)
    try:
        prom = prometheus_client.CollectorRegistry()
        prom.register(crwatch.prometheus.Collector())
        queue.add("x")
        assert prom.get_sample_value("workqueue_depth", {"name": "default-registry-test"}) == 1
    finally:
        crwatch.metrics.unregister(queue)
    assert queue not in crwatch.metrics.default_registry


def test_every_family_is_described_once() -> None:
    """describe() names each family once, so prometheus-client refuses a clashing collector."""
    prom = prometheus_client.CollectorRegistry()
    prom.register(crwatch.prometheus.Collector(Registry()))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prom.register(crwatch.prometheus.Collector(Registry()))
    names = [info.name for info in crwatch.metrics.METRICS]
    assert len(names) == len(set(names))
    assert crwatch.metrics.info("workqueue_depth").kind == "gauge"


@given(
    errors=st.integers(0, 1000),
    requeues=st.integers(0, 1000),
    successes=st.integers(0, 1000),
)
def test_reconcile_results_add_up_to_the_reconciles(
    errors: int, requeues: int, successes: int
) -> None:
    """Each reconcile lands in one result; an error's backoff is not counted as a requeue."""
    from crwatch._metrics import _controller_points

    queue_stats = crwatch.WorkQueue[str](name="q").statistics()
    stats = crwatch.ControllerStatistics(
        name="c",
        workers=1,
        active=0,
        synced=True,
        reconciles=errors + requeues + successes,
        errors=errors,
        timeouts=0,
        # The record counts the backoff after each error among its requeues.
        requeues=requeues + errors,
        mapper_errors=0,
        foreign_owners=0,
        resyncs=0,
        cancelled=0,
        last_error=None,
        last_error_key="",
        reconcile_duration=queue_stats.work_duration,
        queue=queue_stats,
        informers=(),
    )
    results = {
        dict(labels)["result"]: value
        for name, labels, value in _controller_points("c", stats)
        if name == "controller_runtime_reconcile"
    }
    assert results == {"success": successes, "error": errors, "requeue": requeues}


def test_subscribers_sharing_a_name_are_summed_into_one_series() -> None:
    """Two subscriber records with one name give one sample per family, their sum."""
    from crwatch._metrics import families

    def sub(depth: int, delivered: int) -> crwatch.SubscriberStatistics:
        return crwatch.SubscriberStatistics(
            name="audit",
            buffer_size=10,
            overflow="wait",
            depth=depth,
            delivered=delivered,
            coalesced=0,
            dropped=0,
            errors=0,
            closed=False,
            last_error=None,
        )

    record = crwatch.InformerStatistics(
        objects=5,
        synced=True,
        resource_version="9",
        events=7,
        lists=3,
        relists=2,
        watches=4,
        reconnects=3,
        errors=1,
        stalls=0,
        last_error=None,
        last_error_time=None,
        seconds_since_last_byte=None,
        subscribers=(sub(1, 2), sub(3, 4)),
    )
    by_name = {m.info.name: m.samples for m in families([("widgets", record)])}
    labels = (("resource", "widgets"), ("subscriber", "audit"))
    assert [(s.labels, s.value) for s in by_name["crwatch_subscriber_depth"]] == [(labels, 4)]
    assert [s.value for s in by_name["crwatch_subscriber_delivered"]] == [6]
    assert [s.value for s in by_name["crwatch_watch_relists"]] == [2]
    # No byte seen yet and no error yet: those gauges have no sample rather than a made-up one.
    assert by_name["crwatch_watch_last_byte_age_seconds"] == ()
    assert by_name["crwatch_watch_last_error_timestamp_seconds"] == ()


async def test_watch_series_by_type_reason_and_duration(tmp_path: Path) -> None:
    """Events by type, relists and reconnects by cause, list and watch durations.

    A watch() stream: the initial list (2 ADDED), a watch the server ends after one event
    (a reconnect caused by "closed"), then a 410 on the resume (a relist and a reconnect
    caused by ExpiredError) that finds a deletion (a synthetic DELETED). Each reaches
    prometheus-client with ``resource`` and its ``type`` or ``reason`` label.
    """
    async with widget_cluster(tmp_path) as (server, rtype, client):
        server.create(rtype, widget("a"))
        server.create(rtype, widget("gone"))
        registry = Registry()
        prom = scrape(registry)
        labels = {"resource": "w"}
        server.faults.add(Fault.end_after(1), verb="watch")
        expired = server.faults.add(Fault.expired(), verb="watch")
        watch = crwatch.watch(client, "widgets.v1.example.com", backoff=FAST, streaming_list=False)
        async with watch as events:
            registry.register(events, name="w")
            got = [await events.__anext__() for _ in range(2)]
            server.create(rtype, widget("b"))
            got.append(await events.__anext__())
            server.delete(rtype, "gone", namespace="default")
            # watch() reads on demand: asking for the next event makes it resume (and relist).
            got.append(await events.__anext__())
            stats = events.statistics()
    assert expired.fired == 1
    assert [(e.type.value, e.key) for e in got] == [
        ("ADDED", "default/a"),
        ("ADDED", "default/gone"),
        ("ADDED", "default/b"),
        ("DELETED", "default/gone"),
    ]
    assert stats.events_by_type == {"ADDED": 3, "MODIFIED": 0, "DELETED": 1}
    assert stats.relists_by_reason == {"ExpiredError": 1}
    assert stats.reconnects_by_reason == {"closed": 1, "ExpiredError": 1}
    assert stats.last_list_seconds is not None
    assert stats.last_watch_seconds is not None
    assert stats.seconds_since_last_byte is not None

    def sample(name: str, **more: str) -> float | None:
        return prom.get_sample_value(name, {**labels, **more})

    assert sample("crwatch_watch_events_by_type_total", type="ADDED") == 3.0
    assert sample("crwatch_watch_events_by_type_total", type="DELETED") == 1.0
    assert sample("crwatch_watch_relists_by_reason_total", reason="ExpiredError") == 1.0
    assert sample("crwatch_watch_reconnects_by_reason_total", reason="closed") == 1.0
    assert sample("crwatch_watch_reconnects_by_reason_total", reason="ExpiredError") == 1.0
    assert sample("crwatch_watch_list_duration_seconds") == stats.last_list_seconds
    assert sample("crwatch_watch_duration_seconds") == stats.last_watch_seconds
