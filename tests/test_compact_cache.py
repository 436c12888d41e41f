"""``cache="compact"``: objects kept as their JSON bytes, decoded on read.

The compact cache must be indistinguishable from the default one in what it hands out
(events, ``old``, store reads, index lookups, relist differences) while holding bytes
instead of dicts: reads give a new dict each time, so a caller changing one cannot change
what anybody else sees, and the cached entries are invisible to the cyclic GC.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch
from _support import Seen, WidgetEnv, widget_cluster
from crwatch import Backoff, Event, EventType
from crwatch._store import Cache
from crwatch.testing import Fault

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")
FAST = Backoff(initial=0.01, maximum=0.05, max_retry_after=60)


def _owners(obj: dict[str, Any]) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences", [])]


def _widget(name: str, rv: int, uid: str, owners: list[str], size: int) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid,
            "resourceVersion": str(rv),
            "ownerReferences": [{"uid": o} for o in owners],
        },
        "spec": {"size": size},
    }


_ops = st.lists(
    st.tuples(
        st.sampled_from(["ADDED", "MODIFIED", "DELETED", "relist"]),
        st.sampled_from("abc"),
        st.sampled_from(["u1", "u2"]),  # a new uid: deleted and re-created
        st.lists(st.sampled_from(["o1", "o2"]), max_size=2, unique=True),
        st.booleans(),  # compact: pass the watch line along (or let the cache encode)
    ),
    max_size=30,
)


@given(_ops)
def test_compact_and_object_caches_hand_out_the_same_things(
    ops: list[tuple[str, str, str, list[str], bool]],
) -> None:
    """After any mix of watch changes and relists both caches give equal events and reads.

    Events (type, key, synthetic, object, old), the state, and index lookups agree; the
    compact cache's reads are new dicts each time.
    """
    plain = Cache({"owner": _owners})
    compact = Cache({"owner": _owners}, compact=True)
    for rv, (op, name, uid, owners, with_line) in enumerate(ops, start=1):
        obj = _widget(name, rv, uid, owners, rv)
        if op == "relist":
            # The state without ``name``, with one other object changed or added.
            others = [o for k, o in plain.items() if k != f"default/{name}"]
            listed = [*others, _widget("z", rv, "uz", owners, rv)]
            expected = plain.replace(listed)
            got = compact.replace(orjson.loads(orjson.dumps(listed)))
        else:
            kind = EventType(op)
            expected_event = plain.apply_keyed(kind, obj, f"default/{name}")
            line = orjson.dumps({"type": op, "object": obj}) if with_line else None
            copy = orjson.loads(orjson.dumps(obj))
            got_event = compact.apply_keyed(kind, copy, f"default/{name}", line)
            expected = [] if expected_event is None else [expected_event]
            got = [] if got_event is None else [got_event]
        assert got == expected
        assert [(e.object, e.old) for e in got] == [(e.object, e.old) for e in expected]
        assert dict(compact.items()) == dict(plain.items())
        for owner in ("o1", "o2"):
            assert compact.by_index("owner", owner) == plain.by_index("owner", owner)
    for key in plain:
        first, second = compact.get(key), compact.get(key)
        assert first == second == plain.get(key)
        assert first is not second


def test_compact_entries_are_invisible_to_the_cyclic_gc() -> None:
    """Once collected past, a packed entry is no container the cyclic GC walks again."""
    cache = Cache(compact=True)
    for i in range(50):
        cache.apply("ADDED", _widget(f"w{i}", i + 1, f"u{i}", ["o1"], i))
    gc.collect()
    assert not any(gc.is_tracked(value) for _, value in cache.stored_items())


def test_a_packed_object_is_decoded_once_per_event() -> None:
    """``event.old`` decodes on first read; later reads return that same dict."""
    cache = Cache(compact=True)
    cache.apply("ADDED", _widget("a", 1, "u", [], 1))
    event = cache.apply("MODIFIED", _widget("a", 2, "u", [], 2))
    assert event is not None
    assert event.old is not None
    assert event.old is event.old
    assert event.old["spec"] == {"size": 1}


@pytest.mark.anyio
async def test_cache_mode_is_checked(env: Env) -> None:
    """Anything but "objects" or "compact" is an InvalidOptionError naming the option."""
    client = env.client
    with pytest.raises(crwatch.InvalidOptionError, match="cache"):
        crwatch.watch(client, WIDGETS, cache="bytes")  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError, match="cache"):
        crwatch.Informer(client, WIDGETS, cache=None)  # type: ignore[arg-type]


class Env(WidgetEnv):
    """A fake server with the widgets CRD, and a crwatch client for it."""

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.server.create(self.rtype, body, namespace="default")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with widget_cluster(tmp_path) as (server, rtype, client):
        yield Env(server, rtype, client)


def _summary(events: list[Event]) -> list[tuple[str, str, bool, Any, Any]]:
    return [
        (
            e.type.value,
            e.key,
            e.synthetic,
            e.object["spec"],
            None if e.old is None else e.old["spec"],
        )
        for e in events
    ]


async def _scenario(
    env: Env, cache: Literal["objects", "compact"]
) -> tuple[list[Event], crwatch.Store]:
    """Run the scenario: a live change, then three changes only a relist finds.

    A change, a deletion and a creation made while the watch is down (it ended after one
    event, and its resume gets a 410).
    """
    seen = Seen()
    informer = crwatch.Informer(
        env.client,
        WIDGETS,
        namespace="default",
        backoff=FAST,
        cache=cache,
        streaming_list=False,
        page_size=2,
    )
    informer.subscribe(seen.add)
    # The first watch ends after its first event; its resume then gets 410.
    env.server.faults.add(Fault.end_after(1), verb="watch")
    expired = env.server.faults.add(Fault.expired(), verb="watch")
    async with informer:
        with anyio.fail_after(5):
            await informer.wait_synced()
        env.patch("keep", size=1)
        with anyio.fail_after(5):
            await informer.wait_for(env.state()["default/keep"])
        env.patch("change", size=2)
        env.delete("gone")
        new = env.create("new", size=3)
        with anyio.fail_after(5):
            await expired.wait_fired()
            await informer.wait_for(new["metadata"]["resourceVersion"])
            await seen.until(7)
        return seen.items, informer.store


@pytest.mark.anyio
async def test_compact_informer_sees_what_the_default_one_sees(tmp_path: Path) -> None:
    """The same list, live change and 410 relist give equal events in both modes.

    Including ``old`` of each change and the synthetic deletion's last known state, which
    the compact cache decodes from its bytes.
    """
    results = {}
    modes: tuple[Literal["objects", "compact"], ...] = ("objects", "compact")
    for mode in modes:
        (tmp_path / mode).mkdir()
        async with widget_cluster(tmp_path / mode) as (server, rtype, client):
            env = Env(server, rtype, client)
            for name in ("change", "gone", "keep"):
                env.create(name, size=0)
            seen, store = await _scenario(env, mode)
            results[mode] = (_summary(seen), {k: store.get(k) for k in store})
    assert results["compact"][0] == results["objects"][0]

    def body(obj: dict[str, Any] | None) -> dict[str, Any]:
        # Two clusters: uids and timestamps differ, nothing else may.
        assert obj is not None
        return {k: v for k, v in obj.items() if k != "metadata"} | {"name": obj["metadata"]["name"]}

    assert {k: body(o) for k, o in results["compact"][1].items()} == {
        k: body(o) for k, o in results["objects"][1].items()
    }
    kinds = [(t, k, s) for t, k, s, *_ in results["compact"][0]]
    assert ("DELETED", "default/gone", True) in kinds


@pytest.mark.anyio
async def test_changing_a_compact_read_changes_nothing_else(env: Env) -> None:
    """With ``cache="compact"`` nothing a caller does to a dict it got reaches the cache.

    A ``store.get()`` is the caller's own: changing it leaves the next ``get`` and ``list``
    as they were. An event's object is shared by the subscribers of that event (decoded
    once), but a subscriber changing it leaves the cache, and so the next event's ``old``,
    as the server sent it.
    """
    env.create("a", size=1)
    second = Seen()

    def first(event: Event) -> None:
        if event.type is EventType.ADDED:
            event.object["spec"]["size"] = 99  # a careless subscriber

    informer = crwatch.Informer(env.client, WIDGETS, namespace="default", cache="compact")
    informer.subscribe(first)
    informer.subscribe(second.add)
    async with informer:
        with anyio.fail_after(5):
            await informer.wait_synced()
            await second.until(1)
        mine = informer.store.get("default/a")
        assert mine is not None
        mine["spec"]["size"] = 42
        del mine["metadata"]
        server_state = env.server.get(env.rtype, "a", namespace="default")
        assert informer.store.get("default/a") == server_state
        assert informer.store.list()[0]["spec"] == {"size": 1}
        changed = env.patch("a", size=2)
        with anyio.fail_after(5):
            await informer.wait_for(changed["metadata"]["resourceVersion"])
            await second.until(2)
    # The live change's old is the cached state, untouched by either change above.
    assert second.items[1].old is not None
    assert second.items[1].old["spec"] == {"size": 1}
    assert second.items[1].object["spec"] == {"size": 2}


@pytest.mark.anyio
async def test_compact_watch_relists_to_the_same_differences(env: Env) -> None:
    """``watch(cache="compact")``: a 410 relist yields the changes missed, old included."""
    for name in ("change", "gone"):
        env.create(name, size=0)
    env.server.faults.add(Fault.end_after(0), verb="watch")
    expired = env.server.faults.add(Fault.expired(), verb="watch")
    seen: list[Event] = []
    async with crwatch.watch(
        env.client, WIDGETS, namespace="default", backoff=FAST, cache="compact"
    ) as events:
        with anyio.fail_after(5):
            async for event in events:
                seen.append(event)
                if len(seen) == 2:
                    env.patch("change", size=5)
                    env.delete("gone")
                if len(seen) == 4:
                    break
    assert expired.fired
    assert _summary(seen[2:]) == sorted(
        [
            ("MODIFIED", "default/change", False, {"size": 5}, {"size": 0}),
            ("DELETED", "default/gone", True, {"size": 0}, {"size": 0}),
        ],
        key=lambda s: s[0] != seen[2].type.value,
    )
