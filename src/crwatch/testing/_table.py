"""Server-side views of objects: ``Table`` and ``PartialObjectMetadata`` (meta.k8s.io).

A client asks for them in ``Accept``
(https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables,
https://kubernetes.io/docs/reference/using-api/api-concepts/#alternate-representations-of-resources):

- ``application/json;as=Table;v=v1;g=meta.k8s.io`` (kubectl get) gives a ``Table`` with the
  default columns or the CRD's ``additionalPrinterColumns``; ``includeObject``
  (``None``/``Metadata``/``Object``) says what each row carries;
- ``application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io`` (and
  ``as=PartialObjectMetadataList`` for lists) gives only ``metadata``: what client-go's
  metadata informers use. Watch events then carry ``PartialObjectMetadata`` objects.

Negotiation picks the first clause of ``Accept`` the server can produce; asking for a
list type on a single object (or the reverse) is 406 Not Acceptable, like kube-apiserver.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Final

import orjson
from attrs import frozen

Obj = dict[str, Any]

TABLE: Final = "Table"
PARTIAL: Final = "PartialObjectMetadata"
PARTIAL_LIST: Final = "PartialObjectMetadataList"
_AS_KINDS: Final = (TABLE, PARTIAL, PARTIAL_LIST)
_JSON_TYPES: Final = ("application/json", "application/*", "*/*", "application/yaml")


@frozen
class View:
    """The representation a request negotiated: plain (``as_kind == ""``) or a meta.k8s.io kind."""

    as_kind: str = ""
    version: str = "v1"  # meta.k8s.io version of the view (v1 or v1beta1)

    @property
    def api_version(self) -> str:
        """``meta.k8s.io/v1`` (or ``v1beta1``)."""
        return f"meta.k8s.io/{self.version}"


PLAIN: Final = View()


def negotiate(accept: str) -> View | None:
    """Pick the first ``Accept`` clause this server can answer; ``None`` means 406."""
    if not accept.strip():
        return PLAIN
    for clause in accept.split(","):
        media, *raw_params = clause.split(";")
        if media.strip().lower() not in _JSON_TYPES:
            continue
        params: dict[str, str] = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip()
        as_kind = params.get("as", "")
        if not as_kind:
            return PLAIN
        if (
            as_kind in _AS_KINDS
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in ("v1", "v1beta1")
        ):
            return View(as_kind, params["v"])
    return None


# -- PartialObjectMetadata ------------------------------------------------------------------


def partial(obj: Obj, view: View) -> Obj:
    """Return the object's ``PartialObjectMetadata``."""
    return {"kind": PARTIAL, "apiVersion": view.api_version, "metadata": obj.get("metadata") or {}}


def partial_list(body: Obj, view: View) -> Obj:
    """Turn a list answer into a ``PartialObjectMetadataList``."""
    return {
        "kind": PARTIAL_LIST,
        "apiVersion": view.api_version,
        "metadata": body.get("metadata") or {},
        "items": [partial(item, view) for item in body.get("items") or ()],
    }


# -- JSONPath subset --------------------------------------------------------------------------

_STEP = re.compile(
    r"""\.([^.\[\]]+)"""  # .name
    r"""|\[(\d+)\]"""  # [0]
    r"""|\[['"]([^'"]+)['"]\]"""  # ['key.with/dots']
    r"""|\[(\*)\]"""  # [*]
    r"""|\[\?\(@\.([A-Za-z0-9_-]+)\s*==\s*['"]([^'"]*)['"]\)\]"""  # [?(@.type=="Ready")]
)


@frozen
class Filter:
    """A ``[?(@.key=="value")]`` step: the list elements whose ``key`` equals ``value``."""

    key: str
    value: str


Step = str | int | Filter | None  # None is [*]


def parse_json_path(path: str) -> list[Step] | None:
    """Parse a JSONPath subset into steps; ``None`` if unsupported.

    ``.a.b``, ``.a[0].b``, ``.a['k.e/y']``, ``.a[*].b`` and ``.a[?(@.type=="Ready")].b``:
    what printer columns use. Like kube-apiserver's CRD columns, only the first result
    counts.
    """
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        match = _STEP.match(text, pos)
        if match is None:
            return None
        name, index, key, star, fkey, fvalue = match.groups()
        if index is not None:
            steps.append(int(index))
        elif star is not None:
            steps.append(None)
        elif fkey is not None:
            steps.append(Filter(fkey, fvalue))
        else:
            steps.append(name if name is not None else key)
        pos = match.end()
    return steps


def lookup(obj: Any, steps: Sequence[Step]) -> Any:
    """Follow parsed JSONPath steps to the first result; ``None`` when there is none."""
    if not steps:
        return obj
    step, rest = steps[0], steps[1:]
    if isinstance(step, str):
        if not isinstance(obj, dict) or step not in obj:
            return None
        return lookup(obj[step], rest)
    if not isinstance(obj, list):
        return None
    if isinstance(step, int):
        return lookup(obj[step], rest) if step < len(obj) else None
    for item in obj:
        if isinstance(step, Filter) and not (
            isinstance(item, dict) and _text(item.get(step.key)) == step.value
        ):
            continue
        found = lookup(item, rest)
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=512)
def _parsed(path: str) -> tuple[Step, ...] | None:
    steps = parse_json_path(path)
    return None if steps is None else tuple(steps)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if value is None:
        return None
    return orjson.dumps(value).decode()


