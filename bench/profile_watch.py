"""Where ``crwatch.watch`` spends its per-event time.

``python bench/profile_watch.py [--events N] [--no-tree]``

1. The cost of each piece of the per-event path, timed alone in a tight loop over the same
   ~2 KB events the benchmark streams (low noise: no sockets, no other process).
2. End to end against the stream server, in this process: the floor, then crwatch's own
   pieces (LineSplitter, parse_event, step, Cache.apply) pulled inline by the consumer, with
   no background task and no memory stream (what a pull-based ``EventStream`` could reach),
   one event at a time or one network read at a time; then ``crwatch.watch`` itself, also
   with the cyclic GC frozen or off, which shows what keeping parsed objects alive costs,
   and an ``Informer`` with one and ten no-op callbacks.
3. A pyinstrument call tree of ``crwatch.watch`` reading N events from the stream server
   (``pip install pyinstrument``; skipped without it). Sampling profilers add overhead to
   every call, so read the tree for proportions, and part 1 for absolute costs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _objects as objs  # noqa: E402
import anyio  # noqa: E402
import orjson  # noqa: E402
from run import stream_server  # noqa: E402


def per_item(fn: Callable[[], Any], n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


async def handoff(n: int, buffer: int) -> float:
    """Microseconds per item through an anyio memory object stream, producer to consumer."""
    send, receive = anyio.create_memory_object_stream[int](buffer)

    async def produce() -> None:
        async with send:
            for i in range(n):
                await send.send(i)

    async def consume() -> None:
        async with receive:
            async for _ in receive:
                pass

    t = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        tg.start_soon(consume)
    return (time.perf_counter() - t) / n * 1e6


async def queue_handoff(n: int, maxsize: int) -> float:
    """Time the same through an ``asyncio.Queue`` (no checkpoint when it need not wait)."""
    q: asyncio.Queue[int | None] = asyncio.Queue(maxsize)

    async def produce() -> None:
        for i in range(n):
            await q.put(i)
        await q.put(None)

    async def consume() -> None:
        while await q.get() is not None:
            pass

    t = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return (time.perf_counter() - t) / n * 1e6


def micro(n: int) -> list[tuple[str, float]]:
    import attrs

    from crwatch import _machine, _store, _wire
    from crwatch._events import Event

    lines = [objs.encoded_event("MODIFIED", i % 1000, 100 + i)[:-1] for i in range(n)]
    chunk = b"\n".join(lines) + b"\n"
    raws = [_wire.parse_event(line) for line in lines]
    state = _machine.initial_state(_machine.Config(), 1)
    state = attrs.evolve(
        state,
        phase=_machine.Phase.WATCHING,
        resource_version="99",
        synced=True,
        watch_progress=True,
    )

    def steps() -> None:
        s = state
        for raw in raws:
            s, _ = _machine.step(s, _machine.WatchEvent(raw), 0.0)

    def split() -> None:
        splitter = _wire.LineSplitter(16 << 20)
        for i in range(0, len(chunk), 256 << 10):
            splitter.feed(chunk[i : i + (256 << 10)])

    def apply() -> None:
        store = _store.Cache()
        for raw in raws:
            store.apply(raw.type, raw.object)

    async def clocks() -> float:
        return per_item(lambda: [anyio.current_time() for _ in range(n)], n)

    def each(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], None]:
        # Drop each result at once, as a streaming client does: keeping 20k parsed objects
        # alive would time the allocator, not the parser.
        def loop() -> None:
            for item in items:
                fn(item)

        return loop

    return [
        ("orjson.loads (the floor's parse)", per_item(each(orjson.loads, lines), n)),
        ("LineSplitter.feed, 256 KiB chunks", per_item(split, n)),
        ("parse_event (orjson + checks + RawEvent)",
         per_item(each(_wire.parse_event, lines), n)),
        ("WatchEvent() + step() in WATCHING", per_item(steps, n)),
        ("  of which attrs.evolve(State, resource_version=...)",
         per_item(each(lambda r: attrs.evolve(state, resource_version=r.resource_version),
                       raws), n)),
        ("Cache.apply (1000 keys) + Event", per_item(apply, n)),
        ("  Event.from_object alone, for comparison",
         per_item(each(lambda r: Event.from_object(r.type, r.object), raws), n)),
        ("anyio.current_time()", asyncio.run(clocks())),
        ("anyio memory stream send+receive, buffer 128", asyncio.run(handoff(n, 128))),
        ("anyio memory stream send+receive, buffer 0", asyncio.run(handoff(n, 0))),
        ("asyncio.Queue put+get, maxsize 128", asyncio.run(queue_handoff(n, 128))),
    ]  # fmt: skip


async def _floor(url: str, count: int) -> int:
    import aiohttp

    n = 0
    async with aiohttp.ClientSession() as s, s.get(url, params={"watch": "true"}) as resp:
        while n < count:
            orjson.loads(await resp.content.readline())
            n += 1
    return n


async def _inline(url: str, count: int, *, machine: bool, per_read: bool) -> int:
    """Run crwatch's pieces in the consumer's own loop: no task, no memory stream.

    ``per_read``: parse every line of one network read, step the machine once, then apply
    (the driver's shape since 201566d); else parse, step and apply one event at a time.
    """
    import aiohttp

    from crwatch import _machine, _store, _wire

    state = _machine_watching(_machine.initial_state(_machine.Config(), 1))
    store = _store.Cache()
    apply = store.apply
    parse = _wire.parse_event
    splitter = _wire.LineSplitter(16 << 20)
    # Older trees had only the one-event WatchEvent and Deliver(event).
    batch_api = hasattr(_machine, "WatchEvents")

    def step(raws: list[Any]) -> list[Any]:
        nonlocal state
        if batch_api:
            state, actions = _machine.step(state, _machine.WatchEvents(raws), 0.0)
            return list(actions[0].events) if actions else []  # type: ignore[union-attr]
        out = []
        for raw in raws:
            state, actions = _machine.step(state, _machine.WatchEvent(raw), 0.0)
            out.append(actions[0].event)  # type: ignore[union-attr]
        return out

    n = 0
    async with aiohttp.ClientSession() as s, s.get(url, params={"watch": "true"}) as resp:
        async for chunk in resp.content.iter_any():
            lines = splitter.feed(chunk)
            if per_read:
                raws = [parse(line) for line in lines]  # type: ignore[arg-type]
                for raw in step(raws) if machine else raws:
                    apply(raw.type, raw.object)
                    n += 1
                    if n >= count:
                        return n
                continue
            for line in lines:
                raw = parse(line)  # type: ignore[arg-type]
                if machine:
                    (raw,) = step([raw])
                apply(raw.type, raw.object)
                n += 1
                if n >= count:
                    return n
    return n


async def _with_gc(make: Callable[[], Any], mode: str) -> Any:
    if mode == "freeze":
        gc.freeze()  # everything alive now (the imported modules) leaves the collector's view
    else:
        gc.disable()
    try:
        return await make()
    finally:
        gc.enable()
        gc.unfreeze()


def _machine_watching(state: Any) -> Any:
    import attrs

    from crwatch import _machine

    return attrs.evolve(
        state, phase=_machine.Phase.WATCHING, resource_version="1", synced=True,
        watch_progress=True,
    )  # fmt: skip


def end_to_end(events: int) -> list[tuple[str, float, float]]:
    import resource

    from clients import Ctx
    from clients.crwatch_client import watch_throughput

    try:
        from clients import informer_client
    except Exception:  # an older bench tree, or crwatch without Informer
        informer_client = None

    def timed(make: Callable[[], Any]) -> tuple[float, float]:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        asyncio.run(make())
        wall = time.perf_counter() - t
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
        return events / wall, cpu / events * 1e6

    rows = []
    with stream_server(["--events", str(events)]) as (base, kubeconfig):
        url = base + objs.PATH
        ctx = Ctx(base=base, count=events, kubeconfig=kubeconfig)
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("floor: readline + orjson", lambda: _floor(url, events)),
            ("inline, per event: parse_event, Cache.apply",
             lambda: _inline(url, events, machine=False, per_read=False)),
            ("inline, per event: parse_event, step, Cache.apply",
             lambda: _inline(url, events, machine=True, per_read=False)),
            ("inline, per read: parse all lines, step once, Cache.apply each",
             lambda: _inline(url, events, machine=True, per_read=True)),
            ("crwatch.watch (consumer parses, core task reads)", lambda: watch_throughput(ctx)),
            ("crwatch.watch, gc.freeze() after imports",
             lambda: _with_gc(lambda: watch_throughput(ctx), "freeze")),
            ("crwatch.watch, cyclic GC disabled",
             lambda: _with_gc(lambda: watch_throughput(ctx), "disable")),
        ]  # fmt: skip
        if informer_client is not None:
            cases += [
                ("crwatch.Informer, 1 callback", lambda: informer_client.throughput(ctx)),
                ("crwatch.Informer, 10 callbacks", lambda: informer_client.fanout_10(ctx)),
            ]
        results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in cases}
        for _ in range(3):
            for label, make in cases:
                results[label].append(timed(make))
        for label, runs in results.items():
            rate = sorted(r for r, _ in runs)[1]
            cpu = sorted(c for _, c in runs)[1]
            rows.append((label, rate, cpu))
    return rows


def tree(events: int) -> str:
    try:
        import pyinstrument
    except ImportError:
        return "(pyinstrument not installed: pip install pyinstrument)"
    from clients import Ctx
    from clients.crwatch_client import watch_throughput

    with stream_server(["--events", str(events)]) as (base, kubeconfig):
        ctx = Ctx(base=base, count=events, kubeconfig=kubeconfig)
        profiler = pyinstrument.Profiler(interval=0.0005)
        profiler.start()
        asyncio.run(watch_throughput(ctx))
        profiler.stop()
    text: str = profiler.output_text(unicode=False, color=False)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--no-tree", action="store_true")
    args = ap.parse_args()
    print(f"per-event pieces, timed alone (best of 5, {args.events:,} events):")
    for label, us in micro(args.events):
        print(f"  {us:7.2f} µs  {label}")
    print(f"\nend to end, {args.events:,} events, median of 3 (events/s, CPU µs/event):")
    for label, rate, cpu in end_to_end(args.events):
        print(f"  {rate / 1000:7.1f}k/s  {cpu:6.2f} µs  {label}")
    if not args.no_tree:
        print(f"\ncrwatch.watch over {args.events:,} events, pyinstrument:")
        print(tree(args.events))


if __name__ == "__main__":
    main()
