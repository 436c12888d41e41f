"""The pure change predicates: what each one calls a change, and how they combine."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch
from crwatch import (
    all_of,
    annotations_differ,
    any_of,
    finalizers_differ,
    generation_differs,
    labels_differ,
    not_,
    resource_version_differs,
)

PREDICATES = [
    generation_differs,
    labels_differ,
    annotations_differ,
    finalizers_differ,
    resource_version_differs,
]

small_maps = st.dictionaries(st.sampled_from("abc"), st.sampled_from("xyz"), max_size=3)


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "o", "namespace": "default"}
    if draw(st.booleans()):
        meta["generation"] = draw(st.integers(1, 3))
    meta["resourceVersion"] = str(draw(st.integers(1, 3)))
    for name in ("labels", "annotations"):
        value = draw(st.none() | small_maps)
        if value is not None:
            meta[name] = value
    finalizers = draw(st.none() | st.lists(st.sampled_from(["f1", "f2"]), max_size=2))
    if finalizers is not None:
        meta["finalizers"] = finalizers
    obj: dict[str, Any] = {"metadata": meta, "spec": {"size": draw(st.integers(0, 2))}}
    if draw(st.booleans()):
        obj["status"] = {"ready": draw(st.booleans())}
    return obj


def obj(**meta: Any) -> dict[str, Any]:
    spec = meta.pop("spec", {"size": 1})
    status = meta.pop("status", None)
    result: dict[str, Any] = {"metadata": {"name": "o", **meta}, "spec": spec}
    if status is not None:
        result["status"] = status
    return result


@pytest.mark.parametrize("predicate", PREDICATES)
@given(old=objects(), new=objects())
def test_predicates_are_pure_and_reflexive(
    predicate: crwatch.Predicate, old: Any, new: Any
) -> None:
    """No predicate mutates its arguments, and an object never differs from itself."""
    old_copy, new_copy = copy.deepcopy(old), copy.deepcopy(new)
    predicate(old, new)
    assert (old, new) == (old_copy, new_copy)
    assert predicate(old, copy.deepcopy(old)) is False


def test_generation_compares_generation_when_both_have_one() -> None:
    """With ``metadata.generation`` on both, only the generation counts (status is ignored)."""
    assert generation_differs(obj(generation=1), obj(generation=2))
    assert not generation_differs(obj(generation=1), obj(generation=1, status={"ready": True}))
    assert not generation_differs(obj(generation=1, labels={"a": "b"}), obj(generation=1))


def test_generation_falls_back_to_the_object_without_metadata_and_status() -> None:
    """Without a generation (no status subresource, ConfigMaps), the rest of the object counts."""
    assert generation_differs(obj(spec={"size": 1}), obj(spec={"size": 2}))
    assert not generation_differs(obj(resourceVersion="1"), obj(resourceVersion="2"))
    assert not generation_differs(obj(), obj(status={"ready": True}))
    assert generation_differs(obj(generation=1), obj(spec={"size": 3}))
    configmap_old = {"metadata": {"name": "c"}, "data": {"k": "1"}}
    configmap_new = {"metadata": {"name": "c", "resourceVersion": "9"}, "data": {"k": "2"}}
    assert generation_differs(configmap_old, configmap_new)


def test_metadata_predicates() -> None:
    """Labels, annotations, finalizers and resourceVersion: missing equals empty, order counts."""
    assert labels_differ(obj(labels={"a": "1"}), obj(labels={"a": "2"}))
    assert not labels_differ(obj(), obj(labels={}))
    assert annotations_differ(obj(), obj(annotations={"x": "y"}))
    assert not annotations_differ(obj(annotations={}), obj())
    assert finalizers_differ(obj(finalizers=["a", "b"]), obj(finalizers=["b", "a"]))
    assert not finalizers_differ(obj(), obj(finalizers=[]))
    assert resource_version_differs(obj(resourceVersion="1"), obj(resourceVersion="2"))
    assert not resource_version_differs(obj(resourceVersion="1"), obj(resourceVersion="1"))


@given(old=objects(), new=objects(), picks=st.lists(st.sampled_from(PREDICATES), max_size=3))
def test_combinators_follow_boolean_logic(old: Any, new: Any, picks: list[Any]) -> None:
    """``any_of``/``all_of``/``not_`` are or, and, not over the predicates' answers."""
    answers = [p(old, new) for p in picks]
    assert any_of(*picks)(old, new) is any(answers)
    assert all_of(*picks)(old, new) is all(answers)
    for p in picks:
        assert not_(p)(old, new) is (not p(old, new))


def test_combinators_validate_at_call_time_and_have_readable_names() -> None:
    """A non-callable is an InvalidOptionError when combining, not later."""
    with pytest.raises(crwatch.InvalidOptionError):
        any_of(labels_differ, "labels")  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError):
        not_(None)  # type: ignore[arg-type]
    combined = not_(any_of(labels_differ, annotations_differ))
    assert combined.__qualname__ == "not_(any_of(labels_differ, annotations_differ))"
