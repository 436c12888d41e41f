"""Tests of the keyed cache (apply, replace, indexes) and the read-only ``crwatch.Store``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch
from crwatch import EventType, object_key
from crwatch._store import Cache as Store


def _obj(name: str, rv: str, ns: str | None = "default") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if ns:
        meta["namespace"] = ns
    return {"metadata": meta}


def test_apply_fills_old_and_keys() -> None:
    """Changes are stored by namespace/name (name for cluster-scoped); old is the prior state."""
    store = Store()
    a1, a2 = _obj("a", "1"), _obj("a", "2")
    ev = store.apply("ADDED", a1)
    assert ev is not None
    assert (ev.type, ev.key, ev.old) == (EventType.ADDED, "default/a", None)
    ev = store.apply(EventType.MODIFIED, a2)
    assert ev is not None
    assert ev.old is a1
    assert ev.object is a2  # not copied
    cluster = store.apply("ADDED", _obj("c", "3", ns=None))
    assert cluster is not None
    assert cluster.key == "c"
    assert len(store) == 2


def test_apply_delete_of_unknown_key_is_a_no_op() -> None:
    """A DELETED for an object never seen produces no event (client-go DeltaFIFO)."""
    store = Store()
    assert store.apply("DELETED", _obj("ghost", "5")) is None
    store.apply("ADDED", _obj("a", "1"))
    gone = _obj("a", "6")
    ev = store.apply("DELETED", gone)
    assert ev is not None
    assert ev.type is EventType.DELETED
    assert ev.object is gone
    assert ev.old == _obj("a", "1")
    assert "default/a" not in store


def test_added_for_a_known_key_is_a_modification() -> None:
    """An ADDED for a key already held reaches the consumer as MODIFIED with old."""
    store = Store()
    store.apply("ADDED", _obj("a", "1"))
    ev = store.apply("ADDED", _obj("a", "3"))
    assert ev is not None
    assert ev.type is EventType.MODIFIED


def test_replace_emits_only_differences() -> None:
    """Relist: ADDED if new, MODIFIED if RV changed, synthetic DELETED if vanished; else quiet."""
    store = Store()
    store.replace([_obj("keep", "1"), _obj("change", "2"), _obj("gone", "3")])
    events = store.replace([_obj("keep", "1"), _obj("change", "7"), _obj("new", "8")])
    summary = [(e.type, e.key, e.synthetic) for e in events]
    assert summary == [
        (EventType.MODIFIED, "default/change", False),
        (EventType.ADDED, "default/new", False),
        (EventType.DELETED, "default/gone", True),
    ]
    deleted = events[-1]
    assert deleted.object == _obj("gone", "3")  # last known state
    assert events[0].old == _obj("change", "2")
    assert store.replace([_obj("keep", "1"), _obj("change", "7"), _obj("new", "8")]) == []


_states = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(min_value=1, max_value=4), max_size=5
)


@given(_states, _states)
def test_replay_of_replace_events_converges(before: dict[str, int], after: dict[str, int]) -> None:
    """Applying the events of replace() to the old view gives the new state, exactly."""
    store = Store()
    store.replace([_obj(k, str(v)) for k, v in before.items()])
    view = {f"default/{k}": str(v) for k, v in before.items()}
    for ev in store.replace([_obj(k, str(v)) for k, v in after.items()]):
        if ev.type is EventType.DELETED:
            del view[ev.key]
        else:
            view[ev.key] = ev.resource_version
    assert view == {f"default/{k}": str(v) for k, v in after.items()}
    assert dict(store.items()).keys() == view.keys()


def _owned(name: str, rv: str, owners: list[str], uid: str = "u") -> dict[str, Any]:
    obj = _obj(name, rv)
    obj["metadata"]["uid"] = uid
    obj["metadata"]["ownerReferences"] = [{"uid": o} for o in owners]
    return obj


def _owner_index(obj: dict[str, Any]) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences", [])]


def test_replace_reports_a_recreated_object_as_delete_then_add() -> None:
    """A key whose uid changed across a relist was deleted and re-created: both are emitted."""
    store = Store()
    store.replace([_owned("a", "1", [], uid="u1")])
    events = store.replace([_owned("a", "5", [], uid="u2")])
    assert [(e.type, e.synthetic) for e in events] == [
        (EventType.DELETED, True),
        (EventType.ADDED, False),
    ]
    assert events[0].object["metadata"]["uid"] == "u1"


def test_replace_keeps_the_cached_copy_of_unchanged_objects() -> None:
    """An unchanged object stays the cached instance; the listed duplicate is not kept."""
    store = Store()
    first = _obj("a", "1")
    store.replace([first])
    store.replace([_obj("a", "1")])
    assert store.get("default/a") is first


def test_index_function_errors_leave_the_object_out() -> None:
    """An index function that raises is logged; the object is cached but not indexed."""

    def broken(obj: dict[str, Any]) -> list[str]:
        raise RuntimeError("bug")

    store = Store({"broken": broken})
    store.apply("ADDED", _obj("a", "1"))
    assert "default/a" in store
    assert store.by_index("broken", "x") == []


def test_read_only_view() -> None:
    """crwatch.Store shows the cache's current state and has no mutators."""
    cache = Store({"owner": _owner_index})
    view = crwatch.Store(cache)
    cache.apply("ADDED", _owned("a", "1", ["o1"]))
    cache.apply("ADDED", _owned("b", "2", ["o1", "o2"]))
    assert len(view) == 2
    assert "default/a" in view
    assert view.keys() == ["default/a", "default/b"]
    assert [o["metadata"]["name"] for o in view.by_index("owner", "o1")] == ["a", "b"]
    assert view.get("default/b") is cache.get("default/b")
    assert list(view) == ["default/a", "default/b"]
    assert "2 objects" in repr(view)
    assert not any(hasattr(view, name) for name in ("apply", "replace", "pop", "clear"))
    with pytest.raises(KeyError, match="owner"):
        view.by_index("nope", "x")


