"""A keyed store of objects: the consumer's view, and the source of relist differences.

``apply`` records one watch change; ``replace`` swaps in a complete new state (after a list or
a relist) and returns exactly the differences as events, so a relist is quiet: unchanged
objects produce nothing (DESIGN.md guarantee 3). Objects are stored as given, not copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ._events import Event, EventType, object_key

__all__ = ["Store"]

_ADDED = EventType.ADDED
_MODIFIED = EventType.MODIFIED
_DELETED = EventType.DELETED
# A dict lookup is ten times cheaper than EventType(...) on the per-event path.
_TYPES: dict[str, EventType] = {t.value: t for t in EventType}


def _rv(obj: dict[str, Any]) -> Any:
    meta = obj.get("metadata")
    return meta.get("resourceVersion") if isinstance(meta, dict) else None


class Store:
    """Objects by key (``namespace/name``, or ``name`` when cluster-scoped)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}

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

    def apply(self, type: EventType | str, obj: dict[str, Any]) -> Event | None:
        """Record one change from a watch; return the event to hand out, with ``old`` filled.

        A DELETED for a key the store does not hold returns ``None``: the consumer never saw
        the object, so there is nothing to delete (client-go's DeltaFIFO does the same;
        PROTOCOL.md §5.5).
        """
        key = object_key(obj)
        kind = _TYPES.get(type) or EventType(type)
        if kind is _DELETED:
            old = self._items.pop(key, None)
            if old is None:
                return None
            return Event(kind, obj, key, old)
        old = self._items.get(key)
        self._items[key] = obj
        if old is not None and kind is _ADDED:
            # Already known (for example re-entering a selector we missed leaving): to the
            # consumer it is a change of a known object.
            kind = _MODIFIED
        return Event(kind, obj, key, old)

    def replace(self, objects: Iterable[dict[str, Any]]) -> list[Event]:
        """Swap in a complete state; return only the differences, as events.

        New keys give ADDED, keys whose ``resourceVersion`` changed give MODIFIED (with
        ``old``), and keys that vanished give a synthetic DELETED whose object is the last
        known state. Unchanged objects give nothing.
        """
        previous = self._items
        current: dict[str, dict[str, Any]] = {}
        events: list[Event] = []
        for obj in objects:
            key = object_key(obj)
            current[key] = obj
            old = previous.get(key)
            if old is None:
                events.append(Event(_ADDED, obj, key, None))
            elif _rv(old) != _rv(obj):
                events.append(Event(_MODIFIED, obj, key, old))
        for key, old in previous.items():
            if key not in current:
                events.append(Event(_DELETED, old, key, old, synthetic=True))
        self._items = current
        return events
