"""Pure field-path logic behind managedFields and server-side apply."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crwatch.testing._fieldpath import (
    DEDUCED,
    compare,
    field_set,
    from_fields_v1,
    merge,
    path_string,
    remove_paths,
    shape_from_schema,
    to_fields_v1,
)

# JSON without booleans (1 == True in Python, not in JSON) and without floats.
scalars = st.one_of(st.integers(-5, 5), st.text("abc", max_size=2), st.none())
keys = st.sampled_from(["a", "b", "c", "d"])
values = st.recursive(
    scalars.filter(lambda v: v is not None),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)
    ),
    max_leaves=12,
)
objects = st.dictionaries(keys, values, max_size=4)
pes = st.one_of(
    keys.map(lambda k: "f:" + k),
    st.sampled_from(['k:{"name":"x"}', 'v:"y"', 'k:{"name":"z","port":1}']),
)
paths = st.lists(pes, min_size=1, max_size=4).map(tuple)


@given(st.sets(paths, max_size=12))
def test_fields_v1_round_trip(members: set[tuple[str, ...]]) -> None:
    """Encoding a field set as fieldsV1 and decoding it gives the same set back."""
    assert from_fields_v1(to_fields_v1(members)) == members


def test_fields_v1_shape() -> None:
    """Members with children get '.', leaves are {}, children sorted f: < k: < v:."""
    tree = to_fields_v1({("f:spec",), ("f:spec", "f:b"), ("f:spec", "f:a"), ("f:x", 'v:"q"')})
    assert tree == {"f:spec": {".": {}, "f:a": {}, "f:b": {}}, "f:x": {'v:"q"': {}}}
    assert list(tree["f:spec"]) == [".", "f:a", "f:b"]


@given(objects)
def test_compare_with_itself_is_empty(obj: dict[str, Any]) -> None:
    """An object compared with itself (or an equal copy) has no changes."""
    assert compare(obj, dict(obj), DEDUCED) == (set(), set())


@given(objects, objects)
def test_compare_empty_only_for_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two objects differ exactly when compare reports a change."""
    changed, removed = compare(a, b, DEDUCED)
    assert (not changed and not removed) == (a == b)


@given(objects, objects)
def test_merge_keeps_the_configuration(live: dict[str, Any], config: dict[str, Any]) -> None:
    """After a merge every field the configuration sets has the configuration's value.

    And merging the same configuration again changes nothing.
    """
    config = {k: v for k, v in config.items() if v is not None}
    merged = merge(live, config, DEDUCED)
    changed, removed = compare(config, merged, DEDUCED)
    assert not removed
    assert not (changed & field_set(config, DEDUCED))
    assert merge(merged, config, DEDUCED) == merged


@given(objects)
def test_removing_every_applied_field_empties_the_object(obj: dict[str, Any]) -> None:
    """Removing all the fields of an object's own field set leaves nothing behind."""
    assert remove_paths(obj, field_set(obj, DEDUCED), DEDUCED) == {}


def test_path_strings() -> None:
    """Paths print like structured-merge-diff: fields, keyed items, set values."""
    assert path_string(("f:spec", "f:color")) == ".spec.color"
    assert (
        path_string(("f:spec", 'k:{"name":"http","port":80}', "f:x"))
        == '.spec[name="http",port=80].x'
    )
    assert path_string(("f:metadata", "f:finalizers", 'v:"a/b"')) == '.metadata.finalizers[="a/b"]'


def test_keyed_list_merge_order_and_key_paths() -> None:
    """Keyed items merge by key.

    Live-only items keep their place, configured ones follow the configuration's order; each
    item is owned as k:{...} with its fields.
    """
    shape = shape_from_schema(
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                }
            },
        }
    )
    live = {"items": [{"name": "a", "v": 1}, {"name": "b"}, {"name": "c"}]}
    config = {"items": [{"name": "c", "v": 3}, {"name": "a"}, {"name": "d"}]}
    merged = merge(live, config, shape)
    assert merged["items"] == [
        {"name": "b"},
        {"name": "c", "v": 3},
        {"name": "a", "v": 1},
        {"name": "d"},
    ]
    assert ("f:items", 'k:{"name":"d"}') in field_set(config, shape)
    assert ("f:items",) not in field_set(config, shape)  # a declared field is not a member


_KEYED = shape_from_schema(
    {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object"},
            }
        },
    }
)
names = st.lists(st.sampled_from("abcdef"), unique=True, max_size=6)


@given(names, names)
def test_keyed_list_merge_properties(live: list[str], config: list[str]) -> None:
    """A keyed merge holds every key of both lists once.

    The configured keys in the configuration's order, and the live-only keys in their live
    order.
    """
    merged = merge(
        {"items": [{"name": n, "live": True} for n in live]},
        {"items": [{"name": n} for n in config]},
        _KEYED,
    )["items"]
    order = [item["name"] for item in merged]
    assert sorted(order) == sorted(set(live) | set(config))
    assert [n for n in order if n in config] == config
    assert [n for n in order if n not in config] == [n for n in live if n not in config]
    assert all(item.get("live") for item in merged if item["name"] in live)


_MANAGERS = ("a", "b", "c")
applies = st.lists(
    st.tuples(
        st.sampled_from(_MANAGERS),
        st.dictionaries(st.sampled_from("xyz"), st.integers(0, 2), max_size=3),
        st.booleans(),
    ),
    max_size=12,
)


@given(applies)
def test_applies_follow_the_ownership_model(steps: list[tuple[str, dict[str, int], bool]]) -> None:
    """Random applies by three managers match a model of server-side apply.

    A changed field owned by another manager conflicts unless forced (then it moves); a
    field applied with its current value is shared; a field its last owner stops applying
    goes. After every step the object and each manager's fields match the model.
    """
    from crwatch.testing import ApiError, FakeApiServer

    server = FakeApiServer()
    widgets = server.register_crd(group="example.com", version="v1", plural="widgets", kind="W")
    values: dict[str, int] = {}
    owners: dict[str, set[str]] = {}
    applied: dict[str, set[str]] = {m: set() for m in _MANAGERS}
    for manager, config, force in steps:
        conflicts = {
            (f".spec.{k}", f'"{o}"')
            for k, v in config.items()
            if k in values and values[k] != v
            for o in owners[k] - {manager}
        }
        body = {"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"}}
        body["spec"] = dict(config)
        if conflicts and not force:
            with pytest.raises(ApiError) as err:
                server.apply(widgets, body, field_manager=manager, force=force)
            assert err.value.code == 409
            got = {
                (c["field"], c["message"][len("conflict with ") :])
                for c in err.value.status["details"]["causes"]
            }
            assert got == conflicts
            continue
        obj = server.apply(widgets, body, field_manager=manager, force=force)
        for k, v in config.items():
            if values.get(k) != v:
                owners[k] = {manager}
            else:
                owners[k].add(manager)
            values[k] = v
        for k in applied[manager] - set(config):
            if manager in owners.get(k, ()):
                owners[k].discard(manager)
                if not owners[k]:
                    del owners[k], values[k]
        applied[manager] = set(config)
        for k in owners:
            applied_by = {m for m in _MANAGERS if k in applied[m]}
            assert owners[k] <= applied_by
        assert obj.get("spec", {}) == values
        entries = {
            e["manager"]: from_fields_v1(e["fieldsV1"])
            for e in obj["metadata"].get("managedFields", [])
        }
        for m in _MANAGERS:
            mine = {p[1][2:] for p in entries.get(m, set()) if len(p) == 2 and p[0] == "f:spec"}
            assert mine == {k for k, who in owners.items() if m in who}
