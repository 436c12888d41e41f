"""An informer over a set of namespaces: one list/watch per namespace, one cache view.

``Informer(client, resource, namespaces={"a", "b"})`` runs one ``_core.Core`` per namespace
(each the ordinary single-namespace loop: list, watch, resume, relist on 410, stall
detection, backoff) and feeds one ``_lanes.FanOut``, so its subscribers get every
namespace's changes through one buffer each. What this module adds:

- :class:`Member`: the delivery each namespace's core is given. It hands every change
  straight to the shared fan-out, but ends the subscribers' lanes only when every core has
  ended (or at once when one fails for good: the informer is stopping), since one core
  ending while the others still run must not end the subscribers.
- :class:`NamespacesStore`: the public :class:`~crwatch.Store` over the cores' caches.

Why a cache per namespace rather than one shared dictionary: keys are ``namespace/name``,
so the caches are disjoint by construction, and a relist (``Cache.replace_keyed``) can only
ever replace the keys of its own namespace. A relist of namespace ``a`` after a 410 thus
synthesises deletions for ``a``'s vanished objects and never touches ``b``'s. client-go's
multi-namespace cache (controller-runtime ``pkg/cache/multi_namespace_cache.go``) is also
one informer per namespace behind one read interface.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ._events import Event, Packed
from ._lanes import FanOut
from ._store import Cache, Store

__all__ = ["Members", "NamespacesStore"]


class Members:
    """The deliveries of a multi-namespace informer's cores, over one shared fan-out."""

    __slots__ = ("_fanout", "_open")

    def __init__(self, fanout: FanOut) -> None:
        self._fanout = fanout
        self._open = 0

    def member(self) -> Member:
        """Return the delivery of one more core."""
        self._open += 1
        return Member(self._fanout, self)

    def _closed(self, error: BaseException | None) -> None:
        self._open -= 1
        if error is not None or self._open <= 0:
            # A core that failed for good stops the whole informer (its ``on_fatal``): its
            # error is what the subscribers get. Otherwise only the last core to end
            # ends the subscribers' lanes.
            self._fanout.close(error)


class Member:
    """One namespace core's delivery: the shared fan-out, except for :meth:`close`."""

    __slots__ = ("_closed", "_fanout", "_members")

    #: As the fan-out's: the driver applies each watch change itself.
    pulls = False

    def __init__(self, fanout: FanOut, members: Members) -> None:
        self._fanout = fanout
        self._members = members
        self._closed = False

    def push(self, event: Event) -> bool:
        """Hand one change to every lane (see ``FanOut.push``)."""
        return self._fanout.push(event)

    def listed(self, events: list[Event], first: bool) -> Iterable[None]:
        """Hand over a list's differences (see ``FanOut.listed``).

        The first list of each namespace goes to the lanes as snapshot state, as the
        informer's first list does: every namespace's initial objects arrive once, whenever
        its list completes.
        """
        return self._fanout.listed(events, first)

    def busy(self) -> bool:
        """Whether the subscribers should run first (see ``FanOut.busy``)."""
        return self._fanout.busy()

    async def pause(self) -> None:
        """Let the subscribers run (see ``FanOut.pause``)."""
        await self._fanout.pause()

    def close(self, error: BaseException | None) -> None:
        """End this core: the lanes end with the last core, or with a fatal error."""
        if not self._closed:
            self._closed = True
            self._members._closed(error)


def _order(namespace: str) -> str:
    # Keys are "namespace/name": ordering the caches by "namespace/" orders their keys
    # globally ("a-b/x" sorts before "a/x" because "-" < "/").
    return namespace + "/"


class NamespacesStore(Store):
    """The read-only view of a multi-namespace informer's caches, as one :class:`Store`.

    Every method answers for all the namespaces together; ``by_index`` returns objects in
    key order, as a single cache does.
    """

    __slots__ = ("_by_namespace", "_caches")

    def __init__(self, caches: Sequence[tuple[str, Cache]]) -> None:
        # Store's own methods read ``_cache``: every one is overridden here, and the first
        # cache is given only so that the attribute exists.
        ordered = sorted(caches, key=lambda pair: _order(pair[0]))
        super().__init__(ordered[0][1])
        self._caches: tuple[Cache, ...] = tuple(cache for _, cache in ordered)
        self._by_namespace: dict[str, Cache] = dict(ordered)

    def __repr__(self) -> str:
        return f"<crwatch.Store {len(self)} objects in {len(self._caches)} namespaces>"

    def __len__(self) -> int:
        return sum(len(cache) for cache in self._caches)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        cache = self._by_namespace.get(key.partition("/")[0])
        return cache is not None and key in cache

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._caches)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the object cached under ``key`` (``"namespace/name"``), or ``None``."""
        cache = self._by_namespace.get(key.partition("/")[0])
        return None if cache is None else cache.get(key)

    def list(self) -> builtins.list[dict[str, Any]]:
        """Return every cached object (a new list of the shared objects)."""
        return [obj for cache in self._caches for _, obj in cache.items()]

    def keys(self) -> builtins.list[str]:
        """Return every cached key (a new list)."""
        return [key for cache in self._caches for key in cache]

    def by_index(self, name: str, value: str) -> builtins.list[dict[str, Any]]:
        """Return the objects whose index ``name`` yields ``value``, in key order.

        Raises:
            KeyError: the informer has no index called ``name``.
        """
        return [obj for cache in self._caches for obj in cache.by_index(name, value)]

    def _stored(self, key: str) -> dict[str, Any] | Packed | None:
        cache = self._by_namespace.get(key.partition("/")[0])
        return None if cache is None else cache.stored(key)

    def _stored_items(self) -> Iterator[tuple[str, dict[str, Any] | Packed]]:
        return itertools.chain.from_iterable(cache.stored_items() for cache in self._caches)
