"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) as the fake server applies them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crwatch.testing._patch import PatchError, apply_json_patch, apply_merge_patch

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=3), json_values, max_size=4)


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc_examples(target: Any, patch: Any, result: Any) -> None:
    """The RFC 7386 examples."""
    assert apply_merge_patch(target, patch) == result


@given(json_objects, json_objects)
def test_merge_patch_properties(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge patch never mutates inputs, is idempotent, and removes null members."""
    before = copy.deepcopy((target, patch))
    once = apply_merge_patch(target, patch)
    assert (target, patch) == before
    assert apply_merge_patch(once, patch) == once
    for key, value in patch.items():
        if value is None:
            assert key not in once


def test_json_patch_all_operations() -> None:
    """add, remove, replace, move, copy and test behave as RFC 6902 says."""
    doc = {"a": {"b": [1, 2]}, "c": "x", "k~/": 1}
    out = apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/1", "value": 9},
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "remove", "path": "/c"},
            {"op": "replace", "path": "/a/b/0", "value": 0},
            {"op": "copy", "from": "/a/b", "path": "/d"},
            {"op": "move", "from": "/a/b", "path": "/e"},
            {"op": "test", "path": "/e", "value": [0, 9, 2, 3]},
            {"op": "test", "path": "/k~0~1", "value": 1},
        ],
    )
    assert out == {"a": {}, "d": [0, 9, 2, 3], "e": [0, 9, 2, 3], "k~/": 1}
    assert doc == {"a": {"b": [1, 2]}, "c": "x", "k~/": 1}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "test", "path": "/a", "value": True}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "add", "path": "/l/5", "value": 1}],
        [{"op": "add", "path": "/l/01", "value": 1}],
        [{"op": "move", "from": "/o", "path": "/o/x"}],
        [{"op": "frobnicate", "path": "/a"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a"}],
        {"op": "add"},
    ],
)
def test_json_patch_errors(ops: Any) -> None:
    """Failing tests, missing paths, bad indexes and unknown ops raise PatchError."""
    with pytest.raises(PatchError):
        apply_json_patch({"a": 1, "l": [0], "o": {}}, ops)


@given(json_objects, st.text(max_size=3), json_values)
def test_json_patch_add_then_remove_roundtrip(doc: dict[str, Any], key: str, value: Any) -> None:
    """Adding a new member and removing it again gives the original document."""
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    if key in doc:
        return
    added = apply_json_patch(doc, [{"op": "add", "path": pointer, "value": value}])
    assert added[key] == value
    assert apply_json_patch(added, [{"op": "remove", "path": pointer}]) == doc
