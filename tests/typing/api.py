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


async def run_a_controller(client: crwatch.Client) -> None:
    widgets = crwatch.Resource("example.com", "v1", "widgets", kind="Widget")
    configmaps = crwatch.Resource("", "v1", "configmaps")

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        assert_type(ctx.key, str)
        assert_type(ctx.object, dict[str, Any] | None)
        assert_type(ctx.retries, int)
        assert_type(ctx.store(configmaps), crwatch.Store)
        ctx.record({"metadata": {"name": "w"}}, "Synced", "ok", type="Normal")
        return crwatch.Action.requeue(after=300)

    def sync_reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        return None

    def mapper(obj: dict[str, Any]) -> list[str]:
        return [crwatch.object_key(obj)]

    async with crwatch.SharedInformers(transform=crwatch.drop_managed_fields) as informers:
        controller = crwatch.Controller(
            client,
            widgets,
            reconcile,
            owns=[configmaps],
            watches=[("secrets", mapper)],
            predicates=[crwatch.generation_differs, crwatch.generation_changed()],
            workers=4,
            resync=None,
            reconcile_timeout=60.0,
            rate_limiter=crwatch.default_rate_limiter(),
            informers=informers,
        )
        crwatch.Controller(client, "widgets.v1.example.com", sync_reconcile)
        async with controller:
            stats = controller.statistics()
            assert_type(stats, crwatch.ControllerStatistics)
            assert_type(stats.queue, crwatch.WorkQueueStatistics)
            assert_type(stats.queue.queue_latency, crwatch.Durations)


async def use_a_work_queue() -> None:
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue(
        rate_limiter=crwatch.MaxOfRateLimiter(
            crwatch.ExponentialRateLimiter(base=0.1, maximum=10),
            crwatch.BucketRateLimiter(rate=5, burst=10, clock=crwatch.ManualClock()),
        ),
    )
    queue.add("a")
    queue.add_after("a", 1.5)
    queue.add_rate_limited("a")
    assert_type(await queue.get(), str)
    assert_type(queue.get_nowait(), str)
    assert_type(queue.num_requeues("a"), int)
    async for key in queue:
        assert_type(key, str)
        queue.done(key)
    queue.shutdown(drain=True)
    await queue.wait_idle()


async def controller_toolkit(client: crwatch.Client) -> None:
    widgets = crwatch.Resource("example.com", "v1", "widgets", kind="Widget", namespaced=True)
    obj = await client.get(widgets, "a", namespace="default")
    assert_type(obj, dict[str, Any])
    assert_type(await client.patch(widgets, obj, {"spec": {}}), dict[str, Any])
    await client.patch(widgets, obj, [{"op": "remove", "path": "/spec/x"}], resource_version="7")
    await client.patch_status(widgets, obj, {"phase": "Ready"})
    await client.apply(widgets, obj, field_manager="me", force=True, dry_run=True)
    await client.delete(widgets, obj, uid="u", propagation_policy="Foreground")

    async def ensure(o: dict[str, Any]) -> int:
        return 1

    def clean(o: dict[str, Any]) -> int:
        return 2

    result = await crwatch.finalizer(
        client, widgets, obj, "example.com/x", apply=ensure, cleanup=clean
    )
    assert_type(result, int | None)

    # Regression: two async callbacks were solved as Awaitable[Never] and rejected.
    async def ensure_async(o: dict[str, Any]) -> str:
        return "routed"

    async def clean_async(o: dict[str, Any]) -> str:
        return "removed"

    both_async = await crwatch.finalizer(
        client, widgets, obj, "example.com/x", apply=ensure_async, cleanup=clean_async
    )
    assert_type(both_async, str | None)
    async with crwatch.EventRecorder(client, component="widgets") as events:
        events.record(obj, "Synced", "ok", type="Warning", action="Reconcile")
        assert_type(events.statistics(), crwatch.EventRecorderStatistics)
    async with crwatch.LeaderElection(client, "widgets", namespace="ops") as leader:
        assert_type(leader.is_leader, bool)
        async with leader.leading():
            await leader.wait_leading()


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


async def discover(client: crwatch.Client) -> crwatch.Resource:
    resource = await client.resource("widgets.example.com")
    found = await client.discovery.lookup("wd")
    assert_type(found, crwatch.ApiResource)
    assert_type(found.verbs, frozenset[str])
    assert_type(found.namespaced, bool)
    assert_type(await client.discovery.resources(), tuple[crwatch.ApiResource, ...])
    assert_type(client.discovery.statistics(), crwatch.DiscoveryStatistics)
    try:
        await client.resource("widgets")
    except crwatch.AmbiguousResourceError as err:
        assert_type(err.candidates, tuple[str, ...])
    except crwatch.UnknownResourceError as err:
        assert_type(err.name, str)
    return resource


async def informer_over_namespaces(client: crwatch.Client) -> None:
    widgets = crwatch.Resource("example.com", "v1", "widgets", namespaced=True)
    informer = crwatch.Informer(client, widgets, namespaces={"team-a", "team-b"})
    assert_type(informer.namespaces, frozenset[str] | None)
    async with informer:
        await informer.wait_synced(timeout=60)
        stats = informer.statistics()
        for record in stats.namespaces:
            assert_type(record, crwatch.NamespaceStatistics)
            assert_type(record.namespace, str | None)
        assert_type(informer.store, crwatch.Store)
