"""The wire layer, sans-IO: bytes to lines, lines to raw watch events, Status to errors.

Nothing here touches a socket or an event loop; every function is plain and fast, because
the per-event path runs through :class:`LineSplitter` and :func:`parse_event` once per event.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import msgspec
import orjson

from ._exceptions import (
    ApiError,
    EventTooLargeError,
    MalformedLineError,
    api_error_class,
)

__all__ = [
    "INITIAL_EVENTS_END",
    "LineSplitter",
    "RawEvent",
    "compare_resource_versions",
    "event_from_json",
    "loads",
    "parse_event",
    "parse_retry_after",
    "status_to_error",
]

#: The annotation on the bookmark that ends a streaming list's initial events
#: (apimachinery ``metav1.InitialEventsAnnotationKey``; docs/protocol.md, "Bookmarks"; "Streaming
#: lists").
INITIAL_EVENTS_END: Final = "k8s.io/initial-events-end"

#: How many leading bytes of a bad line go into logs and errors.
SNIPPET_BYTES: Final = 200

_EVENT_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
_loads = orjson.loads


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON: THE one JSON-parsing function of crwatch.

    orjson, chosen by measurement: ~5 us for a ~2 KB custom resource against ~12 us for the
    stdlib ``json`` module, and parsed dicts share key strings (less memory per cached object).
    Raises ``orjson.JSONDecodeError`` (a ``ValueError``) on bad input.
    """
    return orjson.loads(data)


class RawItem(NamedTuple):
    """One object of a list page, not parsed: its own JSON and the metadata fields read.

    Attributes:
        raw: the object's JSON, exactly as the server sent it (a copy of its span).
        metadata: ``name``, ``namespace``, ``resourceVersion`` and ``uid`` where present,
            or ``None`` when the object's ``metadata`` is not an object.
    """

    raw: bytes
    metadata: dict[str, Any] | None


class _Meta(msgspec.Struct):
    name: Any = None
    namespace: Any = None
    resourceVersion: Any = None
    uid: Any = None


class _Item(msgspec.Struct):
    metadata: _Meta | None = None


class _RawList(msgspec.Struct):
    metadata: dict[str, Any] | None = None
    items: list[msgspec.Raw] | None = None


class _LineHead(msgspec.Struct):
    type: Any = None
    object: _Item | None = None


_decode_raw_list = msgspec.json.Decoder(_RawList).decode
_decode_item = msgspec.json.Decoder(_Item).decode
_decode_line_head = msgspec.json.Decoder(_LineHead).decode


def _key_fields(meta: _Meta | None) -> dict[str, Any] | None:
    if meta is None:
        return None
    fields = {
        "name": meta.name,
        "namespace": meta.namespace,
        "resourceVersion": meta.resourceVersion,
        "uid": meta.uid,
    }
    return {k: v for k, v in fields.items() if v is not None}


def peek_line(line: bytes) -> tuple[str, dict[str, Any] | None] | None:
    """Read a watch line's type and its object's key fields, without parsing the object.

    For a compact cache filling from a streaming list: the line itself is what it keeps.
    Returns ``None`` for anything that is not a ``{"type", "object": {...}}`` line (the
    caller parses it the usual way, and reports what is wrong with it); the metadata is
    ``None`` when it is not an object (see :class:`RawItem`).
    """
    try:
        head = _decode_line_head(line)
    except msgspec.MsgspecError:
        return None
    kind, obj = head.type, head.object
    if type(kind) is not str or obj is None:
        return None
    return kind, _key_fields(obj.metadata)


def split_list(body: bytes) -> tuple[dict[str, Any], list[RawItem]]:
    """Split a list response into its metadata and its items, without parsing the items.

    Each item keeps its own bytes and the few metadata fields a cache keys and compares it
    by; everything else is skipped by msgspec's decoder without being built. For a compact
    cache this is 3.6 us per ~2 KB object against 13.5 us for parsing the page with orjson
    and encoding each object again (bench/compact_decode.py), and it builds no dicts for
    the cyclic garbage collector to walk while a page is handled.

    Raises:
        ValueError: the body is not JSON, or not an object whose ``items`` is a list.
    """
    try:
        page = _decode_raw_list(body)
    except msgspec.MsgspecError as exc:
        raise ValueError(str(exc)) from None
    items: list[RawItem] = []
    for raw in page.items or ():
        data = bytes(raw)
        try:
            meta = _decode_item(data).metadata
        except msgspec.ValidationError:  # metadata of another shape: not admitted later
            items.append(RawItem(data, None))
            continue
        items.append(RawItem(data, _key_fields(meta)))
    return page.metadata or {}, items


