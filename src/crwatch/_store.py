"""The keyed, indexed cache of objects, and the read-only view users get of it.

:class:`Cache` is the mutable side, owned by the list/watch core: ``apply`` records one watch
change; ``replace`` swaps in a complete new state (after a list or a relist) and returns
exactly the differences as events, so a relist is quiet: unchanged objects produce nothing
(docs/guarantees.md, "Relists are quiet"), and the object already cached is kept, so the cache holds
each object
once. Indexes (``name -> fn(obj) -> values``) are updated with every change, including the
synthetic deletions of a relist. Objects are stored as given, not copied.

:class:`Store` is the public, read-only view of a cache (``informer.store``): it has no
mutators. The objects it returns are the cached ones, shared with every subscriber: treat
them as read-only.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

from ._events import CHANGE_TYPES, Event, EventType, new_event, object_key

__all__ = ["Cache", "IndexFunc", "Store"]

log = logging.getLogger("crwatch")

#: An index function: the index values of one object (for example its owners' uids).
IndexFunc: TypeAlias = Callable[[dict[str, Any]], Iterable[str]]

_ADDED = EventType.ADDED
_MODIFIED = EventType.MODIFIED
_DELETED = EventType.DELETED


def _rv(obj: dict[str, Any]) -> Any:
    meta = obj.get("metadata")
    return meta.get("resourceVersion") if isinstance(meta, dict) else None


def _uid(obj: dict[str, Any]) -> Any:
    meta = obj.get("metadata")
    return meta.get("uid") if isinstance(meta, dict) else None


class _Index:
    """One named index: value -> keys.

    The values of an object are recomputed from it on removal (index functions must be pure),
    as client-go's ``threadSafeMap.updateIndices`` does.
    """

    __slots__ = ("fn", "name", "values")

    def __init__(self, name: str, fn: IndexFunc) -> None:
        self.name = name
        self.fn = fn
        self.values: dict[str, dict[str, None]] = {}

    def _of(self, obj: dict[str, Any]) -> Iterable[str]:
        try:
            return tuple(self.fn(obj))
        except Exception:
            # The index function is user code running in the core: a bug in it must not
            # stop the cache. The object is left out of this index.
            log.exception("index %r failed on %s; object not indexed", self.name, object_key(obj))
            return ()

    def add(self, key: str, obj: dict[str, Any]) -> None:
        for value in self._of(obj):
            self.values.setdefault(value, {})[key] = None

    def remove(self, key: str, obj: dict[str, Any]) -> None:
        for value in self._of(obj):
            keys = self.values.get(value)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self.values[value]


class Cache:
    """Objects by key (``namespace/name``, or ``name`` when cluster-scoped), with indexes."""

    __slots__ = ("_indexes", "_items")

    def __init__(self, indexes: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._indexes: tuple[_Index, ...] = tuple(
            _Index(name, fn) for name, fn in (indexes or {}).items()
        )

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the object stored under ``key``, or ``None``."""
        return self._items.get(key)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Iterate over ``(key, object)`` pairs."""
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
                return [items[k] for k in sorted(keys)]
        raise KeyError(f"no index named {name!r}; indexes: {list(self.index_names())}")

    def apply(self, type: EventType | str, obj: dict[str, Any]) -> Event | None:
        """Record one change from a watch; return the event to hand out, with ``old`` filled.

        A DELETED for a key the store does not hold returns ``None``: the consumer never saw
        the object, so there is nothing to delete (client-go's DeltaFIFO does the same;
        docs/protocol.md, "Ordering and duplicates").
        """
        return self.apply_keyed(CHANGE_TYPES.get(type) or EventType(type), obj, object_key(obj))

    def apply_keyed(self, kind: EventType, obj: dict[str, Any], key: str) -> Event | None:
        """:meth:`apply` for a caller that has the key and the :class:`EventType` already.

        The core's per-event path: it reads the key from the metadata it checks anyway.
        """
        if kind is _DELETED:
            old = self._items.pop(key, None)
            if old is None:
                return None
            for index in self._indexes:
                index.remove(key, old)
            return new_event(kind, obj, key, old)
        items = self._items
        old = items.get(key)
        items[key] = obj
        indexes = self._indexes
        if indexes:
            for index in indexes:
                if old is not None:
                    index.remove(key, old)
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

    def replace_keyed(self, items: Iterable[tuple[str, dict[str, Any]]]) -> list[Event]:
        """Swap in a complete state of ``(key, object)`` pairs; return the differences.

        New keys give ADDED, keys whose ``resourceVersion`` changed give MODIFIED (with
        ``old``), or a synthetic DELETED then an ADDED when the ``uid`` changed (the object
        was deleted and re-created while nobody watched), and keys that vanished give a
        synthetic DELETED whose object is the last known state (their index entries are
        removed). Unchanged objects give nothing, and
        the cached copy is kept (the listed duplicate is dropped).
        """
        previous = self._items
        current: dict[str, dict[str, Any]] = {}
        events: list[Event] = []
        indexes = self._indexes
        for key, obj in items:
            old = previous.get(key)
            if old is None:
                current[key] = obj
                events.append(Event(_ADDED, obj, key, None))
                for index in indexes:
                    index.add(key, obj)
            elif _rv(old) != _rv(obj):
                current[key] = obj
                if _uid(old) != _uid(obj):
                    # Deleted and re-created while we were not watching: never lose the
                    # deletion (a MODIFIED would hide that it is a different object).
                    events.append(Event(_DELETED, old, key, old, synthetic=True))
                    events.append(Event(_ADDED, obj, key, None))
                else:
                    events.append(Event(_MODIFIED, obj, key, old))
                for index in indexes:
                    index.remove(key, old)
                    index.add(key, obj)
            else:
                current[key] = old
        for key, old in previous.items():
            if key not in current:
                events.append(Event(_DELETED, old, key, old, synthetic=True))
                for index in indexes:
                    index.remove(key, old)
        self._items = current
        return events


class Store:
    """A read-only view of an informer's cache: ``informer.store``.

    Keys are ``namespace/name`` (``name`` for cluster-scoped objects). The view always shows
    the cache's current state; it has no mutators. The objects it returns are the cached
    ones, not copies, shared with every subscriber: treat them as read-only (copy one with
    ``copy.deepcopy`` before changing it).
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
        """Return every cached object (a new list of the shared objects)."""
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