_changes = st.lists(
    st.tuples(
        st.sampled_from(["put", "del", "relist"]),
        st.sampled_from("abcd"),
        st.lists(st.sampled_from(["o1", "o2", "o3"]), max_size=2, unique=True),
    ),
    max_size=40,
)


@given(_changes)
def test_indexes_match_a_recomputation_after_any_changes(
    changes: list[tuple[str, str, list[str]]],
) -> None:
    """After any mix of watch changes and relists the index equals one built from scratch."""
    store = Store({"owner": _owner_index})
    truth: dict[str, list[str]] = {}
    for rv, (op, name, owners) in enumerate(changes, start=1):
        key = f"default/{name}"
        if op == "put":
            truth[key] = owners
            store.apply("MODIFIED", _owned(name, str(rv), owners))
        elif op == "del":
            truth.pop(key, None)
            store.apply("DELETED", _owned(name, str(rv), owners))
        else:
            # A relist that drops this key and re-lists the others unchanged.
            truth.pop(key, None)
            kept = [obj for k, obj in store.items() if k != key]
            store.replace(kept)
    for owner in ("o1", "o2", "o3"):
        expected = sorted(k for k, owners in truth.items() if owner in owners)
        assert [object_key(o) for o in store.by_index("owner", owner)] == expected


def test_replace_updates_every_index_and_fills_every_event() -> None:
    """A relist moves index entries for changed, re-created, new and vanished objects.

    Each event carries its key, the new object and the state it replaces (``old``).
    """
    store = Store({"owner": _owner_index})
    keep = _owned("keep", "1", ["o1"], uid="k")
    move = _owned("move", "2", ["o1"], uid="m")
    again = _owned("again", "3", ["o2"], uid="a1")
    gone = _owned("gone", "4", ["o3"], uid="g")
    store.replace([keep, move, again, gone])

    def owned(owner: str) -> list[tuple[str, str]]:
        return [(object_key(o), o["metadata"]["uid"]) for o in store.by_index("owner", owner)]

    assert owned("o1") == [("default/keep", "k"), ("default/move", "m")]
    assert owned("o3") == [("default/gone", "g")]
    moved = _owned("move", "5", ["o2"], uid="m")
    recreated = _owned("again", "6", ["o2"], uid="a2")
    new = _owned("new", "7", ["o3"], uid="n")
    events = store.replace([keep, moved, recreated, new])
    assert owned("o1") == [("default/keep", "k")]
    assert owned("o2") == [("default/again", "a2"), ("default/move", "m")]
    assert owned("o3") == [("default/new", "n")]
    got = [(e.type, e.key, e.object, e.old, e.synthetic) for e in events]
    assert got == [
        (EventType.MODIFIED, "default/move", moved, move, False),
        (EventType.DELETED, "default/again", again, again, True),
        (EventType.ADDED, "default/again", recreated, None, False),
        (EventType.ADDED, "default/new", new, None, False),
        (EventType.DELETED, "default/gone", gone, gone, True),
    ]


def test_apply_events_carry_key_and_are_not_synthetic() -> None:
    """Watch changes are real events (never synthetic), keyed, for every type."""
    store = Store({"owner": _owner_index})
    for kind in ("ADDED", "MODIFIED", EventType.MODIFIED, "DELETED"):
        event = store.apply(kind, _owned("a", "1", ["o1"]))
        assert event is not None
        assert event.key == "default/a"
        assert event.synthetic is False
    assert store.by_index("owner", "o1") == []
    with pytest.raises(ValueError):
        store.apply("BOOKMARK", _obj("a", "2"))


def test_index_function_errors_are_logged_with_index_and_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log of a failing index function names the index and the object's key."""

    def broken(obj: dict[str, Any]) -> list[str]:
        raise RuntimeError("bug")

    store = Store({"broken": broken})
    with caplog.at_level("ERROR", logger="crwatch"):
        store.apply("ADDED", _obj("a", "1"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["index 'broken' failed on default/a; object not indexed"]
