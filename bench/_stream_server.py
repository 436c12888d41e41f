"""A minimal, fast watch server for the benchmarks, run in its own process.

Everything it sends is encoded before it starts listening, so a request costs the server
little more than ``write()`` calls of big chunks. It answers any path (clients build
``/apis/example.com/v1/namespaces/default/widgets``):

* LIST (no ``watch``): a ``WidgetList`` of the ``--objects`` objects at resourceVersion L
  (L = number of objects + 1), paginated with ``limit``/``continue`` (the token is an offset).
* WATCH (``watch=true``):
  - with ``sendInitialEvents``: 422 Invalid unless started with ``--watchlist``; then the
    objects as ADDED, the ``k8s.io/initial-events-end`` BOOKMARK (if ``allowWatchBookmarks``),
  - with ``resourceVersion`` r > 0: the ``--events`` MODIFIED events whose RV (L+1 .. L+N) is
    above r, so a client that re-watches from its last RV gets an idle stream,
  - without a ``resourceVersion`` (or "0"): the objects as ADDED, then all the events,
  then stays idle (no bytes) until the client goes away.

A request whose ``Accept`` asks for ``as=PartialObjectMetadata`` (or ``...List``), as a
metadata-only client's does, gets the same answers with each object reduced to its
``PartialObjectMetadata`` (apiVersion ``meta.k8s.io/v1``, its full ``metadata``, nothing else),
also encoded in advance.

Faults, for the recovery rows: ``POST /_bench/fault?mode=drop|expire&after=K`` arms one fault
(and clears the log); ``GET /_bench/log`` returns what happened since, as
``[[time.time(), what], ...]``:

* ``drop``: the next watch from a resourceVersion sends at most K events, then ends cleanly
  (EOF, logged ``eof``) 0.2 s later (time for the client to drain them); the re-watch
  from the last RV is answered normally (the rest).
* ``expire``: the same, and the re-watch is answered with an ERROR 410 Expired event (logged
  ``410``) and EOF; from then on LIST answers at resourceVersion L+N+1 (above every event),
  so a client's cache is complete again once it has that RV. Every LIST page and watch
  request is logged (``list``, ``list-first``, ``watch``).

The response carries ``X-Bench-Body-Bytes``: the size of everything it will send before
going idle, for the raw socket reader that measures the server's ceiling.

Prints ``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _objects as objs

CHUNK_EVENTS = 128  # ~250 KB per write

STATUS_422 = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"sendInitialEvents is not supported by this server","reason":"Invalid",'
    b'"code":422}'
)


class Data:
    """What the server sends: the objects themselves, or (``partial``) their metadata only."""

    def __init__(self, n_objects: int, n_events: int, *, partial: bool = False) -> None:
        self.list_rv = n_objects + 1
        self.list_kind = "PartialObjectMetadataList" if partial else f"{objs.KIND}List"
        self.list_api_version = "meta.k8s.io/v1" if partial else objs.API_VERSION
        view = objs.partial if partial else _same
        # Objects 0..M-1 at RVs 1..M; list RV is M+1 (or 1 for an empty collection).
        self.items = [orjson.dumps(view(objs.widget(i, i + 1))) for i in range(n_objects)]
        self.added = [b'{"type":"ADDED","object":' + item + b"}\n" for item in self.items]
        self.events = [
            objs.encoded_event("MODIFIED", i % max(n_objects, 1000), self.list_rv + 1 + i, view)
            for i in range(n_events)
        ]
        self.added_chunks = _chunks(self.added)
        self.added_bytes = sum(map(len, self.added))
        self.event_chunks = _chunks(self.events)
        self.event_sizes = [len(e) for e in self.events]


def _same(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _chunks(lines: list[bytes], start: int = 0) -> list[bytes]:
    return [b"".join(lines[i : i + CHUNK_EVENTS]) for i in range(start, len(lines), CHUNK_EVENTS)]


STATUS_410 = (
    b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},'
    b'"status":"Failure","message":"too old resource version: 1 (2)","reason":"Expired",'
    b'"code":410}}\n'
)


class Fault:
    """The armed fault (``POST /_bench/fault``) and the log of what the server did since."""

    def __init__(self) -> None:
        self.arm("", 0)

    def arm(self, mode: str, after: int) -> None:
        self.mode = mode  # "" | "drop" | "expire"
        self.after = after
        self.watches = 0  # watches from a resourceVersion since armed
        self.expired = False  # a 410 was sent: LIST answers above every event
        self.log: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        if self.mode:
            self.log.append((time.time(), what))


def make_app(full: Data, partial: Data, *, watchlist: bool) -> web.Application:
    """Serve ``full``, or ``partial`` to requests whose Accept asks for PartialObjectMetadata."""
    views = {False: full, True: partial}
    end_bookmark = objs.bookmark(full.list_rv, initial_events_end=True)
    fault = Fault()

    async def arm(request: web.Request) -> web.Response:
        fault.arm(request.query.get("mode", ""), int(request.query.get("after") or 0))
        return web.json_response({"mode": fault.mode, "after": fault.after})

    async def log(request: web.Request) -> web.Response:
        return web.json_response(fault.log)

    async def handle(request: web.Request) -> web.StreamResponse:
        q = request.query
        # A metadata-only client asks for PartialObjectMetadata(List) first in Accept
        # (https://kubernetes.io/docs/reference/using-api/api-concepts/#alternate-representations-of-resources).
        data = views["as=PartialObjectMetadata" in request.headers.get("Accept", "")]
        if q.get("watch") in ("true", "1", "True"):
            return await watch(request, data)
        return list_page(request, data)

    def list_page(request: web.Request, data: Data) -> web.Response:
        q = request.query
        start = int(q.get("continue") or 0)
        fault.note("list" if start else "list-first")
        list_rv = data.list_rv + len(data.events) + 1 if fault.expired else data.list_rv
        limit = int(q.get("limit") or 0) or len(data.items)
        end = start + limit
        page = data.items[start:end]
        cont = str(end) if end < len(data.items) else ""
        meta = f'{{"continue":"{cont}","resourceVersion":"{list_rv}"'
        if cont:
            meta += f',"remainingItemCount":{len(data.items) - end}'
        body = (
            f'{{"apiVersion":"{data.list_api_version}","kind":"{data.list_kind}",'
            f'"metadata":{meta}}},'
            '"items":['
        ).encode()
        body += b",".join(page) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def watch(request: web.Request, data: Data) -> web.StreamResponse:
        q = request.query
        initial = False
        bookmark = b""
        if "sendInitialEvents" in q:
            if not watchlist:
                return web.Response(status=422, body=STATUS_422, content_type="application/json")
            initial = q["sendInitialEvents"] in ("true", "1")
            if q.get("allowWatchBookmarks") in ("true", "1"):
                bookmark = end_bookmark
            rv = data.list_rv
        else:
            rv_param = q.get("resourceVersion") or "0"
            initial = rv_param == "0"
            rv = data.list_rv if initial else int(rv_param)
        start = max(0, rv - data.list_rv)
        chunks: list[bytes] = []
        size = 0
        stop = len(data.events)  # events sent before going idle (or ending, on a fault)
        end = False
        if fault.mode and not initial:
            fault.watches += 1
            fault.note("watch")
            if fault.watches == 1:
                stop, end = min(stop, start + fault.after), True
            elif fault.watches == 2 and fault.mode == "expire":
                return await expire(request)
        if initial:
            chunks.extend(data.added_chunks)
            size += data.added_bytes
        if bookmark:
            chunks.append(bookmark)
            size += len(bookmark)
        if start < stop == len(data.events) and start % CHUNK_EVENTS == 0:
            chunks.extend(data.event_chunks[start // CHUNK_EVENTS :])
            size += sum(data.event_sizes[start:])
        elif start < stop:
            chunks.extend(_chunks(data.events[:stop], start))
            size += sum(data.event_sizes[start:stop])
        resp = web.StreamResponse(
            headers={"Content-Type": "application/json", "X-Bench-Body-Bytes": str(size)}
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for chunk in chunks:
                await resp.write(chunk)
            if end:
                # Let the client catch up first, so EOF -> next event measures the resume,
                # not the reading of a backlog of events already on the wire.
                await asyncio.sleep(0.2)
                await resp.write_eof()
                fault.note("eof")
                return resp
            # Idle, like a healthy watch with nothing to say, until the client leaves.
            # aiohttp does not cancel handlers on disconnect (3.9+), so poll the transport.
            while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    async def expire(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        fault.expired = True
        await resp.write(STATUS_410)
        await resp.write_eof()
        fault.note("410")
        return resp

    app = web.Application()
    app.router.add_route("POST", "/_bench/fault", arm)
    app.router.add_route("GET", "/_bench/log", log)
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


async def serve(args: argparse.Namespace) -> None:
    full = Data(args.objects, args.events)
    partial = Data(args.objects, args.events, partial=True)
    app = make_app(full, partial, watchlist=args.watchlist)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--events", type=int, default=0, help="watch events after the list")
    ap.add_argument("--objects", type=int, default=0, help="objects in the collection")
    ap.add_argument("--watchlist", action="store_true", help="support sendInitialEvents")
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
