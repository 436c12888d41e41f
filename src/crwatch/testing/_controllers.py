"""The control-plane controllers a test cluster needs, run synchronously after each write.

In a real cluster the garbage collector and the namespace controller run in
kube-controller-manager and act a little later, through watches. Here they see every stored
change (`ClusterState` reports each one) and act before the write that caused them returns:
a DELETE answers once its cascade is done, so tests need nothing to wait for. The order of
the resulting watch events is the real one (the owner's first, then its dependents').
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._gc import GarbageCollector
from ._namespaces import NamespaceLifecycle

if TYPE_CHECKING:
    from ._state import ClusterState, ResourceType

Obj = dict[str, Any]


class Controllers:
    """Dispatches stored changes to the garbage collector and the namespace controller."""

    def __init__(
        self, state: ClusterState, namespaces: ResourceType, *, garbage_collector: bool = True
    ) -> None:
        self.namespaces: NamespaceLifecycle = NamespaceLifecycle(state, namespaces)
        self.gc: GarbageCollector | None = GarbageCollector(state) if garbage_collector else None
        self._held = 0

    def observe(self, rtype: ResourceType, etype: str, obj: Obj, prev: Obj | None) -> None:
        """Take note of one stored change; act on it now unless a write is in progress."""
        self.namespaces.observe(rtype, etype, obj)
        if self.gc is not None:
            self.gc.observe(rtype, etype, obj, prev)
        if not self._held:
            self.settle()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Defer the controllers until the block ends (for writes made of several changes)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held:
            self.settle()

    def settle(self) -> None:
        """Run the controllers until they have nothing left to do."""
        self._held += 1
        try:
            while True:
                if self.gc is not None and self.gc.pending():
                    self.gc.flush()
                    continue
                if self.namespaces.pending():
                    self.namespaces.flush()
                    continue
                break
        finally:
            self._held -= 1
