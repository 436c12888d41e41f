"""In-memory cluster state: resource registry, objects, one global RV counter, event history.

Pure storage and list/watch semantics (docs/protocol.md); no HTTP here. Every write goes
through `ClusterState`, so the HTTP handlers and the Python API share one code path and
watchers see every change. Stored objects are never mutated in place: each write stores a
fresh dict, so event records and list snapshots can share them without copying.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import re
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Final

import orjson
from attrs import field, frozen

from ._apply import APPLY, ApplyConflict, FieldTracker, Operation, conflict_status, merge_apply
from ._controllers import Controllers
from ._eventsapi import CORE_EVENT_FIELDS, EVENTS_GROUP, EventsView, served_as
from ._gc import check_delete_options, deletion_finalizers
from ._namespaces import prepare_namespace
from ._patch import PatchError, apply_json_patch, apply_merge_patch
from ._schema import SchemaRegistry
from ._selectors import FieldSelector, LabelSelector, field_value
from ._structural import crd_errors

Obj = dict[str, Any]

CRD_GROUP: Final = "apiextensions.k8s.io"
INITIAL_EVENTS_END: Final = "k8s.io/initial-events-end"
ALL_VERBS: Final = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


class ApiError(Exception):
    """A Kubernetes API error, carrying the ``Status`` body the server answers with.

    Raised by the Python API of `FakeApiServer` exactly where the HTTP API would answer
    with that status.
    """

    def __init__(self, status: Obj, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status.get("message", ""))
        self.status: Obj = status
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def code(self) -> int:
        """The HTTP status code."""
        return int(self.status.get("code", 500))

    @property
    def reason(self) -> str:
        """The Status ``reason`` (``NotFound``, ``Conflict``, ...)."""
        return str(self.status.get("reason", ""))

    def __repr__(self) -> str:
        return f"ApiError(code={self.code}, reason={self.reason!r}, message={str(self)!r})"


def status_body(
    code: int,
    reason: str,
    message: str,
    details: Obj | None = None,
    *,
    metadata: Obj | None = None,
) -> Obj:
    """Build a ``metav1.Status`` failure body (``kind: Status``, ``apiVersion: v1``)."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


