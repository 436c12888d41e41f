"""Controller against FakeApiServer: keys from events, level-triggered reconciles, errors.

Every test runs a real FakeApiServer over HTTP; changes are written through the server's
Python API, as another client of the cluster would. Waits are for observed reconciles (with
a generous real-time guard, never a sleep); time-based behaviour (backoff, requeue after,
timeouts, resync, shutdown deadline) runs on a ManualClock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import crwatch
from crwatch.testing import FakeApiServer, Fault, ResourceType

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets", kind="Widget")
GADGETS = crwatch.Resource("example.com", "v1", "gadgets", kind="Gadget")
CONFIGMAPS = crwatch.Resource("", "v1", "configmaps", kind="ConfigMap")
FAST = crwatch.Backoff(initial=0.01, maximum=0.05)
GUARD = 20  # seconds: a real-time guard against hangs, never waited out when tests pass


class Calls:
    """What the reconciles saw: (key, spec or None, retries), with a wait for a condition."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any, int]] = []
        self._changed = anyio.Event()

    def add(self, ctx: crwatch.Context[dict[str, Any]]) -> None:
        spec = None if ctx.object is None else ctx.object.get("spec")
        self.add_item((ctx.key, spec, ctx.retries))

    def add_item(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, key: str) -> list[tuple[str, Any, int]]:
        return [item for item in self.items if item[0] == key]

    async def until(self, condition: Callable[[Calls], bool]) -> None:
        with anyio.fail_after(GUARD):
            while not condition(self):
                await self._changed.wait()


class Cluster:
    def __init__(self, server: FakeApiServer, client: crwatch.Client) -> None:
        self.server = server
        self.client = client
        self.widgets: ResourceType = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        self.gadgets: ResourceType = server.register_crd(
            group="example.com", version="v1", plural="gadgets", kind="Gadget"
        )
        self.configmaps = server.resource("", "v1", "configmaps")

    def widget(self, name: str, **spec: Any) -> dict[str, Any]:
        return self.server.create(
            self.widgets,
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec,
            },
        )

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.server.patch(self.widgets, name, patch, namespace="default")

    def configmap(self, name: str, owner: dict[str, Any] | None, *, kind: str = "Widget") -> None:
        meta: dict[str, Any] = {"name": name, "namespace": "default"}
        if owner is not None:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "example.com/v1",
                    "kind": kind,
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ]
        self.server.create(
            self.configmaps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
        )

    def informers(self) -> crwatch.SharedInformers:
        """Return a private registry with a fast backoff, for one controller to own."""
        return crwatch.SharedInformers(backoff=FAST)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with FakeApiServer() as server:
        path = server.kubeconfig(tmp_path / "kubeconfig")
        async with crwatch.Client.from_kubeconfig(path) as client:
            yield Cluster(server, client)


@contextlib.asynccontextmanager
async def running(controller: crwatch.Controller[Any]) -> AsyncIterator[crwatch.Controller[Any]]:
    async with controller:
        await controller.wait_synced(GUARD)
        yield controller


async def test_reconciles_each_object_after_sync_then_each_change(cluster: Cluster) -> None:
    """Every object is reconciled once after sync, then on change; a deletion gives None."""
    cluster.widget("a", size=1)
    cluster.widget("b", size=1)
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        assert sorted(calls.items) == [("default/a", {"size": 1}, 0), ("default/b", {"size": 1}, 0)]
        cluster.patch("a", {"spec": {"size": 2}})
        await calls.until(lambda c: len(c.of("default/a")) == 2)
        assert calls.of("default/a")[-1][1] == {"size": 2}
        cluster.server.delete(cluster.widgets, "b", namespace="default")
        await calls.until(lambda c: len(c.of("default/b")) == 2)
        assert calls.of("default/b")[-1][1] is None
        # The reconcile has been called; its bookkeeping ends when the queue is idle.
        await controller.queue.wait_idle()
        stats = controller.statistics()
    assert stats.reconciles == 4
    assert stats.errors == 0
    assert stats.synced
    assert stats.queue.processed == 4
    assert stats.informers[0].objects == 1


