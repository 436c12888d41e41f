"""The floor: read the same bytes with aiohttp, split lines, parse JSON, nothing else.

Also the server's ceiling (a raw socket that discards bytes) and the memory baseline.
"""

from __future__ import annotations

import gc
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from . import Ctx

PAGE = 500


def raw_socket(ctx: Ctx) -> int:
    """Server ceiling: one blocking socket, recv_into a 1 MiB buffer, count bytes only."""
    u = urlsplit(ctx.url)
    assert u.hostname
    assert u.port
    with socket.create_connection((u.hostname, u.port)) as sock:
        req = (
            f"GET {u.path}?watch=true HTTP/1.1\r\nHost: {u.netloc}\r\n"
            "Accept: application/json\r\n\r\n"
        )
        sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        head, _, rest = head.partition(b"\r\n\r\n")
        total = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-bench-body-bytes":
                total = int(value)
        got = len(rest)
        buf = bytearray(1 << 20)
        # Chunk framing makes us stop a few hundred bytes early: < 0.01 % of the stream.
        while got < total:
            n = sock.recv_into(buf)
            if not n:
                raise RuntimeError("server closed the stream early")
            got += n
    return ctx.count


async def readline_orjson(ctx: Ctx) -> int:
    """Read with ``resp.content.readline()``, parse with ``orjson.loads``: the floor."""
    n = 0
    loads = orjson.loads
    async with aiohttp.ClientSession() as s, s.get(ctx.url, params={"watch": "true"}) as resp:
        readline = resp.content.readline
        while n < ctx.count:
            line = await readline()
            if not line:
                break
            loads(line)
            n += 1
    return n


#: What a metadata-only client asks for (the stream server then sends PartialObjectMetadata).
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"}


async def readline_orjson_metadata(ctx: Ctx) -> int:
    """Run the floor's loop over the metadata-only stream (what smaller lines alone give)."""
    n = 0
    loads = orjson.loads
    async with (
        aiohttp.ClientSession() as s,
        s.get(ctx.url, params={"watch": "true"}, headers=METADATA_ONLY) as resp,
    ):
        readline = resp.content.readline
        while n < ctx.count:
            line = await readline()
            if not line:
                break
            loads(line)
            n += 1
    return n


async def readline_orjson_kept(ctx: Ctx) -> int:
    """Run the floor, keeping the newest object per namespace/name in a dict (as a cache does).

    The stream cycles over 1,000 objects, so each event frees the previous state of its
    object, parsed 1,000 events (~8 MB of objects) earlier: cold memory, unlike the floor's.
    The floor's loop is repeated here on purpose: a shared loop calling a handler per event
    would add a call to every event of the rows it is compared with.
    """
    n = 0
    loads = orjson.loads
    cache: dict[tuple[str, str], Any] = {}
    async with aiohttp.ClientSession() as s, s.get(ctx.url, params={"watch": "true"}) as resp:
        readline = resp.content.readline
        while n < ctx.count:
            line = await readline()
            if not line:
                break
            obj = loads(line)["object"]
            meta = obj["metadata"]
            cache[meta["namespace"], meta["name"]] = obj
            n += 1
    return n


async def readline_json(ctx: Ctx) -> int:
    """``readline()`` + stdlib ``json.loads``: what choosing orjson is worth."""
    n = 0
    loads = json.loads
    async with aiohttp.ClientSession() as s, s.get(ctx.url, params={"watch": "true"}) as resp:
        readline = resp.content.readline
        while n < ctx.count:
            line = await readline()
            if not line:
                break
            loads(line)
            n += 1
    return n


async def iter_any_orjson(ctx: Ctx) -> int:
    """``iter_any()`` + own line splitting (no line-length limit) + ``orjson.loads``."""
    n = 0
    loads = orjson.loads
    tail = b""
    async with aiohttp.ClientSession() as s, s.get(ctx.url, params={"watch": "true"}) as resp:
        async for chunk in resp.content.iter_any():
            lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")
            tail = lines.pop()
            for line in lines:
                loads(line)
                n += 1
                if n >= ctx.count:
                    return n
    return n


async def _paged(ctx: Ctx, keep: dict[str, Any] | None, drop_managed: bool = False) -> int:
    n = 0
    cont = ""
    async with aiohttp.ClientSession() as s:
        while True:
            params = {"limit": str(PAGE)}
            if cont:
                params["continue"] = cont
            async with s.get(ctx.url, params=params) as resp:
                body = orjson.loads(await resp.read())
            for obj in body["items"]:
                n += 1
                if keep is not None:
                    meta = obj["metadata"]
                    if drop_managed:
                        meta.pop("managedFields", None)
                    keep[f"{meta['namespace']}/{meta['name']}"] = obj
            cont = body["metadata"].get("continue") or ""
            if not cont:
                return n


async def paged_list(ctx: Ctx) -> int:
    """Sync floor: paginated LIST (``limit``/``continue``), each page parsed with orjson."""
    return await _paged(ctx, None)


async def paged_list_kept(ctx: Ctx) -> int:
    """Paginated LIST, every object kept in a dict keyed namespace/name (as a cache must)."""
    return await _paged(ctx, {})


async def paged_list_kept_nogc(ctx: Ctx) -> int:
    """Keep every object, with the cyclic GC off during the sync (what gc.freeze() could save)."""
    gc.disable()
    try:
        return await _paged(ctx, {})
    finally:
        gc.enable()


async def stream_list(ctx: Ctx) -> int:
    """Sync floor: streaming list (``sendInitialEvents``) until the initial-events-end bookmark."""
    return await _stream_list(ctx, None)


async def stream_list_kept(ctx: Ctx) -> int:
    """Streaming list, every object kept in a dict keyed namespace/name."""
    return await _stream_list(ctx, {})


async def stream_list_kept_nogc(ctx: Ctx) -> int:
    """Keep every object, with the cyclic GC off during the streaming list."""
    gc.disable()
    try:
        return await _stream_list(ctx, {})
    finally:
        gc.enable()


async def _stream_list(ctx: Ctx, keep: dict[str, Any] | None) -> int:
    n = 0
    loads = orjson.loads
    params = {
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    async with aiohttp.ClientSession() as s, s.get(ctx.url, params=params) as resp:
        readline = resp.content.readline
        while True:
            ev = loads(await readline())
            if ev["type"] == "BOOKMARK":
                return n
            n += 1
            if keep is not None:
                meta = ev["object"]["metadata"]
                keep[f"{meta['namespace']}/{meta['name']}"] = ev["object"]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:  # noqa: PTH123 - hot enough to skip pathlib
        return int(f.read().split()[1]) * 4096


async def _memory(ctx: Ctx, drop_managed: bool) -> tuple[int, dict[str, Any]]:
    gc.collect()
    before = rss_bytes()
    cache: dict[str, Any] = {}
    n = await _paged(ctx, cache, drop_managed)
    gc.collect()
    after = rss_bytes()
    assert len(cache) == n
    return n, {"rss_delta_bytes": after - before, "bytes_per_object": (after - before) / n}


async def memory_full(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Baseline: parsed dicts alone, in a dict keyed namespace/name."""
    return await _memory(ctx, drop_managed=False)


async def memory_no_managed_fields(ctx: Ctx) -> tuple[int, dict[str, Any]]:
    """Baseline with ``metadata.managedFields`` dropped before keeping each object."""
    return await _memory(ctx, drop_managed=True)
