"""Field management: ``metadata.managedFields`` for every write, and server-side apply.

kube-apiserver records, per field manager, which fields it set
(https://kubernetes.io/docs/reference/using-api/server-side-apply/). Creates, updates and
non-apply patches record an ``Update`` entry for their manager (the ``fieldManager`` query
parameter, else the User-Agent up to its first ``/``); an apply
(``Content-Type: application/apply-patch+yaml``) records an ``Apply`` entry holding exactly
the fields of its configuration, merges it onto the live object, removes the fields it
stopped applying when nobody else owns them, and answers 409 Conflict when it would change
a field another manager owns, unless ``force=true``.

`FieldTracker.track` is the one place the write path computes the new managed fields, after
the object is final (the caller has admitted it). `merge_apply` builds the object an apply
asks for. Left out (see docs/testing.md): version conversion of managed fields, the
"ancient-changes" cap on Update entries, keeping ``last-applied-configuration`` in step
with server-side applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson
from attrs import frozen

from ._fieldpath import (
    DEDUCED,
    FieldSet,
    Path,
    Shape,
    compare,
    drop_under,
    field_set,
    from_fields_v1,
    keep_under,
    merge,
    object_shape,
    path_string,
    prefixes,
    remove_paths,
    shape_from_schema,
    to_fields_v1,
)

Obj = dict[str, Any]

APPLY: Final = "Apply"
UPDATE: Final = "Update"
BEFORE_FIRST_APPLY: Final = "before-first-apply"
FIELD_MANAGER_MAX_LENGTH: Final = 128

# Fields kube-apiserver never tracks (fieldmanager's stripMeta manager):
# https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/stripmeta.go
_STRIPPED: Final[frozenset[Path]] = frozenset(
    {
        (),
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        *(
            ("f:metadata", "f:" + name)
            for name in (
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
            )
        ),
    }
)
_STATUS: Final[Path] = ("f:status",)


@frozen
class Operation:
    """Who writes and how: the manager, ``Update`` or ``Apply``, and the subresource."""

    manager: str
    operation: str = UPDATE
    api_version: str = ""
    subresource: str = ""
    force: bool = False
    applied: FieldSet | None = None  # the Apply configuration's fields

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The entry this operation owns (Apply entries ignore the apiVersion)."""
        version = "" if self.operation == APPLY else self.api_version
        return (self.manager, self.operation, version, self.subresource)


