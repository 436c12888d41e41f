"""The one coalescing rule (``crwatch._coalesce.Run``), used by lanes and by the middlewares."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crwatch import Event, EventType
from crwatch._coalesce import Run
from crwatch._store import Cache

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


def _obj(rv: int, uid: int) -> dict[str, Any]:
    meta = {"name": "a", "namespace": "d", "resourceVersion": str(rv), "uid": f"u{uid}"}
    return {"metadata": meta, "spec": {"rv": rv}}


@settings(max_examples=500, deadline=None)
@given(st.booleans(), st.lists(st.sampled_from(["put", "del"]), min_size=1, max_size=12))
def test_a_run_delivers_the_net_effect_against_what_the_consumer_saw(
    seen: bool, ops: list[str]
) -> None:
    """Applying a run's outputs to the consumer's view gives the cache's final state.

    For any sequence of one key's changes from a cache (the consumer having seen the object
    or not): each output is consistent with the view (ADDED only for an unseen object and
    without ``old``; MODIFIED and DELETED only for a seen one, with ``old`` the state the
    consumer saw), a deletion of a seen object is never lost, at most two events come out,
    and ``add`` accounts for every event left out.
    """
    cache = Cache()
    rv = uid = 1
    view: dict[str, Any] = {}
    if seen:
        first = cache.apply(ADDED, _obj(rv, uid))
        assert first is not None
        view[first.key] = first.object
    events: list[Event] = []
    for op in ops:
        rv += 1
        present = "d/a" in cache
        if op == "put":
            if not present:
                uid += 1
            event = cache.apply(MODIFIED if present else ADDED, _obj(rv, uid))
        elif present:
            event = cache.apply(DELETED, _obj(rv, uid))
        else:
            continue
        assert event is not None
        events.append(event)
    if not events:
        return
    run = Run(events[0])
    coalesced = sum(run.add(event) for event in events[1:])
    outputs = run.outputs()
    assert run.size == len(outputs) <= 2
    assert run.empty == (not outputs)
    assert coalesced == len(events) - len(outputs)
    for event in outputs:
        before = view.get(event.key)
        if event.type is ADDED:
            assert before is None
            assert event.old is None
            view[event.key] = event.object
        else:
            assert before is not None
            assert event.old is before
            if event.type is DELETED:
                del view[event.key]
            else:
                view[event.key] = event.object
    assert view == dict(cache.items())
    if seen and any(e.type is DELETED for e in events):
        assert outputs[0].type is DELETED


def test_a_single_change_is_handed_out_as_is() -> None:
    """A run of one change delivers that very event (nothing is built)."""
    cache = Cache()
    event = cache.apply(ADDED, _obj(1, 1))
    assert event is not None
    assert Run(event).outputs() == (event,)
    assert Run(event).outputs()[0] is event


def test_a_recreated_object_gives_the_deletion_then_an_added() -> None:
    """A seen object deleted and created again yields DELETED, then ADDED of the newest state."""
    cache = Cache()

    def apply(kind: EventType, obj: dict[str, Any]) -> Event:
        event = cache.apply(kind, obj)
        assert event is not None
        return event

    apply(ADDED, _obj(1, 1))
    run = Run(apply(MODIFIED, _obj(2, 1)))
    later = [apply(DELETED, _obj(3, 1)), apply(ADDED, _obj(4, 2)), apply(MODIFIED, _obj(5, 2))]
    assert [run.add(e) for e in later] == [1, 0, 1]
    deleted, added = run.outputs()
    assert deleted.type is DELETED
    assert deleted.object["spec"]["rv"] == 3
    assert deleted.old is not None
    assert deleted.old["spec"]["rv"] == 1  # what the consumer saw, not the skipped MODIFIED
    assert (added.type, added.object["spec"]["rv"], added.old) == (ADDED, 5, None)


KEY = "d/a"


def _event(kind: EventType, rv: int, old: int | None = None, *, synthetic: bool = False) -> Event:
    return Event(kind, _obj(rv, 1), KEY, None if old is None else _obj(old, 1), synthetic)


def test_a_synthetic_deletion_folded_into_a_run_stays_synthetic() -> None:
    """A relist's synthetic DELETED keeps its flag and the ``old`` the consumer saw."""
    run = Run(_event(MODIFIED, 2, old=1))
    assert run.add(_event(DELETED, 3, old=2, synthetic=True)) == 1
    (deleted,) = run.outputs()
    assert deleted.type is DELETED
    assert deleted.synthetic is True
    assert deleted.old is not None
    assert deleted.old["spec"]["rv"] == 1
    plain = Run(_event(MODIFIED, 2, old=1))
    plain.add(_event(DELETED, 3, old=2))
    assert plain.outputs()[0].synthetic is False


def test_a_folded_live_state_is_not_synthetic() -> None:
    """A live event built from several changes carries ``synthetic=False``, not a stand-in."""
    run = Run(_event(MODIFIED, 2, old=1))
    assert run.add(_event(MODIFIED, 3, old=2)) == 1
    (live,) = run.outputs()
    assert (live.type, live.object["spec"]["rv"], live.synthetic) == (MODIFIED, 3, False)


def test_a_second_deletion_in_a_run_is_redundant() -> None:
    """In a run that starts with a deletion, a later deletion leaves the first one standing."""
    first = _event(DELETED, 2, old=1)
    run = Run(first)
    assert run.add(_event(DELETED, 3, old=1)) == 1
    assert run.outputs() == (first,)
    assert run.size == 1


def test_a_deletion_after_an_unseen_create_and_delete_is_delivered() -> None:
    """An empty run (created and deleted unseen) takes a later deletion as a fresh run would."""
    run = Run(_event(ADDED, 1))
    assert run.add(_event(DELETED, 2, old=1)) == 2
    assert run.empty
    gone = _event(DELETED, 3, old=2)
    assert run.add(gone) == 0
    assert run.outputs() == (gone,)


def test_a_change_after_a_deletion_is_an_added_whatever_its_type() -> None:
    """After a deletion the object is new to the consumer: ADDED without ``old``."""
    run = Run(_event(DELETED, 2, old=1))
    assert run.add(_event(MODIFIED, 4, old=3)) == 0
    deleted, live = run.outputs()
    assert deleted.type is DELETED
    assert (live.type, live.old, live.object["spec"]["rv"]) == (ADDED, None, 4)
