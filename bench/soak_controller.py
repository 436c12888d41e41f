"""Soak a ``crwatch.Controller``: steady churn and periodic faults, watching for growth.

``python bench/soak_controller.py [--objects 10000] [--minutes 10] [--rate 100] [--seconds S]``

Runs a FakeApiServer and a Controller in one process. The controller reconciles N widgets
(its reconcile writes ``status.observedGeneration`` with a resourceVersion precondition, and
a 409 asks for a requeue); a writer changes random widgets' specs at ``--rate`` per second
(and now and then deletes and re-creates one); every ``--fault-every`` seconds a fault hits:
all watches closed, a compaction, a 500 on the next watch, 409s on the controller's writes.

It samples the process's RSS, asyncio tasks, open file descriptors, the work queue's depth
(waiting plus delayed keys) and the deepest subscriber buffer of the controller's informer.
After the warm-up (``--warmup``, a fraction of the run; the initial reconcile of every
object is always part of it) it prints each metric's least-squares slope per minute and
exits with status 1 when one grows steadily: its slope is positive and the median of the
last third of the samples exceeds the median of the first third by more than the metric's
tolerance. It also fails when the controller has not caught up with the writer at the end
(every object reconciled at its latest generation once the churn stops).

The per-object memory is bench/run.py's business; this only looks for leaks and backlogs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

import crwatch
from crwatch.testing import FakeApiServer, Fault, ResourceType

WIDGETS = crwatch.Resource("example.com", "v1", "widgets", kind="Widget")
METRICS = ("rss_mb", "tasks", "fds", "queue_depth", "subscriber_depth")


def rss_mb() -> float:
    """Return the process's resident set size in MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    """Count the process's open file descriptors (0 without ``/proc/self/fd``)."""
    try:
        return sum(1 for _ in Path("/proc/self/fd").iterdir())
    except OSError:
        return 0


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (0 with fewer than two distinct xs)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def tolerance(metric: str, typical: float, objects: int) -> float:
    """How much a metric may rise from the first to the last third and still be flat."""
    if metric == "rss_mb":
        return max(6.0, 0.05 * typical)  # allocator and GC noise
    if metric in ("tasks", "fds"):
        return 8.0  # requests and reconnects in flight at the moment of sampling
    return max(50.0, 0.1 * objects)  # depths: bursts after faults and relists


def growth(
    samples: Sequence[dict[str, float]], *, objects: int
) -> dict[str, tuple[float, float, bool]]:
    """For each metric: (slope per minute, last-third minus first-third median, grows).

    ``samples`` are the post-warm-up samples, each with a ``t`` (seconds) and the metrics.
    """
    result: dict[str, tuple[float, float, bool]] = {}
    third = max(1, len(samples) // 3)
    for metric in METRICS:
        xs = [s["t"] for s in samples]
        ys = [s[metric] for s in samples]
        per_minute = slope(xs, ys) * 60.0
        if len(ys) < 3:
            result[metric] = (per_minute, 0.0, False)
            continue
        first, last = statistics.median(ys[:third]), statistics.median(ys[-third:])
        rise = last - first
        grows = per_minute > 0 and rise > tolerance(metric, statistics.median(ys), objects)
        result[metric] = (per_minute, rise, grows)
    return result


class Soak:
    """One soak run: the server, the controller, the writer, the faults and the samples."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rnd = random.Random(args.seed)
        self.samples: list[dict[str, float]] = []
        self.changes = 0
        self.faults = 0
        self.conflicts = 0
        self.writes = 0

    async def reconcile(self, ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        obj = ctx.object
        if obj is None:
            return None
        meta = obj["metadata"]
        generation = meta.get("generation")
        if (obj.get("status") or {}).get("observedGeneration") == generation:
            return None
        try:
            await ctx.client.patch_status(
                WIDGETS,
                obj,
                {"observedGeneration": generation},
                resource_version=meta["resourceVersion"],
            )
        except crwatch.ConflictError:
            self.conflicts += 1
            return crwatch.Action.requeue()
        except crwatch.NotFoundError:
            return None
        self.writes += 1
        return None

    def create(self, server: FakeApiServer, rtype: ResourceType, i: int) -> None:
        server.create(
            rtype, {"metadata": {"name": f"w{i}", "namespace": "default"}, "spec": {"n": 0}}
        )

    async def churn(self, server: FakeApiServer, rtype: ResourceType, until: float) -> None:
        n, rnd = self.args.objects, self.rnd
        interval = 1.0 / self.args.rate
        next_at = time.monotonic()
        while time.monotonic() < until:
            i = rnd.randrange(n)
            try:
                if rnd.random() < 0.01:
                    server.delete(rtype, f"w{i}", namespace="default")
                    self.create(server, rtype, i)
                else:
                    server.patch(rtype, f"w{i}", {"spec": {"n": self.changes}}, namespace="default")
            except Exception:  # the object was being deleted (finalizer-free: gone at once)
                self.create(server, rtype, i)
            self.changes += 1
            next_at += interval
            await anyio.sleep(max(0.0, next_at - time.monotonic()))

    async def inject(self, server: FakeApiServer, until: float) -> None:
        while True:
            await anyio.sleep(self.args.fault_every)
            if time.monotonic() >= until:
                return
            kind = self.faults % 4
            if kind == 0:
                server.close_watches()
            elif kind == 1:
                server.compact()
                server.close_watches()
            elif kind == 2:
                server.faults.add(Fault.status(500), verb="watch", resource="widgets")
                server.close_watches()
            else:
                server.faults.add(Fault.status(409), verb="patch", resource="widgets", times=5)
            self.faults += 1

    def sample(self, controller: crwatch.Controller[Any], started: float) -> None:
        stats = controller.statistics()
        subscribers = stats.informers[0].subscribers if stats.informers else ()
        self.samples.append(
            {
                "t": time.monotonic() - started,
                "rss_mb": rss_mb(),
                "tasks": float(len(asyncio.all_tasks())),
                "fds": float(open_fds()),
                "queue_depth": float(stats.queue.depth + stats.queue.delayed),
                "subscriber_depth": float(max((s.depth for s in subscribers), default=0)),
            }
        )

    async def run(self) -> int:
        args = self.args
        duration = args.minutes * 60.0
        # A short history: the server's retained events fill up during the warm-up.
        async with FakeApiServer(bookmark_interval=1.0, history_size=1000) as server:
            rtype = server.register_crd(
                group="example.com",
                version="v1",
                plural="widgets",
                kind="Widget",
                status_subresource=True,
            )
            for i in range(args.objects):
                self.create(server, rtype, i)
            with tempfile.TemporaryDirectory() as tmp:
                kubeconfig = server.kubeconfig(Path(tmp) / "kc")
                async with crwatch.Client.from_kubeconfig(kubeconfig) as client:
                    controller = crwatch.Controller(
                        client,
                        WIDGETS,
                        self.reconcile,
                        workers=args.workers,
                        namespace="default",
                        informers=crwatch.SharedInformers(
                            backoff=crwatch.Backoff(initial=0.05, maximum=1.0),
                            transform=crwatch.drop_managed_fields,
                        ),
                    )
                    async with controller:
                        code = await self.drive(server, rtype, controller, duration)
        return code

    async def drive(
        self,
        server: FakeApiServer,
        rtype: ResourceType,
        controller: crwatch.Controller[Any],
        duration: float,
    ) -> int:
        args = self.args
        await controller.wait_synced()
        await controller.queue.wait_idle()  # every object reconciled once: part of warm-up
        started = time.monotonic()
        until = started + duration
        every = args.sample_every or max(0.25, duration / 120)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.churn, server, rtype, until)
            tg.start_soon(self.inject, server, until)
            while time.monotonic() < until:
                self.sample(controller, started)
                await anyio.sleep(every)
        server.faults.clear()
        caught_up = False
        with anyio.move_on_after(max(30.0, duration)):
            while not caught_up:
                await controller.queue.wait_idle()
                caught_up = all(
                    (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
                    for o in server.list(rtype, namespace="default")
                )
                if not caught_up:
                    await anyio.sleep(0.05)
        return self.report(controller, caught_up)

    def report(self, controller: crwatch.Controller[Any], caught_up: bool) -> int:
        args = self.args
        warm = [s for s in self.samples if s["t"] >= args.warmup * args.minutes * 60.0]
        verdict = growth(warm, objects=args.objects)
        stats = controller.statistics()
        print(
            f"controller soak: {args.objects} objects, {args.minutes * 60:.0f} s, "
            f"{self.changes} changes, {self.faults} faults, {stats.reconciles} reconciles, "
            f"{self.writes} status writes, {self.conflicts} conflicts, "
            f"{stats.informers[0].relists} relists, {len(warm)} samples after warm-up"
        )
        print(f"{'metric':<18}{'first':>10}{'last':>10}{'slope/min':>12}{'rise':>10}  verdict")
        failed = False
        for metric in METRICS:
            per_minute, rise, grows = verdict[metric]
            failed |= grows
            first = warm[0][metric] if warm else 0.0
            last = warm[-1][metric] if warm else 0.0
            print(
                f"{metric:<18}{first:>10.1f}{last:>10.1f}{per_minute:>12.2f}{rise:>10.1f}  "
                f"{'GROWS' if grows else 'flat'}"
            )
        if not caught_up:
            print("the controller did not catch up with the writer after the churn stopped")
            failed = True
        print("FAIL" if failed else "OK")
        return 1 if failed else 0


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=10_000, help="widgets (default 10000)")
    ap.add_argument("--minutes", type=float, default=10.0, help="run time after the initial sync")
    ap.add_argument("--seconds", type=float, default=None, help="run time, instead of --minutes")
    ap.add_argument("--rate", type=float, default=100.0, help="spec changes per second")
    ap.add_argument("--fault-every", type=float, default=5.0, help="seconds between faults")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=0.3, help="fraction of the run to ignore")
    ap.add_argument("--sample-every", type=float, default=0.0, help="seconds (default: auto)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.seconds is not None:
        args.minutes = args.seconds / 60.0
    if args.objects < 1 or args.minutes <= 0 or args.rate <= 0 or args.fault_every <= 0:
        ap.error("--objects, --minutes/--seconds, --rate and --fault-every must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; return the exit status."""
    return anyio.run(Soak(parse(argv)).run)


if __name__ == "__main__":
    sys.exit(main())