def _error(code: int, reason: str, message: str, details: Obj | None = None) -> ApiError:
    headers = {}
    if details and details.get("retryAfterSeconds"):
        headers["Retry-After"] = str(details["retryAfterSeconds"])
    return ApiError(status_body(code, reason, message, details), headers=headers)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return _error(400, "BadRequest", message)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid with ``(field, type, message)`` causes, like ``errors.NewInvalid``."""
    qualified = f"{kind}.{group}" if group else kind
    # field.ErrorList.ToAggregate: one error as is, several in brackets.
    text = ", ".join(dict.fromkeys(f"{f}: {m}" for f, _, m in causes))
    if len(causes) > 1:
        text = f"[{text}]"
    details: Obj = {"kind": kind}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["causes"] = [{"reason": t, "message": m, "field": f} for f, t, m in causes]
    msg = f'{qualified} "{name}" is invalid: {text}' if name else f"{qualified} is invalid: {text}"
    return _error(422, "Invalid", msg, details)


def too_large_rv(requested: int, current: int) -> ApiError:
    """504 Timeout "Too large resource version" (§4.2)."""
    return _error(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {requested}, current: {current}",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def expired(message: str, *, continue_token: str | None = None) -> ApiError:
    """410 Expired."""
    meta = {"continue": continue_token} if continue_token else None
    return ApiError(status_body(410, "Expired", message, metadata=meta))


@frozen
class ResourceType:
    """One served group/version/resource, as discovery and the handlers see it.

    Returned by `FakeApiServer.register_crd` and `FakeApiServer.resource`; pass it to the
    Python API (`FakeApiServer.create`, ...) to say which resource you mean.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    list_kind: str = ""
    singular: str = ""
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    selectable_fields: tuple[str, ...] = ()
    builtin: bool = False
    categories: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        """``group/version``, or just ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``plural.group`` (``widgets.example.com``), or the plural for the core group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def field_labels(self) -> frozenset[str]:
        """Field paths a field selector may use on this resource (§10.2)."""
        names = {"metadata.name"}
        if self.namespaced:
            names.add("metadata.namespace")
        if self.group == "" and self.plural == "namespaces":
            names.add("status.phase")
        if self.group == "" and self.plural == "events":
            names.update(CORE_EVENT_FIELDS)
        return frozenset(names | set(self.selectable_fields))

    def not_found(self, name: str) -> ApiError:
        """404 NotFound for a named object of this resource."""
        details: Obj = {"name": name}
        if self.group:
            details["group"] = self.group
        details["kind"] = self.plural
        return _error(404, "NotFound", f'{self.qualified} "{name}" not found', details)

    def conflict(self, name: str, why: str) -> ApiError:
        """409 Conflict for a named object of this resource."""
        details: Obj = {"name": name}
        if self.group:
            details["group"] = self.group
        details["kind"] = self.plural
        return _error(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {self.qualified} "{name}": {why}',
            details,
        )


def format_time(moment: datetime) -> str:
    """RFC 3339 with second precision and ``Z``, like ``metav1.Time``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clone(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


def _key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _with_rv(obj: Obj, rv: int) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta["resourceVersion"] = str(rv)
    return {**obj, "metadata": meta}


def encode_event(etype: bytes, obj: Obj, api_version: str | None = None) -> bytes:
    """One watch event line: ``{"type":...,"object":...}`` and a newline."""
    if api_version is not None and obj.get("apiVersion") != api_version:
        obj = served_as(obj, api_version)
    return b'{"type":"' + etype + b'","object":' + orjson.dumps(obj) + b"}\n"


class EventRecord:
    """One stored change: ``(rv, type, object, prev_object)`` plus cached encodings."""

    __slots__ = ("_lines", "key", "namespace", "object", "prev", "rv", "type")

    def __init__(
        self, rv: int, etype: str, key: str, namespace: str, obj: Obj, prev: Obj | None
    ) -> None:
        self.rv: int = rv
        self.type: str = etype
        self.key: str = key
        self.namespace: str = namespace
        self.object: Obj = obj  # for DELETED: last stored state with RV = deletion RV
        self.prev: Obj | None = prev  # stored state before this change (its own RV)
        self._lines: dict[tuple[str, str, str], bytes] = {}

    def line(self, api_version: str, variant: str = "", view: str = "") -> bytes:
        """Return the encoded event, encoded once per (version, variant) and cached.

        ``variant`` is ``""`` (the event as stored), ``"ADDED"`` (the new object entering a
        selector) or ``"DELETED"`` (the old object leaving it, §3.2).
        """
        cache_key = (api_version, variant, view)
        data = self._lines.get(cache_key)
        if data is None:
            if variant == "DELETED":
                assert self.prev is not None
                obj, etype = _with_rv(self.prev, self.rv), b"DELETED"
            else:
                obj, etype = self.object, (variant or self.type).encode()
            if view:
                # Metadata-only watch (``view`` is meta.k8s.io/v1): encoded once, shared.
                partial = {"kind": "PartialObjectMetadata", "apiVersion": view}
                data = encode_event(etype, {**partial, "metadata": obj["metadata"]})
            else:
                data = encode_event(etype, obj, api_version)
            self._lines[cache_key] = data
        return data


class Collection:
    """Storage for one group/resource: objects plus a bounded event history."""

    def __init__(self, history_size: int, floor_rv: int) -> None:
        self.objects: dict[str, Obj] = {}
        self.events: list[EventRecord] = []
        self.offset: int = 0  # sequence number of events[0]
        self.start_seq: int = 0  # first sequence number still logically retained
        self.floor_rv: int = floor_rv  # history is complete for every rv > floor_rv
        self.evicted: bool = False  # an event fell out of the history since the last (re)start
        self.history_size = history_size
        self.watchers: set[Watcher] = set()
        self._sorted: list[str] | None = None

    @property
    def end_seq(self) -> int:
        """Sequence number the next event will get."""
        return self.offset + len(self.events)

    def sorted_keys(self) -> list[str]:
        """Object keys in storage (etcd key) order."""
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def append(self, record: EventRecord) -> None:
        """Apply one change to the stored objects and add it to the watch history.

        The history keeps at most ``history_size`` events: older ones fall out (moving
        ``floor_rv`` up, so watches from before it get 410 Gone). Every watcher is woken.
        """
        if record.type == "DELETED":
            self.objects.pop(record.key, None)
            self._sorted = None
        else:
            if record.key not in self.objects:
                self._sorted = None
            self.objects[record.key] = record.object
        self.events.append(record)
        while self.end_seq - self.start_seq > self.history_size:
            self.floor_rv = self.events[self.start_seq - self.offset].rv
            self.evicted = True
            self.start_seq += 1
        if self.start_seq - self.offset > max(1024, self.history_size):
            del self.events[: self.start_seq - self.offset]
            self.offset = self.start_seq
        for watcher in self.watchers:
            watcher.wake.set()

    def compact(self, rv: int) -> None:
        """Drop the whole watch history: watches from a resourceVersion before ``rv`` get 410."""
        self.floor_rv = rv
        self.evicted = False
        self.start_seq = self.end_seq
        self.events.clear()
        self.offset = self.start_seq
        for watcher in self.watchers:
            watcher.wake.set()

    @property
    def watch_bound(self) -> int:
        """Oldest RV a watch may start from: "oldest available - 1" of the watch cache.

        Without evictions since the (re)start that is the start RV; after evictions it is
        the RV of the oldest retained event minus one [S6 getAllEventsSinceLocked].
        """
        first = self.start_seq - self.offset
        if self.evicted and first < len(self.events):
            return self.events[first].rv - 1
        return self.floor_rv

    def seq_after(self, rv: int) -> int:
        """First retained sequence number whose rv is greater than ``rv``."""
        lo = self.start_seq - self.offset
        return self.offset + bisect_right(self.events, rv, lo=lo, key=lambda r: r.rv)

    def snapshot(self, rv: int) -> dict[str, Obj]:
        """Objects as they were at ``rv`` (needs ``rv >= floor_rv``), by rolling back."""
        objects = dict(self.objects)
        for record in reversed(self.events[self.start_seq - self.offset :]):
            if record.rv <= rv:
                break
            if record.prev is None:
                objects.pop(record.key, None)
            else:
                objects[record.key] = record.prev
        return objects


class Watcher:
    """One open watch following a collection's history (driven by the HTTP handler)."""

    def __init__(
        self,
        collection: Collection,
        rtype: ResourceType,
        *,
        namespace: str | None,
        label_selector: LabelSelector,
        field_selector: FieldSelector,
        seq: int,
        min_rv: int,
    ) -> None:
        self.collection = collection
        self.rtype = rtype
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.filtered = not (label_selector.empty and field_selector.empty)
        self.seq = seq
        self.start_rv = min_rv  # the RV the watch started from
        self.last_rv = min_rv  # cursor: every event up to here has been considered
        self.sent_rv = min_rv  # the highest RV this client was actually told about
        self.wake = asyncio.Event()
        self.terminated = False
        self.draining = False
        self.view = ""  # "meta.k8s.io/v1": events carry PartialObjectMetadata objects
        collection.watchers.add(self)

    def matches(self, obj: Obj | None) -> bool:
        """Tell whether ``obj`` passes this watch's selectors."""
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        return self.label_selector.matches(meta.get("labels")) and self.field_selector.matches(
            lambda path: field_value(obj, path)
        )

    def pending(self, limit: int | None = None) -> list[bytes] | None:
        """Return encoded events not yet delivered, or ``None`` when the watch must end.

        Ends when the collection is gone or this watcher fell out of the bounded history
        (a slow consumer is closed without an ERROR event, §6).
        """
        coll = self.collection
        if self.terminated:
            return None
        if self.seq < coll.start_seq:
            return None
        out: list[bytes] = []
        events = coll.events
        start = self.seq - coll.offset
        stop = len(events) if limit is None else min(len(events), start + limit)
        api_version = self.rtype.api_version
        view = self.view
        ns = self.namespace
        min_rv = self.last_rv
        sent = self.sent_rv
        for i in range(start, stop):
            rec = events[i]
            if rec.rv <= min_rv or (ns is not None and rec.namespace != ns):
                continue
            if not self.filtered:
                out.append(rec.line(api_version, "", view))
                sent = rec.rv
                continue
            old = self.matches(rec.prev)
            new = rec.type != "DELETED" and self.matches(rec.object)
            if old and new:
                out.append(rec.line(api_version, "", view))
            elif new:  # entering the selection (or created): ADDED with the new object
                out.append(rec.line(api_version, "" if rec.type == "ADDED" else "ADDED", view))
            elif old:  # leaving it (or deleted): DELETED with the old object
                out.append(rec.line(api_version, "" if rec.type == "DELETED" else "DELETED", view))
            else:
                continue
            sent = rec.rv
        self.sent_rv = sent
        if stop > start:
            self.last_rv = max(self.last_rv, events[stop - 1].rv)
        self.seq = coll.offset + stop
        if self.seq == coll.end_seq:
            if self.draining and not out:
                return None
            self.wake.clear()
        return out

    def bookmark(
        self, rv: int, *, initial_events_end: bool = False, last_call: bool = False
    ) -> bytes | None:
        """Return a BOOKMARK line at ``rv`` if that moves this watch forward (§3.3).

        ``last_call`` is the bookmark due shortly before ``timeoutSeconds``: it goes out
        whenever ``rv`` is newer than the RV the watch started from, even if the client was
        already sent an event at ``rv``, as the cacher only compares a bookmark with the
        watcher's start RV (cacheWatcher.process:
        https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go).
        """
        # Compared with what the client was sent, not with the history cursor: events this
        # watch filtered out (other namespaces, selectors) still move the cache's RV, and
        # the cacher's periodic bookmarks carry that RV to every watcher [S4 dispatchEvents].
        if rv <= self.sent_rv and not initial_events_end and not (last_call and rv > self.start_rv):
            return None
        self.sent_rv = max(self.sent_rv, rv)
        self.last_rv = max(self.last_rv, rv)
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_events_end:
            meta = {"annotations": {INITIAL_EVENTS_END: "true"}, **meta}
        obj = {"apiVersion": self.rtype.api_version, "kind": self.rtype.kind, "metadata": meta}
        if self.view:
            obj = {"apiVersion": self.view, "kind": "PartialObjectMetadata", "metadata": meta}
        return b'{"type":"BOOKMARK","object":' + orjson.dumps(obj) + b"}\n"

    def finish(self) -> None:
        """End the watch once it has delivered the events already stored (clean close)."""
        self.draining = True
        self.wake.set()

    def close(self) -> None:
        """Stop following the history."""
        self.terminated = True
        self.collection.watchers.discard(self)
        self.wake.set()


_EVERYTHING_LABELS: Final = LabelSelector()
_EVERYTHING_FIELDS: Final = FieldSelector()


@frozen
class ListOptions:
    """Parsed and validated list/watch query parameters (§1.3)."""

    watch: bool = False
    resource_version: str = ""
    resource_version_match: str = ""
    send_initial_events: bool | None = None
    allow_watch_bookmarks: bool = False
    limit: int = 0
    continue_token: str = ""
    timeout_seconds: int | None = None
    label_selector: LabelSelector = _EVERYTHING_LABELS
    field_selector: FieldSelector = _EVERYTHING_FIELDS


def query_bool(value: str | None) -> bool:
    """Decode a boolean query parameter like apimachinery (§1.2)."""
    return value is not None and value.lower() not in ("0", "false")


def validate_list_options(opts: ListOptions, *, watch_list: bool) -> None:
    """Raise the 422 Invalid errors of §1.4 for bad list/watch parameter combinations."""
    errs: list[tuple[str, str, str]] = []
    match = opts.resource_version_match
    if not opts.watch:
        if match and opts.resource_version == "":
            errs.append(
                (
                    "resourceVersionMatch",
                    "FieldValueForbidden",
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is "
                    "provided",
                )
            )
        if match and opts.continue_token:
            errs.append(
                (
                    "resourceVersionMatch",
                    "FieldValueForbidden",
                    "Forbidden: resourceVersionMatch is forbidden when continue is provided",
                )
            )
        if match and match not in ("Exact", "NotOlderThan"):
            errs.append(
                (
                    "resourceVersionMatch",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"',
                )
            )
        if match == "Exact" and opts.resource_version == "0":
            errs.append(
                (
                    "resourceVersionMatch",
                    "FieldValueForbidden",
                    'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
            )
        if opts.send_initial_events is not None:
            errs.append(
                ("sendInitialEvents", "FieldValueForbidden", "Forbidden: forbidden for list")
            )
    else:
        if opts.send_initial_events is not None:
            if match != "NotOlderThan":
                errs.append(
                    (
                        "resourceVersionMatch",
                        "FieldValueForbidden",
                        "Forbidden: sendInitialEvents requires setting resourceVersionMatch to "
                        "NotOlderThan",
                    )
                )
            if not watch_list:
                errs.append(
                    (
                        "sendInitialEvents",
                        "FieldValueForbidden",
                        "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList "
                        "feature gate is enabled",
                    )
                )
        elif match:
            errs.append(
                (
                    "resourceVersionMatch",
                    "FieldValueForbidden",
                    "Forbidden: resourceVersionMatch is forbidden for watch unless "
                    "sendInitialEvents is provided",
                )
            )
        if match and match != "NotOlderThan":
            errs.append(
                (
                    "resourceVersionMatch",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{match}": supported values: "NotOlderThan"',
                )
            )
        if match and opts.continue_token:
            errs.append(
                (
                    "resourceVersionMatch",
                    "FieldValueForbidden",
                    "Forbidden: resourceVersionMatch is forbidden when continue is provided",
                )
            )
    if errs:
        raise invalid("ListOptions", "meta.k8s.io", "", errs)


def encode_continue(rv: int, start: str) -> str:
    """kube-apiserver's continue token format (§7.1), opaque to clients."""
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(token: str) -> tuple[int, str]:
    """Decode a continue token; raise 400 like the storage layer on garbage."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("continue key is not supported")
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise bad_request(f"invalid continue token: {exc}") from None


CONTINUE_EXPIRED: Final = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)
LIST_TOO_OLD: Final = "The resourceVersion for the provided list is too old."

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GENERATE_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def _version_priority(version: str) -> tuple[int, int, int]:
    # Kubernetes version priority: GA > beta > alpha, then higher numbers first.
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    level = {"alpha": 2, "beta": 1, None: 0}[m.group(2)]
    return (level, -int(m.group(1)), -int(m.group(3) or 0))


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Versions in Kubernetes priority order (v2, v1, v1beta1, v1alpha1, others)."""
    return sorted(versions, key=lambda v: (_version_priority(v), v))


CRD_TYPE: Final = ResourceType(
    group=CRD_GROUP,
    version="v1",
    plural="customresourcedefinitions",
    kind="CustomResourceDefinition",
    namespaced=False,
    list_kind="CustomResourceDefinitionList",
    singular="customresourcedefinition",
    short_names=("crd", "crds"),
    status_subresource=True,
    builtin=True,
    categories=("api-extensions",),
)
INITIAL_NAMESPACES: Final = ("default", "kube-node-lease", "kube-public", "kube-system")
BUILTIN_TYPES: Final = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        "NamespaceList",
        "namespace",
        ("ns",),
        status_subresource=True,
        builtin=True,
    ),
    ResourceType(
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        True,
        "ConfigMapList",
        "configmap",
        ("cm",),
        builtin=True,
    ),
    ResourceType(
        "",
        "v1",
        "events",
        "Event",
        True,
        "EventList",
        "event",
        ("ev",),
        builtin=True,
    ),
    ResourceType(
        EVENTS_GROUP,
        "v1",
        "events",
        "Event",
        True,
        "EventList",
        "event",
        ("ev",),
        builtin=True,
    ),
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        True,
        "LeaseList",
        "lease",
        builtin=True,
    ),
    CRD_TYPE,
)


