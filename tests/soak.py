"""Soak an Informer: many objects, steady churn, periodic faults; fail on steady growth.

    nox -s soak -- --minutes 10
    PYTHONPATH=src python tests/soak.py --seconds 20 --objects 2000

A FakeApiServer holds ``--objects`` widgets; a writer patches, deletes and re-creates them
at ``--rate`` changes per second; every ``--fault-every`` seconds one fault from a fixed
rotation hits the watch (cut, 500, 410, compaction, a malformed line, a reset, a stall). An
Informer with three subscribers (a plain sync one, a slow async one that coalesces, one
behind a batch middleware) follows it. Every ``--sample-every`` seconds the driver samples
the process's RSS, asyncio tasks, open file descriptors and each subscriber's depth. After
the warm-up (the first quarter) it prints each series' slope per minute and fails (exit
status 1) when one grows steadily: its least-squares growth over the measured window
exceeds a threshold (below) and the last third of the window sits above the first third.
At the end the faults stop and the cache and the plain subscriber must equal the server.

The CI-sized run is ``tests/test_soak.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs

import crwatch
from crwatch.testing import FakeApiServer, Fault, ResourceType

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")


@attrs.frozen
class Sample:
    """One measurement."""

    at: float
    rss: float  # MiB
    tasks: int
    fds: int
    depths: tuple[int, ...]
    objects: int


@attrs.frozen
class Trend:
    """How one series moved over the measured window."""

    name: str
    slope_per_minute: float
    growth: float  # slope times the window length
    first_third: float
    last_third: float
    threshold: float

    @property
    def growing(self) -> bool:
        """Steady growth: grew past the threshold, and ends higher than it started."""
        return self.growth > self.threshold and self.last_third > self.first_third

    def line(self) -> str:
        """One line of the report."""
        flag = "GROWING" if self.growing else "flat"
        return (
            f"{self.name:>14}: {self.slope_per_minute:+10.2f}/min  "
            f"first third {self.first_third:8.1f}  last third {self.last_third:8.1f}  "
            f"(limit {self.threshold:g} over the window) {flag}"
        )


@attrs.frozen
class SoakReport:
    """The outcome of a soak."""

    samples: tuple[Sample, ...]
    trends: tuple[Trend, ...]
    faults: int
    changes: int
    relists: int
    converged: bool

    @property
    def ok(self) -> bool:
        """No steady growth, and the cache converged once the faults stopped."""
        return self.converged and not any(t.growing for t in self.trends)


def _rss() -> float:
    with open("/proc/self/statm") as f:  # noqa: PTH123 - Linux only, like the soak
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def _trend(name: str, xs: Sequence[float], ys: Sequence[float], threshold: float) -> Trend:
    slope = _slope(xs, ys)
    third = max(1, len(ys) // 3)
    return Trend(
        name,
        slope * 60,
        slope * (xs[-1] - xs[0]),
        statistics.median(ys[:third]),
        statistics.median(ys[-third:]),
        threshold,
    )


def trends(
    samples: Sequence[Sample],
    *,
    warmup: float,
    buffer_size: int,
    names: Sequence[str] = (),
) -> tuple[Trend, ...]:
    """Return the trend of each series after ``warmup`` seconds.

    Thresholds over the window: RSS 16 MiB or 10 % of its mean, whichever is larger (the
    allocator and the garbage collector move it by megabytes); tasks and fds 3 (one
    reconnect in flight may hold one more of each); a subscriber's depth a quarter of its
    buffer (it drains between bursts).
    """
    start = samples[0].at + warmup
    window = [s for s in samples if s.at >= start]
    if len(window) < 6:
        raise ValueError("too few samples after the warm-up: soak longer or sample more often")
    xs = [s.at for s in window]
    rss = [s.rss for s in window]
    out = [
        _trend("rss MiB", xs, rss, max(16.0, 0.1 * statistics.fmean(rss))),
        _trend("tasks", xs, [float(s.tasks) for s in window], 3),
        _trend("fds", xs, [float(s.fds) for s in window], 3),
    ]
    for i in range(len(window[0].depths)):
        depths = [float(s.depths[i]) for s in window]
        out.append(
            _trend(f"depth {names[i]}" if names else f"depth {i}", xs, depths, buffer_size / 4)
        )
    return tuple(out)


class _Counter:
    changes = 0


async def _churn(
    server: FakeApiServer,
    rtype: ResourceType,
    objects: int,
    rate: float,
    rnd: random.Random,
    counter: _Counter,
) -> None:
    """Change objects at ``rate`` per second until cancelled."""
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    while True:
        for _ in range(per_tick):
            name = f"w{rnd.randrange(objects)}"
            if rnd.random() < 0.9:
                server.patch(rtype, name, {"spec": {"n": counter.changes}}, namespace="default")
            else:  # a name deleted and re-created: a new uid
                server.delete(rtype, name, namespace="default")
                server.create(rtype, _widget(name, counter.changes), namespace="default")
            counter.changes += 1
        await anyio.sleep(tick)


def _widget(name: str, n: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"soak": "yes"}}, "spec": {"n": n}}


def _faults() -> list[Callable[[FakeApiServer, ResourceType], object]]:
    return [
        lambda s, r: s.close_watches(r),
        lambda s, r: s.faults.add(Fault.status(500), verb="watch"),
        lambda s, r: s.faults.add(Fault.expired_event(after_events=3), verb="watch"),
        lambda s, r: (s.compact(), s.close_watches(r)),
        lambda s, r: s.faults.add(Fault.malformed_line(after_events=2), verb="watch"),
        lambda s, r: s.faults.add(Fault.reset(), verb="watch"),
        lambda s, r: s.faults.add(Fault.status(429, retry_after=0), verb="watch"),
    ]


async def soak(
    *,
    seconds: float,
    objects: int = 10_000,
    rate: float = 200.0,
    fault_every: float = 5.0,
    sample_every: float = 0.5,
    warmup_fraction: float = 0.25,
    buffer_size: int = 1024,
    seed: int = 0,
    report: Callable[[str], None] = print,
) -> SoakReport:
    """Run the soak for ``seconds`` (after the initial sync) and return its report."""
    rnd = random.Random(seed)
    counter = _Counter()
    fault_count = 0
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="crwatch-soak-") as tmp:
        async with FakeApiServer(bookmark_interval=1.0, history_size=5_000) as server:
            rtype = server.register_crd(
                group="example.com", version="v1", plural="widgets", kind="Widget"
            )
            for i in range(objects):
                server.create(rtype, _widget(f"w{i}", 0), namespace="default")
            path = server.kubeconfig(Path(tmp) / "kubeconfig")
            async with crwatch.Client.from_kubeconfig(path) as client:
                informer = crwatch.Informer(
                    client,
                    WIDGETS,
                    namespace="default",
                    backoff=crwatch.Backoff(initial=0.05, maximum=1.0),
                    stall_timeout=5.0,
                )
                plain: dict[str, str] = {}

                def on_plain(event: crwatch.Event) -> None:
                    if event.type is crwatch.EventType.DELETED:
                        plain.pop(event.key, None)
                    else:
                        plain[event.key] = event.resource_version

                async def on_slow(event: crwatch.Event) -> None:
                    await anyio.sleep(0.001)

                def on_batch(batch: crwatch.Batch) -> None:
                    pass

                informer.subscribe(on_plain, buffer_size=buffer_size, name="plain")
                informer.subscribe(
                    on_slow, buffer_size=buffer_size, overflow="coalesce", name="slow"
                )
                informer.subscribe(
                    on_batch,
                    crwatch.batch(max_items=100, max_wait=0.2),
                    buffer_size=buffer_size,
                    name="batched",
                )
                converged = False
                async with informer:
                    await informer.wait_synced(timeout=120)
                    gc.collect()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_churn, server, rtype, objects, rate, rnd, counter)
                        faults = _faults()
                        start = time.monotonic()
                        next_fault = start + fault_every
                        while (now := time.monotonic()) - start < seconds:
                            if now >= next_fault:
                                faults[fault_count % len(faults)](server, rtype)
                                fault_count += 1
                                next_fault = now + fault_every
                            stats = informer.statistics()
                            samples.append(
                                Sample(
                                    now - start,
                                    _rss(),
                                    len(asyncio.all_tasks()),
                                    _fds(),
                                    tuple(s.depth for s in stats.subscribers),
                                    stats.objects,
                                )
                            )
                            await anyio.sleep(sample_every)
                        tg.cancel_scope.cancel()
                    # Quiesce: no more changes or faults; the cache and the plain
                    # subscriber's view must equal the server's state.
                    server.faults.clear()

                    def truth() -> dict[str, str]:
                        return {
                            f"default/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                            for o in server.list(rtype, namespace="default")
                        }

                    def cache() -> dict[str, str]:
                        return {
                            f"default/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                            for o in informer.store.list()
                        }

                    with anyio.move_on_after(60):
                        while not (converged := cache() == truth() == plain):  # noqa: ASYNC110
                            await anyio.sleep(0.1)  # the cache has no event for "equal"
                    relists = informer.statistics().relists
    changes = counter.changes
    window = trends(
        samples,
        warmup=warmup_fraction * seconds,
        buffer_size=buffer_size,
        names=("plain", "slow", "batched"),
    )
    result = SoakReport(tuple(samples), window, fault_count, changes, relists, converged)
    last = samples[-1]
    report(
        f"soak: {seconds:.0f} s, {objects} objects, {changes} changes, {fault_count} faults, "
        f"{relists} relists, {len(samples)} samples (warm-up {warmup_fraction:.0%})"
    )
    report(
        f"last sample: rss {last.rss:.1f} MiB, tasks {last.tasks}, fds {last.fds}, "
        f"depths {list(last.depths)}, objects {last.objects}"
    )
    for trend in window:
        report(trend.line())
    report(f"converged after the faults stopped: {converged}")
    report("PASS" if result.ok else "FAIL")
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, soak, return the exit status."""
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None)
    length.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second")
    parser.add_argument("--fault-every", type=float, default=5.0)
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seconds = 60.0 if args.minutes is None and args.seconds is None else 0.0
    seconds = seconds or (args.seconds if args.seconds is not None else args.minutes * 60)
    result = anyio.run(
        lambda: soak(
            seconds=seconds,
            objects=args.objects,
            rate=args.rate,
            fault_every=args.fault_every,
            sample_every=args.sample_every,
            seed=args.seed,
        )
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