class _Entry:
    __slots__ = ("api_version", "fields", "manager", "operation", "raw", "subresource", "time")

    def __init__(
        self,
        manager: str,
        operation: str,
        api_version: str,
        subresource: str,
        time: str,
        fields: set[Path],
        raw: Obj | None = None,
    ) -> None:
        self.manager = manager
        self.operation = operation
        self.api_version = api_version
        self.subresource = subresource
        self.time = time
        self.fields = fields
        self.raw = raw  # the stored entry, reused when nothing about it changed

    @property
    def key(self) -> tuple[str, str, str, str]:
        version = "" if self.operation == APPLY else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def label(self) -> str:
        # How kube-apiserver names a manager in a conflict: Update entries with the
        # apiVersion they wrote (fieldmanager/internal/conflict.go printManager).
        if self.operation == UPDATE:
            return f'"{self.manager}" using {self.api_version}'
        return f'"{self.manager}"'

    def encode(self, tree: Obj | None = None) -> Obj:
        if self.raw is not None:
            return self.raw
        entry: Obj = {"manager": self.manager, "operation": self.operation}
        if self.api_version:
            entry["apiVersion"] = self.api_version
        if self.time:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = tree if tree is not None else to_fields_v1(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


_Entries = dict[tuple[str, str, str, str], _Entry]
# Stored objects are never changed in place, so a stored managedFields list decodes to the
# same entries every time: remember them by the list's identity (the list is kept alive
# with them, so its id cannot be reused while cached).
_DECODED: dict[int, tuple[list[Any], _Entries]] = {}
_DECODED_MAX: Final = 4_096


def _decode(managed: Any) -> _Entries:
    if not isinstance(managed, list):
        return {}
    hit = _DECODED.get(id(managed))
    if hit is not None and hit[0] is managed:
        return dict(hit[1])
    out = _decode_fresh(managed)
    _remember(managed, out)
    return dict(out)


def _remember(managed: list[Any], entries: _Entries) -> None:
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[id(managed)] = (managed, entries)


def _decode_fresh(managed: list[Any]) -> _Entries:
    out: _Entries = {}
    for raw in managed:
        if not isinstance(raw, dict) or not raw.get("fieldsV1"):
            continue
        entry = _Entry(
            str(raw.get("manager", "")),
            str(raw.get("operation", UPDATE)),
            str(raw.get("apiVersion", "")),
            str(raw.get("subresource", "")),
            str(raw.get("time", "")),
            from_fields_v1(raw.get("fieldsV1")),
            raw,
        )
        out[entry.key] = entry
    return out


def _sort_key(entry: _Entry) -> tuple[str, str, str, str, str]:
    # kube-apiserver's order: operation (Apply first), time, manager, apiVersion, subresource.
    return (entry.operation, entry.time, entry.manager, entry.api_version, entry.subresource)


def manager_from_user_agent(user_agent: str) -> str:
    """Default field manager: the User-Agent up to its first ``/``, printable, ≤ 128 chars.

    (fieldmanager prefixFromUserAgent; e.g. ``kubectl/v1.32.0 ...`` -> ``kubectl``.)
    """
    head = user_agent.split("/", 1)[0]
    return "".join(c for c in head if c.isprintable())[:FIELD_MANAGER_MAX_LENGTH]


class ApplyConflict(Exception):
    """An apply would change fields other managers own: ``(path, manager label)`` pairs."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        super().__init__(conflict_message(conflicts))
        self.conflicts = conflicts


def conflict_message(conflicts: list[tuple[str, str]]) -> str:
    """kube-apiserver's text for apply conflicts (fieldmanager/internal/conflict.go)."""
    if len(conflicts) == 1:
        path, manager = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {manager}: {path}"
    by_manager: dict[str, list[str]] = {}
    for path, manager in conflicts:
        by_manager.setdefault(manager, []).append(path)
    lines: list[str] = []
    for manager in sorted(by_manager):
        lines.append(f"conflicts with {manager}:")
        lines.extend(f"- {p}" for p in by_manager[manager])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def conflict_status(exc: ApplyConflict) -> Obj:
    """Build the 409 Status body of an apply conflict (errors.NewApplyConflict)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": str(exc),
        "reason": "Conflict",
        "details": {
            "causes": [
                {"reason": "FieldManagerConflict", "message": f"conflict with {m}", "field": p}
                for p, m in exc.conflicts
            ]
        },
        "code": 409,
    }


class FieldTracker:
    """Computes ``managedFields`` for writes, with the merge shapes of every served type.

    ``crd_schema(group, plural, version)`` returns the CRD's ``openAPIV3Schema`` for that
    version (or ``None``); shapes are cached per schema object.
    """

    def __init__(self, crd_schema: Callable[[str, str, str], Any]) -> None:
        self._crd_schema = crd_schema
        self._shapes: dict[tuple[str, str, str], tuple[Any, Shape]] = {}

    def shape(self, group: str, plural: str, version: str, *, builtin: bool) -> Shape:
        """Return the merge shape of one served type (built-ins: ObjectMeta + untyped rest)."""
        if builtin:
            return _BUILTIN_SHAPE
        key = (group, plural, version)
        schema = self._crd_schema(group, plural, version)
        cached = self._shapes.get(key)
        if cached is not None and cached[0] is schema:
            return cached[1]
        shape = shape_from_schema(schema)
        self._shapes[key] = (schema, shape)
        return shape

    def track(
        self,
        shape: Shape,
        old: Obj | None,
        new: Obj,
        op: Operation,
        *,
        now: str,
        reset_status: bool,
        incoming: Any = None,
    ) -> list[Obj]:
        """Return the ``managedFields`` for ``new`` after ``op`` turned ``old`` into it.

        ``incoming`` is the ``managedFields`` the client sent with an update: a non-empty
        list replaces the stored ones (``[{}]`` clears them), as on kube-apiserver.
        Raises `ApplyConflict` for an apply that changes fields others own, unless forced.
        """
        stored = (old or {}).get("metadata", {}).get("managedFields")
        if op.operation == UPDATE and isinstance(incoming, list) and incoming:
            stored = incoming
        entries = _decode(stored)
        ignored = _ignored(op.subresource, reset_status)
        if op.operation == UPDATE and not entries and old is not None:
            # An object nobody tracks stays untracked until someone applies
            # (fieldmanager skipNonAppliedManager).
            return []
        if op.operation == APPLY and not entries and old is not None:
            # The fields that exist before the first apply belong to "before-first-apply".
            first, _ = compare(None, old, shape)
            first = _clean(first, ignored)
            if first:
                entries[(BEFORE_FIRST_APPLY, UPDATE, op.api_version, "")] = _Entry(
                    BEFORE_FIRST_APPLY, UPDATE, op.api_version, "", now, first
                )
        changed, removed = compare(old, new, shape)
        changed = _clean(changed, ignored)
        removed = _clean(removed, ignored)
        me = op.key
        trees: dict[int, Obj] = {}
        force = op.force or op.operation != APPLY
        if not force:
            conflicting = {p for k, e in entries.items() if k != me for p in e.fields & changed}
            if conflicting and conflicting <= _client_side_applied(shape, old, op, ignored):
                force = True
        conflicts: list[tuple[str, str]] = []
        for key, entry in entries.items():
            if key == me:
                continue
            taken = entry.fields & changed
            if taken and not force:
                conflicts.extend((path_string(p), entry.label()) for p in sorted(taken))
                continue
            lost = taken | (entry.fields & removed)
            if lost:
                entries[key] = _Entry(
                    entry.manager,
                    entry.operation,
                    entry.api_version,
                    entry.subresource,
                    entry.time,
                    entry.fields - lost,
                )
        if conflicts:
            conflicts.sort(key=lambda c: (c[1], c[0]))
            raise ApplyConflict(conflicts)
        mine = entries.get(me)
        if op.operation == APPLY:
            assert op.applied is not None
            fields = _clean(set(op.applied), ignored)
            touched = bool(changed or removed)
            if (
                mine is None
                or touched
                or mine.fields != fields
                or mine.api_version != op.api_version
            ):
                # The time moves only when the object changed (managedFieldsUpdater.Apply).
                when = now if touched or mine is None else mine.time
                entry = _Entry(op.manager, APPLY, op.api_version, op.subresource, when, fields)
                entries[me] = entry
                if mine is not None and mine.fields == fields and mine.raw is not None:
                    trees[id(entry)] = mine.raw["fieldsV1"]  # same fields: same tree
        else:
            taken = changed
            if mine is not None:
                kept = mine.fields - removed
                if taken:
                    entries[me] = _Entry(
                        op.manager, UPDATE, op.api_version, op.subresource, now, kept | taken
                    )
                elif kept != mine.fields:
                    entries[me] = _Entry(
                        op.manager, UPDATE, op.api_version, op.subresource, mine.time, kept
                    )
            elif taken:
                entries[me] = _Entry(op.manager, UPDATE, op.api_version, op.subresource, now, taken)
        live = [e for e in entries.values() if e.fields]
        live.sort(key=_sort_key)
        encoded = [e.encode(trees.get(id(e))) for e in live]
        # What was just encoded decodes to these entries: keep them for the next write.
        _remember(
            encoded,
            {
                e.key: _Entry(
                    e.manager, e.operation, e.api_version, e.subresource, e.time, e.fields, raw
                )
                for e, raw in zip(live, encoded, strict=True)
            },
        )
        return encoded


LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


def _client_side_applied(
    shape: Shape, old: Obj | None, op: Operation, ignored: tuple[str, tuple[Path, ...]]
) -> set[Path]:
    """Fields ``kubectl apply --server-side`` may take over from client-side apply.

    kube-apiserver lets the ``kubectl`` manager's apply take, without conflicts, the fields
    of the object's ``last-applied-configuration`` annotation while the object still matches
    it: the documented upgrade from client-side to server-side apply
    (https://kubernetes.io/docs/reference/using-api/server-side-apply/#upgrading-from-client-side-apply-to-server-side-apply).
    """
    if op.manager != "kubectl" or op.operation != APPLY or old is None:
        return set()
    text = (old.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        last = orjson.loads(text) if isinstance(text, str) and text else None
    except orjson.JSONDecodeError:
        return set()
    if not isinstance(last, dict):
        return set()
    fields = _clean(field_set(last, shape), ignored)
    changed, removed = compare(last, old, shape)
    if (changed | removed) & fields:
        return set()  # someone changed the object since: no free upgrade
    return fields


def _ignored(subresource: str, reset_status: bool) -> tuple[str, tuple[Path, ...]]:
    # Fields the strategy resets are not tracked: status on the main resource when the
    # status subresource is on, everything but status on /status (GetResetFields).
    if subresource == "status":
        return ("keep", (_STATUS,))
    if reset_status:
        return ("drop", (_STATUS,))
    return ("drop", ())


def _clean(paths: set[Path], ignored: tuple[str, tuple[Path, ...]]) -> set[Path]:
    paths = paths - _STRIPPED
    mode, roots = ignored
    if not roots:
        return paths
    return keep_under(paths, roots) if mode == "keep" else drop_under(paths, roots)


def merge_apply(
    shape: Shape,
    live: Obj | None,
    config: Obj,
    op: Operation,
    *,
    reset_status: bool,
) -> tuple[Obj, FieldSet]:
    """Return the object an apply asks for, and the fields its configuration sets.

    Merges ``config`` onto ``live``, then removes what this manager applied last time but
    no longer applies, unless another manager (or this one's other entries) still owns it
    (structured-merge-diff's prune step).
    """
    ignored = _ignored(op.subresource, reset_status)
    applied = _clean(field_set(config, shape), ignored)
    merged: Obj = merge(live or {}, config, shape)
    if live is None:
        return merged, frozenset(applied)
    entries = _decode(live.get("metadata", {}).get("managedFields"))
    last = entries.get(op.key)
    if last is not None and not last.fields <= applied:
        owned: set[Path] = set(applied)
        for key, entry in entries.items():
            if key != op.key:
                owned |= entry.fields
        still = prefixes(owned)
        gone = [p for p in last.fields if p not in still]
        if gone:
            merged = remove_paths(merged, gone, shape, owned)
    return merged, frozenset(applied)


_BUILTIN_SHAPE: Final = object_shape()


def dry_run_values(values: list[str]) -> tuple[bool, list[str]]:
    """Return (dry run?, unsupported values) for the ``dryRun`` parameter values."""
    bad = [v for v in values if v != "All"]
    return bool(values) and not bad, bad


def go_string_list(values: list[str]) -> str:
    """Render a []string like Go's %#v (how kube-apiserver prints a bad dryRun value)."""
    return "[]string{" + ", ".join(orjson.dumps(v).decode() for v in values) + "}"


__all__ = [
    "APPLY",
    "DEDUCED",
    "UPDATE",
    "ApplyConflict",
    "FieldTracker",
    "Operation",
    "conflict_status",
    "dry_run_values",
    "go_string_list",
    "manager_from_user_agent",
    "merge_apply",
]
