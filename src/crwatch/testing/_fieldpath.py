"""Field paths, sets of them, and the shapes that say how objects merge: pure functions.

The model is structured-merge-diff's, the library behind server-side apply
(https://github.com/kubernetes-sigs/structured-merge-diff): an object is a tree; a *path*
names one node of it; a *field set* is the set of nodes a manager owns. A path is a tuple of
path elements spelled as in ``metadata.managedFields[].fieldsV1``
(https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management):

- ``f:<name>``: a field of a map or struct,
- ``k:{"name":"a"}``: an item of a list whose items are keyed (``x-kubernetes-list-type: map``),
- ``v:"x"``: an item of a ``set`` list, by its value.

A `Shape` says, for one node, whether it is a scalar, a struct with declared fields, a map
with free keys, or a list, and whether it merges granularly or atomically. Shapes come from a
CRD's ``openAPIV3Schema`` (`shape_from_schema`) or are built in (`OBJECT_META`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

import orjson

Path = tuple[str, ...]
FieldSet = frozenset[Path]

SCALAR: Final = "scalar"
STRUCT: Final = "struct"  # declared fields (properties); unknown keys merge like map entries
MAP: Final = "map"  # free keys, one element shape (additionalProperties, labels)
LIST: Final = "list"


class Shape:
    """How one node of an object merges (a structured-merge-diff type, reduced)."""

    __slots__ = ("atomic", "elem", "fields", "keys", "kind", "list_type")

    def __init__(
        self,
        kind: str,
        *,
        fields: dict[str, Shape] | None = None,
        elem: Shape | None = None,
        list_type: str = "atomic",
        keys: tuple[str, ...] = (),
        atomic: bool = False,
    ) -> None:
        self.kind: str = kind
        self.fields: dict[str, Shape] = fields or {}
        self.elem: Shape | None = elem
        self.list_type: str = list_type  # atomic | set | map
        self.keys: tuple[str, ...] = keys
        self.atomic: bool = atomic or (kind == LIST and list_type == "atomic")

    def child(self, key: str) -> Shape:
        """Shape of a map or struct member."""
        found = self.fields.get(key)
        if found is not None:
            return found
        return self.elem if self.elem is not None else DEDUCED

    def declares(self, key: str) -> bool:
        """Tell whether ``key`` is a declared field (not a free map entry)."""
        return self.kind == STRUCT and key in self.fields


# A node of no declared type (x-kubernetes-preserve-unknown-fields): maps merge granularly,
# lists atomically, like structured-merge-diff's "deduced" type.
DEDUCED: Final = Shape(MAP)
DEDUCED.elem = DEDUCED
_SCALAR: Final = Shape(SCALAR)
_STRING_MAP: Final = Shape(MAP, elem=_SCALAR)

# metav1.ObjectMeta's list and map types (k8s.io/apimachinery/pkg/apis/meta/v1/types.go:
# finalizers is +listType=set, ownerReferences +listType=map +listMapKey=uid).
OBJECT_META: Final = Shape(
    STRUCT,
    fields={
        **dict.fromkeys(
            (
                "name",
                "generateName",
                "namespace",
                "selfLink",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ),
            _SCALAR,
        ),
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": Shape(LIST, elem=_SCALAR, list_type="set"),
        "ownerReferences": Shape(
            LIST,
            elem=Shape(
                STRUCT,
                fields=dict.fromkeys(
                    ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"),
                    _SCALAR,
                ),
            ),
            list_type="map",
            keys=("uid",),
        ),
        "managedFields": Shape(LIST),
    },
)


def object_shape(fields: dict[str, Shape] | None = None, *, open_: bool = True) -> Shape:
    """Shape of a top-level object: apiVersion, kind, ObjectMeta, plus ``fields``."""
    declared = {"apiVersion": _SCALAR, "kind": _SCALAR, "metadata": OBJECT_META, **(fields or {})}
    return Shape(STRUCT, fields=declared, elem=DEDUCED if open_ else None)


def shape_from_schema(schema: Any) -> Shape:
    """Convert a CRD's ``openAPIV3Schema`` into the `Shape` of the whole object.

    Honours ``x-kubernetes-list-type`` (atomic, set, map) with ``x-kubernetes-list-map-keys``,
    ``x-kubernetes-map-type`` (granular, atomic) and ``x-kubernetes-preserve-unknown-fields``
    (https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy).
    """
    root = _shape(schema) if isinstance(schema, dict) else DEDUCED
    fields = dict(root.fields) if root.kind == STRUCT else {}
    fields.pop("metadata", None)  # ObjectMeta's own shape always wins
    return object_shape(fields)


def _shape(schema: dict[str, Any]) -> Shape:
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return _SCALAR
    if kind == "array":
        items = schema.get("items")
        elem = _shape(items) if isinstance(items, dict) else DEDUCED
        list_type = schema.get("x-kubernetes-list-type") or "atomic"
        keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
        if list_type == "map" and not keys:
            list_type = "atomic"
        return Shape(LIST, elem=elem, list_type=list_type, keys=keys)
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    atomic = schema.get("x-kubernetes-map-type") == "atomic"
    if isinstance(props, dict) and props:
        fields = {k: _shape(v) for k, v in props.items() if isinstance(v, dict)}
        return Shape(STRUCT, fields=fields, elem=DEDUCED, atomic=atomic)
    if isinstance(extra, dict):
        return Shape(MAP, elem=_shape(extra), atomic=atomic)
    if kind == "object" or schema.get("x-kubernetes-preserve-unknown-fields"):
        return Shape(MAP, elem=DEDUCED, atomic=atomic)
    if kind is None and not schema:
        return DEDUCED
    return _SCALAR


# -- path elements ---------------------------------------------------------------------------


def field_pe(name: str) -> str:
    """Return the path element of a map or struct member."""
    return "f:" + name


def item_pe(shape: Shape, item: Any, index: int) -> str:
    """Return the path element of one list item: ``k:{...}`` for map lists, ``v:...`` for sets."""
    if shape.list_type == "map" and isinstance(item, dict):
        key = {k: item.get(k) for k in sorted(shape.keys) if k in item}
        return "k:" + orjson.dumps(key).decode()
    if shape.list_type == "set":
        return "v:" + orjson.dumps(item).decode()
    return f"i:{index}"


def _go_value(value: Any) -> str:
    # How structured-merge-diff prints a value in a path (value.ToString): strings quoted.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return str(value)


def path_string(path: Path) -> str:
    """Render a path like structured-merge-diff does: ``.spec.ports[name="http"].port``."""
    out: list[str] = []
    for pe in path:
        tag, body = pe[:2], pe[2:]
        if tag == "f:":
            out.append("." + body)
        elif tag == "k:":
            key = orjson.loads(body)
            out.append("[" + ",".join(f"{k}={_go_value(v)}" for k, v in key.items()) + "]")
        elif tag == "v:":
            out.append(f"[={_go_value(orjson.loads(body))}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


# -- field sets <-> fieldsV1 -------------------------------------------------------------------


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    """Decode a ``fieldsV1`` tree into a set of paths (``.`` marks a member with children)."""
    out: set[Path] = set()
    if not isinstance(tree, dict):
        return out
    for pe, child in tree.items():
        if pe == ".":
            continue
        path = (*prefix, pe)
        if not isinstance(child, dict) or not child or "." in child:
            out.add(path)
        if isinstance(child, dict) and child:
            out |= from_fields_v1(child, path)
    return out


_RANK: Final = {"f": 0, "k": 1, "v": 2, "i": 3}


def _order(pe: str) -> tuple[int, str]:
    return (_RANK.get(pe[:1], 4), pe)


_TREES: dict[frozenset[Path], dict[str, Any]] = {}
_TREES_MAX: Final = 4_096


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Encode a set of paths as a ``fieldsV1`` tree (members with children get ``.``).

    The tree may be shared with other callers (objects of the same shape own the same
    fields): never change it.
    """
    key = frozenset(paths)
    tree = _TREES.get(key)
    if tree is None:
        if len(_TREES) >= _TREES_MAX:
            _TREES.clear()
        tree = _TREES[key] = _encode_tree(key)
    return tree


