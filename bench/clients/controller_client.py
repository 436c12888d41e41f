"""The controller toolkit: the work queue's throughput, and a controller's first pass.

Queue rows (no server traffic): a producer adds N distinct keys in bursts of 100 (a yield
between bursts, as events arrive from a watch), and 4 worker tasks take each key, await a
no-op reconcile and mark it done. The floor is the same loop over a bare ``asyncio.Queue``
(``put_nowait``/``get``/``task_done``), which has no dedup, no processing set and no
statistics. The figure is N over the time until every key was processed.

Controller rows: M objects listed from the stream server. The floor is an Informer's own
``wait_synced()``; the controller row is a ``crwatch.Controller`` with 4 workers and a no-op
reconcile, until every key was reconciled once (the reconciles start only after the sync).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

import crwatch

from . import NAMESPACE, Ctx, Unavailable
from .crwatch_client import RESOURCE, _client

if not hasattr(crwatch, "WorkQueue") or not hasattr(crwatch, "Controller"):
    raise Unavailable("not yet available: crwatch.WorkQueue, crwatch.Controller")

WORKERS = 4
BURST = 100


async def _noop(key: str) -> None:
    return None


async def queue_floor(ctx: Ctx) -> int:
    """Run a bare asyncio.Queue: N puts in bursts, 4 workers get + await no-op + task_done."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    keys = [f"{NAMESPACE}/widget-{i}" for i in range(ctx.count)]
    processed = 0
    done = asyncio.Event()

    async def worker() -> None:
        nonlocal processed
        while True:
            key = await queue.get()
            await _noop(key)
            queue.task_done()
            processed += 1
            if processed == ctx.count:
                done.set()

    async with anyio.create_task_group() as tg:
        for _ in range(WORKERS):
            tg.start_soon(worker)
        for start in range(0, len(keys), BURST):
            for key in keys[start : start + BURST]:
                queue.put_nowait(key)
            await asyncio.sleep(0)
        await done.wait()
        tg.cancel_scope.cancel()
    return processed


async def queue_crwatch(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Run crwatch.WorkQueue: N adds in bursts, 4 workers get + await no-op + done."""
    queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
    keys = [f"{NAMESPACE}/widget-{i}" for i in range(ctx.count)]
    processed = 0
    done = asyncio.Event()

    async def worker() -> None:
        nonlocal processed
        async for key in queue:
            await _noop(key)
            queue.done(key)
            processed += 1
            if processed == ctx.count:
                done.set()

    async with anyio.create_task_group() as tg:
        for _ in range(WORKERS):
            tg.start_soon(worker)
        for start in range(0, len(keys), BURST):
            for key in keys[start : start + BURST]:
                queue.add(key)
            await asyncio.sleep(0)
        await done.wait()
        queue.shutdown()
    stats = queue.statistics()
    assert stats.processed == ctx.count, stats
    return processed, {"latency_mean_us": stats.queue_latency.mean * 1e6}


async def informer_sync(ctx: Ctx) -> int:
    """Time an Informer's wait_synced() over M objects: the controller rows' floor."""
    async with _client(ctx) as client:
        informer = crwatch.Informer(client, RESOURCE, namespace=NAMESPACE)
        async with informer:
            await informer.wait_synced()
            n = len(informer.store)
    assert n == ctx.count, (n, ctx.count)
    return n


async def controller_first_pass(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Run a Controller (4 workers, no-op reconcile) until every key was reconciled once."""
    seen: set[str] = set()
    done = asyncio.Event()

    async def reconcile(c: crwatch.Context[dict[str, Any]]) -> None:
        seen.add(c.key)
        if len(seen) == ctx.count:
            done.set()

    async with _client(ctx) as client:
        controller = crwatch.Controller(
            client, RESOURCE, reconcile, namespace=NAMESPACE, workers=WORKERS
        )
        async with controller:
            await done.wait()
            stats = controller.statistics()
    return len(seen), {
        "reconciles": stats.reconciles,
        "queue_latency_ms": stats.queue.queue_latency.mean * 1e3,
    }
