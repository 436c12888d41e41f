"""What a compact cache would cost per event: the decoding choices, timed alone (no network).

``python bench/compact_decode.py [--events N] [--objects M] [--repeat R]``

Parses the benchmark's watch lines (``_objects.encoded_event``: ~2 KB ``Widget`` events
cycling over M objects, the throughput group's stream) in one process, several ways, and
keeps the newest state per key as a cache would:

* ``orjson`` full parse, object dropped (the floor's parse) or kept (today's cache);
* the raw bytes kept instead, with the key read by a full ``orjson`` parse;
* a metadata-only decode with msgspec: a typed ``Struct`` of the fields a cache, indexes
  and predicates read (namespace, name, uid, resourceVersion, generation, labels,
  annotations, ownerReferences, finalizers, deletionTimestamp), every other field skipped
  without building it, with the object's bytes taken as ``msgspec.Raw`` from the line;
* what a later read of a kept object costs (``store.get()`` decoding its bytes): orjson and
  msgspec, and the byte comparison that tells a change with equal metadata;
* the memory per kept object (tracemalloc) of a dict, of the bytes + metadata record, and
  of the bytes alone; and what crwatch's cache holds per object in each ``cache=`` mode;
* a list page as a compact cache takes it: parsed and each object encoded again, against
  crwatch's ``split_list`` (each item's bytes and key fields, the objects never built).

Each figure is the best of R repeats (µs per event); the cyclic GC runs as usual, as it
would in a client.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _objects as objs


class Meta(msgspec.Struct):
    """The metadata record a compact cache would keep (unknown fields skipped)."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    generation: int = 0
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    ownerReferences: list[dict[str, Any]] = []
    finalizers: list[str] = []
    deletionTimestamp: str | None = None


class LeanMeta(msgspec.Struct):
    """The same record with the maps and lists left as ``Raw`` views of the kept bytes."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    generation: int = 0
    labels: msgspec.Raw = msgspec.Raw(b"{}")
    annotations: msgspec.Raw = msgspec.Raw(b"{}")
    ownerReferences: msgspec.Raw = msgspec.Raw(b"[]")
    finalizers: list[str] = []
    deletionTimestamp: str | None = None


class LeanPartial(msgspec.Struct):
    """An object, decoded for its lean metadata record only."""

    metadata: LeanMeta


class Partial(msgspec.Struct):
    """An object, decoded for its metadata only."""

    metadata: Meta


class Line(msgspec.Struct):
    """A watch line: the type, and the object's bytes left undecoded."""

    type: str
    object: msgspec.Raw


def _lines(n: int, m: int) -> list[bytes]:
    # Event i changes object i % m to resourceVersion 10 + i, as the stream server's do.
    return [objs.encoded_event("MODIFIED", i % m, 10 + i) for i in range(n)]


def _copy(raw: bytes) -> bytes:
    return bytes(memoryview(raw))


def _lean(decoder: msgspec.json.Decoder[LeanPartial], raw: bytes) -> object:
    # Raw fields are views into ``raw`` (kept anyway): no copy of the maps.
    return (raw, decoder.decode(raw).metadata)


