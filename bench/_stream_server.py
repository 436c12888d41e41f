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

The response carries ``X-Bench-Body-Bytes``: the size of everything it will send before
going idle, for the raw socket reader that measures the server's ceiling.

Prints ``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

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
    def __init__(self, n_objects: int, n_events: int) -> None:
        self.list_rv = n_objects + 1
        # Objects 0..M-1 at RVs 1..M; list RV is M+1 (or 1 for an empty collection).
        self.items = [orjson.dumps(objs.widget(i, i + 1)) for i in range(n_objects)]
        self.added = [b'{"type":"ADDED","object":' + item + b"}\n" for item in self.items]
        self.events = [
            objs.encoded_event("MODIFIED", i % max(n_objects, 1000), self.list_rv + 1 + i)
            for i in range(n_events)
        ]


def _chunks(lines: list[bytes], start: int = 0) -> list[bytes]:
    return [b"".join(lines[i : i + CHUNK_EVENTS]) for i in range(start, len(lines), CHUNK_EVENTS)]


def make_app(data: Data, *, watchlist: bool) -> web.Application:
    added_chunks = _chunks(data.added)
    added_bytes = sum(map(len, data.added))
    event_chunks = _chunks(data.events)
    event_sizes = [len(e) for e in data.events]
    end_bookmark = objs.bookmark(data.list_rv, initial_events_end=True)

    async def handle(request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("watch") in ("true", "1", "True"):
            return await watch(request)
        return list_page(request)

    def list_page(request: web.Request) -> web.Response:
        q = request.query
        start = int(q.get("continue") or 0)
        limit = int(q.get("limit") or 0) or len(data.items)
        end = start + limit
        page = data.items[start:end]
        cont = str(end) if end < len(data.items) else ""
        meta = f'{{"continue":"{cont}","resourceVersion":"{data.list_rv}"'
        if cont:
            meta += f',"remainingItemCount":{len(data.items) - end}'
        body = (
            f'{{"apiVersion":"{objs.API_VERSION}","kind":"{objs.KIND}List","metadata":{meta}}},'
            '"items":['
        ).encode()
        body += b",".join(page) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def watch(request: web.Request) -> web.StreamResponse:
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
        chunks = []
        size = 0
        if initial:
            chunks.extend(added_chunks)
            size += added_bytes
        if bookmark:
            chunks.append(bookmark)
            size += len(bookmark)
        if start < len(data.events):
            if start % CHUNK_EVENTS == 0:
                chunks.extend(event_chunks[start // CHUNK_EVENTS :])
            else:
                chunks.extend(_chunks(data.events, start))
            size += sum(event_sizes[start:])
        resp = web.StreamResponse(
            headers={"Content-Type": "application/json", "X-Bench-Body-Bytes": str(size)}
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for chunk in chunks:
                await resp.write(chunk)
            # Idle, like a healthy watch with nothing to say, until the client leaves.
            # aiohttp does not cancel handlers on disconnect (3.9+), so poll the transport.
            while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


async def serve(args: argparse.Namespace) -> None:
    data = Data(args.objects, args.events)
    app = make_app(data, watchlist=args.watchlist)
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