def dumps(obj: Any) -> bytes:
    """Encode JSON: the counterpart of :func:`loads` (orjson, compact, keys in dict order)."""
    return orjson.dumps(obj)


class LineSplitter:
    r"""Split a byte stream into lines, whatever the chunk boundaries, with a size limit.

    ``feed(chunk)`` returns the complete lines found so far (without the ``\n``; blank lines
    are dropped) and, in stream order, an :class:`~crwatch.EventTooLargeError` for each line
    longer than ``max_line_bytes``: such a line is skipped up to its newline without being
    buffered, so memory stays bounded by the limit. ``None`` means no limit.

    We frame lines ourselves because aiohttp's ``readline()`` raises ``LineTooLong`` above
    twice its read buffer, and Kubernetes objects reach etcd's 1.5 MiB request limit
    (https://etcd.io/docs/latest/dev-guide/limit/).
    """

    __slots__ = ("_buf", "_limit", "_skipping")

    def __init__(self, max_line_bytes: int | None = None) -> None:
        if max_line_bytes is not None and max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self._limit = max_line_bytes
        self._buf = bytearray()
        # Bytes skipped so far of an over-size line, or -1 when not skipping.
        self._skipping = -1

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held in memory."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[bytes | EventTooLargeError]:
        """Add ``chunk`` to the stream; return the lines (and over-size errors) it completes."""
        out: list[bytes | EventTooLargeError] = []
        limit = self._limit
        start = 0
        end = len(chunk)
        if self._skipping >= 0:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._skipping += end
                return out
            out.append(self._too_large(self._skipping + nl))
            self._skipping = -1
            start = nl + 1
        buf = self._buf
        while start < end:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            if buf:
                line = bytes(buf) + chunk[start:nl]
                buf.clear()
            else:
                line = chunk[start:nl]
            start = nl + 1
            if limit is not None and len(line) > limit:
                out.append(self._too_large(len(line)))
            elif line.strip():
                out.append(line)
        if start < end:
            if limit is not None and len(buf) + (end - start) > limit:
                # The line is already too long: stop buffering it and skip to its newline.
                self._skipping = len(buf) + (end - start)
                buf.clear()
            else:
                buf += chunk[start:]
        return out

    def close(self) -> bytes:
        """End of stream: return the incomplete last line (``b""`` if none) and reset."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._skipping = -1
        return rest if rest.strip() else b""

    def _too_large(self, size: int) -> EventTooLargeError:
        limit = self._limit or 0
        return EventTooLargeError(
            f"watch event of {size} bytes is over max_event_bytes={limit}; skipped",
            size=size,
            limit=limit,
        )


class RawEvent(NamedTuple):
    """One watch event as read from the wire (immutable).

    A named tuple rather than an attrs class: one is built per event, and a frozen attrs
    instance costs ~0.4 us more to build (bench/profile_watch.py).

    Attributes:
        type: ``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` or ``ERROR``.
        object: the parsed object (a ``metav1.Status`` dict for ``ERROR``).
        resource_version: the object's ``metadata.resourceVersion`` (``""`` when absent).
        initial_events_end: a BOOKMARK annotated ``k8s.io/initial-events-end: "true"``.
    """

    type: str
    object: dict[str, Any]
    resource_version: str
    initial_events_end: bool = False


def parse_event(line: bytes | bytearray | memoryview) -> RawEvent:
    """Parse one line of a watch stream into a :class:`RawEvent`.

    Raises:
        MalformedLineError: the line is not JSON, or not a ``{"type", "object"}`` watch event
            with a known type (client-go rejects unknown types too; docs/protocol.md, "The watch
            stream").
    """
    try:
        data = _loads(line)
    except orjson.JSONDecodeError as exc:
        raise MalformedLineError(f"watch line is not JSON: {exc}", line=bytes(line)) from None
    return event_from_json(data, line)


def event_from_json(data: Any, line: bytes | bytearray | memoryview) -> RawEvent:
    """Check a parsed watch line (``line`` is only quoted in errors): :func:`parse_event`.

    Raises:
        MalformedLineError: ``data`` is not a ``{"type", "object"}`` watch event.
    """
    # ``type(x) is dict`` rather than isinstance: orjson builds exact dicts, and this runs
    # once per event.
    if type(data) is not dict:
        raise MalformedLineError("watch line is not a JSON object", line=bytes(line))
    type_ = data.get("type")
    obj = data.get("object")
    if type(obj) is not dict or type_ not in _EVENT_TYPES:
        raise MalformedLineError(
            f"watch line is not a watch event (type={type_!r})", line=bytes(line)
        )
    meta = obj.get("metadata")
    if type(meta) is not dict:
        return RawEvent(type_, obj, "", False)
    rv = meta.get("resourceVersion")
    if type(rv) is not str:
        rv = str(rv or "")
    if type_ == "BOOKMARK":
        annotations = meta.get("annotations")
        end = type(annotations) is dict and annotations.get(INITIAL_EVENTS_END) == "true"
        return RawEvent(type_, obj, rv, end)
    return RawEvent(type_, obj, rv, False)


def compare_resource_versions(a: str, b: str) -> int:
    """Compare two resourceVersions: negative if ``a`` is older, 0 if equal, positive if newer.

    Kubernetes 1.35 made RVs orderable as arbitrary-size decimal integers within one
    resource: the longer string is greater, equal lengths compare lexically (docs/protocol.md,
    "resourceVersions"; apimachinery ``resourceversion.CompareResourceVersion``). Strings
    that are not decimal are compared by the same rule, which keeps the order total.
    """
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    if a == b:
        return 0
    return -1 if a < b else 1


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (seconds, or an HTTP date); ``None`` if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if seconds != seconds or seconds < 0:  # NaN or negative: ignore
        return None
    return seconds


def status_to_error(
    status: Mapping[str, Any] | None,
    *,
    code: int | None = None,
    body: bytes | str = b"",
    verb: str | None = None,
    resource: str | None = None,
    retry_after: float | None = None,
) -> ApiError:
    """Build the typed :class:`~crwatch.ApiError` for a Status or a plain error response.

    Args:
        status: a ``metav1.Status`` dict (from an ERROR event or a JSON error body), or
            ``None`` when the server answered with something else (plain text, HTML).
        code: the HTTP status; defaults to the Status ``code``.
        body: the raw body, used for the message when there is no Status.
        verb: the Kubernetes verb of the request (``list``, ``watch``).
        resource: the resource the request was about.
        retry_after: seconds from the ``Retry-After`` header; else the Status'
            ``details.retryAfterSeconds`` is used.
    """
    status = status if isinstance(status, Mapping) and status.get("kind") == "Status" else None
    if status is not None:
        status_code = status.get("code")
        if code is None and isinstance(status_code, int):
            code = status_code
        message = str(status.get("message") or "")
        reason = str(status.get("reason") or "")
        raw_details = status.get("details")
        details: dict[str, Any] = dict(raw_details) if isinstance(raw_details, Mapping) else {}
        if retry_after is None:
            seconds = details.get("retryAfterSeconds")
            if isinstance(seconds, (int, float)) and seconds > 0:
                retry_after = float(seconds)
        meta = status.get("metadata")
        token = meta.get("continue") if isinstance(meta, Mapping) else None
        continue_token = str(token) if token else None
    else:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        message = text.strip()[: SNIPPET_BYTES * 5]
        reason = ""
        details = {}
        continue_token = None
    if code is None:
        code = 500
    cls = api_error_class(code, details)
    return cls(
        message or f"HTTP {code}",
        code=code,
        reason=reason,
        details=details,
        retry_after=retry_after,
        verb=verb,
        resource=resource,
        continue_token=continue_token,
    )