# -- cells -------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """Format an age like apimachinery's ``duration.HumanDuration`` (``5m3s``, ``2d4h``).

    https://github.com/kubernetes/apimachinery/blob/master/pkg/util/duration/duration.go
    """
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(value: Any, now: datetime) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        then = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return human_duration((now - then).total_seconds())


def cell(value: Any, column_type: str, now: datetime) -> Any:
    """Convert a JSONPath result to a cell of the column's type (``None``: a blank cell)."""
    if value is None:
        return None
    if column_type == "date":
        return _age(value, now)
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        return None
    if column_type == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# -- columns ---------------------------------------------------------------------------------


@frozen
class Column:
    """One printed column: a definition plus how to compute its cell."""

    name: str
    type: str
    json_path: str = ""
    description: str = ""
    priority: int = 0
    format: str = ""
    compute: Callable[[Obj, datetime], Any] | None = None

    def definition(self) -> Obj:
        """Return the ``TableColumnDefinition``."""
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }

    def value(self, obj: Obj, now: datetime) -> Any:
        """Compute the cell for ``obj``."""
        if self.compute is not None:
            return self.compute(obj, now)
        steps = _parsed(self.json_path)
        if steps is None:
            return None
        return cell(lookup(obj, steps), self.type, now)


NAME_COLUMN: Final = Column(
    "Name",
    "string",
    ".metadata.name",
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    format="name",
)
AGE_COLUMN: Final = Column(
    "Age",
    "date",
    ".metadata.creationTimestamp",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _data_count(obj: Obj, now: datetime) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _event_last_seen(obj: Obj, now: datetime) -> str | None:
    stamp = (
        obj.get("lastTimestamp")
        or obj.get("deprecatedLastTimestamp")
        or (obj.get("series") or {}).get("lastObservedTime")
        or obj.get("eventTime")
    )
    return _age(stamp, now)


def _event_object(obj: Obj, now: datetime) -> str:
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _event_message(obj: Obj, now: datetime) -> Any:
    return obj.get("message", obj.get("note"))


# kubectl get events: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (the name is priority 1).
_EVENT_COLUMNS: Final = (
    Column(
        "Last Seen", "string", "", "Time since the event was last seen", compute=_event_last_seen
    ),
    Column("Type", "string", ".type", "Type of this event"),
    Column("Reason", "string", ".reason", "Why the action was taken"),
    Column("Object", "string", "", "The object this event is about", compute=_event_object),
    Column("Message", "string", "", "A human-readable description", compute=_event_message),
    Column("Name", "string", ".metadata.name", NAME_COLUMN.description, priority=1, format="name"),
)


# Default columns of the built-in kinds, as kube-apiserver's printers show them
# (pkg/printers/internalversion/printers.go); kinds not listed get Name and Age.
BUILTIN_COLUMNS: Final[dict[tuple[str, str], tuple[Column, ...]]] = {
    ("", "Namespace"): (
        NAME_COLUMN,
        Column("Status", "string", ".status.phase", "The status of the namespace"),
        AGE_COLUMN,
    ),
    ("", "ConfigMap"): (
        NAME_COLUMN,
        Column("Data", "string", "", "Number of data entries", compute=_data_count),
        AGE_COLUMN,
    ),
    ("coordination.k8s.io", "Lease"): (
        NAME_COLUMN,
        Column("Holder", "string", ".spec.holderIdentity", "The holder of the lease"),
        AGE_COLUMN,
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): (
        NAME_COLUMN,
        Column(
            "Created At",
            "date",
            ".metadata.creationTimestamp",
            "CreationTimestamp of the definition",
            compute=lambda obj, now: (obj.get("metadata") or {}).get("creationTimestamp"),
        ),
    ),
    ("", "Event"): _EVENT_COLUMNS,
    ("events.k8s.io", "Event"): _EVENT_COLUMNS,
}


def crd_columns(printer_columns: Iterable[Obj]) -> tuple[Column, ...]:
    """Name plus a CRD version's ``additionalPrinterColumns`` (Name and Age when none).

    As apiextensions-apiserver's table convertor builds them: an explicit column list
    replaces the default Age column (https://kubernetes.io/docs/tasks/extend-kubernetes/
    custom-resources/custom-resource-definitions/#additional-printer-columns).
    """
    extra = [
        Column(
            str(col.get("name", "")),
            str(col.get("type", "string")),
            str(col.get("jsonPath", "")),
            str(
                col.get("description")
                or f"Custom resource definition column (in JSONPath format): {col.get('jsonPath')}"
            ),
            int(col.get("priority") or 0),
            str(col.get("format") or ""),
        )
        for col in printer_columns
    ]
    return (NAME_COLUMN, *(extra or [AGE_COLUMN]))


def builtin_columns(group: str, kind: str) -> tuple[Column, ...]:
    """Return the default columns of a built-in kind."""
    return BUILTIN_COLUMNS.get((group, kind), (NAME_COLUMN, AGE_COLUMN))


INCLUDE_OBJECT: Final = ("Metadata", "None", "Object")


def table(
    objects: Iterable[Obj],
    columns: Sequence[Column],
    view: View,
    *,
    include_object: str,
    metadata: Obj,
    now: datetime,
    headers: bool = True,
    type_meta: Obj | None = None,
) -> Obj:
    """Build a ``Table`` of ``objects``; rows carry what ``include_object`` asks for.

    ``type_meta`` (``apiVersion`` and ``kind``) is set on whole objects in rows: list items
    of built-ins are stored without it.
    """
    rows: list[Obj] = []
    for obj in objects:
        row: Obj = {"cells": [col.value(obj, now) for col in columns]}
        if include_object == "Object":
            row["object"] = {**obj, **type_meta} if type_meta else obj
        elif include_object == "Metadata":
            row["object"] = partial(obj, view)
        rows.append(row)
    return {
        "kind": TABLE,
        "apiVersion": view.api_version,
        "metadata": metadata,
        "columnDefinitions": [col.definition() for col in columns] if headers else [],
        "rows": rows,
    }
