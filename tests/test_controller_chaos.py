"""Controllers under chaos: seeded random fault schedules against FakeApiServer.

Each schedule runs a :class:`crwatch.Controller` (async reconcile, 2-4 workers) while a
writer makes random changes (spec updates that bump ``metadata.generation``, status-only
updates, deletes, re-creates under the same name) and the schedule injects faults: watches
closed or answered 410 (with compactions), 500/429 on list and watch, 409 Conflicts on the
controller's status writes (which carry a ``resourceVersion`` precondition, so the writer's
own status updates make some fail for real too), writes that stall past the reconcile
deadline or lose their connection, reconciles that raise, hang or ask for a requeue, a
finalizer whose cleanups fail, and, in the leader test, the loss of the Lease while a
reconcile runs.

After quiescing (faults lifted, writer stopped, queue idle) the tests check:

- every object on the server has ``status.observedGeneration == metadata.generation``, and
  the last reconcile of each key saw the server's final object (its uid), or ``None`` for a
  key whose object is gone (a deletion always gets a final reconcile);
- no key was ever reconciled twice at once (a per-key in-flight counter);
- with two replicas under :class:`crwatch.LeaderElection`, the old leader stops acting
  before the new one starts (see ``docs/controller.md``, "Run two replicas");
- a hanging reconcile is cancelled at ``reconcile_timeout`` and retried;
- no task, no watch and no socket is left, and nothing was logged at ERROR but the
  injected failures.

Seeds: the normal suite runs a fixed few (``SEEDS``). Set ``CRWATCH_CHAOS_SEEDS`` to run
more: a count (``CRWATCH_CHAOS_SEEDS=50`` runs seeds 0-49) or a comma-separated list of
seeds (``CRWATCH_CHAOS_SEEDS=7,19`` to replay failures). A failing test names its seed in
its id, and the schedule is a pure function of the seed (the timing of real I/O is not).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import crwatch
from _support import until
from crwatch.testing import ApiError, FakeApiServer, Fault, ResourceType

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets", kind="Widget")
FAST = crwatch.Backoff(initial=0.005, maximum=0.05, max_retry_after=0.05)
GUARD = 30.0  # seconds: a real-time guard against hangs, never waited out when tests pass


def _seeds(default: list[int]) -> list[int]:
    """Return the seeds to run: ``default``, or what ``CRWATCH_CHAOS_SEEDS`` asks for."""
    raw = os.environ.get("CRWATCH_CHAOS_SEEDS", "").strip()
    if not raw:
        return default
    if "," in raw:
        return [int(part) for part in raw.split(",") if part.strip()]
    return list(range(int(raw)))


SEEDS = _seeds([0, 1, 2])
LEADER_SEEDS = _seeds([0, 1])


class Injected(Exception):
    """A reconcile failure the schedule asked for."""


class Progress:
    """A change notification: waiters re-check their condition after each ``poke``."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def poke(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def until(self, condition: Callable[[], bool], timeout: float = GUARD) -> None:
        with anyio.fail_after(timeout):
            while not condition():
                await self._event.wait()


def open_fds() -> int:
    """Count this process's open file descriptors (sockets included)."""
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


