"""crwatch.Informer: throughput, initial sync, memory, fan-out and recovery.

Every row builds the informer the way a user would (``crwatch.Informer(client, resource,
namespace=...)`` over a ``Client`` from a kubeconfig at the stream server), so the clock
covers the same connecting, listing and watching as the ``crwatch.watch`` rows.

A subscriber finishes when it has seen the stream's last resourceVersion rather than after
counting N events: with ``overflow="wait"`` a subscriber that falls behind gets the newest
state per object instead of every intermediate one, so a count could wait forever. The
figures still say how many events each subscriber was handed (``delivered_min``) and how
many it skipped (``coalesced_max``).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from typing import Any

import aiohttp

import crwatch

from . import NAMESPACE, Ctx, Unavailable
from .crwatch_client import RESOURCE, _client, objects
from .floor import rss_bytes

if not hasattr(crwatch, "Informer"):
    raise Unavailable("not yet available: crwatch.Informer")

# The throughput and fan-out servers list no objects (list RV 1), then send N MODIFIED
# events at RVs 2 .. N+1 (bench/_stream_server.py).
FIRST_EVENT_RV = 2


def _rv(event: Any) -> str:
    return event.object["metadata"]["resourceVersion"]  # type: ignore[no-any-return]


async def _fan_out(
    ctx: Ctx, fast: int, slow: int = 0, *, stuck: bool = False, **options: Any
) -> tuple[int, dict[str, Any]]:
    """Run one informer with ``fast`` no-op callbacks (and ``slow`` slow ones).

    A slow one sleeps 1 ms per event; with ``stuck`` it takes one event and then never
    another. Until every fast one has seen the last event; the figure is the fast ones' rate.
    """
    last = str(FIRST_EVENT_RV + ctx.count - 1)
    done = asyncio.Event()
    left = fast

    def make_fast() -> Any:
        finished = False

        def on_event(event: Any) -> None:
            nonlocal finished, left
            if not finished and event.object["metadata"]["resourceVersion"] == last:
                finished = True
                left -= 1
                if not left:
                    done.set()

        return on_event

    async def on_event_slow(event: Any) -> None:
        if stuck:
            await asyncio.Event().wait()  # never returns
        await asyncio.sleep(0.001)  # 1 ms per event: ~1,000 events/s at most

    async with _client(ctx) as client:
        informer = crwatch.Informer(client, RESOURCE, namespace=NAMESPACE, **options)
        fast_subs = [informer.subscribe(make_fast(), name=f"fast-{i}") for i in range(fast)]
        slow_subs = [
            informer.subscribe(on_event_slow, overflow="wait", name=f"slow-{i}")
            for i in range(slow)
        ]
        async with informer:
            await done.wait()
            stats = informer.statistics()
            fast_stats = [s.statistics() for s in fast_subs]
            slow_stats = [s.statistics() for s in slow_subs]
    assert stats.events == ctx.count, stats
    extra: dict[str, Any] = {
        "subscribers": fast + slow,
        "delivered_min": min(s.delivered for s in fast_stats),
        "coalesced_max": max(s.coalesced for s in fast_stats),
    }
    if slow_stats:
        extra["slow_delivered"] = slow_stats[0].delivered
        extra["slow_coalesced"] = slow_stats[0].coalesced
        extra["slow_depth"] = slow_stats[0].depth
    return ctx.count, extra


async def throughput(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Informer + cache + one callback subscriber, over the N-event stream."""
    return await _fan_out(ctx, 1)


def _metadata_only() -> dict[str, Any]:
    if "metadata_only" not in inspect.signature(crwatch.Informer).parameters:
        raise Unavailable("this crwatch has no Informer(metadata_only=...)")
    return {"metadata_only": True}