NAMESPACE_TYPE: Final = BUILTIN_TYPES[0]
CORE_EVENTS_TYPE: Final = BUILTIN_TYPES[2]
EVENTS_V1_TYPE: Final = BUILTIN_TYPES[3]
# Resources served from another resource's storage (one etcd prefix, two APIs).
_STORAGE_ALIASES: Final = {(EVENTS_GROUP, "events"): ("", "events")}


class ClusterState:
    """All objects of the fake cluster, behind one global resourceVersion counter."""

    def __init__(
        self,
        *,
        history_size: int = 10_000,
        now: Callable[[], datetime] | None = None,
        garbage_collector: bool = True,
    ) -> None:
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        self.rv: int = 0
        self.history_size = history_size
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._collections: dict[tuple[str, str], Collection] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}  # CRD name -> its types
        self._rv_changed = asyncio.Event()
        self.schemas: SchemaRegistry = SchemaRegistry(invalid, bad_request)
        self.fields: FieldTracker = FieldTracker(self._crd_schema)
        for rtype in BUILTIN_TYPES:
            self.register(rtype)
        self.controllers: Controllers = Controllers(
            self, NAMESPACE_TYPE, garbage_collector=garbage_collector
        )
        self._events_view = EventsView(self, CORE_EVENTS_TYPE)
        for ns in INITIAL_NAMESPACES:
            self.create(NAMESPACE_TYPE, {"metadata": {"name": ns}})

    # -- registry ---------------------------------------------------------------------------

    def register(self, rtype: ResourceType) -> None:
        """Serve a resource type (its storage is created on first registration)."""
        self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        ckey = _STORAGE_ALIASES.get((rtype.group, rtype.plural), (rtype.group, rtype.plural))
        if ckey not in self._collections:
            self._collections[ckey] = Collection(self.history_size, self.rv)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """Return the served resource type, or ``None`` (the server then answers a plain 404)."""
        return self._types.get((group, version, plural))

    def types(self) -> list[ResourceType]:
        """Every served resource type."""
        return list(self._types.values())

    def collection(self, rtype: ResourceType) -> Collection:
        """Return the storage behind a resource type."""
        ckey = (rtype.group, rtype.plural)
        return self._collections[_STORAGE_ALIASES.get(ckey, ckey)]

    def collections(self) -> list[tuple[ResourceType, Collection]]:
        """Every storage once, with one of the types that serve it."""
        seen: dict[int, tuple[ResourceType, Collection]] = {}
        for rtype in self._types.values():
            if (rtype.group, rtype.plural) not in _STORAGE_ALIASES:
                coll = self.collection(rtype)
                seen.setdefault(id(coll), (rtype, coll))
        return list(seen.values())

    def lookup_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        """Return the served type of a group/version/kind (an owner reference's target)."""
        for rtype in self._types.values():
            if (rtype.group, rtype.version, rtype.kind) == (group, version, kind) and (
                rtype.group,
                rtype.plural,
            ) not in _STORAGE_ALIASES:
                return rtype
        return None

    def timestamp(self) -> str:
        """Return the current time as the server writes it into objects."""
        return format_time(self._now())

    def store_modified(self, rtype: ResourceType, new: Obj, old: Obj) -> Obj:
        """Store a controller's change to ``old`` (a new RV and a MODIFIED event)."""
        rv = self.next_rv()
        new = {**new, "metadata": {**new["metadata"], "resourceVersion": str(rv)}}
        self._record(rtype, "MODIFIED", new, old, rv)
        return new

    def store_removed(self, rtype: ResourceType, old: Obj) -> Obj:
        """Remove an object for good (a DELETED event)."""
        return self._remove(rtype, old)

    # -- clock and counters -----------------------------------------------------------------

    def next_rv(self) -> int:
        """Bump the global RV counter and return it."""
        self.rv += 1
        self._rv_changed.set()
        self._rv_changed = asyncio.Event()
        return self.rv

    async def wait_for_rv(self, rv: int, timeout: float) -> bool:
        """Wait until the global RV reaches ``rv``; ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.rv < rv:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._rv_changed.wait(), remaining)
            except asyncio.TimeoutError:
                return self.rv >= rv
        return True

    def compact(self) -> None:
        """Drop all history up to the current RV (watches from older RVs then get 410)."""
        for coll in self._collections.values():
            coll.compact(self.rv)

    def _record(
        self, rtype: ResourceType, etype: str, obj: Obj, prev: Obj | None, rv: int
    ) -> EventRecord:
        meta = obj["metadata"]
        ns = meta.get("namespace", "") if rtype.namespaced else ""
        record = EventRecord(rv, etype, _key(ns, meta["name"]), ns, obj, prev)
        self.collection(rtype).append(record)
        # The garbage collector and the namespace controller react to every stored change.
        self.controllers.observe(rtype, etype, obj, prev)
        return record

    # -- CRUD -------------------------------------------------------------------------------

    def admit(self, rtype: ResourceType, obj: Obj, old: Obj | None = None) -> Obj:
        """Default, prune and validate a custom resource by its CRD schema before storing it.

        Returns the object to store (``obj`` itself is not mutated); raises 422 Invalid
        (or 400 for unknown fields under ``fieldValidation=Strict``). Built-ins pass as is.
        """
        if rtype.builtin:
            return obj
        return self.schemas.admit(rtype.group, rtype.version, rtype.plural, obj, old)

    def _check_body(self, rtype: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the object provided is not a JSON object")
        api_version = body.get("apiVersion")
        if api_version not in (None, "", rtype.api_version):
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            if group != rtype.group:
                raise bad_request(
                    f"the API version in the data ({api_version}) does not match the expected "
                    f"API version ({rtype.api_version})"
                )
        kind = body.get("kind")
        if kind not in (None, "", rtype.kind):
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind")
        obj: Obj = _clone(body)
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be a JSON object")
        return obj

    def _check_namespace(self, rtype: ResourceType, meta: Obj, namespace: str | None) -> str:
        if not rtype.namespaced:
            meta.pop("namespace", None)
            return ""
        given = meta.get("namespace") or ""
        if namespace and given and given != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        ns = namespace or given
        if not ns:
            raise bad_request("an empty namespace may not be set during creation")
        meta["namespace"] = ns
        return str(ns)

    def create(
        self,
        rtype: ResourceType,
        body: Any,
        namespace: str | None = None,
        *,
        op: Operation | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Create an object; 409 AlreadyExists when the name is taken.

        ``op`` names the field manager (no ``managedFields`` without one); ``dry_run``
        runs every check and returns the object without storing it or moving the RV.
        """
        if rtype == EVENTS_V1_TYPE:
            return self._events_view.create(body, namespace)
        obj = self._check_body(rtype, body)
        meta = obj["metadata"]
        ns = self._check_namespace(rtype, meta, namespace)
        if ns:
            # NamespaceLifecycle admission runs before names are generated or checked.
            self.controllers.namespaces.admit_create(
                rtype, ns, str(meta.get("name") or meta.get("generateName") or "")
            )
        name = meta.get("name") or ""
        coll = self.collection(rtype)
        if not name and meta.get("generateName"):
            for _ in range(100):
                suffix = "".join(random.choices(_GENERATE_ALPHABET, k=5))
                name = f"{meta['generateName']}{suffix}"
                if _key(ns, name) not in coll.objects:
                    break
        if not name:
            raise invalid(
                rtype.kind,
                rtype.group,
                "",
                [
                    (
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                    )
                ],
            )
        if len(name) > 253 or not _NAME_RE.match(name):
            raise invalid(
                rtype.kind,
                rtype.group,
                name,
                [
                    (
                        "metadata.name",
                        "FieldValueInvalid",
                        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                        "consist of lower case alphanumeric characters, '-' or '.', and must "
                        "start and end with an alphanumeric character",
                    )
                ],
            )
        if meta.get("resourceVersion"):
            raise _error(
                500,
                "InternalError",
                "Internal error occurred: resourceVersion should not be set on objects to be "
                "created",
            )
        meta["name"] = name
        key = _key(ns, name)
        if key in coll.objects:
            details: Obj = {"name": name}
            if rtype.group:
                details["group"] = rtype.group
            details["kind"] = rtype.plural
            raise _error(
                409, "AlreadyExists", f'{rtype.qualified} "{name}" already exists', details
            )
        if rtype.status_subresource and not rtype.builtin:
            obj.pop("status", None)
        if rtype == CRD_TYPE:
            obj = self._prepare_crd(obj)
        obj = self.admit(rtype, obj)
        meta = obj["metadata"]
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = format_time(self._now())
        if not rtype.builtin or rtype == CRD_TYPE:
            meta["generation"] = 1
        elif rtype.plural == "namespaces":
            prepare_namespace(obj)
        self._track(rtype, None, obj, op)
        if dry_run:
            return obj  # not stored: no resourceVersion, no event (DryRunnableStorage.Create)
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        self._record(rtype, "ADDED", obj, None, rv)
        if rtype == CRD_TYPE:
            self._sync_crd(obj)
        return obj

    def get(self, rtype: ResourceType, name: str, namespace: str | None = None) -> Obj:
        """Return the stored object (shared; never mutate it); 404 when missing."""
        if rtype == EVENTS_V1_TYPE:
            return self._events_view.get(name, namespace)
        ns = (namespace or "") if rtype.namespaced else ""
        obj = self.collection(rtype).objects.get(_key(ns, name))
        if obj is None:
            raise rtype.not_found(name)
        return obj

    def update(
        self,
        rtype: ResourceType,
        body: Any,
        name: str,
        namespace: str | None = None,
        *,
        subresource: str = "",
        op: Operation | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Replace an object (PUT); 409 Conflict when ``metadata.resourceVersion`` is stale."""
        if rtype == EVENTS_V1_TYPE:
            return self._events_view.update(body, name, namespace)
        obj = self._check_body(rtype, body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        meta["name"] = name
        ns = self._check_namespace(rtype, meta, namespace) if rtype.namespaced else ""
        if not rtype.namespaced:
            meta.pop("namespace", None)
        old = self.get(rtype, name, ns)
        _check_preconditions(rtype, name, meta, old)
        return self._store_update(rtype, old, obj, subresource, op=op, dry_run=dry_run)

    def _store_update(
        self,
        rtype: ResourceType,
        old: Obj,
        obj: Obj,
        subresource: str,
        *,
        op: Operation | None = None,
        dry_run: bool = False,
    ) -> Obj:
        old_meta = old["metadata"]
        incoming = obj["metadata"].get("managedFields")
        if subresource == "status":
            # The status subresource changes only status [E3 statusStrategy].
            new = {**old, "status": obj["status"]} if "status" in obj else dict(old)
            if "status" not in obj:
                new.pop("status", None)
            new["metadata"] = dict(old_meta)
        else:
            new = obj
            if rtype.status_subresource and not rtype.builtin:
                # Main-resource writes ignore status when the subresource is on [E3].
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            for kept in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if kept in old_meta:
                    meta[kept] = old_meta[kept]
                else:
                    meta.pop(kept, None)
            meta.pop("managedFields", None)
        if rtype == CRD_TYPE and subresource != "status":
            new = self._prepare_crd(new, old)
        new = self.admit(rtype, new, old)
        meta = new["metadata"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if subresource != "status":
            meta.pop("managedFields", None)
        self._track(
            rtype, old, new, op, incoming=None if subresource else incoming, subresource=subresource
        )
        if (
            old_meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            # A namespace goes only once its spec finalizers are gone too
            # (pkg/registry/core/namespace/storage/storage.go, ShouldDeleteDuringUpdate).
            and not (rtype == NAMESPACE_TYPE and (new.get("spec") or {}).get("finalizers"))
        ):
            # Removing the last finalizer of a deleting object deletes it; the DELETED event
            # carries the last *stored* state [S16 ShouldDeleteDuringUpdate].
            return self._remove(rtype, old, dry_run=dry_run)
        if new == old:
            return old  # no-op writes are not stored and produce no event
        if "generation" in old_meta:
            skip = ("metadata", "status") if rtype.status_subresource else ("metadata",)
            if {k: v for k, v in new.items() if k not in skip} != {
                k: v for k, v in old.items() if k not in skip
            }:
                meta["generation"] = int(old_meta["generation"]) + 1
        if dry_run:
            return new  # keeps the stored resourceVersion (DryRunnableStorage.GuaranteedUpdate)
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        self._record(rtype, "MODIFIED", new, old, rv)
        if rtype == CRD_TYPE:
            self._sync_crd(new, old)
        return new

    def patch(
        self,
        rtype: ResourceType,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str = "",
        op: Operation | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Apply a ``"merge"`` (RFC 7386) or ``"json"`` (RFC 6902) patch."""
        if rtype == EVENTS_V1_TYPE:
            return self._events_view.patch(name, patch, namespace, patch_type)
        ns = namespace if rtype.namespaced else None
        old = self.get(rtype, name, ns)
        try:
            if patch_type == "json":
                if not isinstance(patch, list):
                    raise bad_request(
                        "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                    )
                patched = apply_json_patch(old, patch)
            elif patch_type == "merge":
                if not isinstance(patch, dict):
                    raise bad_request("merge patch must be a JSON object")
                patched = apply_merge_patch(old, patch)
            else:
                raise ValueError(f"unknown patch type {patch_type!r}")
        except PatchError as exc:
            raise _error(422, "Invalid", str(exc)) from None
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        # The merge result may share nested values with the stored object: only read them
        # here; _check_body clones before anything is changed.
        meta = patched.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be a JSON object")
        if meta.get("name") != name:
            raise bad_request("metadata.name cannot be changed by a patch")
        if rtype.namespaced and meta.get("namespace") != ns:
            raise bad_request("metadata.namespace cannot be changed by a patch")
        given_rv = meta.get("resourceVersion")
        if given_rv and given_rv != old["metadata"]["resourceVersion"]:
            raise rtype.conflict(
                name,
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        obj = self._check_body(rtype, patched)
        if obj["metadata"].get("managedFields") == old["metadata"].get("managedFields"):
            # Untouched by the patch: the stored ones, not a client's replacement (a patch
            # that sets them, e.g. to [{}] to reset them, replaces them as an update does).
            obj["metadata"].pop("managedFields", None)
        return self._store_update(rtype, old, obj, subresource, op=op, dry_run=dry_run)

    def apply(
        self,
        rtype: ResourceType,
        name: str,
        body: Any,
        namespace: str | None = None,
        *,
        op: Operation,
        subresource: str = "",
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Server-side apply; return the object and whether the apply created it.

        Raises `ApiError` 409 with the conflicting fields and managers (unless ``op.force``).
        """
        if not isinstance(body, dict):
            raise bad_request("the object provided is not a JSON object")
        meta = body.get("metadata")
        if not isinstance(meta, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise bad_request("apiVersion, kind and metadata must be set in an apply configuration")
        if meta.get("managedFields") is not None:
            # fieldmanager: "metadata.managedFields must be nil" (a BadRequest)
            raise bad_request("metadata.managedFields must be nil")
        if meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        ns = namespace if rtype.namespaced else None
        if ns and meta.get("namespace") not in (None, "", ns):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        key = _key(ns or "", name)
        live = self.collection(rtype).objects.get(key)
        reset_status = rtype.status_subresource and not rtype.builtin
        shape = self.fields.shape(rtype.group, rtype.plural, rtype.version, builtin=rtype.builtin)
        config = {**body, "metadata": {**meta, "name": name}}
        if live is None and subresource:
            raise rtype.not_found(name)
        merged, applied = merge_apply(
            shape, live, config, _with_applied(op, frozenset()), reset_status=reset_status
        )
        op = _with_applied(op, applied)
        try:
            if live is None:
                return self.create(rtype, merged, ns, op=op, dry_run=dry_run), True
            _check_preconditions(rtype, name, meta, live)
            obj = self._check_body(rtype, merged)
            obj["metadata"].pop("managedFields", None)
            return self._store_update(rtype, live, obj, subresource, op=op, dry_run=dry_run), False
        except ApplyConflict as exc:
            raise ApiError(conflict_status(exc)) from None

    def _track(
        self,
        rtype: ResourceType,
        old: Obj | None,
        new: Obj,
        op: Operation | None,
        *,
        incoming: Any = None,
        subresource: str = "",
    ) -> None:
        """Set ``new``'s ``metadata.managedFields`` for ``op`` (none without a manager)."""
        meta = new["metadata"]
        if op is None:
            if old is not None and "managedFields" in old["metadata"]:
                meta["managedFields"] = old["metadata"]["managedFields"]
            return
        shape = self.fields.shape(rtype.group, rtype.plural, rtype.version, builtin=rtype.builtin)
        if op.subresource != subresource or op.api_version != rtype.api_version:
            op = Operation(
                op.manager,
                op.operation,
                rtype.api_version,
                subresource,
                op.force,
                op.applied,
            )
        managed = self.fields.track(
            shape,
            old,
            new,
            op,
            now=format_time(self._now()),
            reset_status=rtype.status_subresource and not rtype.builtin,
            incoming=incoming,
        )
        if managed:
            meta["managedFields"] = managed
        else:
            meta.pop("managedFields", None)

    def _crd_schema(self, group: str, plural: str, version: str) -> Any:
        crd = self.collection(CRD_TYPE).objects.get(f"{plural}.{group}")
        if crd is None:
            return None
        for ver in crd.get("spec", {}).get("versions") or ():
            if isinstance(ver, dict) and ver.get("name") == version:
                return (ver.get("schema") or {}).get("openAPIV3Schema")
        return None

    def delete(
        self,
        rtype: ResourceType,
        name: str,
        namespace: str | None = None,
        *,
        preconditions: Mapping[str, Any] | None = None,
        propagation: str | None = None,
        orphan_dependents: bool | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Delete an object (or only mark it, when it has finalizers).

        ``propagation`` (``Foreground``, ``Background``, ``Orphan``) or the older
        ``orphan_dependents`` say what the garbage collector does with its dependents.
        """
        if rtype == EVENTS_V1_TYPE:
            if dry_run:
                return self._events_view.get(name, namespace)
            return self._events_view.delete(
                name,
                namespace,
                preconditions=preconditions,
                propagation=propagation,
                orphan_dependents=orphan_dependents,
            )
        check_delete_options(propagation, orphan_dependents)
        old = self.get(rtype, name, namespace if rtype.namespaced else None)
        meta = old["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise rtype.conflict(
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise rtype.conflict(
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta.get('resourceVersion')}",
            )
        if rtype == NAMESPACE_TYPE:
            self.controllers.namespaces.admit_delete(name)
            if dry_run:  # what the namespace would look like once marked Terminating
                when = meta.get("deletionTimestamp") or format_time(self._now())
                return {**old, "metadata": {**meta, "deletionTimestamp": when}}
            return self.controllers.namespaces.delete(old)
        finalizers = list(meta.get("finalizers") or ())
        if self.controllers.gc is not None:
            finalizers = deletion_finalizers(finalizers, propagation, orphan_dependents)
        if finalizers:
            if meta.get("deletionTimestamp"):
                if finalizers == list(meta.get("finalizers") or ()):
                    return old
                if dry_run:
                    return {**old, "metadata": {**meta, "finalizers": finalizers}}
                # A second DELETE may switch the propagation policy (generic registry
                # store.go, updateForGracefulDeletionAndFinalizers).
                return self.store_modified(
                    rtype, {**old, "metadata": {**meta, "finalizers": finalizers}}, old
                )
            new_meta = dict(meta)
            new_meta["finalizers"] = finalizers
            new_meta["deletionTimestamp"] = format_time(self._now())
            new_meta["deletionGracePeriodSeconds"] = 0
            if "generation" in meta:
                new_meta["generation"] = int(meta["generation"]) + 1
            if dry_run:
                return {**old, "metadata": new_meta}
            rv = self.next_rv()
            new_meta["resourceVersion"] = str(rv)
            new = {**old, "metadata": new_meta}
            self._record(rtype, "MODIFIED", new, old, rv)
            return new
        return self._remove(rtype, old, dry_run=dry_run)

    def _remove(self, rtype: ResourceType, old: Obj, *, dry_run: bool = False) -> Obj:
        if dry_run:
            return old  # DryRunnableStorage.Delete: checks only
        if rtype == CRD_TYPE:
            self._drop_crd(old)
        rv = self.next_rv()
        gone = _with_rv(old, rv)
        self._record(rtype, "DELETED", gone, old, rv)
        return gone

    def list_objects(self, rtype: ResourceType, namespace: str | None, opts: ListOptions) -> Obj:
        """Serve a LIST (§2, §4.2, §7); raise 400/410 `ApiError` where the server would.

        The caller has already waited for (or rejected) a future resourceVersion.
        """
        coll = self.collection(rtype)
        rv_text, match = opts.resource_version, opts.resource_version_match
        limit = opts.limit
        start = ""
        if opts.continue_token:
            if rv_text not in ("", "0"):
                raise bad_request("specifying resource version is not allowed when using continue")
            snap_rv, start = decode_continue(opts.continue_token)
            if snap_rv == -1:
                snap_rv = self.rv
            elif snap_rv < coll.floor_rv:
                raise expired(CONTINUE_EXPIRED, continue_token=encode_continue(-1, start))
        else:
            requested = parse_list_rv(rv_text)
            exact = match == "Exact" or (match == "" and requested > 0 and limit > 0)
            if rv_text == "0" and match != "Exact":
                limit = 0  # the watch cache ignores limit for RV "0" [S4 computeListLimit]
            if exact:
                if requested < coll.floor_rv:
                    raise expired(LIST_TOO_OLD)
                snap_rv = requested
            else:
                snap_rv = self.rv
        objects = coll.objects if snap_rv >= self.rv else coll.snapshot(snap_rv)
        keys = coll.sorted_keys() if objects is coll.objects else sorted(objects)
        prefix = f"{namespace}/" if rtype.namespaced and namespace else ""
        lo = bisect_left(keys, max(prefix, start))
        items: list[Obj] = []
        next_token = ""
        remaining = 0
        selectors = not (opts.label_selector.empty and opts.field_selector.empty)
        i = lo
        n = len(keys)
        while i < n:
            key = keys[i]
            if prefix and not key.startswith(prefix):
                break
            obj = objects[key]
            i += 1
            if selectors and not _matches(obj, opts):
                continue
            items.append(_served(obj, rtype))
            if limit and len(items) >= limit:
                if i < n and (not prefix or keys[i].startswith(prefix)):
                    next_token = encode_continue(snap_rv, key + "\x00")
                    if not selectors:
                        remaining = sum(1 for k in keys[i:] if not prefix or k.startswith(prefix))
                break
        list_meta: Obj = {"resourceVersion": str(snap_rv)}
        if next_token or not rtype.builtin:
            list_meta["continue"] = next_token
        if remaining:
            list_meta["remainingItemCount"] = remaining
        if rtype.builtin:
            items = [
                {k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in items
            ]
        return {
            "apiVersion": rtype.api_version,
            "items": items,
            "kind": rtype.list_kind,
            "metadata": list_meta,
        }

    def open_watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        opts: ListOptions,
    ) -> tuple[Watcher, list[Obj], int | None]:
        """Register a watcher; return it, the initial objects, and the initial-events-end RV.

        Raises `ApiError` 410 when the requested RV was compacted (the caller turns it into
        an ERROR event in a 200 stream, §3.5). The third value is the RV for the
        ``k8s.io/initial-events-end`` bookmark, or ``None`` when none is due.
        """
        coll = self.collection(rtype)
        rv_text = opts.resource_version
        streaming = opts.send_initial_events is not None
        initial = rv_text in ("", "0") if not streaming else bool(opts.send_initial_events)
        requested = 0 if rv_text in ("", "0") else int(rv_text)
        end_rv: int | None = None
        initial_objects: list[Obj] = []
        if initial or (streaming and rv_text in ("", "0")):
            start_rv = max(self.rv, requested)
            seq = coll.end_seq
        else:
            bound = coll.watch_bound
            if requested < bound:
                raise expired(f"too old resource version: {requested} ({bound})")
            start_rv = max(requested, self.rv) if streaming else requested
            seq = coll.seq_after(requested)
        watcher = Watcher(
            coll,
            rtype,
            namespace=namespace if rtype.namespaced and namespace else None,
            label_selector=opts.label_selector,
            field_selector=opts.field_selector,
            seq=seq,
            min_rv=start_rv if (initial or rv_text in ("", "0")) else requested,
        )
        if initial:
            prefix = f"{namespace}/" if rtype.namespaced and namespace else ""
            for key in coll.sorted_keys()[bisect_left(coll.sorted_keys(), prefix) :]:
                if prefix and not key.startswith(prefix):
                    break
                obj = coll.objects[key]
                if watcher.filtered and not watcher.matches(obj):
                    continue
                initial_objects.append(obj)
        if streaming and opts.send_initial_events and opts.allow_watch_bookmarks:
            end_rv = start_rv
        return watcher, initial_objects, end_rv

    # -- CustomResourceDefinitions ----------------------------------------------------------

    def _prepare_crd(self, obj: Obj, old: Obj | None = None) -> Obj:
        spec = obj.get("spec")
        name = obj["metadata"].get("name", "")
        causes: list[tuple[str, str, str]] = []
        if not isinstance(spec, dict):
            raise invalid(
                CRD_TYPE.kind, CRD_GROUP, name, [("spec", "FieldValueRequired", "Required value")]
            )
        group = spec.get("group") or ""
        raw_names = spec.get("names")
        names: Obj = raw_names if isinstance(raw_names, dict) else {}
        plural = names.get("plural") or ""
        kind = names.get("kind") or ""
        raw_versions = spec.get("versions")
        versions: list[Any] = raw_versions if isinstance(raw_versions, list) else []
        if not all(isinstance(v, dict) and v.get("name") for v in versions):
            causes.append(("spec.versions", "FieldValueRequired", "Required value: name"))
            versions = []
        if not group:
            causes.append(("spec.group", "FieldValueRequired", "Required value"))
        if not plural:
            causes.append(("spec.names.plural", "FieldValueRequired", "Required value"))
        if not kind:
            causes.append(("spec.names.kind", "FieldValueRequired", "Required value"))
        if group and plural and name != f"{plural}.{group}":
            causes.append(
                (
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                )
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            causes.append(
                (
                    "spec.scope",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", '
                    '"Namespaced"',
                )
            )
        if (
            not versions
            or sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1
        ):
            causes.append(
                (
                    "spec.versions",
                    "FieldValueInvalid",
                    "Invalid value: must have exactly one version marked as storage version",
                )
            )
        for i, ver in enumerate(versions):
            fields = ver.get("selectableFields") or [] if isinstance(ver, dict) else []
            if len(fields) > 8:
                causes.append(
                    (
                        f"spec.versions[{i}].selectableFields",
                        "FieldValueTooMany",
                        "Too many: must have at most 8 items",
                    )
                )
            for j, sel in enumerate(fields):
                path = sel.get("jsonPath", "") if isinstance(sel, dict) else ""
                if not path.startswith(".") or path.startswith(".metadata"):
                    causes.append(
                        (
                            f"spec.versions[{i}].selectableFields[{j}].jsonPath",
                            "FieldValueInvalid",
                            f'Invalid value: "{path}"',
                        )
                    )
        if old is not None and old.get("spec", {}).get("group") != group:
            causes.append(("spec.group", "FieldValueInvalid", "field is immutable"))
        causes.extend(crd_errors(spec))
        if causes:
            raise invalid(CRD_TYPE.kind, CRD_GROUP, name, causes)
        names = dict(names)
        names.setdefault("singular", kind.lower())
        names.setdefault("listKind", f"{kind}List")
        spec = {**spec, "names": names}
        storage = next(v["name"] for v in versions if v.get("storage"))
        stored_versions = list((old or {}).get("status", {}).get("storedVersions", []))
        if storage not in stored_versions:
            stored_versions.append(storage)
        stamp = format_time(self._now())
        status: Obj = {
            "acceptedNames": names,
            "conditions": [
                {
                    "lastTransitionTime": stamp,
                    "message": "no conflicts found",
                    "reason": "NoConflicts",
                    "status": "True",
                    "type": "NamesAccepted",
                },
                {
                    "lastTransitionTime": stamp,
                    "message": "the initial names have been accepted",
                    "reason": "InitialNamesAccepted",
                    "status": "True",
                    "type": "Established",
                },
            ],
            "storedVersions": stored_versions,
        }
        if old is not None and "status" in old:
            status["conditions"] = old["status"].get("conditions", status["conditions"])
        return {**obj, "spec": spec, "status": status}

    def _sync_crd(self, crd: Obj, old: Obj | None = None) -> None:
        name = crd["metadata"]["name"]
        if old is not None and old.get("spec") == crd.get("spec"):
            return
        spec = crd["spec"]
        names = spec["names"]
        new_types = []
        for ver in spec["versions"]:
            if not ver.get("served", True):
                continue
            subresources = ver.get("subresources") or {}
            new_types.append(
                ResourceType(
                    group=spec["group"],
                    version=ver["name"],
                    plural=names["plural"],
                    kind=names["kind"],
                    namespaced=spec["scope"] == "Namespaced",
                    list_kind=names.get("listKind") or f"{names['kind']}List",
                    singular=names.get("singular") or names["kind"].lower(),
                    short_names=tuple(names.get("shortNames") or ()),
                    status_subresource="status" in subresources,
                    selectable_fields=tuple(
                        f["jsonPath"].lstrip(".") for f in ver.get("selectableFields") or ()
                    ),
                    categories=tuple(names.get("categories") or ()),
                )
            )
        for rtype in self._crd_types.pop(name, []):
            self._types.pop((rtype.group, rtype.version, rtype.plural), None)
        self.schemas.sync_crd(crd)
        if old is not None:
            # A CRD spec change rebuilds the CR storage: its watchers are closed [E1].
            coll = self._collections.get((spec["group"], names["plural"]))
            for watcher in list(coll.watchers if coll else ()):
                watcher.finish()
        self._crd_types[name] = new_types
        for rtype in new_types:
            self.register(rtype)
        if old is not None:
            # Defaults apply on read from storage too: objects stored before a default was
            # added show it, without a new resourceVersion (https://kubernetes.io/docs/tasks/
            # extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting).
            storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
            stored = self._collections[(spec["group"], names["plural"])].objects
            self.schemas.default_stored(spec["group"], storage, names["plural"], stored)

    def _drop_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        ckey = (spec["group"], spec["names"]["plural"])
        coll = self._collections.get(ckey)
        types = self._crd_types.pop(crd["metadata"]["name"], [])
        if coll is not None and types:
            rtype = types[0]
            with self.controllers.hold():
                for key in list(coll.sorted_keys()):
                    if key in coll.objects:
                        self._remove(rtype, coll.objects[key])
            for watcher in list(coll.watchers):
                watcher.finish()
        for rtype in types:
            self._types.pop((rtype.group, rtype.version, rtype.plural), None)
        self._collections.pop(ckey, None)
        self.schemas.drop_crd(crd)


def parse_list_rv(text: str) -> int:
    """Parse a LIST resourceVersion; 400 for a non-numeric one (§1.4)."""
    if text == "":
        return 0
    try:
        value = int(text)
        if value < 0 or not text.isdigit():
            raise ValueError(text)
    except ValueError:
        raise bad_request(f"invalid resource version: {text}") from None
    return value


def _matches(obj: Obj, opts: ListOptions) -> bool:
    meta = obj.get("metadata") or {}
    return opts.label_selector.matches(meta.get("labels")) and opts.field_selector.matches(
        lambda path: field_value(obj, path)
    )


def _served(obj: Obj, rtype: ResourceType) -> Obj:
    if obj.get("apiVersion") != rtype.api_version:
        return served_as(obj, rtype.api_version)
    return obj


def _with_applied(op: Operation, applied: frozenset[tuple[str, ...]]) -> Operation:
    return Operation(op.manager, APPLY, op.api_version, op.subresource, op.force, applied)


def _check_preconditions(rtype: ResourceType, name: str, meta: Obj, stored: Obj) -> None:
    """409 when a write's ``resourceVersion`` or ``uid`` does not match the stored object."""
    given_rv = meta.get("resourceVersion")
    if given_rv and given_rv != stored["metadata"]["resourceVersion"]:
        raise rtype.conflict(
            name,
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )
    given_uid = meta.get("uid")
    if given_uid and given_uid != stored["metadata"].get("uid"):
        raise rtype.conflict(
            name,
            f"Precondition failed: UID in precondition: {given_uid}, UID in object meta: "
            f"{stored['metadata'].get('uid')}",
        )