def _encode_tree(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    members: list[dict[str, Any]] = []
    for path in paths:
        node = root
        for pe in path:
            nxt = node.get(pe)
            if nxt is None:
                nxt = node[pe] = {}
            node = nxt
        members.append(node)
    for node in members:
        if node:
            node["."] = {}
    return _sorted_tree(root)


def _sorted_tree(node: dict[str, Any]) -> dict[str, Any]:
    if len(node) <= 1 and "." in node:
        return {}
    keys = sorted((k for k in node if k != "."), key=_order)
    out: dict[str, Any] = {".": {}} if "." in node else {}
    for k in keys:
        out[k] = _sorted_tree(node[k])
    return out


# -- walks -------------------------------------------------------------------------------------


_CONTAINERS: Final = (dict, list)


def _items(shape: Shape, value: Any) -> Iterator[tuple[str, Any]]:
    """(path element, item) for the children of a granular list; duplicates keep the first."""
    seen: set[str] = set()
    for i, item in enumerate(value):
        pe = item_pe(shape, item, i)
        if pe not in seen:
            seen.add(pe)
            yield pe, item


def _is_leaf(shape: Shape, old: Any, new: Any) -> bool:
    if shape.kind == SCALAR or shape.atomic:
        return True
    container = dict if shape.kind in (STRUCT, MAP) else list
    for v in (old, new):
        if v is not None and not isinstance(v, container):
            return True  # a value of another type than the schema says: compare as a whole
    # Both empty or missing: a leaf, so that {} and null stay distinct.
    return not old and not new


def field_set(value: Any, shape: Shape, prefix: Path = ()) -> set[Path]:
    """Return the fields an apply configuration sets (structured-merge-diff's ToFieldSet).

    A struct's declared field is owned through its leaves, a free map entry (a label, an
    untyped field) and a list item are owned themselves as well, so that removing them later
    prunes them.
    """
    out: set[Path] = set()
    _field_set(value, shape, prefix, out)
    return out


def _field_set(value: Any, shape: Shape, prefix: Path, out: set[Path]) -> None:
    if shape.kind == SCALAR or shape.atomic:
        out.add(prefix)
        return
    if shape.kind == LIST:
        if not isinstance(value, list):
            out.add(prefix)
            return
        elem = shape.elem or DEDUCED
        for pe, item in _items(shape, value):
            path = (*prefix, pe)
            _field_set(item, elem, path, out)
            out.add(path)
        return
    if not isinstance(value, dict):
        out.add(prefix)
        return
    declared = shape.fields if shape.kind == STRUCT else {}
    default = shape.elem or DEDUCED
    for key, child in value.items():
        path = (*prefix, "f:" + key)
        if child is None or type(child) not in _CONTAINERS or child == {}:
            out.add(path)  # a scalar, null or empty member is a leaf whatever its shape
            continue
        _field_set(child, declared.get(key) or default, path, out)
        if key not in declared:
            out.add(path)


def compare(old: Any, new: Any, shape: Shape) -> tuple[set[Path], set[Path]]:
    """Return (added or modified, removed) paths between two objects (SMD's Compare)."""
    changed: set[Path] = set()
    removed: set[Path] = set()
    if old is not new:
        _compare(old, new, shape, (), changed, removed)
    return changed, removed


def _compare(
    old: Any, new: Any, shape: Shape, path: Path, changed: set[Path], removed: set[Path]
) -> None:
    if _is_leaf(shape, old, new):
        if old is None:
            if new is not None:
                changed.add(path)
        elif new is None:
            removed.add(path)
        elif old != new or type(old) is not type(new):
            changed.add(path)
        return
    if old is None:
        changed.add(path)
    elif new is None:
        removed.add(path)
    if shape.kind == LIST:
        elem = shape.elem or DEDUCED
        olds = dict(_items(shape, old or ()))
        news = dict(_items(shape, new or ()))
        for pe, item in olds.items():
            other = news.get(pe)
            if other is not item:
                _compare(item, other, elem, (*path, pe), changed, removed)
        for pe, item in news.items():
            if pe not in olds:
                _compare(None, item, elem, (*path, pe), changed, removed)
        return
    olds_map: dict[str, Any] = old or {}
    news_map: dict[str, Any] = new or {}
    fields = shape.fields
    default = shape.elem or DEDUCED
    for key, value in olds_map.items():
        other = news_map.get(key)
        if other is value:
            continue
        if type(value) not in _CONTAINERS and type(other) not in _CONTAINERS:
            # Two scalars (or a scalar gone): a leaf whatever the shape says.
            if other is None:
                if value is not None:
                    removed.add((*path, "f:" + key))
            elif value != other or type(value) is not type(other):
                changed.add((*path, "f:" + key))
            continue
        sub = fields.get(key) or default
        _compare(value, other, sub, (*path, "f:" + key), changed, removed)
    for key, value in news_map.items():
        if key not in olds_map:
            sub = fields.get(key) or default
            if type(value) not in _CONTAINERS:
                if value is not None:
                    changed.add((*path, "f:" + key))
                continue
            _compare(None, value, sub, (*path, "f:" + key), changed, removed)


def merge(live: Any, config: Any, shape: Shape) -> Any:
    """Merge an apply configuration onto the live object (SMD's Merge); no argument changes.

    Structs and granular maps merge member by member; keyed and set lists item by item
    (items the configuration names, in its order, around the ones only the live list has);
    scalars, atomic lists and atomic maps are replaced. A ``null`` in the configuration
    removes the member.
    """
    if config is None:
        return None
    if shape.kind == SCALAR or shape.atomic:
        return config
    if shape.kind == LIST:
        if not isinstance(config, list) or not isinstance(live, list):
            return config
        return _merge_list(live, config, shape)
    if not isinstance(config, dict) or not isinstance(live, dict):
        return config
    out = dict(live)
    fields = shape.fields
    default = shape.elem or DEDUCED
    for key, value in config.items():
        if value is None:
            out.pop(key, None)
        elif type(value) not in _CONTAINERS:
            out[key] = value  # scalars replace whatever the shape
        else:
            out[key] = merge(live.get(key), value, fields.get(key) or default)
    return out


def _merge_list(live: list[Any], config: list[Any], shape: Shape) -> list[Any]:
    elem = shape.elem or DEDUCED
    live_items = list(_items(shape, live))
    cfg_items = list(_items(shape, config))
    live_by = dict(live_items)
    cfg_by = dict(cfg_items)
    shared = [pe for pe, _ in cfg_items if pe in live_by]  # in the configuration's order
    out: list[Any] = []
    done: set[str] = set()
    nxt = 0  # shared[nxt] is the next shared item to place

    def next_shared() -> str | None:
        nonlocal nxt
        while nxt < len(shared) and shared[nxt] in done:
            nxt += 1
        return shared[nxt] if nxt < len(shared) else None

    i = j = 0
    # Live-only items keep their place; items both lists have follow the configuration's
    # order, and new items go where the configuration puts them (SMD's merge of lists).
    while i < len(live_items) or j < len(cfg_items):
        if i < len(live_items) and j < len(cfg_items):
            pe = live_items[i][0]
            if pe == cfg_items[j][0]:
                out.append(merge(live_items[i][1], cfg_items[j][1], elem))
                done.add(pe)
                i += 1
                j += 1
                continue
            want = next_shared()
            if pe in cfg_by and want is not None and want != pe:
                i += 1  # placed later, when the configuration reaches it
                continue
        if i < len(live_items):
            pe, item = live_items[i]
            if pe not in cfg_by:
                out.append(item)
                i += 1
                continue
            if pe in done:
                i += 1
                continue
        if j < len(cfg_items):
            pe, item = cfg_items[j]
            if pe not in done:
                out.append(merge(live_by.get(pe), item, elem))
                done.add(pe)
            j += 1
        else:
            i += 1
    return out


def remove_paths(
    obj: Any, paths: Iterable[Path], shape: Shape, owned: frozenset[Path] | set[Path] = frozenset()
) -> Any:
    """Return ``obj`` without the nodes at ``paths`` (copying only what changes).

    A map or list left empty by the removal goes too, unless it is in ``owned``.
    """
    for path in sorted(paths, key=len):  # parents first: they take their children along
        obj = _remove(obj, path, shape, owned)
    return obj


def _remove(node: Any, path: Path, shape: Shape, owned: Any = frozenset(), at: Path = ()) -> Any:
    if not path:
        return node
    pe, rest = path[0], path[1:]
    if pe.startswith("f:"):
        if not isinstance(node, dict):
            return node
        key = pe[2:]
        if key not in node:
            return node
        out = dict(node)
        if rest:
            here = (*at, pe)
            sub = _remove(node[key], rest, shape.child(key), owned, here)
            if sub is node[key]:
                return node
            if isinstance(sub, (dict, list)) and not sub and here not in owned:
                # A map or list emptied by the removal goes too (SMD's remove leaves it
                # null, and null members are dropped when the object is stored), unless
                # someone owns it as such.
                del out[key]
            else:
                out[key] = sub
        else:
            del out[key]
        return out
    if not isinstance(node, list):
        return node
    elem = shape.elem or DEDUCED
    items: list[Any] = []
    hit = False
    for i, item in enumerate(node):
        if item_pe(shape, item, i) == pe:
            hit = True
            if rest:
                items.append(_remove(item, rest, elem, owned, (*at, pe)))
            continue
        items.append(item)
    return items if hit else node


def prefixes(paths: Iterable[Path]) -> set[Path]:
    """Every path and each of its ancestors."""
    out: set[Path] = set()
    for path in paths:
        for n in range(len(path), 0, -1):
            head = path[:n]
            if head in out:
                break
            out.add(head)
    return out


def drop_under(paths: Iterable[Path], roots: Iterable[Path]) -> set[Path]:
    """``paths`` without those at or below any of ``roots``."""
    tops = tuple(roots)
    return {p for p in paths if not any(p[: len(r)] == r for r in tops)}


def keep_under(paths: Iterable[Path], roots: Iterable[Path]) -> set[Path]:
    """Only the ``paths`` at or below one of ``roots``."""
    tops = tuple(roots)
    return {p for p in paths if any(p[: len(r)] == r for r in tops)}