async def test_many_events_while_waiting_give_one_reconcile_with_the_latest_state(
    cluster: Cluster,
) -> None:
    """Level-triggered: changes made while a key waits (or runs) fold into one reconcile."""
    a = cluster.widget("a", size=0)
    cluster.widget("b", size=0)
    calls = Calls()
    release = anyio.Event()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        if ctx.key == "default/b" and len(calls.of("default/b")) == 1:
            await release.wait()  # holds the only worker

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, workers=1, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.of("default/b")) == 1 and len(c.of("default/a")) == 1)
        last = a
        for size in range(1, 6):
            last = cluster.patch("a", {"spec": {"size": size}})
            cluster.patch("b", {"spec": {"size": size}})
        await controller.informer().wait_for(last["metadata"]["resourceVersion"], timeout=GUARD)
        assert controller.queue.statistics().depth == 1  # "a" waits once; "b" is in flight
        release.set()
        await calls.until(lambda c: len(c.of("default/a")) == 2 and len(c.of("default/b")) == 2)
        assert calls.of("default/a")[-1][1] == {"size": 5}
        assert calls.of("default/b")[-1][1] == {"size": 5}
        await controller.queue.wait_idle()
    assert len(calls.items) == 4


async def test_owned_objects_enqueue_their_controller_owner(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A change to an owned ConfigMap reconciles its Widget; other owners' are ignored."""
    owner = cluster.widget("owner")
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        assert ctx.store(CONFIGMAPS) is ctx.controller.store("configmaps")

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, owns=[CONFIGMAPS], informers=cluster.informers()
    )
    caplog.set_level(logging.DEBUG, logger="crwatch")
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 1)
        cluster.configmap("owned", owner)
        await calls.until(lambda c: len(c.of("default/owner")) == 2)
        cluster.configmap("foreign", owner, kind="Deployment")
        cluster.configmap("plain", None)
        cluster.configmap("owned-2", owner)
        await calls.until(lambda c: len(c.of("default/owner")) == 3)
        stats = controller.statistics()
    assert stats.foreign_owners == 1
    assert [key for key, _, _ in calls.items] == ["default/owner"] * 3
    assert any(
        "configmaps.v1 default/foreign is controlled by example.com/v1 Deployment/owner"
        in r.message
        for r in caplog.records
    )


async def test_mapped_objects_enqueue_what_the_mapper_names(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """watches=[(gadgets, mapper)]: the keys (or objects) a mapper returns are reconciled.

    A mapper that raises or returns non-keys is logged with the gadget's key, and the
    controller keeps going.
    """
    cluster.widget("w1")
    cluster.widget("w2")
    calls = Calls()

    def mapper(gadget: dict[str, Any]) -> Any:
        target = gadget["spec"]["target"]
        if target == "boom":
            raise RuntimeError("mapper bug")
        if target == "junk":
            return [42, None]
        if target == "leak":
            return [{"data": {"token": "hunter2"}}]  # an object by mistake: no metadata
        if target == "object":
            return [controller.store().get("default/w2")]
        return f"default/{target}"

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client,
        WIDGETS,
        reconcile,
        watches=[(GADGETS, mapper)],
        workers=1,
        informers=cluster.informers(),
    )

    def gadget(name: str, target: str) -> None:
        cluster.server.create(
            cluster.gadgets,
            {"metadata": {"name": name, "namespace": "default"}, "spec": {"target": target}},
        )

    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        gadget("g-boom", "boom")
        gadget("g-junk", "junk")
        gadget("g-leak", "leak")
        gadget("g1", "w1")
        await calls.until(lambda c: len(c.of("default/w1")) == 2)
        gadget("g2", "object")
        await calls.until(lambda c: len(c.of("default/w2")) == 2)
        stats = controller.statistics()
    assert stats.mapper_errors == 3
    assert isinstance(stats.last_error, crwatch.MapperError)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("raised on gadgets.v1.example.com default/g-boom" in m for m in messages)
    assert any(
        "non-keys for gadgets.v1.example.com default/g-junk: [42, None]" in m for m in messages
    )
    assert any("default/g-leak: [<dict>]" in m for m in messages)
    assert "hunter2" not in caplog.text  # what a mapper returns by mistake is not logged


