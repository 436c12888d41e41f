"""The one coalescing rule: what a run of one key's changes amounts to for a consumer.

A consumer that falls behind (a full subscriber lane) or asks for it (``batch(coalesce=True)``,
``rate_limit(coalesce=True)``, ``debounce``) gets, per key, the net effect of the changes it
has not seen yet instead of every one of them. The first change of the run tells what the
consumer has seen: a run that starts with ADDED is an object it never saw, any other run an
object it saw, in the state that change's ``old`` holds. So a :class:`Run` delivers at most
two events, in this order:

- a DELETED, when an object the consumer saw was deleted: never lost, its ``old`` is what
  the consumer last saw and its ``object`` the last state;
- a live state, when the object exists at the end of the run: the first change's type and
  ``old`` with the newest object (ADDED, with no ``old``, once it follows that deletion).

A create followed by a delete the consumer never saw gives nothing; a delete followed by a
re-create gives both events. This is what client-go's DeltaFIFO keeps per key (the deletion
is never compressed away) in a form that needs no history: a run holds the deletion, the
first type and ``old``, and the newest object, nothing superseded.
"""

from __future__ import annotations

from typing import Any, Final

from ._events import Event, EventType, Packed, stored_object, stored_old

__all__ = ["Run"]

_ADDED: Final = EventType.ADDED
_DELETED: Final = EventType.DELETED


class Run:
    """The net effect of one key's changes that a consumer has not seen yet.

    Built from the run's first change; :meth:`add` folds each later one in and returns how
    many events it made redundant, so ``events in - events out`` is what was coalesced.
    Folding a change into a run allocates nothing: the live event is built when taken.
    """

    __slots__ = ("_event", "_kind", "_object", "_old", "_synthetic", "deleted", "key")

    def __init__(self, event: Event) -> None:
        self.key = event.key
        #: The deletion to deliver first, if the consumer saw the object and it was deleted.
        self.deleted: Event | None = None
        # The live state: its type (None: the object does not exist at the end of the run),
        # the ``old`` the consumer saw, the newest object, and the event itself while the run
        # holds exactly one live change (handed out as is).
        self._kind: EventType | None = None
        # Objects as the events hold them (still packed when a compact cache made them):
        # folding never decodes.
        self._old: dict[str, Any] | Packed | None = None
        self._object: dict[str, Any] | Packed | None = None
        self._synthetic = False
        self._event: Event | None = None
        if event.type is _DELETED:
            self.deleted = event
        else:
            self._live(event, event.type, stored_old(event))

    def __repr__(self) -> str:
        return f"<Run {self.key!r} deleted={self.deleted is not None} live={self._kind}>"

    def _live(self, event: Event, kind: EventType, old: dict[str, Any] | Packed | None) -> None:
        self._kind = kind
        self._old = old
        self._object = stored_object(event)
        self._synthetic = event.synthetic
        self._event = event if kind is event.type and old is stored_old(event) else None

    def add(self, event: Event) -> int:
        """Fold a later change of the same key in; return how many events it made redundant."""
        kind = self._kind
        if kind is not None and event.type is not _DELETED:
            # The common case first (a full lane's newer state of a pending key): the newest
            # object replaces the one held; the first type and ``old`` stay.
            self._event = None
            self._object = stored_object(event)
            self._synthetic = event.synthetic
            return 1
        if event.type is _DELETED:
            if kind is None:
                # Nothing live: the first deletion stands (a second one cannot come from a
                # consistent cache); in an empty run (created and deleted unseen) it is one
                # the consumer gets, as a fresh run would.
                if self.deleted is None:
                    self.deleted = event
                    return 0
                return 1
            old = self._old
            self._kind = self._old = self._object = self._event = None
            if kind is _ADDED:
                # Created (or re-created) and deleted before the consumer saw it.
                return 2
            if self.deleted is None:
                # Never lose a deletion; ``old`` stays what the consumer last saw.
                self.deleted = Event(_DELETED, stored_object(event), self.key, old, event.synthetic)
            return 1
        # After a deletion (or in an empty run) the object is new to the consumer, whatever
        # the change's type says.
        self._live(event, _ADDED, None)
        return 0

    @property
    def empty(self) -> bool:
        """Whether the run delivers nothing (a create and a delete the consumer never saw)."""
        return self._kind is None and self.deleted is None

    @property
    def size(self) -> int:
        """How many events :meth:`outputs` returns (0, 1 or 2)."""
        return (self.deleted is not None) + (self._kind is not None)

    def live(self) -> Event | None:
        """Return the live event the run delivers after its deletion, if the object exists."""
        kind = self._kind
        if kind is None:
            return None
        event = self._event
        if event is None:
            assert self._object is not None
            event = self._event = Event(kind, self._object, self.key, self._old, self._synthetic)
        return event

    def outputs(self) -> tuple[Event, ...]:
        """Return the events the run delivers, in order (see the module docstring)."""
        deleted, live = self.deleted, self.live()
        if deleted is None:
            return () if live is None else (live,)
        return (deleted,) if live is None else (deleted, live)
