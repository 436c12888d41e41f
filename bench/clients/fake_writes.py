"""Writes against crwatch.testing.FakeApiServer: creates and server-side applies per second.

The server runs in this (the child's) process on 127.0.0.1; the stream server is not used.
The object is the benchmark's ~2 KB Widget without its server-set fields. Every apply
changes ``spec.replicas``, so each one merges, tracks managed fields, stores a new version
and records a watch event: the full write path, not the no-op shortcut.

- ``*_python`` rows call the server's Python API, which runs the same code as the HTTP
  handler after the body is decoded: the server-side cost of the write.
- ``*_http`` rows send each write as one HTTP request over a kept-alive aiohttp connection,
  one at a time: the round trip, client included.
- ``apply_handler`` is the HTTP row timed only inside the server's request handler, in
  CPU time (the time outside it is reported as untimed): the server-side cost with HTTP decoding
  and encoding of the bodies, without the client and aiohttp's request parsing.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from _objects import API_VERSION, GROUP, KIND, NAMESPACE, PATH, PLURAL, VERSION, widget

from . import Ctx

APPLY = "application/apply-patch+yaml"
OBJECTS = 100  # applies go round-robin over this many objects


def _body(i: int) -> dict[str, Any]:
    obj = widget(i, 0)
    meta = obj["metadata"]
    for server_set in (
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
    ):
        meta.pop(server_set, None)
    obj.pop("status", None)
    return obj


def _apply_config(i: int, n: int) -> dict[str, Any]:
    obj = _body(i % OBJECTS)
    obj["spec"]["replicas"] = n  # a real change every time
    return {"apiVersion": API_VERSION, "kind": KIND, **obj}


class _Timed:
    """Wall time of the timed part of a row; the rest is reported as untimed."""

    def __init__(self) -> None:
        self.entered = time.perf_counter()
        self.entered_cpu = time.process_time()
        self.timed = 0.0
        self.timed_cpu = 0.0

    def start(self) -> None:
        # The prepared bodies are the client's, not the server's: keep the cyclic GC from
        # walking them again and again during the timed loop.
        gc.collect()
        gc.freeze()
        self._start = time.perf_counter()
        self._start_cpu = time.process_time()

    def stop(self) -> None:
        self.timed += time.perf_counter() - self._start
        self.timed_cpu += time.process_time() - self._start_cpu
        gc.unfreeze()

    def result(self, count: int, **extra: float) -> tuple[int, dict[str, float]]:
        total = time.perf_counter() - self.entered
        total_cpu = time.process_time() - self.entered_cpu
        return count, {
            "untimed_wall_s": total - self.timed,
            "untimed_cpu_s": total_cpu - self.timed_cpu,
            **extra,
        }


async def _with_server(fn: Callable[[Any, Any], Awaitable[Any]], *, handler: bool = False) -> Any:
    from crwatch.testing import FakeApiServer

    cls: Any = FakeApiServer
    if handler:

        class HandlerTimed(FakeApiServer):  # type: ignore[misc,valid-type]
            spent = 0.0

            async def _handle(self, request: Any) -> Any:
                # CPU time, not wall time: on a busy machine wall time inside the handler
                # counts the waits for a core; the body is already read when it runs.
                start = time.process_time()
                try:
                    return await super()._handle(request)
                finally:
                    HandlerTimed.spent += time.process_time() - start

        cls = HandlerTimed
    async with cls(history_size=1_000) as server:
        widgets = server.register_crd(group=GROUP, version=VERSION, plural=PLURAL, kind=KIND)
        return await fn(server, widgets)


async def create_python(ctx: Ctx) -> Any:
    """Create through the Python API (the handler's code path): server-side cost."""
    clock = _Timed()

    async def run(server: Any, widgets: Any) -> Any:
        bodies = [_body(i) for i in range(ctx.count)]
        clock.start()
        for body in bodies:
            server.create(widgets, body, namespace=NAMESPACE, field_manager="bench")
        clock.stop()
        return clock.result(ctx.count, write_us=clock.timed / ctx.count * 1e6)

    return await _with_server(run)


async def apply_python(ctx: Ctx) -> Any:
    """Apply, changing one field each time, through the Python API: server-side cost."""
    clock = _Timed()

    async def run(server: Any, widgets: Any) -> Any:
        for i in range(OBJECTS):
            server.apply(widgets, _apply_config(i, 0), field_manager="bench")
        configs = [_apply_config(i, i + 1) for i in range(ctx.count)]
        clock.start()
        for config in configs:
            server.apply(widgets, config, field_manager="bench")
        clock.stop()
        return clock.result(ctx.count, write_us=clock.timed / ctx.count * 1e6)

    return await _with_server(run)


async def _http(ctx: Ctx, *, apply: bool, handler_only: bool = False) -> Any:
    clock = _Timed()

    async def run(server: Any, widgets: Any) -> Any:
        headers = {"Content-Type": APPLY if apply else "application/json"}
        async with aiohttp.ClientSession(server.url) as http:
            if apply:
                for i in range(OBJECTS):
                    data = orjson.dumps(_apply_config(i, 0))
                    url = f"{PATH}/{_body(i)['metadata']['name']}?fieldManager=bench"
                    async with http.patch(url, data=data, headers=headers) as r:
                        assert r.status in (200, 201), await r.text()
                bodies = [orjson.dumps(_apply_config(n, n + 1)) for n in range(ctx.count)]
                urls = [
                    f"{PATH}/{_body(n % OBJECTS)['metadata']['name']}?fieldManager=bench"
                    for n in range(ctx.count)
                ]
            else:
                bodies = [orjson.dumps(_body(i)) for i in range(ctx.count)]
                urls = [PATH] * ctx.count
            method = http.patch if apply else http.post
            spent0 = getattr(type(server), "spent", 0.0)
            clock.start()
            for url, data in zip(urls, bodies, strict=True):
                async with method(url, data=data, headers=headers) as r:
                    assert r.status in (200, 201), await r.text()
                    await r.read()
            clock.stop()
        if handler_only:
            # Wall time inside the handler only; CPU stays the whole loop's (client too).
            wall = clock.timed
            clock.timed = getattr(type(server), "spent", 0.0) - spent0
            return clock.result(ctx.count, handler_us=clock.timed / ctx.count * 1e6, loop_s=wall)
        return clock.result(ctx.count, round_trip_us=clock.timed / ctx.count * 1e6)

    return await _with_server(run, handler=handler_only)


async def create_http(ctx: Ctx) -> Any:
    """Create over HTTP, one request at a time (aiohttp client in the same process)."""
    return await _http(ctx, apply=False)


async def apply_http(ctx: Ctx) -> Any:
    """Apply over HTTP, one request at a time (aiohttp client in the same process)."""
    return await _http(ctx, apply=True)


async def apply_handler(ctx: Ctx) -> Any:
    """Apply over HTTP, timed inside the server's request handler only."""
    return await _http(ctx, apply=True, handler_only=True)