async def test_predicates_filter_the_primary_events(cluster: Cluster) -> None:
    """predicates=[labels_differ]: an annotation-only change is not reconciled, a label one is."""
    cluster.widget("a")
    cluster.widget("b")
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client,
        WIDGETS,
        reconcile,
        predicates=[crwatch.labels_differ],
        workers=1,
        informers=cluster.informers(),
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        cluster.patch("a", {"metadata": {"annotations": {"note": "x"}}})
        cluster.patch("b", {"metadata": {"labels": {"tier": "edge"}}})
        await calls.until(lambda c: len(c.of("default/b")) == 2)
        cluster.server.delete(cluster.widgets, "a", namespace="default")
        await calls.until(lambda c: len(c.of("default/a")) == 2)
    # The annotation change of "a" (queued before b's label change) never ran.
    assert [k for k, _, _ in calls.items[2:]] == ["default/b", "default/a"]
    assert calls.of("default/a")[-1][1] is None


async def test_errors_back_off_per_key_and_other_keys_go_on(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising reconcile is logged with its key and retried after 5 ms, 10 ms...

    Other keys are reconciled meanwhile; success resets the backoff.
    """
    cluster.widget("bad")
    cluster.widget("good")
    clock = crwatch.ManualClock()
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        if ctx.key == "default/bad" and ctx.retries < 2:
            raise ValueError(f"broken {ctx.retries}")

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, clock=clock, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        await anyio.wait_all_tasks_blocked()
        assert controller.queue.statistics().delayed == 1
        clock.advance(0.005)
        await calls.until(lambda c: len(c.of("default/bad")) == 2)
        clock.advance(0.0099)
        cluster.patch("good", {"spec": {"x": 1}})
        await calls.until(lambda c: len(c.of("default/good")) == 2)
        assert len(calls.of("default/bad")) == 2
        clock.advance(0.0001)
        await calls.until(lambda c: len(c.of("default/bad")) == 3)
        await controller.queue.wait_idle()
        stats = controller.statistics()
    assert [r for _, _, r in calls.of("default/bad")] == [0, 1, 2]
    assert controller.queue.num_requeues("default/bad") == 0
    assert stats.errors == 2
    assert stats.last_error_key == "default/bad"
    assert isinstance(stats.last_error, ValueError)
    failures = [r for r in caplog.records if "reconcile of default/bad failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].exc_info is not None


async def test_wrong_return_type_is_an_error_naming_the_key(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A reconcile returning neither Action nor None gets ReconcileResultError and backoff."""
    cluster.widget("w")
    clock = crwatch.ManualClock()
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> Any:
        calls.add(ctx)
        return "requeue please" if ctx.retries == 0 else None

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, clock=clock, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 1)
        await anyio.wait_all_tasks_blocked()
        clock.advance(0.005)
        await calls.until(lambda c: len(c.items) == 2)
        stats = controller.statistics()
    error = stats.last_error
    assert isinstance(error, crwatch.ReconcileResultError)
    assert isinstance(error, TypeError)
    assert error.key == "default/w"
    assert "reconcile of default/w returned 'requeue please'" in caplog.text