async def throughput_metadata_only(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Run ``throughput`` with ``metadata_only=True`` (the server sends PartialObjectMetadata)."""
    return await _fan_out(ctx, 1, **_metadata_only())


async def throughput_objects(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Run ``throughput`` with ``cache="objects"`` (the callback reads every object)."""
    return await _fan_out(ctx, 1, **objects())


async def fanout_9(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Run the slow-subscriber row without its slow subscriber."""
    return await _fan_out(ctx, 9)


async def fanout_10(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    return await _fan_out(ctx, 10)


async def fanout_100(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    return await _fan_out(ctx, 100)


async def fanout_9_and_slow(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Nine no-op callbacks and one that sleeps 1 ms per event (overflow="wait")."""
    return await _fan_out(ctx, 9, slow=1)


async def fanout_9_and_stuck(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Nine no-op callbacks and one that never returns from its first call."""
    return await _fan_out(ctx, 9, slow=1, stuck=True)


def _gc_freeze(policy: str) -> dict[str, Any]:
    """``gc_freeze=policy`` for this crwatch (before "list", it was ``True``/``False``)."""
    param = inspect.signature(crwatch.Informer).parameters.get("gc_freeze")
    if param is None:
        raise Unavailable("this crwatch has no Informer(gc_freeze=...)")
    if isinstance(param.default, bool):
        if policy == "list":
            raise Unavailable('this crwatch has no gc_freeze="list"')
        return {"gc_freeze": policy == "keep"}
    return {"gc_freeze": policy}


async def sync(ctx: Ctx, **options: Any) -> tuple[int, dict[str, Any]]:
    """Time until ``await informer.wait_synced()`` returns (no subscriber).

    Then, untimed, one full ``gc.collect()``: what the next full collection costs (with
    ``gc_freeze="list"`` it comes soon after the sync and walks the cache once).
    """
    async with _client(ctx) as client:
        informer = crwatch.Informer(client, RESOURCE, namespace=NAMESPACE, **options)
        async with informer:
            await informer.wait_synced()
            n = len(informer.store)
            wall, cpu = time.perf_counter(), time.process_time()
            gc.collect()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert n == ctx.count, (n, ctx.count)
    return n, {"collect_after_ms": wall * 1e3, "untimed_wall_s": wall, "untimed_cpu_s": cpu}


async def sync_gc_keep(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Time ``cache="objects"`` with ``gc_freeze="keep"`` (the dicts stay hidden from the GC)."""
    return await sync(ctx, **objects(), **_gc_freeze("keep"))


async def sync_gc_off(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Time ``cache="objects"`` with ``gc_freeze="off"`` (the collector left alone)."""
    return await sync(ctx, **objects(), **_gc_freeze("off"))


async def sync_compact_gc_list(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Time the default (compact) cache with ``gc_freeze="list"``."""
    return await sync(ctx, **_gc_freeze("list"))


async def sync_objects(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Time the same with ``cache="objects"`` and ``gc_freeze="list"`` (the old defaults)."""
    return await sync(ctx, **objects(), **_gc_freeze("list"))


async def _memory(ctx: Ctx, transform: Any, **options: Any) -> tuple[int, dict[str, Any]]:
    """Measure RSS per cached object once synced, and one full ``gc.collect()``.

    The collection is timed before and after ``gc.freeze()``: what a large cache costs the
    cyclic GC (see docs/informer.md).
    """
    gc.collect()
    before = rss_bytes()
    async with _client(ctx) as client:
        informer = crwatch.Informer(
            client, RESOURCE, namespace=NAMESPACE, transform=transform, **options
        )
        async with informer:
            await informer.wait_synced()
            n = len(informer.store)
            gc.collect()
            after = rss_bytes()
            t = time.perf_counter()
            gc.collect()
            collect_ms = (time.perf_counter() - t) * 1e3
            gc.freeze()
            t = time.perf_counter()
            gc.collect()
            frozen_ms = (time.perf_counter() - t) * 1e3
            gc.unfreeze()
    assert n == ctx.count, (n, ctx.count)
    return n, {
        "rss_delta_bytes": after - before,
        "bytes_per_object": (after - before) / n,
        "gc_collect_ms": collect_ms,
        "gc_collect_frozen_ms": frozen_ms,
    }


async def memory(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    return await _memory(ctx, None)


async def memory_drop_managed_fields(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    return await _memory(ctx, crwatch.drop_managed_fields)


async def memory_metadata_only(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    return await _memory(ctx, None, **_metadata_only())


async def memory_objects(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    return await _memory(ctx, None, **objects())


async def memory_metadata_only_drop_managed_fields(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    return await _memory(ctx, crwatch.drop_managed_fields, **_metadata_only())


# --- recovery: the stream server's fault endpoint (see bench/_stream_server.py) ------------

RECOVERY_AFTER = 1000  # events the first watch delivers before the fault


async def _arm(ctx: Ctx, mode: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{ctx.base}/_bench/fault", params={"mode": mode, "after": RECOVERY_AFTER}) as r,
    ):
        r.raise_for_status()


async def _log(ctx: Ctx) -> list[tuple[float, str]]:
    async with aiohttp.ClientSession() as s, s.get(f"{ctx.base}/_bench/log") as r:
        return [(t, what) for t, what in await r.json()]


def _at(log: list[tuple[float, str]], what: str, after: float = 0.0) -> float:
    return next(t for t, w in log if w == what and t >= after)


async def recovery_drop(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Time a resume: the first watch ends cleanly (EOF) after RECOVERY_AFTER events.

    From that EOF to the first later event handed to a callback subscriber (the re-watch
    from the last RV).
    """
    list_rv = ctx.count + 1  # M objects at RVs 1..M, list at M+1, events from M+2
    target = list_rv + RECOVERY_AFTER + 1  # the first event the second watch sends
    got = asyncio.Event()
    seen_at = 0.0

    def on_event(event: Any) -> None:
        nonlocal seen_at
        if not seen_at and int(_rv(event)) >= target:
            seen_at = time.time()
            got.set()

    await _arm(ctx, "drop")
    async with _client(ctx) as client:
        informer = crwatch.Informer(client, RESOURCE, namespace=NAMESPACE)
        informer.subscribe(on_event)
        async with informer:
            await got.wait()
            stats = informer.statistics()
    log = await _log(ctx)
    eof = _at(log, "eof")
    rewatch = _at(log, "watch", eof)
    assert stats.relists == 0, stats
    return ctx.count, {
        "recovery_ms": (seen_at - eof) * 1e3,
        "rewatch_ms": (rewatch - eof) * 1e3,
        "first_event_ms": (seen_at - rewatch) * 1e3,
    }


async def recovery_expire(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Time a relist: the first watch ends after RECOVERY_AFTER events, the re-watch gets 410.

    From the 410 to the cache being complete again (``wait_for`` the relist's RV), split
    into crwatch's backoff (410 -> first LIST request) and the relist (-> cache complete).
    """
    relist_rv = ctx.count + 1 + 2 * RECOVERY_AFTER + 1  # the server's events: 2 x AFTER
    await _arm(ctx, "expire")
    async with _client(ctx) as client:
        informer = crwatch.Informer(client, RESOURCE, namespace=NAMESPACE)
        informer.subscribe(lambda event: None)
        async with informer:
            await informer.wait_synced()
            while (before := informer.statistics()).events < ctx.count + RECOVERY_AFTER:  # noqa: ASYNC110
                await asyncio.sleep(0.001)  # until the first watch's events are in
            await informer.wait_for(relist_rv)
            synced_at = time.time()
            stats = informer.statistics()
            n = len(informer.store)
    log = await _log(ctx)
    gone = _at(log, "410")
    listed = _at(log, "list-first", gone)
    assert stats.relists == 1, stats
    assert n == ctx.count, (n, ctx.count)
    return n, {
        "recovery_ms": (synced_at - gone) * 1e3,
        "backoff_ms": (listed - gone) * 1e3,
        "relist_ms": (synced_at - listed) * 1e3,
        "relist_events": stats.events - before.events,
    }
