"""Pure pieces behind FakeApiServer's garbage collector and Event views (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crwatch.testing._eventsapi import core_to_v1, served_as, v1_to_core
from crwatch.testing._gc import FOREGROUND, ORPHAN, deletion_finalizers

USER_FINALIZERS = st.lists(st.sampled_from(["a.io/x", "b.io/y", "c.io/z"]), unique=True)
GC_FINALIZERS = st.lists(st.sampled_from([ORPHAN, FOREGROUND]), unique=True)


@given(
    USER_FINALIZERS,
    GC_FINALIZERS,
    st.sampled_from([None, "Foreground", "Background", "Orphan"]),
    st.sampled_from([None, True, False]),
)
def test_deletion_finalizers(
    user: list[str], gc: list[str], policy: str | None, orphan: bool | None
) -> None:
    """DeleteOptions decide the GC finalizers; other finalizers are kept, in order.

    orphanDependents wins over everything, then propagationPolicy, then the GC finalizers
    the object already had (the registry's deletionFinalizersForGarbageCollection).
    """
    result = deletion_finalizers(user + gc, policy, orphan)
    assert [f for f in result if f not in (ORPHAN, FOREGROUND)] == user
    if orphan is not None:
        want_orphan, want_foreground = orphan, False
    elif policy is not None:
        want_orphan, want_foreground = policy == "Orphan", policy == "Foreground"
    else:
        want_orphan, want_foreground = ORPHAN in gc, FOREGROUND in gc
    assert (ORPHAN in result) is want_orphan
    assert (FOREGROUND in result) is want_foreground
    assert len(result) == len(set(result))


V1_FIELDS = st.sampled_from(
    ["regarding", "note", "deprecatedSource", "deprecatedCount", "deprecatedFirstTimestamp",
     "deprecatedLastTimestamp", "reportingController", "reason", "type", "action", "series",
     "eventTime", "related", "reportingInstance"]
)  # fmt: skip


@given(st.dictionaries(V1_FIELDS, st.text(max_size=5) | st.integers()))
def test_event_mapping_round_trips(fields: dict[str, Any]) -> None:
    """An events.k8s.io/v1 Event survives the trip through the core/v1 store unchanged."""
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}}
    event.update(fields)
    stored = v1_to_core(event)
    assert stored["apiVersion"] == "v1"
    assert not {"note", "regarding", "deprecatedCount"} & set(stored)
    assert core_to_v1(stored) == event
    assert served_as(stored, "events.k8s.io/v1") == event
    assert served_as(stored, "v1") == stored
