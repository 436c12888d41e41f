from __future__ import annotations

import builtins
import enum
from collections.abc import Callable
from typing import Any, ClassVar, TypeAlias, TypeVar

from attrs import field, frozen

from ._wire import dumps, loads


class EventType(str, enum.Enum):
    """What happened to an object. Compares equal to its name: ``EventType.ADDED == "ADDED"``."""

    #: The object appeared: part of the initial state, created, or newly matching the selector.
    ADDED = "ADDED"
    #: The object changed; ``Event.object`` is its new state.
    MODIFIED = "MODIFIED"
    #: The object is gone (or stopped matching the selector); ``Event.object`` is its last state.
    DELETED = "DELETED"

    def __str__(self) -> str:
        return self.value


#: Event types by name: a dict lookup, ten times cheaper than ``EventType(name)`` on the
#: per-event path. Also the set of watch event types that are changes (not BOOKMARK/ERROR).
CHANGE_TYPES: dict[str, EventType] = {t.value: t for t in EventType}


def object_key(obj: dict[str, Any]) -> str:
    """Return an object's key: ``namespace/name``, or ``name`` when cluster-scoped."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "")
    return f"{namespace}/{name}" if namespace else str(name)


M = TypeVar("M")

#: An object as a compact cache keeps it: its JSON (a whole watch line when ``wrapped``),
#: its resourceVersion and uid (what a relist compares), ``wrapped``. A tuple of atoms: the
#: cyclic garbage collector stops tracking it after one pass, and it frees in one call.
Packed: TypeAlias = "tuple[bytes, str, str, bool]"


def pack(obj: dict[str, Any], line: bytes | None = None) -> Packed:
    """Pack ``obj`` for a compact cache.

    ``line``, when given, is the watch line ``obj`` was parsed from (unchanged): it is kept
    as is, and ``obj`` is encoded otherwise.
    """
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion") or ""
    uid = meta.get("uid") or ""
    if line is not None:
        return (line, rv, uid, True)
    # orjson's output keeps its whole write buffer (~8 KiB for a 2 KB object, measured with
    # tracemalloc): kept for long, it is copied to its exact size.
    return (bytes(memoryview(dumps(obj))), rv, uid, False)


def pack_unparsed(raw: bytes, meta: dict[str, Any], *, wrapped: bool) -> Packed:
    """Pack an object a compact cache keeps without parsing it.

    ``raw`` is its JSON (a watch line when ``wrapped``); ``meta`` the key fields read from
    it, already admitted (so a resourceVersion is there).
    """
    uid = meta.get("uid")
    return (raw, meta["resourceVersion"], uid if type(uid) is str else "", wrapped)


def unpack(packed: Packed) -> dict[str, Any]:
    """Decode a packed object: a new dict every call."""
    data: dict[str, Any] = loads(packed[0])
    return data["object"] if packed[3] else data


@frozen(eq=False)
class Event:
    """One change to one object, as a subscriber sees it.

    Attributes:
        type: ``ADDED``, ``MODIFIED`` or ``DELETED``.
        object: the object as parsed from JSON, not copied: treat it as read-only. With
            ``cache="compact"`` an object the cache had kept as bytes (``old``, a synthetic
            deletion, a snapshot) is decoded on first access, once per event: every
            subscriber reading it gets the same dict.
        key: ``namespace/name`` (``name`` for cluster-scoped objects).
        old: the previous state of the object where crwatch knows it, else ``None``.
        synthetic: ``True`` when crwatch inferred the change from a relist rather than reading
            it from a watch event (for example a ``DELETED`` for an object that vanished while
            the connection was down).

    Two events are equal when these five are.
    """

    type: EventType
    _object: dict[str, Any] | Packed = field(alias="object", repr=False)
    key: str
    _old: dict[str, Any] | Packed | None = field(default=None, alias="old", repr=False)
    synthetic: bool = False

    @property
    def object(self) -> dict[str, Any]:
        """The object: its new state, or its last known state for a ``DELETED``."""
        value = self._object
        if type(value) is tuple:
            value = unpack(value)
            _set_object(self, value)
        return value  # type: ignore[return-value]

    @property
    def old(self) -> dict[str, Any] | None:
        """The previous state of the object where crwatch knows it, else ``None``."""
        value = self._old
        if type(value) is tuple:
            value = unpack(value)
            _set_old(self, value)
        return value  # type: ignore[return-value]

    def __eq__(self, other: Any) -> bool:
        if other.__class__ is not Event:
            return NotImplemented
        return bool(
            self.type == other.type
            and self.key == other.key
            and self.synthetic == other.synthetic
            and self.object == other.object
            and self.old == other.old
        )

    __hash__: ClassVar[None] = None  # type: ignore[assignment]  # holds dicts, as attrs would

    def typed(self, model: builtins.type[M] | Callable[[dict[str, Any]], M]) -> M:
        """Return the event's object decoded into ``model`` (see :meth:`crwatch.Store.typed`).

        Raises:
            crwatch.ModelError: the object does not fit the model.
        """
        from ._models import decode_model

        return decode_model(model, self._object, self.key)  # type: ignore[no-any-return]

    @classmethod
    def from_object(
        cls,
        type: EventType | str,
        obj: dict[str, Any],
        *,
        old: dict[str, Any] | None = None,
        synthetic: bool = False,
    ) -> Event:
        """Build an event for ``obj``, computing its key."""
        return cls(EventType(type), obj, object_key(obj), old, synthetic)

    @property
    def resource_version(self) -> str:
        """The object's ``metadata.resourceVersion`` (``""`` when absent)."""
        value = self._object
        if type(value) is tuple:
            return value[1]
        return str((value.get("metadata") or {}).get("resourceVersion", ""))  # type: ignore[union-attr]


_new = Event.__new__
_set_type, _set_object, _set_key, _set_old, _set_synthetic = (
    Event.__dict__[name].__set__ for name in ("type", "_object", "key", "_old", "synthetic")
)


def new_event(
    kind: EventType, obj: dict[str, Any] | Packed, key: str, old: dict[str, Any] | Packed | None
) -> Event:
    """Build a non-synthetic :class:`Event` from checked values: the per-event path.

    Equal to ``Event(kind, obj, key, old)``, in about half the time: the slots are written
    through their descriptors (one C call each) instead of the frozen class's generated
    ``__init__``, which goes through ``object.__setattr__`` per field (bench/profile_watch.py).
    """
    event: Event = _new(Event)
    _set_type(event, kind)
    _set_object(event, obj)
    _set_key(event, key)
    _set_old(event, old)
    _set_synthetic(event, False)
    return event


def stored_object(event: Event) -> dict[str, Any] | Packed:
    """Return the event's object as held (a dict, or still packed), for passing it on."""
    return event._object


def stored_old(event: Event) -> dict[str, Any] | Packed | None:
    """Return the event's ``old`` as held (see :func:`stored_object`)."""
    return event._old
