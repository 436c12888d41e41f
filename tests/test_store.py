"""Tests of the keyed store: apply, and replace returning exactly the differences."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crwatch import EventType
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