async def test_a_hanging_reconcile_times_out_and_the_others_go_on(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """An async reconcile past reconcile_timeout is cancelled, logged, counted, retried."""
    cluster.widget("hang")
    cluster.widget("ok")
    clock = crwatch.ManualClock()
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        if ctx.key == "default/hang" and ctx.retries == 0:
            await anyio.sleep_forever()

    controller = crwatch.Controller(
        cluster.client,
        WIDGETS,
        reconcile,
        reconcile_timeout=10,
        workers=2,
        clock=clock,
        informers=cluster.informers(),
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        await anyio.wait_all_tasks_blocked()
        assert controller.statistics().active == 1
        clock.advance(10)
        # The retry is due 5 ms (the first backoff) after the timeout is handled: step the
        # clock until it comes, however long the handling takes on a busy machine.
        with anyio.fail_after(5):
            while len(calls.of("default/hang")) < 2:
                await anyio.wait_all_tasks_blocked()
                clock.advance(0.005)
                await anyio.lowlevel.checkpoint()
        stats = controller.statistics()
    assert stats.timeouts == 1
    assert isinstance(stats.last_error, crwatch.ReconcileTimeout)
    assert "reconcile of default/hang ran past its 10 s deadline" in caplog.text


async def test_sync_reconcile_runs_in_a_thread_and_is_reported_past_its_deadline(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Sync reconciles run in threads; one running past its deadline is reported.

    ctx.record reaches the recorder (on the loop) from the thread, and the late
    reconcile's result is used when it returns.
    """
    import threading

    cluster.widget("w")
    clock = crwatch.ManualClock()
    gate = threading.Event()
    threads: list[str] = []
    records = Calls()

    class Recorder:
        def record(self, obj: Any, reason: str, message: str, *, type: str = "Normal") -> None:
            records.add_item((obj["metadata"]["name"], reason, message, type))

    def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        threads.append(threading.current_thread().name)
        assert ctx.object is not None
        ctx.record(ctx.object, "Seen", "hello", type="Warning")
        if len(threads) == 1:
            gate.wait(GUARD)
            return crwatch.Action.requeue()
        return None

    controller = crwatch.Controller(
        cluster.client,
        WIDGETS,
        reconcile,
        reconcile_timeout=5,
        recorder=Recorder(),
        clock=clock,
        informers=cluster.informers(),
    )
    async with running(controller):
        await records.until(lambda r: len(r.items) == 1)  # the first reconcile runs
        assert controller.statistics().active == 1
        clock.advance(5)
        await anyio.wait_all_tasks_blocked()
        assert controller.statistics().timeouts == 1
        gate.set()  # it returns Action.requeue(): a second reconcile
        await records.until(lambda r: len(r.items) == 2)
    assert controller.statistics().reconciles == 2
    assert all(name != threading.main_thread().name for name in threads)
    assert records.items[0] == ("w", "Seen", "hello", "Warning")
    assert "reconcile of default/w still running past its 5 s deadline" in caplog.text


async def test_requeue_now_and_after_a_delay(cluster: Cluster) -> None:
    """Action.requeue() reconciles again at once; requeue(after=30) when the clock says so."""
    cluster.widget("w")
    clock = crwatch.ManualClock()
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        calls.add(ctx)
        n = len(calls.items)
        if n == 1:
            return crwatch.Action.requeue()
        if n == 2:
            return crwatch.Action.requeue(after=30)
        return crwatch.Action.await_change()

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, clock=clock, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        await anyio.wait_all_tasks_blocked()
        clock.advance(29)
        await anyio.wait_all_tasks_blocked()
        assert len(calls.items) == 2
        clock.advance(1)
        await calls.until(lambda c: len(c.items) == 3)
        await controller.queue.wait_idle()
        stats = controller.statistics()
    assert stats.requeues == 2
    assert [r for _, _, r in calls.items] == [0, 0, 0]


async def test_resync_reconciles_every_key_periodically(cluster: Cluster) -> None:
    """resync=60 reconciles every cached key every 60 s; off by default."""
    cluster.widget("a")
    cluster.widget("b")
    clock = crwatch.ManualClock()
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, resync=60, clock=clock, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        await anyio.wait_all_tasks_blocked()
        clock.advance(60)
        await calls.until(lambda c: len(c.items) == 4)
        await anyio.wait_all_tasks_blocked()
        clock.advance(60)
        await calls.until(lambda c: len(c.items) == 6)
        assert controller.statistics().resyncs == 2


async def test_changes_across_disconnects_and_410_are_reconciled(cluster: Cluster) -> None:
    """Watch ends and a compaction (410, relist) lose no change: each is reconciled."""
    cluster.widget("a", v=0)
    cluster.widget("gone")
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, informers=cluster.informers()
    )
    server = cluster.server
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        server.close_watches()
        cluster.patch("a", {"spec": {"v": 1}})
        await calls.until(lambda c: calls.of("default/a")[-1][1] == {"v": 1})
        # The next watch is refused with 410: relist; a deletion meanwhile is synthetic.
        server.faults.add(Fault.expired(), verb="watch", resource="widgets")
        server.close_watches()
        server.delete(cluster.widgets, "gone", namespace="default")
        cluster.patch("a", {"spec": {"v": 2}})
        server.compact()
        await calls.until(
            lambda c: (
                calls.of("default/a")[-1][1] == {"v": 2} and calls.of("default/gone")[-1][1] is None
            )
        )
        stats = controller.statistics()
    assert stats.informers[0].relists >= 1


async def test_reconciles_start_only_once_every_cache_synced(cluster: Cluster) -> None:
    """While the owned type's list fails, nothing is reconciled; then everything is."""
    cluster.widget("a")
    seen_synced: list[bool] = []
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        seen_synced.append(ctx.controller.informer(CONFIGMAPS).statistics().synced)
        calls.add(ctx)

    cluster.server.faults.add(Fault.status(500), verb="list", resource="configmaps", times=3)
    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, owns=[CONFIGMAPS], informers=cluster.informers()
    )
    async with controller:
        await controller.informer().wait_synced(GUARD)
        assert calls.items == []
        await calls.until(lambda c: len(c.items) == 1)
    assert seen_synced == [True]


async def test_shutdown_lets_running_reconciles_finish(cluster: Cluster) -> None:
    """Leaving ``async with`` waits for a running reconcile; no new key is started."""
    cluster.widget("a")
    cluster.widget("b")
    calls = Calls()
    release = anyio.Event()
    finished: list[str] = []

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        await release.wait()
        finished.append(ctx.key)

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, workers=1, informers=cluster.informers()
    )
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await controller.run()

        tg.start_soon(run)
        await calls.until(lambda c: len(c.items) == 1)
        tg.cancel_scope.cancel()  # like Ctrl-C: run() is cancelled
        with anyio.CancelScope(shield=True):
            await anyio.wait_all_tasks_blocked()
            assert finished == []
            release.set()
    assert len(finished) == 1
    assert len(calls.items) == 1
    assert controller.statistics().cancelled == 0


async def test_shutdown_cancels_reconciles_past_the_deadline(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A reconcile still running shutdown_timeout after the shutdown is cancelled and logged."""
    cluster.widget("stuck")
    clock = crwatch.ManualClock()
    calls = Calls()
    cancelled: list[bool] = []

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    controller = crwatch.Controller(
        cluster.client,
        WIDGETS,
        reconcile,
        shutdown_timeout=3,
        reconcile_timeout=None,
        clock=clock,
        informers=cluster.informers(),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(controller.run)
        await calls.until(lambda c: len(c.items) == 1)
        tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await anyio.wait_all_tasks_blocked()
            assert cancelled == []
            clock.advance(3)
    assert cancelled == [True]
    assert controller.statistics().cancelled == 1
    assert "reconcile of default/stuck cancelled: still running 3 s after shutdown" in caplog.text


async def test_two_controllers_share_one_informer(cluster: Cluster) -> None:
    """Controllers given one SharedInformers use one list/watch of a resource they share."""
    cluster.widget("a")
    first, second = Calls(), Calls()

    async def reconcile_first(ctx: crwatch.Context[dict[str, Any]]) -> None:
        first.add(ctx)

    async def reconcile_second(ctx: crwatch.Context[dict[str, Any]]) -> None:
        second.add(ctx)

    async with crwatch.SharedInformers(backoff=FAST) as informers:
        one = crwatch.Controller(cluster.client, WIDGETS, reconcile_first, informers=informers)
        two = crwatch.Controller(
            cluster.client, WIDGETS, reconcile_second, informers=informers, name="second"
        )
        async with running(one), running(two):
            await first.until(lambda c: len(c.items) == 1)
            await second.until(lambda c: len(c.items) == 1)
            assert one.informer() is two.informer()
            assert len(informers.informers()) == 1
            assert cluster.server.statistics().open_watches == 1
        assert informers.informers() == ()  # the last user's release stopped it


async def test_an_owned_registry_is_not_shared(cluster: Cluster) -> None:
    """A SharedInformers entered by one controller cannot be used by a second one."""

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        pass

    informers = cluster.informers()
    one = crwatch.Controller(cluster.client, WIDGETS, reconcile, informers=informers)
    two = crwatch.Controller(cluster.client, WIDGETS, reconcile, informers=informers)
    async with one:
        with pytest.raises(crwatch.CrwatchError, match="enter them yourself"):
            await two.__aenter__()


async def test_a_forbidden_resource_stops_the_controller_with_the_error(
    cluster: Cluster,
) -> None:
    """An informer that fails for good (403) ends run() with that typed error."""
    cluster.server.deny(resource="widgets")

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        raise AssertionError("never reconciled")

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, informers=cluster.informers()
    )
    with anyio.fail_after(GUARD), pytest.raises(crwatch.ForbiddenError):
        await controller.run()


async def test_ctx_store_of_an_unwatched_resource_is_a_typed_error(cluster: Cluster) -> None:
    """ctx.store() of a resource the controller does not watch names what it watches."""
    cluster.widget("a")
    errors: list[BaseException] = []
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        try:
            ctx.store(GADGETS)
        except crwatch.InvalidOptionError as exc:
            errors.append(exc)
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 1)
    assert "does not watch gadgets.v1.example.com; it watches widgets.v1.example.com" in str(
        errors[0]
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers must be an int"),
        ({"resync": -1}, "resync must be a positive"),
        ({"reconcile_timeout": float("nan")}, "reconcile_timeout"),
        ({"shutdown_timeout": None}, "shutdown_timeout"),
        ({"owns": [42]}, "owns must be a crwatch.Resource"),
        ({"watches": [("secrets", "not callable")]}, "watches takes"),
        ({"predicates": ["x"]}, "predicates must be"),
        ({"recorder": object()}, "recorder must have record"),
        ({"informers": {}}, "informers must be a crwatch.SharedInformers"),
        ({"error_policy": 3}, "error_policy must be a callable"),
    ],
)
async def test_bad_options_raise_at_construction(
    cluster: Cluster, options: dict[str, Any], message: str
) -> None:
    """Invalid Controller options raise InvalidOptionError when the controller is made."""

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        pass

    with pytest.raises(crwatch.InvalidOptionError, match=message):
        crwatch.Controller(cluster.client, WIDGETS, reconcile, **options)


def test_action_constructors() -> None:
    """Action.requeue/backoff/await_change build the three outcomes; bad delays are refused."""
    assert crwatch.Action.requeue() == crwatch.Action("requeue", 0.0)
    assert crwatch.Action.requeue(after=2).after == 2.0
    assert crwatch.Action.backoff().kind == "backoff"
    assert crwatch.Action.await_change().kind == "await_change"
    for bad in (-1, float("inf"), "3"):
        with pytest.raises(crwatch.InvalidOptionError):
            crwatch.Action.requeue(after=bad)  # type: ignore[arg-type]


async def test_error_policy_decides_the_next_step(cluster: Cluster) -> None:
    """error_policy(ctx, error) replaces the default backoff: here, wait for a change."""
    cluster.widget("w")
    seen: list[tuple[str, str]] = []
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        raise KeyError("missing")

    def policy(ctx: crwatch.Context[Any], error: Exception) -> crwatch.Action | None:
        seen.append((ctx.key, repr(error)))
        return None

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, error_policy=policy, informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 1)
        await controller.queue.wait_idle()
        assert controller.queue.statistics().delayed == 0
    assert seen == [("default/w", "KeyError('missing')")]


async def test_api_server_failing_for_a_while_loses_no_change(cluster: Cluster) -> None:
    """While the API server answers 503, nothing is lost.

    Once it recovers, the changes made meanwhile are reconciled.
    """
    cluster.widget("a", v=0)
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, informers=cluster.informers()
    )
    server = cluster.server
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 1)
        outage = server.faults.add(Fault.status(503), resource="widgets", times=None)
        server.close_watches()
        with anyio.fail_after(GUARD):
            # The server runs in this event loop: yield until the informer's retries
            # have met the outage twice (no timer involved).
            while outage.fired < 2:
                await anyio.lowlevel.checkpoint()
        cluster.patch("a", {"spec": {"v": 1}})  # changes made during the outage
        cluster.widget("b", v=1)
        outage.remove()
        await calls.until(
            lambda c: c.of("default/a")[-1][1] == {"v": 1} and len(c.of("default/b")) == 1
        )
        assert controller.statistics().informers[0].errors >= 2


async def test_an_owned_object_moving_to_another_owner_enqueues_both(cluster: Cluster) -> None:
    """When an owned object's controller reference changes, both owners are reconciled."""
    first = cluster.widget("first")
    second = cluster.widget("second")
    cluster.configmap("cm", first)
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, owns=[CONFIGMAPS], informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 2)
        ref = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "name": "second",
            "uid": second["metadata"]["uid"],
            "controller": True,
        }
        cluster.server.patch(
            cluster.configmaps,
            "cm",
            {"metadata": {"ownerReferences": [ref]}},
            namespace="default",
        )
        await calls.until(
            lambda c: len(c.of("default/first")) == 2 and len(c.of("default/second")) == 2
        )


