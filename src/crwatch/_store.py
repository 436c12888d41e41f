"""The keyed, indexed cache of objects, and the read-only view users get of it.

:class:`Cache` is the mutable side, owned by the list/watch core: ``apply`` records one watch
change; ``replace`` swaps in a complete new state (after a list or a relist) and returns
exactly the differences as events, so a relist is quiet: unchanged objects produce nothing
(docs/guarantees.md, "Relists are quiet"), and the object already cached is kept, so the
cache holds each object once. Indexes (``name -> fn(obj) -> values``) are updated with every
change, including the synthetic deletions of a relist. Objects are stored as given, not
copied, or packed as JSON bytes (``cache="compact"``, docs/cache.md).

:class:`Store` is the public, read-only view of a cache (``informer.store``): it has no
mutators. With the default ``cache="objects"`` the objects it returns are the cached ones,
shared with every subscriber: treat them as read-only. With ``cache="compact"`` every read
decodes a new dict, which the caller may change freely.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias, TypeVar

from ._events import CHANGE_TYPES, Event, EventType, Packed, new_event, object_key, pack, unpack
from ._models import TypedStore

__all__ = ["Cache", "IndexFunc", "Store"]

log = logging.getLogger("crwatch")

M = TypeVar("M")

#: An index function: the index values of one object (for example its owners' uids).
IndexFunc: TypeAlias = Callable[[dict[str, Any]], Iterable[str]]

_ADDED = EventType.ADDED
_MODIFIED = EventType.MODIFIED
_DELETED = EventType.DELETED


def _rv(obj: dict[str, Any] | Packed) -> Any:
    if type(obj) is tuple:
        return obj[1]
    meta = obj.get("metadata")  # type: ignore[union-attr]
    return meta.get("resourceVersion") if isinstance(meta, dict) else None


def _uid(obj: dict[str, Any] | Packed) -> Any:
    if type(obj) is tuple:
        return obj[2]
    meta = obj.get("metadata")  # type: ignore[union-attr]
    return meta.get("uid") if isinstance(meta, dict) else None


def _decode(value: dict[str, Any] | Packed) -> dict[str, Any]:
    return unpack(value) if type(value) is tuple else value  # type: ignore[return-value]


class _Index:
    """One named index: value -> keys, and the values each key was indexed under.

    Keeping each key's values makes removal independent of the removed object, so a compact
    cache never decodes an object to unindex it (client-go's ``threadSafeMap`` recomputes
    them from the old object instead; the result is the same for pure index functions).
    """

    __slots__ = ("fn", "name", "of_key", "values")

    def __init__(self, name: str, fn: IndexFunc) -> None:
        self.name = name
        self.fn = fn
        self.values: dict[str, dict[str, None]] = {}
        self.of_key: dict[str, tuple[str, ...]] = {}

    def _of(self, key: str, obj: dict[str, Any]) -> tuple[str, ...]:
        try:
            return tuple(self.fn(obj))
        except Exception:
            # The index function is user code running in the core: a bug in it must not
            # stop the cache. The object is left out of this index.
            log.exception("index %r failed on %s; object not indexed", self.name, key)
            return ()

    def add(self, key: str, obj: dict[str, Any]) -> None:
        values = self._of(key, obj)
        if values:
            self.of_key[key] = values
            for value in values:
                self.values.setdefault(value, {})[key] = None

    def remove(self, key: str) -> None:
        for value in self.of_key.pop(key, ()):
            keys = self.values.get(value)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self.values[value]


class Cache:
    """Objects by key (``namespace/name``, or ``name`` when cluster-scoped), with indexes.

    With ``compact=True`` each object is kept packed (:func:`~crwatch._events.pack`: its
    JSON bytes, resourceVersion and uid) and decoded on every read, so a reader always gets
    a dict of its own; events still carry the dicts parsed from the wire, and their ``old``
    is decoded only when read.
    """

    __slots__ = ("_compact", "_indexes", "_items")

    def __init__(
        self, indexes: Mapping[str, IndexFunc] | None = None, *, compact: bool = False
    ) -> None:
        self._items: dict[str, dict[str, Any] | Packed] = {}
        self._compact = compact
        self._indexes: tuple[_Index, ...] = tuple(
            _Index(name, fn) for name, fn in (indexes or {}).items()
        )

    @property
    def compact(self) -> bool:
        """Whether objects are kept packed (``cache="compact"``)."""
        return self._compact

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the object stored under ``key`` (decoded anew when packed), or ``None``."""
        value = self._items.get(key)
        if type(value) is tuple:
            return unpack(value)
        return value  # type: ignore[return-value]

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Iterate over ``(key, object)`` pairs (decoded anew when packed)."""
        if not self._compact:
            return iter(self._items.items())  # type: ignore[arg-type]
        return ((key, _decode(value)) for key, value in list(self._items.items()))

    def stored(self, key: str) -> dict[str, Any] | Packed | None:
        """Return the object under ``key`` as held (a dict, or packed), or ``None``."""
        return self._items.get(key)

    def stored_items(self) -> Iterator[tuple[str, dict[str, Any] | Packed]]:
        """Iterate over ``(key, object as held)``: for events that decode on access."""
        return iter(self._items.items())

    def index_names(self) -> tuple[str, ...]:
        """Return the names of the indexes."""
        return tuple(index.name for index in self._indexes)

    def by_index(self, name: str, value: str) -> list[dict[str, Any]]:
        """Return the objects whose index ``name`` holds ``value``, in key order."""
        for index in self._indexes:
            if index.name == name:
                keys = index.values.get(value, ())
                items = self._items
                return [_decode(items[k]) for k in sorted(keys)]
        raise KeyError(f"no index named {name!r}; indexes: {list(self.index_names())}")

    def apply(self, type: EventType | str, obj: dict[str, Any]) -> Event | None:
        """Record one change from a watch; return the event to hand out, with ``old`` filled.

        A DELETED for a key the store does not hold returns ``None``: the consumer never saw
        the object, so there is nothing to delete (client-go's DeltaFIFO does the same;
        docs/protocol.md, "Ordering and duplicates").
        """
        return self.apply_keyed(CHANGE_TYPES.get(type) or EventType(type), obj, object_key(obj))

    def apply_keyed(
        self, kind: EventType, obj: dict[str, Any], key: str, line: bytes | None = None
    ) -> Event | None:
        """:meth:`apply` for a caller that has the key and the :class:`EventType` already.

        The core's per-event path: it reads the key from the metadata it checks anyway.
        ``line``, the watch line ``obj`` was parsed from unchanged, is what a compact cache
        keeps (else it encodes ``obj``).
        """
        if kind is _DELETED:
            old = self._items.pop(key, None)
            if old is None:
                return None
            for index in self._indexes:
                index.remove(key)
            return new_event(kind, obj, key, old)
        items = self._items
        old = items.get(key)
        items[key] = pack(obj, line) if self._compact else obj
        indexes = self._indexes
        if indexes:
            for index in indexes:
                if old is not None:
                    index.remove(key)
                index.add(key, obj)
        if old is not None and kind is _ADDED:
            # Already known (for example re-entering a selector we missed leaving): to the
            # consumer it is a change of a known object.
            kind = _MODIFIED
        return new_event(kind, obj, key, old)

    def replace(self, objects: Iterable[dict[str, Any]]) -> list[Event]:
        """Swap in a complete state; return only the differences, as events.

        Each object is keyed by :func:`~crwatch._events.object_key`; see :meth:`replace_keyed`.
        """
        return self.replace_keyed([(object_key(obj), obj) for obj in objects])

    def replace_keyed(self, items: Iterable[tuple[str, dict[str, Any] | Packed]]) -> list[Event]:
        """Swap in a complete state of ``(key, object)`` pairs; return the differences.

        New keys give ADDED, keys whose ``resourceVersion`` changed give MODIFIED (with
        ``old``), or a synthetic DELETED then an ADDED when the ``uid`` changed (the object
        was deleted and re-created while nobody watched), and keys that vanished give a
        synthetic DELETED whose object is the last known state (their index entries are
        removed). Unchanged objects give nothing, and the cached copy is kept (the listed
        duplicate is dropped). A compact cache takes objects packed already (or packs them).
        """
        previous = self._items
        current: dict[str, dict[str, Any] | Packed] = {}
        events: list[Event] = []
        indexes = self._indexes
        compact = self._compact
        for key, obj in items:
            old = previous.get(key)
            if old is None:
                current[key] = pack(obj) if compact and type(obj) is dict else obj
                events.append(Event(_ADDED, obj, key, None))
                if indexes:
                    decoded = _decode(obj)
                    for index in indexes:
                        index.add(key, decoded)
            elif _rv(old) != _rv(obj):
                current[key] = pack(obj) if compact and type(obj) is dict else obj
                if _uid(old) != _uid(obj):
                    # Deleted and re-created while we were not watching: never lose the
                    # deletion (a MODIFIED would hide that it is a different object).
                    events.append(Event(_DELETED, old, key, old, synthetic=True))
                    events.append(Event(_ADDED, obj, key, None))
                else:
                    events.append(Event(_MODIFIED, obj, key, old))
                if indexes:
                    decoded = _decode(obj)
                    for index in indexes:
                        index.remove(key)
                        index.add(key, decoded)
            else:
                current[key] = old
        for key, old in previous.items():
            if key not in current:
                events.append(Event(_DELETED, old, key, old, synthetic=True))
                for index in indexes:
                    index.remove(key)
        self._items = current
        return events


class Store:
    """A read-only view of an informer's cache: ``informer.store``.

    Keys are ``namespace/name`` (``name`` for cluster-scoped objects). The view always shows
    the cache's current state; it has no mutators. With ``cache="objects"`` (the default)
    the objects it returns are the cached ones, not copies, shared with every subscriber:
    treat them as read-only (copy one with ``copy.deepcopy`` before changing it). With
    ``cache="compact"`` each read decodes the object's bytes into a new dict: changing it
    changes nothing else.
    """

    __slots__ = ("_cache",)

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    def __repr__(self) -> str:
        return f"<crwatch.Store {len(self._cache)} objects>"

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, key: object) -> bool:
        return key in self._cache

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the object cached under ``key`` (``"namespace/name"``), or ``None``."""
        return self._cache.get(key)

    def list(self) -> builtins.list[dict[str, Any]]:
        """Return every cached object (a new list; of the shared objects unless compact)."""
        return [obj for _, obj in self._cache.items()]

    def keys(self) -> builtins.list[str]:
        """Return every cached key (a new list)."""
        return list(self._cache)

    def by_index(self, name: str, value: str) -> builtins.list[dict[str, Any]]:
        """Return the objects whose index ``name`` yields ``value``, in key order.

        Raises:
            KeyError: the informer has no index called ``name``.
        """
        return self._cache.by_index(name, value)

    def typed(self, model: type[M] | Callable[[dict[str, Any]], M]) -> TypedStore[M]:
        """Return a view of this store whose reads decode each object into ``model``.

        ``model`` is a :class:`msgspec.Struct` subclass (a compact cache's bytes are
        decoded straight into it, validating types), an attrs class (built from the
        object's top-level fields), or any callable taking the object's dict. A read of an
        object that does not fit raises :class:`crwatch.ModelError` naming the object::

            class Widget(msgspec.Struct):
                metadata: ObjectMeta
                spec: WidgetSpec

            widgets = informer.store.typed(Widget)
            widgets.get("default/edge-a").spec.size
        """
        return TypedStore(self, model)

    def _stored(self, key: str) -> dict[str, Any] | Packed | None:
        return self._cache.stored(key)

    def _stored_items(self) -> Iterator[tuple[str, dict[str, Any] | Packed]]:
        return self._cache.stored_items()