class Reconciler:
    """An idempotent reconcile that records what it saw and checks one-key-at-a-time.

    It writes ``status.observedGeneration`` with a resourceVersion precondition when the
    cached object's status lags its generation; a 409 (stale cache, or injected) asks for a
    requeue. While ``chaos`` is on it also raises or requeues at random.
    """

    def __init__(self, rnd: random.Random, progress: Progress, name: str = "") -> None:
        self.rnd = rnd
        self.progress = progress
        self.name = name
        self.chaos = True
        self.hold = False  # reconciles started while set wait until cancelled
        self.hangs = False  # while chaos is on, some reconciles hang (for reconcile_timeout)
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []
        self.last_seen: dict[str, str | None] = {}  # key -> uid of the object, None if gone
        self.deleted_seen: set[str] = set()
        self.intervals: list[tuple[float, float]] = []
        self.active = 0
        self.injected = 0
        self.conflicts = 0
        self.writes = 0

    async def __call__(self, ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        key = ctx.key
        count = self.in_flight.get(key, 0) + 1
        self.in_flight[key] = count
        if count > 1:
            self.overlaps.append(key)
        started = time.monotonic()
        self.active += 1
        self.progress.poke()
        try:
            return await self._reconcile(ctx)
        finally:
            self.active -= 1
            self.in_flight[key] -= 1
            self.intervals.append((started, time.monotonic()))
            self.progress.poke()

    async def _reconcile(self, ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        obj = ctx.object
        if self.hold:
            await anyio.sleep_forever()
        if obj is None:
            self.last_seen[ctx.key] = None
            self.deleted_seen.add(ctx.key)
            return None
        meta = obj["metadata"]
        self.last_seen[ctx.key] = meta["uid"]
        if self.chaos:
            roll = self.rnd.random()
            if roll < 0.1:
                self.injected += 1
                raise Injected(f"injected failure of {ctx.key}")
            if roll < 0.2:
                return crwatch.Action.requeue(after=self.rnd.choice([0, 0.001, 0.01]))
            if roll < 0.23 and self.hangs:
                await anyio.sleep_forever()
        return await self.act(ctx, obj)

    async def act(
        self, ctx: crwatch.Context[dict[str, Any]], obj: dict[str, Any]
    ) -> crwatch.Action | None:
        """Bring the object's status up to date; a 409 asks for a requeue."""
        try:
            await self.write_status(ctx.client, obj)
        except crwatch.ConflictError:
            self.conflicts += 1
            return crwatch.Action.requeue()
        except crwatch.NotFoundError:
            return None  # deleted meanwhile: its deletion is reconciled next
        return None

    async def write_status(self, client: crwatch.Client, obj: dict[str, Any]) -> None:
        """Write ``status.observedGeneration``, conditional on the resourceVersion read."""
        await anyio.lowlevel.checkpoint()  # let the writer and the watches interleave
        meta = obj["metadata"]
        generation = meta.get("generation")
        if (obj.get("status") or {}).get("observedGeneration") == generation:
            return
        await client.patch_status(
            WIDGETS,
            obj,
            {"observedGeneration": generation},
            resource_version=meta["resourceVersion"],
        )
        self.writes += 1


FINALIZER = "example.com/chaos"


class FinalizingReconciler(Reconciler):
    """A reconcile through ``crwatch.finalizer``: status on live objects, cleanup on delete.

    Cleanups fail at random while ``chaos`` is on; each successful one is counted per uid.
    It also records an Event now and then (the controller's EventRecorder writes it).
    """

    def __init__(self, rnd: random.Random, progress: Progress) -> None:
        super().__init__(rnd, progress)
        self.cleaned: dict[str, int] = {}

    async def act(
        self, ctx: crwatch.Context[dict[str, Any]], obj: dict[str, Any]
    ) -> crwatch.Action | None:
        async def apply(live: dict[str, Any]) -> None:
            await self.write_status(ctx.client, live)
            if self.rnd.random() < 0.1:
                ctx.record(live, "Synced", "status written")

        async def cleanup(doomed: dict[str, Any]) -> None:
            await anyio.lowlevel.checkpoint()
            if self.chaos and self.rnd.random() < 0.2:
                self.injected += 1
                raise Injected(f"injected cleanup failure of {ctx.key}")
            uid = doomed["metadata"]["uid"]
            self.cleaned[uid] = self.cleaned.get(uid, 0) + 1

        try:
            await crwatch.finalizer(
                ctx.client, WIDGETS, obj, FINALIZER, apply=apply, cleanup=cleanup
            )
        except crwatch.ConflictError:
            self.conflicts += 1
            return crwatch.Action.requeue()
        except crwatch.NotFoundError:
            return None
        return None


class Observer(Reconciler):
    """A second controller on the same shared informer: it records, and writes nothing."""

    async def act(
        self, ctx: crwatch.Context[dict[str, Any]], obj: dict[str, Any]
    ) -> crwatch.Action | None:
        await anyio.lowlevel.checkpoint()
        return None


class Writer:
    """Random changes to widgets ``w0``..``w{n-1}`` in ``default``, through the server."""

    def __init__(self, server: FakeApiServer, rtype: ResourceType, rnd: random.Random, n: int):
        self.server, self.rtype, self.rnd, self.n = server, rtype, rnd, n
        self.ever: set[str] = set()
        self.finalized: set[str] = set()  # uids deleted while they carried FINALIZER

    def create(self, name: str) -> None:
        try:
            self.server.create(
                self.rtype,
                {"metadata": {"name": name, "namespace": "default"}, "spec": {"n": 0}},
            )
        except ApiError as exc:  # still terminating (its finalizer not yet removed)
            if exc.code != 409:
                raise
        self.ever.add(f"default/{name}")

    def step(self, step: int) -> None:
        name = f"w{self.rnd.randrange(self.n)}"
        live = {o["metadata"]["name"] for o in self.server.list(self.rtype, namespace="default")}
        if name not in live:
            self.create(name)  # a re-create gets a new uid
            return
        roll = self.rnd.random()
        if roll < 0.15:
            last = self.server.delete(self.rtype, name, namespace="default")
            if FINALIZER in (last["metadata"].get("finalizers") or ()):
                self.finalized.add(last["metadata"]["uid"])
        elif roll < 0.4:  # status-only: no new generation, but a new resourceVersion
            self.server.patch(
                self.rtype, name, {"status": {"note": step}}, namespace="default", status=True
            )
        else:
            self.server.patch(self.rtype, name, {"spec": {"n": step}}, namespace="default")

    def state(self) -> dict[str, dict[str, Any]]:
        return {
            f"default/{o['metadata']['name']}": o
            for o in self.server.list(self.rtype, namespace="default")
        }


def inject(server: FakeApiServer, rnd: random.Random, *, cut_writes: bool = False) -> str:
    """Inject one random fault; return what it was (for the failure message).

    With ``cut_writes``, the controller's writes may also stall past its reconcile
    timeout or lose their connection.
    """
    choice = rnd.randrange(10 if cut_writes else 8)
    if choice == 8:
        server.faults.add(Fault.stall(0.5), verb="patch", resource="widgets")
        return "stalled write"
    if choice == 9:
        server.faults.add(Fault.reset(), verb="patch", resource="widgets")
        return "reset write"
    if choice == 0:
        server.close_watches()
        return "close"
    if choice == 1:
        server.compact()
        server.close_watches()  # the resumed watch meets the 410
        return "compact"
    if choice == 2:
        server.faults.add(Fault.expired_event(after_events=rnd.randrange(3)), verb="watch")
        return "410 event"
    if choice == 3:
        server.faults.add(Fault.status(rnd.choice([500, 429])), verb="watch", resource="widgets")
        server.close_watches()
        return "watch 500/429"
    if choice == 4:
        server.faults.add(
            Fault.status(rnd.choice([500, 429]), retry_after=rnd.choice([None, 1])),
            verb="list",
            resource="widgets",
            times=rnd.randrange(1, 3),
        )
        server.faults.add(Fault.expired(), verb="watch", resource="widgets")
        server.close_watches()
        return "list 500/429"
    if choice == 5:
        server.faults.add(Fault.end_after(rnd.randrange(4)), verb="watch")
        return "end after"
    # 6, 7: the controller's next status writes fail with 409 Conflict
    server.faults.add(
        Fault.status(409, reason="Conflict", message="injected conflict"),
        verb="patch",
        resource="widgets",
        times=rnd.randrange(1, 4),
    )
    return "409"


def converged(writer: Writer, reconciler: Reconciler) -> bool:
    """Every live object observed at its generation, and last reconciled as it is now.

    A key whose object is gone was last reconciled with ``ctx.object is None``, or never
    (a replica that started after the deletion never saw it).
    """
    state = writer.state()
    finalizing = isinstance(reconciler, FinalizingReconciler)
    for key, obj in state.items():
        meta = obj["metadata"]
        if (obj.get("status") or {}).get("observedGeneration") != meta["generation"]:
            return False
        if meta.get("deletionTimestamp"):  # a deletion the finalizer still holds up
            return False
        if finalizing and FINALIZER not in (meta.get("finalizers") or ()):
            return False
        if reconciler.last_seen.get(key) != obj["metadata"]["uid"]:
            return False
    return all(reconciler.last_seen.get(key) is None for key in writer.ever - set(state))


def unexpected_errors(
    records: list[logging.LogRecord],
    *,
    injected: tuple[type[BaseException], ...] = (Injected,),
    timeouts: bool = False,
) -> list[str]:
    """ERROR records other than the failures the schedule caused.

    Those are reconciles that raised one of the ``injected`` errors and, with ``timeouts``,
    reconciles cancelled past their deadline.
    """
    return [
        record.getMessage()
        for record in records
        if record.levelno >= logging.ERROR
        and not (record.exc_info and isinstance(record.exc_info[1], injected))
        and not (timeouts and "ran past its" in record.getMessage())
    ]


async def _cluster(server: FakeApiServer, tmp_path: Path) -> tuple[ResourceType, Path]:
    rtype = server.register_crd(
        group="example.com",
        version="v1",
        plural="widgets",
        kind="Widget",
        status_subresource=True,
    )
    return rtype, server.kubeconfig(tmp_path / "kc")


@pytest.mark.parametrize("finalizing", [False, True], ids=["status", "finalizer"])
@pytest.mark.parametrize("seed", SEEDS)
async def test_controller_converges_under_random_faults(
    tmp_path: Path, seed: int, finalizing: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A controller under random changes and faults ends with every object reconciled.

    Watch faults, 409s on its writes, failing and requeueing reconciles: once quiet, every
    object's ``observedGeneration`` is its generation, each key's last reconcile saw the
    final object (``None`` for deleted ones), no key ran twice at once, no task or watch
    is left, and the only ERROR logs are the injected reconcile failures. With
    ``crwatch.finalizer`` (cleanups failing at random too, Events recorded): every live
    object carries the finalizer, no deletion is left pending, and every object deleted
    while it carried the finalizer was cleaned up. A second controller on the same
    ``SharedInformers`` (an observer) ends with the same view.
    """
    caplog.set_level(logging.WARNING)
    rnd = random.Random(seed)
    progress = Progress()
    reconciler = (FinalizingReconciler if finalizing else Reconciler)(
        random.Random(seed + 1000), progress
    )
    reconciler.hangs = True
    observer = Observer(random.Random(seed + 2000), progress)  # shares the informer
    tasks_before = len(asyncio.all_tasks())
    fds_before = open_fds()
    async with FakeApiServer(bookmark_interval=0.05) as server:
        rtype, kubeconfig = await _cluster(server, tmp_path)
        writer = Writer(server, rtype, rnd, n=8)
        for i in range(4):
            writer.create(f"w{i}")
        async with crwatch.Client.from_kubeconfig(kubeconfig) as client:
            informers = crwatch.SharedInformers(backoff=FAST, page_size=rnd.choice([None, 3]))
            faults: list[str] = []
            async with informers:
                controller = crwatch.Controller(
                    client,
                    WIDGETS,
                    reconciler,
                    workers=rnd.randrange(2, 5),
                    namespace="default",
                    rate_limiter=crwatch.ExponentialRateLimiter(base=0.001, maximum=0.02),
                    shutdown_timeout=1.0,
                    reconcile_timeout=0.25,
                    informers=informers,
                )
                audit = crwatch.Controller(
                    client,
                    WIDGETS,
                    observer,
                    workers=2,
                    namespace="default",
                    rate_limiter=crwatch.ExponentialRateLimiter(base=0.001, maximum=0.02),
                    informers=informers,
                    name="audit",
                )
                async with controller, audit:
                    await controller.wait_synced(timeout=GUARD)
                    if finalizing:  # so that the first deletions meet the finalizer
                        await progress.until(
                            lambda: all(
                                FINALIZER in (o["metadata"].get("finalizers") or ())
                                for o in writer.state().values()
                            )
                        )
                    for step in range(1, 151):
                        writer.step(step)
                        if rnd.random() < 0.08:
                            faults.append(inject(server, rnd, cut_writes=True))
                        if rnd.random() < 0.3:
                            # Let the controller run for a while (a real-time pace, not
                            # a synchronisation: the invariants hold for any interleaving).
                            await anyio.sleep(rnd.random() * 0.004)
                    # Quiesce: lift the faults, stop the chaos, wait for convergence.
                    server.faults.clear()
                    reconciler.chaos = observer.chaos = False
                    try:
                        await progress.until(
                            lambda: converged(writer, reconciler) and converged(writer, observer)
                        )
                    except TimeoutError:  # pragma: no cover - the failure report
                        pytest.fail(
                            f"seed {seed}: no convergence; faults {faults}; "
                            f"state {writer.state()}; seen {reconciler.last_seen}; "
                            f"{controller.statistics()}"
                        )
                    with anyio.fail_after(GUARD):
                        await controller.queue.wait_idle()
                        await audit.queue.wait_idle()
                    assert converged(writer, reconciler)
                    assert converged(writer, observer)
                    stats = controller.statistics()
            assert reconciler.overlaps == []
            assert observer.overlaps == []
            assert faults, "the schedule injected no fault"
            # Every failure is counted once: raised, timed out, or a write cut off.
            cut = faults.count("reset write")
            assert reconciler.injected + stats.timeouts <= stats.errors
            assert stats.errors <= reconciler.injected + stats.timeouts + cut
            if {"close", "compact", "watch 500/429", "list 500/429"} & set(faults):
                assert stats.informers[0].watches > 1  # the watches were cut, and resumed
            gone = writer.ever - set(writer.state())
            # A deleted key the controller had reconciled got a reconcile with None.
            assert {key for key in gone if key in reconciler.last_seen} <= reconciler.deleted_seen
            if isinstance(reconciler, FinalizingReconciler):
                assert writer.finalized, "no deletion met the finalizer"
                assert writer.finalized <= set(reconciler.cleaned)
            await until(lambda: server.statistics().open_watches == 0)
    assert len(asyncio.all_tasks()) == tasks_before
    await until(lambda: open_fds() <= fds_before)  # no socket left, of client or server
    errors = unexpected_errors(
        caplog.records, injected=(Injected, crwatch.TransportError), timeouts=True
    )
    assert errors == []


# Lease timings, in real seconds (the lease duration is whole seconds, at least 1). The
# leader gives up at most retry_period + renew_deadline after its last renewal, and a
# follower takes over no sooner than lease_duration after it saw that renewal, so a
# shutdown_timeout below lease_duration - renew_deadline - retry_period (0.3 s here) keeps
# the two from acting at once.
LEASE, RENEW, RETRY = 1.0, 0.5, 0.2
SLACK = 0.1  # seconds of event-loop lateness and request latency tolerated in the bounds


@pytest.mark.parametrize("seed", LEADER_SEEDS)
async def test_leader_loss_mid_reconcile_hands_over_without_overlap(
    tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Two replicas under LeaderElection: losing the Lease mid-reconcile never overlaps.

    The leader's Lease renewals fail (an injected 500 on lease updates) while one of its
    reconciles is running and will not finish by itself; its controller is cancelled,
    stops within ``shutdown_timeout``, and only then does the other replica take over,
    which reconciles every object at its latest generation under continued churn and
    watch faults. Acting intervals of the two replicas never overlap, no key runs twice at
    once, and no task or watch is left.
    """
    caplog.set_level(logging.WARNING)
    rnd = random.Random(seed)
    progress = Progress()
    # Within the documented bound (no overlap), or past it (overlap bounded by the excess).
    shutdown_timeout = (0.1, 0.7, 0.0)[seed % 3]
    window = max(0.0, RETRY + RENEW + shutdown_timeout - LEASE)
    tasks_before = len(asyncio.all_tasks())
    async with FakeApiServer(bookmark_interval=0.05) as server:
        rtype, kubeconfig = await _cluster(server, tmp_path)
        writer = Writer(server, rtype, rnd, n=6)
        for i in range(4):
            writer.create(f"w{i}")
        async with crwatch.Client.from_kubeconfig(kubeconfig) as client:
            replicas = {
                name: Reconciler(random.Random(seed * 10 + i), progress, name)
                for i, name in enumerate(("a", "b"))
            }
            elections: dict[str, crwatch.LeaderElection] = {}
            lost: dict[str, float] = {}

            async def replica(name: str) -> None:
                reconciler = replicas[name]
                election = crwatch.LeaderElection(
                    client,
                    "widgets-chaos",
                    namespace="default",
                    identity=name,
                    lease_duration=LEASE,
                    renew_deadline=RENEW,
                    retry_period=RETRY,
                )
                elections[name] = election
                controller = crwatch.Controller(
                    client,
                    WIDGETS,
                    reconciler,
                    workers=rnd.randrange(2, 5),
                    namespace="default",
                    rate_limiter=crwatch.ExponentialRateLimiter(base=0.001, maximum=0.02),
                    shutdown_timeout=shutdown_timeout,
                    informers=crwatch.SharedInformers(backoff=FAST),
                    name=f"widgets-{name}",
                )
                async with election:
                    try:
                        async with election.leading(), controller:
                            await anyio.sleep_forever()
                    except crwatch.LeadershipLost:
                        lost[name] = time.monotonic()
                        progress.poke()

            async def churn(steps: int) -> None:
                for step in range(steps):
                    writer.step(step)
                    if rnd.random() < 0.05:
                        inject(server, rnd)
                    await anyio.sleep(rnd.random() * 0.004)  # a pace, not a synchronisation

            def leader() -> str | None:
                leading = [n for n, e in elections.items() if e.is_leader]
                assert len(leading) <= 1, "two replicas lead at once"
                return leading[0] if leading else None

            async with anyio.create_task_group() as tg:
                tg.start_soon(replica, "a")
                tg.start_soon(replica, "b")
                await progress.until(lambda: leader() is not None and replicas[leader()].active)
                first = leader()
                assert first is not None
                follower = "b" if first == "a" else "a"
                await churn(60)
                # The leader's next reconciles hang; wait until one runs, then cut its Lease.
                replicas[first].hold = True
                for i in range(4):
                    if f"default/w{i}" in writer.state():
                        server.patch(rtype, f"w{i}", {"spec": {"held": True}}, namespace="default")
                    else:
                        writer.create(f"w{i}")
                await progress.until(lambda: replicas[first].active > 0)
                cut = server.faults.add(
                    Fault.status(500), verb="update", resource="leases", times=None
                )
                cut_at = time.monotonic()
                await progress.until(lambda: first in lost)
                cut.remove()
                await churn(60)
                server.faults.clear()
                replicas[follower].chaos = False
                await progress.until(lambda: converged(writer, replicas[follower]))
                assert elections[follower].is_leader
                tg.cancel_scope.cancel()
            old, new = replicas[first], replicas[follower]
            assert old.intervals
            assert new.intervals
            old_end = max(end for _, end in old.intervals)
            new_start = min(start for start, _ in new.intervals)
            assert old_end - new_start <= window + SLACK, (
                f"seed {seed}: replicas acted at once for {old_end - new_start:.3f} s, "
                f"more than the {window:.3f} s the lease timings allow"
            )
            # The hanging reconcile was cancelled once the renewals had failed for
            # renew_deadline (after one retry period) and shutdown_timeout had passed.
            assert old_end > cut_at
            assert old_end - cut_at <= RETRY + RENEW + shutdown_timeout + 5 * SLACK
            assert old.overlaps == []
            assert new.overlaps == []
            await until(lambda: server.statistics().open_watches == 0)
    assert len(asyncio.all_tasks()) == tasks_before
    assert unexpected_errors(caplog.records) == []


# --- regressions the chaos tests found ----------------------------------------------------


class _AsyncReconcile:
    """A reconcile object whose ``async def __call__`` its subclasses inherit."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.started = Progress()
        self.calls = 0
        self.cancelled = 0

    async def __call__(self, ctx: crwatch.Context[dict[str, Any]]) -> None:
        self.threads.append(threading.current_thread().name)
        self.calls += 1
        self.started.poke()
        if ctx.retries == 0:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise


class _InheritedAsyncReconcile(_AsyncReconcile):
    """Inherits ``__call__``: still an async reconcile."""


async def test_an_inherited_async_call_is_an_async_reconcile(tmp_path: Path) -> None:
    """Regression: a reconcile object whose class inherits ``async def __call__`` is async.

    It was taken for a sync reconcile (only the class's own ``__dict__`` was looked at): it
    ran through a worker thread hop and, past ``reconcile_timeout``, was only reported,
    never cancelled, so the key hung for good. Now it runs on the event loop and is
    cancelled at its deadline, then retried.
    """
    reconcile = _InheritedAsyncReconcile()
    clock = crwatch.ManualClock()
    async with FakeApiServer() as server:
        rtype, kubeconfig = await _cluster(server, tmp_path)
        server.create(rtype, {"metadata": {"name": "w", "namespace": "default"}})
        async with crwatch.Client.from_kubeconfig(kubeconfig) as client:
            controller = crwatch.Controller(
                client,
                WIDGETS,
                reconcile,
                reconcile_timeout=10,
                shutdown_timeout=0,
                clock=clock,
                informers=crwatch.SharedInformers(backoff=FAST),
            )
            async with controller:
                await reconcile.started.until(lambda: reconcile.calls == 1)
                await anyio.wait_all_tasks_blocked()
                clock.advance(10)
                await anyio.wait_all_tasks_blocked()
                clock.advance(0.005)  # the retry's backoff
                await reconcile.started.until(lambda: reconcile.calls == 2, timeout=5)
                stats = controller.statistics()
    assert reconcile.cancelled == 1
    assert stats.timeouts == 1
    assert reconcile.threads == [threading.current_thread().name] * 2