async def test_shutdown_timeout_zero_cancels_running_reconciles_at_once(cluster: Cluster) -> None:
    """shutdown_timeout=0 (for leader election) cancels a running reconcile on exit."""
    cluster.widget("busy")
    calls = Calls()
    cancelled: list[bool] = []

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    controller = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, shutdown_timeout=0, informers=cluster.informers()
    )
    async with controller:
        await calls.until(lambda c: len(c.items) == 1)
    assert cancelled == [True]
    assert controller.statistics().cancelled == 1


async def test_a_plain_function_returning_a_coroutine_is_awaited(cluster: Cluster) -> None:
    """reconcile=lambda ctx: async_fn(ctx) works: the coroutine it returns is awaited."""
    cluster.widget("w")
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        calls.add(ctx)
        return None

    controller = crwatch.Controller(
        cluster.client, WIDGETS, lambda ctx: reconcile(ctx), informers=cluster.informers()
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 1)
        await controller.queue.wait_idle()
        assert controller.statistics().errors == 0


async def test_an_error_policy_returning_no_action_backs_off(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """An async error_policy (a coroutine, not an Action) is logged and the key backs off."""
    cluster.widget("w")
    clock = crwatch.ManualClock()
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        calls.add(ctx)
        if ctx.retries == 0:
            raise RuntimeError("first try fails")

    async def policy(ctx: crwatch.Context[Any], error: Exception) -> crwatch.Action:
        raise AssertionError("never run")

    controller = crwatch.Controller(
        cluster.client,
        WIDGETS,
        reconcile,
        error_policy=policy,  # type: ignore[arg-type]
        clock=clock,
        informers=cluster.informers(),
    )
    async with running(controller):
        await calls.until(lambda c: len(c.items) == 1)
        await anyio.wait_all_tasks_blocked()
        clock.advance(0.005)
        await calls.until(lambda c: len(c.items) == 2)
    assert "error_policy returned <coroutine> for default/w, not an Action" in caplog.text


async def test_record_writes_events_without_a_recorder_and_never_raises(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a recorder, ctx.record writes a core/v1 Event; a failing one is only logged.

    The controller runs an EventRecorder named after itself while it runs.
    """
    cluster.widget("w")
    calls = Calls()

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        assert ctx.object is not None
        ctx.record(ctx.object, "Synced", "all good")
        calls.add(ctx)

    class Broken:
        def record(self, obj: Any, reason: str, message: str, *, type: str = "Normal") -> None:
            raise OSError("event sink down")

    caplog.set_level(logging.DEBUG, logger="crwatch")
    plain = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, name="widgets", informers=cluster.informers()
    )
    async with running(plain):
        await calls.until(lambda c: len(c.items) == 1)
    # Leaving the controller flushes its recorder: the Event is on the server by now.
    (event,) = cluster.server.list(cluster.server.resource("", "v1", "events"), namespace="default")
    assert event["reason"] == "Synced"
    assert event["message"] == "all good"
    assert event["type"] == "Normal"
    assert event["source"]["component"] == "widgets"
    assert event["involvedObject"]["name"] == "w"
    assert event["involvedObject"]["kind"] == "Widget"

    broken = crwatch.Controller(
        cluster.client, WIDGETS, reconcile, recorder=Broken(), informers=cluster.informers()
    )
    async with running(broken):
        await calls.until(lambda c: len(c.items) == 2)
        await broken.queue.wait_idle()
        assert broken.statistics().errors == 0
    assert "recording an event for default/w failed" in caplog.text
