"""crwatch: ``crwatch.watch`` over a ``Client`` built from a kubeconfig at the stream server.

Raises :class:`Unavailable` while the pieces are not built yet, so the table says so instead
of showing numbers.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

import crwatch

from . import GROUP, NAMESPACE, PLURAL, VERSION, Ctx, Unavailable

RESOURCE = crwatch.Resource(GROUP, VERSION, PLURAL)


def _require(*names: str) -> None:
    missing = [n for n in names if not hasattr(crwatch, n)]
    if missing:
        raise Unavailable(f"not yet available: crwatch.{', crwatch.'.join(missing)}")


@contextlib.asynccontextmanager
async def _client(ctx: Ctx) -> AsyncIterator[Any]:
    _require("Client", "watch")
    client: Any = crwatch.Client.from_kubeconfig(ctx.kubeconfig)  # type: ignore[attr-defined]
    if inspect.isawaitable(client):
        client = await client
    if hasattr(client, "__aenter__"):
        async with client as c:
            yield c
    else:
        try:
            yield client
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                res = close()
                if inspect.isawaitable(res):
                    await res


async def wire_throughput(ctx: Ctx) -> int:
    """Run the sans-IO wire layer alone: aiohttp ``iter_any``, ``LineSplitter``, ``parse_event``."""
    try:
        from crwatch._wire import LineSplitter, parse_event
    except ImportError as exc:
        raise Unavailable(f"not yet available: crwatch._wire ({exc})") from exc
    n = 0
    splitter = LineSplitter()
    feed = splitter.feed
    async with aiohttp.ClientSession() as s, s.get(ctx.url, params={"watch": "true"}) as resp:
        async for chunk in resp.content.iter_any():
            for line in feed(chunk):
                if isinstance(line, Exception):
                    raise line
                parse_event(line)
                n += 1
                if n >= ctx.count:
                    return n
    return n


async def watch_throughput(ctx: Ctx, *, read: bool = False, **options: Any) -> int:
    """Count ``ctx.count`` events of ``crwatch.watch``; with ``read``, touch each object."""
    n = 0
    async with (
        _client(ctx) as client,
        crwatch.watch(client, RESOURCE, namespace=NAMESPACE, **options) as events,  # type: ignore[attr-defined]
    ):
        async for event in events:
            if read:
                event.object["metadata"]["resourceVersion"]
            n += 1
            if n >= ctx.count:
                break
    return n


def objects() -> dict[str, Any]:
    """``cache="objects"`` (the parsed dicts), which is all a crwatch without ``cache`` had."""
    if "cache" not in inspect.signature(crwatch.watch).parameters:  # type: ignore[attr-defined]
        return {}
    return {"cache": "objects"}


async def watch_throughput_reading(ctx: Ctx) -> int:
    """``crwatch.watch`` with its defaults, the consumer reading every event's object."""
    return await watch_throughput(ctx, read=True)


async def watch_throughput_objects(ctx: Ctx) -> int:
    """Run ``watch_throughput_reading`` with ``cache="objects"``."""
    return await watch_throughput(ctx, read=True, **objects())


async def watch_sync(ctx: Ctx) -> int:
    """Count initial ADDED events until all ``ctx.count`` objects arrived (later: wait_synced)."""
    n = 0
    async with (
        _client(ctx) as client,
        crwatch.watch(client, RESOURCE, namespace=NAMESPACE) as events,  # type: ignore[attr-defined]
    ):
        async for event in events:
            if str(getattr(event.type, "value", event.type)) == "ADDED":
                n += 1
                if n >= ctx.count:
                    break
    return n


async def watch_sync_memory(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """RSS per object once ``crwatch.watch`` has delivered the initial state (it keeps a Store)."""
    from .floor import rss_bytes

    gc.collect()
    before = rss_bytes()
    n = 0
    async with (
        _client(ctx) as client,
        crwatch.watch(client, RESOURCE, namespace=NAMESPACE) as events,  # type: ignore[attr-defined]
    ):
        async for _event in events:
            n += 1
            if n >= ctx.count:
                break
        gc.collect()
        after = rss_bytes()
    return n, {"rss_delta_bytes": after - before, "bytes_per_object": (after - before) / n}


def informer_throughput(ctx: Ctx) -> int:
    raise Unavailable("not yet available: crwatch.Informer (future issue)")