def _time(fn: Callable[[], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--objects", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, m, r = args.events, args.objects, args.repeat
    lines = _lines(n, m)
    loads = orjson.loads
    line_decoder = msgspec.json.Decoder(Line)
    partial_decoder = msgspec.json.Decoder(Partial)
    any_decoder = msgspec.json.Decoder()
    lean_decoder = msgspec.json.Decoder(LeanPartial)

    def orjson_drop() -> None:
        for line in lines:
            loads(line)

    def orjson_keep() -> None:
        cache: dict[tuple[str, str], Any] = {}
        for line in lines:
            obj = loads(line)["object"]
            meta = obj["metadata"]
            cache[meta["namespace"], meta["name"]] = obj

    def orjson_keep_bytes() -> None:
        cache: dict[tuple[str, str], bytes] = {}
        for line in lines:
            meta = loads(line)["object"]["metadata"]
            cache[meta["namespace"], meta["name"]] = line

    def msgspec_meta_keep_bytes() -> None:
        cache: dict[tuple[str, str], tuple[bytes, Meta]] = {}
        for line in lines:
            raw = line_decoder.decode(line).object
            meta = partial_decoder.decode(raw).metadata
            cache[meta.namespace, meta.name] = (bytes(raw), meta)

    def msgspec_meta_keep_line() -> None:
        # The metadata decoded from the whole line (an object field of the line's type),
        # the line itself kept: no Raw, no copy of the object's bytes.
        cache: dict[tuple[str, str], tuple[bytes, Meta]] = {}
        for line in lines:
            meta = event_meta_decoder.decode(line).object.metadata
            cache[meta.namespace, meta.name] = (line, meta)

    class EventMeta(msgspec.Struct):
        type: str
        object: Partial

    event_meta_decoder = msgspec.json.Decoder(EventMeta)

    rows: list[tuple[str, float]] = [
        ("orjson.loads, dropped (the floor's parse)", _time(orjson_drop, n, r)),
        ("orjson.loads, newest dict per key kept (today's cache)", _time(orjson_keep, n, r)),
        ("orjson.loads for the key, the line's bytes kept", _time(orjson_keep_bytes, n, r)),
        (
            "msgspec: Raw object + metadata Struct, object bytes + record kept",
            _time(msgspec_meta_keep_bytes, n, r),
        ),
        (
            "msgspec: metadata Struct from the line, line + record kept",
            _time(msgspec_meta_keep_line, n, r),
        ),
    ]
    sample = [bytes(line_decoder.decode(line).object) for line in lines[:m]]
    other = [bytes(line_decoder.decode(line).object) for line in lines[m : 2 * m]]

    def get_orjson() -> None:
        for raw in sample:
            loads(raw)

    def get_msgspec() -> None:
        for raw in sample:
            any_decoder.decode(raw)

    def compare() -> None:
        for a, b in zip(sample, other, strict=True):
            _ = a == b

    reads = m * 50
    sample = sample * 50
    other = other * 50
    rows += [
        ("read a kept object: orjson.loads of its bytes", _time(get_orjson, reads, r)),
        ("read a kept object: msgspec.json.decode of its bytes", _time(get_msgspec, reads, r)),
        ("compare two states' bytes (a change with equal metadata)", _time(compare, reads, r)),
    ]

    # A list page of 500 objects, as a compact cache takes it (per object).
    from crwatch._wire import split_list

    page = orjson.dumps({"kind": "List", "items": [loads(raw) for raw in sample[:500]]})

    pages = 20

    def page_orjson_then_encode() -> None:
        for _ in range(pages):
            for obj in loads(page)["items"]:
                _copy(orjson.dumps(obj))

    def page_split() -> None:
        for _ in range(pages):
            split_list(page)

    rows += [
        (
            "list page: orjson.loads, then each object encoded and kept",
            _time(page_orjson_then_encode, pages * 500, r),
        ),
        (
            "list page: crwatch's split_list (msgspec: items' bytes + key fields)",
            _time(page_split, pages * 500, r),
        ),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{n:,} events over {m:,} objects, {sum(map(len, lines)) / n:,.0f} B per line")
    for label, us in rows:
        print(f"{label:<{width}}  {us:6.2f} µs")

    # Memory per kept object.
    raws = sample[:m]

    def kept(build: Callable[[bytes], object]) -> float:
        gc.collect()
        tracemalloc.start()
        keep = [build(raw) for raw in raws]
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del keep
        return size / m

    json_size = sum(map(len, raws)) / m
    print(f"\nmemory per kept object (tracemalloc; its JSON is {json_size:,.0f} B)")
    for label, build in (
        ("orjson dict", loads),
        ("bytes + metadata Struct", lambda raw: (_copy(raw), partial_decoder.decode(raw).metadata)),
        ("bytes + lean record (maps as Raw)", lambda raw: _lean(lean_decoder, _copy(raw))),
        ("bytes alone", _copy),
    ):
        per = kept(build)
        print(f"{label:<{width}}  {per:8,.0f} B  ({per / json_size:.2f}x JSON)")

    # crwatch's own cache, both modes: what it holds per object once the parse is garbage.
    from crwatch._events import EventType
    from crwatch._store import Cache

    def cached(compact: bool) -> float:
        gc.collect()
        tracemalloc.start()
        cache = Cache(compact=compact)
        for raw in raws:
            obj = loads(raw)
            meta = obj["metadata"]
            cache.apply_keyed(EventType.ADDED, obj, f"{meta['namespace']}/{meta['name']}")
            del obj, meta
        gc.collect()
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del cache
        return size / m

    for label, compact in (
        ('crwatch cache="objects" (key + dict)', False),
        ('crwatch cache="compact" (key + bytes, rv, uid)', True),
    ):
        per = cached(compact)
        print(f"{label:<{width}}  {per:8,.0f} B  ({per / json_size:.2f}x JSON)")


if __name__ == "__main__":
    main()
