"""The list/watch core shared by ``watch()`` and ``Informer``, its subscriber lanes, ``watch()``.

One :class:`_Core` per watch or informer performs the state machine's actions with anyio:
``_machine.step`` decides, this module only does I/O (through ``_transport``), reads lines
(through ``_wire``), keeps the cache (``_store.Cache``) and fans every change out to the
subscribers' :class:`Lane` objects. The core never awaits a subscriber: a lane is a bounded
buffer the core appends to synchronously, and what happens when it is full is the lane's
declared overflow policy (below). The one exception is ``watch()``, whose single lane is
*blocking*: nobody else shares that core, so a full buffer simply pauses the reading (plain
backpressure, no event ever coalesced).

The per-event path. In ``watch()`` the consumer's ``__anext__`` does the work: the core task
reads a chunk, splits it into lines and parks; the consumer then parses and applies one line
per event (``_Core.take_fast``) and wakes the core once the lines run out, so an event costs
no task switch and its parsed object dies young. For an informer the core task parses each
line, applies it and pushes it to every lane before the next; a lane whose subscriber is a
caught-up sync callback calls it right there (``Lane.direct``); after a short burst
(``_gc_budget``) the core yields once so the other subscribers take what it pushed, before
the garbage collector promotes the objects they hold; if the burst woke no subscriber task
(caught-up sync callbacks, or readers busy with earlier events), it yields only every few
bursts (``_none_woken``).

Overflow policies of a lane (``buffer_size`` events held in order, then):

``"wait"``
    The excess is held as per-key pending state: the newest state of each changed key, in the
    order keys first changed, with deletions kept (a delete followed by a re-create gives both
    events; a create followed by a delete the subscriber never saw gives neither). The core
    and the other subscribers never wait; this subscriber catches up at its own pace and
    skips only intermediate states (counted as ``coalesced``). Memory is bounded by
    ``buffer_size`` plus the number of cached keys, never by the event rate.
``"coalesce"``
    Drop-oldest-and-coalesce: on overflow the buffered events are folded into the per-key
    pending state too, so a slow subscriber jumps to the latest state of every key with the
    fewest calls.
``"fail"``
    The subscriber fails with :class:`SubscriberOverflowError`; the others continue.

Per key, a subscriber always sees changes in order; the order across keys is kept while the
buffer has room. A new subscriber first gets the cache's current state as ADDED through the
pending state (later changes to those keys fold in until it has read them), then live events:
no gap and no duplicate, because attaching happens synchronously between two core steps.

The background task belongs to the task group of the ``async with``. The only user code run
inside it is a sync callback called directly (it blocks the event loop wherever it runs).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import math
import random
import sys
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, TypeAlias

import anyio
import anyio.lowlevel
import orjson
from anyio.abc import TaskGroup
from attrs import field, frozen

from . import _gc
from ._backoff import Backoff
from ._client import Client
from ._events import Event, EventType, object_key
from ._exceptions import (
    ApiError,
    BadRequestError,
    CrwatchError,
    EventTooLargeError,
    ExpiredError,
    InvalidOptionError,
    MalformedLineError,
    ResourceVersionRollbackError,
    StallTimeout,
    SubscriberOverflowError,
    TransportError,
)
from ._gc import GC_FREEZE_POLICIES, GcFreeze
from ._machine import (
    Collect,
    Config,
    Deliver,
    DiscardCollected,
    Failed,
    InitialDeadlinePassed,
    LineSkipped,
    ListPage,
    Observation,
    PageReceived,
    Phase,
    Raise,
    RelistDue,
    ReplaceAll,
    Sleep,
    SleepDone,
    Start,
    StartStreamingList,
    StartWatch,
    State,
    StreamEnded,
    WatchEvent,
    delivered,
    initial_state,
    step,
)
from ._resource import Resource
from ._store import Cache, IndexFunc
from ._transport import Transport, WatchStream
from ._wire import (
    SNIPPET_BYTES,
    LineSplitter,
    RawEvent,
    event_from_json,
    parse_event,
    status_to_error,
)

__all__ = [
    "EventStream",
    "Lane",
    "Overflow",
    "Watch",
    "WatchStatistics",
    "watch",
]

log = logging.getLogger("crwatch")

_MiB: Final = 1024 * 1024
_ADDED = EventType.ADDED
_DELETED = EventType.DELETED
_CHANGES: Final = frozenset({"ADDED", "MODIFIED", "DELETED"})

#: A pending entry's live event once changes folded into it (see ``Lane._pending``).
_FOLDED: Final[Any] = object()

#: Watch event types that are changes, by name (a dict lookup on the per-event path).
_CHANGE_TYPES: Final[dict[str, EventType]] = {
    "ADDED": EventType.ADDED,
    "MODIFIED": EventType.MODIFIED,
    "DELETED": EventType.DELETED,
}
_loads = orjson.loads

#: How kube-apiserver (and FakeApiServer) begin a bookmark line: ``watch()``'s loop handles
#: those itself, so bookmarks advance the resourceVersion while the consumer is busy. Only
#: a shortcut: a bookmark encoded otherwise takes the consumer's path and works the same.
_BOOKMARK_PREFIX: Final = b'{"type":"BOOKMARK"'


class _Drain:
    """The type of ``_DRAIN``: ``_read``'s answer when the loop must yield first."""


_DRAIN: Final = _Drain()

#: Unless ``gc_freeze="off"``: objects of a streaming list between two ``gc.freeze()`` (a page).
_FREEZE_EVERY: Final = 500

#: The most events the core hands to the lanes before it lets the subscribers run.
_BURST: Final = 64
_gc_count = gc.get_count
#: While bursts wake no subscriber task, at most this many in a row end without yielding.
_IDLE_BURSTS: Final = 16


def _gc_budget() -> int:
    """Young-generation allocations the core may add before it lets the subscribers run.

    Each buffered event keeps its object and ``event.old`` alive. Letting one network read
    of them (~128) pile up made young garbage collections find them alive and promote them,
    until full collections took half the time (bench/profile_watch.py: 25 -> 14 CPU us per
    event once bursts stayed under half the gen0 threshold; a fixed burst of 32 ~2 KB
    objects already fell off that cliff). Yielding costs ~5 us (a loop iteration and a
    task switch per subscriber), so the core yields as rarely as this budget allows. It
    reads the GC's settings, never changes them.
    """
    threshold = gc.get_threshold()[0]
    return threshold // 2 if threshold > 0 else 1 << 30


#: What a full subscriber buffer does: see the module docstring.
Overflow: TypeAlias = Literal["wait", "coalesce", "fail"]
OVERFLOWS: Final = ("wait", "coalesce", "fail")

#: A transform: called on every object before it is cached; returns the object to cache.
Transform: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]


@frozen
class WatchStatistics:
    """Counters of one :func:`crwatch.watch`, from :meth:`EventStream.statistics`.

    Attributes:
        events: events handed to the consumer's stream.
        lists: complete lists (initial and relists) applied.
        watches: watch requests opened (including streaming lists).
        malformed_lines: stream lines skipped because they were not watch events.
        oversized_events: stream lines skipped because they exceeded ``max_event_bytes``.
        stalls: watches dropped because no byte arrived for ``stall_timeout``.
        errors: failed requests (each followed by a retry, a relist or the end).
        resource_version: the last resourceVersion seen (``""`` before the first list).
        synced: whether the initial state has been delivered.
        last_error: the most recent failure, if any.
    """

    events: int
    lists: int
    watches: int
    malformed_lines: int
    oversized_events: int
    stalls: int
    errors: int
    resource_version: str
    synced: bool
    last_error: BaseException | None = field(eq=False)


# --- subscriber lanes --------------------------------------------------------------------------


class Lane:
    """One subscriber's bounded buffer: the core pushes synchronously, the subscriber pulls.

    See the module docstring for the overflow policies. ``push`` never awaits and never
    raises; the subscriber side is an async iterator of :class:`Event` that ends (after the
    buffered events) when the core closes the lane, raising the core's error if it failed,
    or at once with :class:`SubscriberOverflowError` if the lane failed.
    """

    __slots__ = (
        "_carry",
        "_closed",
        "_error",
        "_extra",
        "_failed",
        "_limit",
        "_pending",
        "_queue",
        "_waiter",
        "blocking",
        "coalesced",
        "delivered",
        "direct",
        "dropped",
        "name",
        "on_fail",
        "overflow",
        "size",
        "woken",
    )

    def __init__(
        self, name: str, size: int, overflow: Overflow = "wait", *, blocking: bool = False
    ) -> None:
        self.name = name
        self.size = max(size, 1)
        self.overflow = overflow
        #: ``watch()`` only: the core waits for room instead of applying the policy.
        self.blocking = blocking
        self._queue: collections.deque[Event] = collections.deque()
        # key -> [pending deletion, live event, type, old, object]; drained after the queue,
        # oldest first. Once a change folds into the live event, ``live`` becomes _FOLDED
        # and the entry keeps the first live event's type and ``old`` and the newest object
        # (nothing else, so no superseded state stays alive): the event is built when
        # taken, so folding a change into a full lane allocates nothing (see ``_live``).
        self._pending: collections.OrderedDict[str, list[Any]] = collections.OrderedDict()
        # What ``push`` may append without the slow path: ``size`` while open with nothing
        # pending (unbounded for a blocking lane), else 0. Kept by ``_relimit``.
        self._limit = self.size
        # The live state of a popped pending entry whose deletion was delivered first.
        self._carry: Event | None = None
        # Wake-ups are bare asyncio futures (crwatch runs on asyncio only: aiohttp): one
        # anyio.Event costs ~1 us to build and doubles a wake-up round trip (6.5 against
        # 3.2 us, measured), paid once per subscriber per burst. Cancelling the waiting
        # task cancels the future; a cancelled or done future is simply not set.
        self._waiter: asyncio.Future[None] | None = None
        #: Whether the reader was woken since the core last yielded (see ``_Core._none_woken``).
        self.woken = False
        self._closed = False
        self._failed = False
        self._error: BaseException | None = None
        self._extra = 0  # live events folded into a snapshot not read yet ("fail" lanes)
        self._relimit()
        #: Called (synchronously, by the core) when the lane fails, to stop its reader.
        self.on_fail: Callable[[], None] | None = None
        #: A sync callback's caller, run by ``push`` itself while nothing is buffered (the
        #: subscriber is caught up, so the order holds): no hand-off, and the event dies
        #: young. Set by the informer for plain sync callbacks; it must not raise.
        self.direct: Callable[[Event], None] | None = None
        self.delivered = 0
        self.coalesced = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<Lane {self.name!r} {self.overflow} depth={self.depth}/{self.size}>"

    @property
    def depth(self) -> int:
        """Events and pending keys not yet taken by the subscriber."""
        return len(self._queue) + len(self._pending) + (self._carry is not None)

    @property
    def closed(self) -> bool:
        """Whether the core closed the lane, or the lane failed."""
        return self._closed

    @property
    def error(self) -> BaseException | None:
        """The error the subscriber gets at the end, if any."""
        return self._error

    # --- the core's side (synchronous) ---

    def _relimit(self) -> None:
        if self._closed or self._pending:
            self._limit = 0
        else:
            self._limit = sys.maxsize if self.blocking else self.size

    def push(self, event: Event) -> None:
        """Append one event (the core's per-event path: no await, no allocation if room)."""
        queue = self._queue
        if len(queue) < self._limit:
            if not queue:
                direct = self.direct
                if direct is not None and self._carry is None:
                    direct(event)
                    return
            queue.append(event)
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)
                    self.woken = True
            return
        self._push_slow(event)

    def _push_slow(self, event: Event) -> None:
        if self._closed:
            return
        pending = self._pending
        if pending:
            if self.overflow == "fail":
                # Pending state here is a snapshot being read: live events folded into it
                # still count against the buffer, so a stuck reader fails as promised.
                self._extra += 1
                if self._extra > self.size:
                    self._overflowed()
                    return
            elif event.type is not _DELETED:
                # A full lane's common case: a newer state of a key already pending. O(1),
                # no allocation, and no wake-up (pending state is readable already).
                entry = pending.get(event.key)
                if entry is not None:
                    live = entry[1]
                    if live is _FOLDED:
                        entry[4] = event.object
                        self.coalesced += 1
                        return
                    if live is not None:
                        entry[1:] = _FOLDED, live.type, live.old, event.object
                        self.coalesced += 1
                        return
            self._merge(event)
        elif len(self._queue) < self.size or self.blocking:
            self._queue.append(event)
        elif self.overflow == "fail":
            self._overflowed()
            return
        else:
            if self.overflow == "coalesce":
                queue = self._queue
                while queue:
                    self._merge(queue.popleft())
            self._merge(event)
        self._relimit()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
                self.woken = True

    def _overflowed(self) -> None:
        self.fail(
            SubscriberOverflowError(
                f'subscriber {self.name!r} fell {self.size} events behind (overflow="fail")',
                subscriber=self.name,
                buffer_size=self.size,
            )
        )

    def push_snapshot(self, events: Iterable[Event]) -> None:
        """Add a state snapshot (ADDED per object) as pending state, whatever the policy.

        Live events that follow fold into it until the subscriber has read it all, so a
        large initial state neither overflows a small buffer nor is delivered stale.
        """
        if self._closed:
            return
        for event in events:
            self._merge(event)
        self._relimit()
        waiter = self._waiter
        if waiter is not None and self._pending:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
                self.woken = True

    def _merge(self, event: Event) -> None:
        pending = self._pending
        key = event.key
        entry = pending.get(key)
        if entry is None:
            pending[key] = (
                [event, None, None, None, None]
                if event.type is _DELETED
                else [None, event, None, None, None]
            )
            return
        live = entry[1]
        if event.type is _DELETED:
            if live is None:  # pragma: no cover - the cache never deletes twice
                entry[0] = event
                return
            if live is _FOLDED:
                first_type, first_old = entry[2], entry[3]
            else:
                first_type, first_old = live.type, live.old
            entry[1:] = None, None, None, None
            if first_type is _ADDED:
                # Created and deleted before the subscriber saw it: neither is delivered.
                self.coalesced += 2
                if entry[0] is None:
                    del pending[key]
            else:
                # Never lose a deletion; ``old`` stays what the subscriber last saw.
                entry[0] = Event(_DELETED, event.object, key, first_old, event.synthetic)
                self.coalesced += 1
        elif live is None:
            entry[1] = event
        elif live is _FOLDED:
            entry[4] = event.object
            self.coalesced += 1
        else:
            entry[1:] = _FOLDED, live.type, live.old, event.object
            self.coalesced += 1

    @staticmethod
    def _live(key: str, entry: list[Any]) -> Event | None:
        """Return the live event a pending entry delivers (see ``_pending``)."""
        live: Event | None = entry[1]
        if live is _FOLDED:
            return Event(entry[2], entry[4], key, entry[3])
        return live

    def close(self, error: BaseException | None = None) -> None:
        """No more events: the subscriber drains what is buffered, then gets ``error``."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._relimit()
        self._wake()

    def fail(self, error: BaseException) -> None:
        """Drop everything buffered; the subscriber gets ``error`` on its next read."""
        if self._closed and self._failed:
            return
        self.dropped += len(self._queue) + len(self._pending) + (self._carry is not None)
        self._queue.clear()
        self._pending.clear()
        self._carry = None
        self._closed = self._failed = True
        self._error = error
        self._relimit()
        self._wake()
        if self.on_fail is not None:
            self.on_fail()

    def discard(self) -> None:
        """Drop everything buffered and end the subscriber's iteration (unsubscribed)."""
        self._queue.clear()
        self._pending.clear()
        self._carry = None
        self._closed = True
        self._relimit()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
                self.woken = True

    def readable(self) -> bool:
        """Whether ``get_nowait`` has something to return (an event, the end, an error)."""
        return bool(self._queue or self._pending or self._carry is not None or self._closed)

    # --- the subscriber's side ---

    def get_nowait(self) -> Event:
        """Take the next event.

        Raises:
            anyio.WouldBlock: nothing buffered yet.
            StopAsyncIteration: the lane was closed cleanly and is drained.
            BaseException: the error the lane was closed or failed with.
        """
        if self._failed:
            assert self._error is not None
            raise self._error
        carry = self._carry
        if carry is not None:
            # Must come first: it is older than anything pushed after its entry was popped.
            self._carry = None
            event = carry
        elif self._queue:
            event = self._queue.popleft()
        elif self._pending:
            key, entry = self._pending.popitem(last=False)
            deleted = entry[0]
            live = self._live(key, entry)
            if deleted is not None:
                event = deleted
                self._carry = live
            else:
                assert live is not None
                event = live
            if not self._pending:
                self._extra = 0
                self._relimit()
        elif self._closed:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        else:
            raise anyio.WouldBlock
        self.delivered += 1
        return event

    def __aiter__(self) -> Lane:
        return self

    async def __anext__(self) -> Event:
        while True:
            # Buffered events are taken without a checkpoint (anyio's receive() yields to
            # the event loop on every call, a third of the per-event cost); the lane is
            # bounded, so the subscriber still waits, and yields, at least once per buffer.
            try:
                return self.get_nowait()
            except anyio.WouldBlock:
                pass
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    async def wait_readable(self) -> None:
        """Wait until ``get_nowait`` has something to return (an event, the end, an error)."""
        if self.readable():
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter


# --- the core ------------------------------------------------------------------------------------


class _Counters:
    __slots__ = (
        "errors",
        "events",
        "last_byte_at",
        "last_error",
        "last_error_at",
        "lists",
        "malformed_lines",
        "oversized_events",
        "stalls",
        "watches",
    )

    def __init__(self) -> None:
        self.events = self.lists = self.watches = 0
        self.malformed_lines = self.oversized_events = self.stalls = self.errors = 0
        self.last_error: BaseException | None = None
        #: Wall-clock time of the last error; monotonic time of the last byte read.
        self.last_error_at: float | None = None
        self.last_byte_at: float | None = None


class _OpenStream:
    """A watch response being read: the byte stream, its line splitter, lines not yet used."""

    __slots__ = ("deadline", "eof", "pending", "splitter", "stream")

    def __init__(self, stream: WatchStream, max_event_bytes: int, deadline: float | None) -> None:
        self.stream = stream
        self.splitter = LineSplitter(max_event_bytes)
        # Lines not used yet; the head may already be parsed (see ``_Core.take_fast``).
        self.pending: collections.deque[
            bytes | RawEvent | MalformedLineError | EventTooLargeError
        ] = collections.deque()
        self.deadline = deadline
        self.eof = False


@frozen
class _Settings:
    """Validated options of one list/watch, shared by ``watch()`` and ``Informer``."""

    transport: Transport
    resource: Resource
    namespace: str | None
    label_selector: str | None
    field_selector: str | None
    stall_timeout: float
    max_event_bytes: int
    config: Config
    seed: int
    gc_freeze: GcFreeze = "list"


def _rv_int(rv: str) -> int | None:
    # PROTOCOL.md §4.1: RVs order as decimal integers (required for conformance from 1.35).
    return int(rv) if rv.isdigit() else None


class _Core:
    """The list/watch loop, the cache, and the fan-out to lanes. ``run`` is its one task.

    Every change is applied to the cache (and its indexes) first, then pushed to every lane,
    synchronously: subscribers always see ``event.old`` from the cache and never delay it.
    """

    def __init__(
        self,
        settings: _Settings,
        *,
        transform: Transform | None = None,
        indexes: Mapping[str, IndexFunc] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings = settings
        self._resource = settings.resource
        self._transport = settings.transport
        self._stall_timeout = settings.stall_timeout
        self._max_event_bytes = settings.max_event_bytes
        # gc_freeze (see _gc): whether lists freeze, and whether this core holds a
        # temporary freeze (a list with "list" is running).
        self._gc_freeze = settings.gc_freeze != "off"
        self._gc_keep = settings.gc_freeze == "keep"
        self._gc_held: int | None = None  # the _gc.begin() token of a running list
        self.state: State = initial_state(settings.config, settings.seed)
        self.cache = Cache(indexes)
        self.transform = transform
        self.counters = _Counters()
        self.error: BaseException | None = None
        self.lanes: tuple[Lane, ...] = ()
        self._blocking: Lane | None = None
        self._on_fatal = on_fatal
        # The fast path (see _machine): changes delivered since the last step, and the last
        # resourceVersion among them, folded into ``state`` by ``_fold`` before each step.
        self._fast = False
        self._fast_rv = ""
        self._burst = 0
        self._gc_mark = 0
        self._gc_budget = _gc_budget()
        self._idle_bursts = 0  # bursts that ended without yielding, in a row (_none_woken)
        self._initial_done = False
        self._finished = False
        # watch(): what the parked loop waits on, and the stream it is parked on while the
        # next line is ready for ``take_fast`` (never with events in the lane).
        self._resume: asyncio.Future[None] | None = None
        self._parked: _OpenStream | None = None
        # Waiters for "synced" and "resourceVersion >= N": (target or -1, event).
        self._waiters: list[tuple[int, anyio.Event]] = []
        # Set when a relist went back below the last resourceVersion (a restored backup):
        # waits pending then for a higher version fail instead of hanging.
        self._rollback: tuple[int, str, str] | None = None  # (count, previous, current)

    # --- subscribers ---

    def attach(self, lane: Lane) -> None:
        """Add a lane; once synced it first gets the current cache as ADDED (no gap)."""
        if lane.blocking:
            self._blocking = lane
        elif self._initial_done and len(self.cache):
            lane.push_snapshot(Event(_ADDED, obj, key) for key, obj in self.cache.items())
        if self._finished:
            lane.close(self.error)
        self.lanes = (*self.lanes, lane)

    def detach(self, lane: Lane) -> None:
        """Remove a lane (the subscriber is gone); the core forgets it at once."""
        self.lanes = tuple(other for other in self.lanes if other is not lane)
        if self._blocking is lane:
            self._blocking = None

    # --- progress waiters ---

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen, including changes delivered by the fast path."""
        if self._fast and self._fast_rv:
            return self._fast_rv
        return self.state.resource_version

    @property
    def finished(self) -> bool:
        """Whether ``run`` has ended (cancelled or failed for good)."""
        return self._finished

    def synced_now(self, target: int = -1) -> bool:
        """Whether the cache is synced and has seen resourceVersion ``target`` (if >= 0)."""
        if not self.state.synced or not self._initial_done:
            return False
        if target < 0:
            return True
        current = _rv_int(self.resource_version)
        return current is not None and current >= target

    async def wait_progress(self, target: int = -1) -> None:
        """Wait until :meth:`synced_now` holds, or the core has finished.

        Raises:
            ResourceVersionRollbackError: a relist went back below the last resourceVersion
                while waiting for ``target``, which is above the relist's.
        """
        seen = self._rollback
        while not self.synced_now(target) and not self._finished:
            rollback = self._rollback
            if rollback is not seen and rollback is not None:
                _, previous, current = rollback
                raise ResourceVersionRollbackError(
                    f"watch {self.settings.resource}: the server's resourceVersion went back "
                    f"from {previous} to {current} (restored from an older state?): "
                    f"resourceVersion {target} may never come; wait for the version of a "
                    "write made since",
                    resource_version=target,
                    previous=previous,
                    current=current,
                )
            event = anyio.Event()
            self._waiters.append((target, event))
            try:
                await event.wait()
            finally:
                self._waiters = [w for w in self._waiters if w[1] is not event]

    def _check_rollback(self, before: str, after: str) -> None:
        # A relist answering an older resourceVersion than already seen means the server
        # lost its history (restored from an etcd backup). The cache follows the server
        # (the relist is the truth); waits for a higher version are told (wait_progress).
        old, new = _rv_int(before), _rv_int(after)
        if old is None or new is None or new >= old:
            return
        log.warning(
            "watch %s: the server's resourceVersion went back from %s to %s; relisted",
            self.settings.resource,
            before,
            after,
        )
        count = 0 if self._rollback is None else self._rollback[0] + 1
        self._rollback = (count, before, after)
        for target, event in self._waiters:
            if target > new:
                event.set()

    def _notify(self) -> None:
        for target, event in self._waiters:
            if self._finished or self.synced_now(target):
                event.set()

    # --- the task ---

    async def run(self) -> None:
        """Run the loop until cancelled or failed for good; never raises anything else.

        Between bursts it lets the subscribers run (see ``_gc_budget``). For ``watch()``
        (a blocking lane) it parks instead: it hands what it has to the consumer, which
        takes events from the lane and applies ready lines itself (:meth:`take_fast`), and
        waits until the consumer has used them all (:meth:`resume`). A consumer that stops
        iterating so leaves the bytes unread (backpressure).
        """
        steps = self._steps()
        try:
            async for _ in steps:
                self._burst = self._idle_bursts = 0
                for lane in self.lanes:
                    lane.woken = False  # they get to run now
                blocking = self._blocking
                if blocking is not None:
                    resume = self._resume = asyncio.get_running_loop().create_future()
                    blocking._wake()
                    try:
                        await resume
                    finally:
                        self._parked = self._resume = None
                elif self.lanes:
                    await anyio.lowlevel.checkpoint()
                self._gc_mark = _gc_count()[0]
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self._failed(exc)
        finally:
            await steps.aclose()
            self._finish()

    def resume(self) -> None:
        """Let a parked loop go on (``watch()``'s consumer used everything it was handed)."""
        self._parked = None
        resume = self._resume
        if resume is not None and not resume.done():
            resume.set_result(None)

    def _failed(self, exc: Exception) -> None:
        if not isinstance(exc, CrwatchError):
            log.exception("watch %s: unexpected error", self._resource, exc_info=exc)
        self.error = exc

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._parked = None
        for lane in self.lanes:
            lane.close(self.error)
        self._notify()
        if self.error is not None and self._on_fatal is not None:
            self._on_fatal(self.error)

    def take_fast(self) -> Event | None:
        """Parse and apply the next ready watch line, if the loop is parked on one.

        ``watch()``'s per-event path, run by the consumer's ``__anext__`` itself: one line,
        one cache change, one event, without a task switch or a buffer in between. Returns
        ``None`` when the line needs the loop (a bookmark, an error, a malformed line) or
        none is ready; the consumer then calls :meth:`resume`.
        """
        open_stream = self._parked
        if open_stream is None:
            return None
        pending = open_stream.pending
        while pending or self._refill(open_stream):
            line = pending.popleft()
            if type(line) is bytes:
                result = self._fast_line(line)
                if isinstance(result, Event):
                    if self._waiters:
                        self._notify()
                    return result
                if result is None:  # a deletion of an unknown key: nothing to hand out
                    continue
                pending.appendleft(result)  # parsed once: the loop takes it from here
            else:
                pending.appendleft(line)
            break
        self._parked = None
        return None

    def _refill(self, open_stream: _OpenStream) -> bool:
        """Frame the bytes already received into ``pending`` (``take_fast`` ran out of lines).

        So a consumer keeps up with a busy stream without waking the core for each network
        read. Returns ``False`` when the core must act instead: nothing is buffered (it
        waits with the stall timeout), a relist is scheduled (it checks the deadline), or
        the stream failed (it reports the error).
        """
        if self.state.relist_at is not None:
            return False
        try:
            chunk = open_stream.stream.read_nowait()
        except TransportError:
            return False  # the core's own read raises it again, and reports it
        if not chunk:
            return False
        self.counters.last_byte_at = time.monotonic()
        open_stream.pending.extend(open_stream.splitter.feed(chunk))
        return bool(open_stream.pending)

    def _fast_line(self, line: bytes) -> Event | RawEvent | MalformedLineError | None:
        """Parse one watch line; apply it at once if it is a plain change (the fast path).

        A change (ADDED, MODIFIED, DELETED of an object with a string name and
        resourceVersion) goes through the transform, is applied to the cache and counted,
        and its event returned (``None`` for the deletion of an unknown key); anything else
        comes back as a :class:`RawEvent`, or the :class:`MalformedLineError` to report, for
        the loop. Each line is parsed once, whatever it holds.
        """
        try:
            data = _loads(line)
        except ValueError:
            try:
                return parse_event(line)  # raises, with the parser's message
            except MalformedLineError as exc:
                return exc
        if type(data) is dict:
            kind = data.get("type")
            obj = data.get("object")
            if type(kind) is str and type(obj) is dict:
                change = _CHANGE_TYPES.get(kind)
                meta = obj.get("metadata")
                if change is not None and type(meta) is dict:
                    name = meta.get("name")
                    rv = meta.get("resourceVersion")
                    if type(name) is str and type(rv) is str:
                        if rv:
                            self._fast_rv = rv
                        self._fast = True
                        transform = self.transform
                        if transform is None:
                            namespace = meta.get("namespace")
                            key = f"{namespace}/{name}" if namespace else name
                        else:
                            # Keyed as lists key it: by the object the cache keeps.
                            obj = transform(obj)
                            key = object_key(obj)
                        event = self.cache.apply_keyed(change, obj, key)
                        if event is not None:
                            self.counters.events += 1
                        return event
        try:
            return event_from_json(data, line)
        except MalformedLineError as exc:
            return exc

    def _change(self, kind: str, obj: dict[str, Any]) -> None:
        """Apply one change to the cache, then hand it to every lane."""
        transform = self.transform
        event = self.cache.apply(kind, obj if transform is None else transform(obj))
        if event is None:
            return
        self.counters.events += 1
        for lane in self.lanes:
            lane.push(event)
        self._burst += 1

    def _drain_due(self) -> bool:
        """Whether the subscribers must run now (see ``_BURST`` and ``_gc_budget``)."""
        blocking = self._blocking
        if blocking is not None:
            # watch(): its buffer_size bounds what waits for the consumer.
            return len(blocking._queue) >= blocking.size
        if self._burst >= _BURST or _gc_count()[0] - self._gc_mark > self._gc_budget:
            return not self._none_woken()
        return False

    def _none_woken(self) -> bool:
        """Whether no subscriber task waits to run: then a burst may end without yielding.

        The yield after a burst is for readers the burst woke (a lane they waited on got
        events), so that they take them while young. Sync callbacks that kept up were
        called as each change was applied (``Lane.direct``), and a reader still busy with
        an earlier event (a slow or stuck callback) takes nothing from a yield now: neither
        needs one. Yielding anyway cost an informer with one sync callback ~1 us per event
        (10.8 -> 9.8 us CPU, 10 alternating runs of 200,000 events), as each pass of the
        event loop also reads the socket, in smaller pieces. The loop still yields when its
        read waits for the network, and after ``_IDLE_BURSTS`` bursts in a row, so other
        tasks never wait long on a busy stream.
        """
        if self._idle_bursts >= _IDLE_BURSTS:
            self._idle_bursts = 0
            return False
        for lane in self.lanes:
            if lane.woken:
                return False
        self._idle_bursts += 1
        self._burst = 0
        self._gc_mark = _gc_count()[0]
        return True

    def _freeze(self) -> None:
        """``gc_freeze``: hide everything alive from the cyclic GC (see ``_gc``)."""
        if self._gc_keep:
            _gc.keep()
        else:
            if self._gc_held is None:
                self._gc_held = _gc.begin()
            _gc.freeze()
        self._gc_mark = _gc_count()[0]  # freezing empties the young generation's count

    def _thaw(self) -> None:
        """End the temporary freeze of a list that ended (``gc_freeze="list"``), if held."""
        token = self._gc_held
        if token is not None:
            self._gc_held = None
            _gc.end(token)

    def _fold(self) -> None:
        """Record the fast path's deliveries in the machine's state (before any step)."""
        if self._fast:
            self.state = delivered(self.state, self._fast_rv)
            self._fast = False
            self._fast_rv = ""

    async def _steps(self) -> AsyncGenerator[None, None]:
        """Run the list/watch loop: perform the actions, yield to let the lanes drain.

        It yields only where the subscribers should run: after a burst of changes (task
        mode, :meth:`run`) or when ``watch()``'s blocking lane is full or the next watch
        line is ready for :meth:`take_fast` (``watch()``, see :meth:`run`).
        """
        resource = self._resource
        cache = self.cache
        collected: list[dict[str, Any]] = []
        stream: _OpenStream | None = None
        observation: Observation | None = Start()
        try:
            while True:
                assert observation is not None
                if isinstance(observation, Failed):
                    self._note_failure(observation.error)
                self._fold()
                before = self.state.resource_version  # for _check_rollback
                self.state, actions = step(self.state, observation, anyio.current_time())
                observation = None
                for action in actions:
                    if isinstance(action, Deliver):
                        for raw in action.events:
                            self._change(raw.type, raw.object)
                            if self._drain_due():
                                yield
                    elif isinstance(action, Collect):
                        if self.transform is None:
                            collected.extend(action.objects)
                        else:
                            collected.extend(map(self.transform, action.objects))
                        if self._gc_freeze:
                            self._freeze()
                    elif isinstance(action, ReplaceAll):
                        if before:
                            self._check_rollback(before, action.resource_version)
                        events = cache.replace(collected)
                        collected = []
                        self.counters.lists += 1
                        log.debug(
                            "watch %s: list at resourceVersion %s: %d objects, %d changes",
                            resource,
                            action.resource_version,
                            len(cache),
                            len(events),
                        )
                        first = not self._initial_done
                        self._initial_done = True
                        self.counters.events += len(events)
                        if self._gc_keep:
                            self._freeze()
                        else:
                            self._thaw()
                        blocking = self._blocking
                        if blocking is None:
                            for lane in self.lanes:
                                if first:
                                    lane.push_snapshot(events)
                                else:
                                    for event in events:
                                        lane.push(event)
                        else:
                            for event in events:
                                blocking.push(event)
                                if len(blocking._queue) >= blocking.size:
                                    yield
                        if self._waiters:  # before the watch request that follows
                            self._notify()
                    elif isinstance(action, DiscardCollected):
                        collected = []
                        self._thaw()
                    elif isinstance(action, (StartWatch, StartStreamingList)):
                        if stream is not None:
                            stream.stream.close()
                            stream = None
                        stream, observation = await self._open(action)
                    elif isinstance(action, ListPage):
                        if stream is not None:
                            stream.stream.close()
                            stream = None
                        observation = await self._list(action)
                    elif isinstance(action, Sleep):
                        if stream is not None:
                            stream.stream.close()
                            stream = None
                        delay = max(0.0, action.until - anyio.current_time())
                        if action.error is not None:
                            # Error messages already name the verb and the resource.
                            log.warning("%s; retrying in %.1f s", action.error, delay)
                        await anyio.sleep(delay)
                        observation = SleepDone()
                    elif isinstance(action, Raise):
                        raise action.error
                if self._waiters:
                    self._notify()
                while observation is None:
                    if stream is None:  # pragma: no cover - a machine bug
                        raise RuntimeError(f"nothing to wait for in phase {self.state.phase}")
                    read = await self._read(stream, collected)
                    if isinstance(read, _Drain):
                        yield
                    else:
                        observation = read
        finally:
            self._thaw()
            if stream is not None:
                stream.stream.close()

    def _note_failure(self, error: CrwatchError) -> None:
        counters = self.counters
        counters.errors += 1
        counters.last_error = error
        counters.last_error_at = time.time()
        if isinstance(error, StallTimeout):
            counters.stalls += 1
        if isinstance(error, ExpiredError):
            log.info("%s; relisting", error)
        elif isinstance(error, BadRequestError) and self.state.phase is Phase.STREAMING_LIST:
            log.info("%s; falling back to paginated lists", error)

    async def _open(
        self, action: StartWatch | StartStreamingList
    ) -> tuple[_OpenStream | None, Observation | None]:
        streaming = isinstance(action, StartStreamingList)
        settings = self.settings
        self.counters.watches += 1
        try:
            # The stall timeout also covers a server that never sends the response headers.
            with anyio.fail_after(self._stall_timeout):
                opened = await self._transport.open_watch(
                    self._resource,
                    namespace=settings.namespace,
                    label_selector=settings.label_selector,
                    field_selector=settings.field_selector,
                    resource_version=action.resource_version,
                    timeout_seconds=action.timeout_seconds,
                    send_initial_events=streaming,
                )
        except TimeoutError:
            return None, Failed(self._stalled("no response headers"))
        except (ApiError, TransportError) as exc:
            return None, Failed(exc)
        self.counters.last_byte_at = time.monotonic()
        deadline = action.deadline if isinstance(action, StartStreamingList) else None
        return _OpenStream(opened, self._max_event_bytes, deadline), None

    async def _list(self, action: ListPage) -> Observation:
        settings = self.settings
        try:
            page = await self._transport.list_page(
                self._resource,
                namespace=settings.namespace,
                label_selector=settings.label_selector,
                field_selector=settings.field_selector,
                resource_version=action.resource_version,
                continue_token=action.continue_token,
                limit=action.limit,
                read_timeout=self._stall_timeout,
            )
        except (ApiError, TransportError) as exc:
            return Failed(exc)
        self.counters.last_byte_at = time.monotonic()
        return PageReceived(page.items, page.resource_version, page.continue_token)

    def _stalled(self, what: str) -> StallTimeout:
        return StallTimeout(
            f"watch {self._resource}: {what} for {self._stall_timeout:g} s; reconnecting"
        )

    def _skipped(self, problem: MalformedLineError | EventTooLargeError) -> None:
        counters = self.counters
        if isinstance(problem, EventTooLargeError):
            counters.oversized_events += 1
            log.warning("watch %s: %s", self._resource, problem)
        else:
            counters.malformed_lines += 1
            log.warning(
                "watch %s: skipped a malformed line (%s): %r",
                self._resource,
                problem,
                problem.line[:SNIPPET_BYTES],
            )
        counters.last_error = problem

    async def _read(
        self, open_stream: _OpenStream, collected: list[dict[str, Any]]
    ) -> Observation | _Drain:
        """Read until the next observation for the machine, delivering changes on the way.

        The fast path (see ``_machine``): while WATCHING, each change is parsed, applied and
        handed to the lanes before the next line is parsed, and its resourceVersion kept in
        ``_fast_rv``; during a streaming list each ADDED object is collected. Only other
        events (bookmarks, errors, the end, a failure, a skipped line, a deadline) go
        through ``step``. Returns ``_DRAIN`` when the loop should yield first: in task mode
        after a burst, in pull mode (``watch()``) when its lane has events or the next line
        is one for :meth:`take_fast` (the loop is then parked on ``open_stream``).
        """
        pending = open_stream.pending
        counters = self.counters
        transform = self.transform
        watching = Phase.WATCHING
        streaming = Phase.STREAMING_LIST
        blocking = self._blocking
        gc_budget = self._gc_budget
        while True:
            phase = self.state.phase
            while pending:
                line = pending[0]
                if isinstance(line, bytes):
                    if phase is watching and blocking is None:
                        pending.popleft()
                        result = self._fast_line(line)
                        if isinstance(result, Event):
                            # Read self.lanes each time: a direct callback may subscribe.
                            for lane in self.lanes:
                                lane.push(result)
                            self._burst = burst = self._burst + 1
                            if self._waiters:
                                self._notify()
                            if burst >= _BURST or (
                                # gc.get_count() builds a tuple: every 8th event is enough.
                                not burst & 7 and _gc_count()[0] - self._gc_mark > gc_budget
                            ):
                                if self._none_woken():
                                    continue
                                return _DRAIN
                            continue
                        if result is None:
                            continue
                        item: RawEvent | MalformedLineError | EventTooLargeError = result
                    elif phase is watching and not line.startswith(_BOOKMARK_PREFIX):
                        # watch(): the consumer takes it from here (take_fast).
                        assert blocking is not None
                        if not blocking._queue:
                            self._parked = open_stream
                        return _DRAIN
                    else:
                        pending.popleft()
                        try:
                            item = parse_event(line)
                        except MalformedLineError as exc:
                            item = exc
                else:
                    pending.popleft()
                    item = line
                if not isinstance(item, RawEvent):
                    assert isinstance(item, (MalformedLineError, EventTooLargeError))
                    self._skipped(item)
                    if open_stream.eof and not pending and isinstance(item, MalformedLineError):
                        # The incomplete last line of a stream that ended: the re-watch
                        # from the last resourceVersion delivers that event again.
                        continue
                    return LineSkipped(item)
                raw = item
                kind = raw.type
                if phase is watching and kind in _CHANGES:
                    # A change the fast path left alone (a transform, or odd metadata).
                    self._change(kind, raw.object)
                    rv = raw.resource_version
                    if rv:
                        self._fast_rv = rv
                    self._fast = True
                    if self._waiters:
                        self._notify()
                    if self._drain_due():
                        return _DRAIN
                    continue
                if phase is streaming and kind == "ADDED":
                    obj = raw.object
                    collected.append(obj if transform is None else transform(obj))
                    if self._gc_freeze and not len(collected) % _FREEZE_EVERY:
                        self._freeze()
                    continue
                if kind == "ERROR":
                    error = status_to_error(raw.object, verb="watch", resource=str(self._resource))
                    return Failed(error)
                return WatchEvent(raw)
            if (self._burst and not self._none_woken()) or (
                blocking is not None and blocking._queue
            ):
                # Let the subscribers take what was pushed before waiting on the network.
                return _DRAIN
            if open_stream.eof:
                return StreamEnded()
            timeout = self._stall_timeout
            now = anyio.current_time()
            relist_at = self.state.relist_at
            if relist_at is not None and phase is watching:
                if now >= relist_at:
                    return RelistDue()
                timeout = min(timeout, relist_at - now)
            deadline = open_stream.deadline
            if deadline is not None and phase is streaming:
                remaining = deadline - now
                if remaining <= 0:
                    return InitialDeadlinePassed()
                timeout = min(timeout, remaining)
            else:
                deadline = None
            try:
                # Bytes already received need no timer (a cancel scope per read costs more
                # than framing them).
                chunk = open_stream.stream.read_nowait()
            except TransportError as exc:
                return Failed(exc)
            if chunk:
                counters.last_byte_at = time.monotonic()
                pending.extend(open_stream.splitter.feed(chunk))
                continue
            with anyio.move_on_after(timeout) as scope:
                try:
                    chunk = await open_stream.stream.read()
                except TransportError as exc:
                    return Failed(exc)
            if scope.cancelled_caught:
                now = anyio.current_time()
                if deadline is not None and now >= deadline:
                    return InitialDeadlinePassed()
                if relist_at is not None and phase is watching and now >= relist_at:
                    return RelistDue()
                return Failed(self._stalled("no byte received"))
            if chunk:
                counters.last_byte_at = time.monotonic()
                pending.extend(open_stream.splitter.feed(chunk))
                continue
            open_stream.eof = True
            tail = open_stream.splitter.close()
            if tail:
                # A partial last line: the connection ended mid-event (reported above).
                pending.append(tail)


# --- watch(): one blocking lane over a core --------------------------------------------------


class EventStream:
    """The value of ``async with crwatch.watch(...) as events``: an async iterator of events.

    Iteration yields :class:`crwatch.Event` values: the initial state as ADDED, then the
    changes. It ends by raising the error that stopped the watch (for example
    :class:`crwatch.ForbiddenError`), and never ends on its own otherwise.

    Iterating drives the watch: the background task reads and frames the bytes, and each
    ``__anext__`` parses and applies the next line in the consumer's own task (no hand-off
    per event). A consumer that stops iterating leaves the rest unread (backpressure):
    bookmarks that arrive after the last change are still taken, but changes (and what
    follows them) wait for the next ``__anext__``, and so do :meth:`statistics`' counters.
    """

    __slots__ = ("_core", "_lane", "_watch")

    def __init__(self, lane: Lane, owner: Watch) -> None:
        self._lane = lane
        self._watch = owner
        self._core = owner._core

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        core = self._core
        if core._parked is not None:
            # The per-event path: the next line, parsed and applied right here.
            event = core.take_fast()
            if event is not None:
                return event
        lane = self._lane
        while not lane.readable():
            if core._parked is not None:
                event = core.take_fast()
                if event is not None:
                    return event
            core.resume()
            await lane.wait_readable()
        return lane.get_nowait()

    def statistics(self) -> WatchStatistics:
        """Return the counters of the watch so far."""
        return self._watch.statistics()


class Watch:
    """The async context manager returned by :func:`crwatch.watch`.

    Entering starts the list/watch task and returns an :class:`EventStream`; leaving
    cancels the task and closes every connection it opened.
    """

    def __init__(self, settings: _Settings, *, buffer_size: int) -> None:
        self._core = _Core(settings)
        self._lane = Lane("watch", buffer_size, blocking=True)
        self._task_group: TaskGroup | None = None

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            "crwatch.watch() returns an async context manager: "
            "use `async with crwatch.watch(...) as events: async for event in events: ...`"
        )

    def __repr__(self) -> str:
        settings = self._core.settings
        where = f" in {settings.namespace!r}" if settings.namespace else ""
        return f"<crwatch.Watch {settings.resource}{where} {self._core.state.phase.name}>"

    def statistics(self) -> WatchStatistics:
        """Return the counters of the watch so far."""
        core = self._core
        c = core.counters
        return WatchStatistics(
            events=c.events,
            lists=c.lists,
            watches=c.watches,
            malformed_lines=c.malformed_lines,
            oversized_events=c.oversized_events,
            stalls=c.stalls,
            errors=c.errors,
            resource_version=core.resource_version,
            synced=core.state.synced,
            last_error=c.last_error,
        )

    async def __aenter__(self) -> EventStream:
        if self._task_group is not None:
            raise CrwatchError("a Watch can be entered only once")
        self._core.attach(self._lane)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._core.run, name=f"crwatch.watch {self._core.settings.resource}")
        return EventStream(self._lane, self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        task_group.cancel_scope.cancel()
        try:
            # The body's own exception is not handed to the task group, which would wrap
            # it in an ExceptionGroup: it propagates as itself once the task is gone. The
            # task never raises (it hands errors to the lane), so nothing is lost.
            await task_group.__aexit__(None, None, None)
        finally:
            self._lane.close()
            self._core.detach(self._lane)
        return None


# --- options -----------------------------------------------------------------------------------


def _settings(
    client: Client,
    resource: Resource | str,
    *,
    namespace: str | None,
    label_selector: str | None,
    field_selector: str | None,
    stall_timeout: float,
    streaming_list: bool | Literal["auto"],
    initial_list_deadline: float,
    page_size: int | None,
    max_event_bytes: int,
    on_auth_error: Literal["raise", "retry"],
    backoff: Backoff | None,
    watch_timeout: tuple[int, int],
    seed: int | None,
    gc_freeze: GcFreeze = "list",
) -> _Settings:
    """Validate the list/watch options shared by ``watch()`` and ``Informer``."""
    if not isinstance(client, Client):
        raise InvalidOptionError(f"client must be a crwatch.Client, got {type(client).__name__}")
    transport = client._require_transport()
    if isinstance(resource, str):
        resource = Resource.parse(resource)
    elif not isinstance(resource, Resource):
        raise InvalidOptionError(f"resource must be a crwatch.Resource, got {resource!r}")
    for name, value in (
        ("namespace", namespace),
        ("label_selector", label_selector),
        ("field_selector", field_selector),
    ):
        if value is not None and not isinstance(value, str):
            raise InvalidOptionError(f"{name} must be a string or None, got {value!r}")
    if namespace is not None and (not namespace or "/" in namespace):
        raise InvalidOptionError(f"namespace must be a non-empty name, got {namespace!r}")
    stall_timeout = _positive("stall_timeout", stall_timeout)
    initial_list_deadline = _positive("initial_list_deadline", initial_list_deadline)
    if not (streaming_list is True or streaming_list is False or streaming_list == "auto"):
        raise InvalidOptionError(
            f"streaming_list must be True, False or 'auto', got {streaming_list!r}"
        )
    if page_size is not None and (
        isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1
    ):
        raise InvalidOptionError(f"page_size must be a positive int or None, got {page_size!r}")
    if (
        isinstance(max_event_bytes, bool)
        or not isinstance(max_event_bytes, int)
        or (max_event_bytes < 1024)
    ):
        raise InvalidOptionError(
            f"max_event_bytes must be an int of at least 1024, got {max_event_bytes!r}"
        )
    if on_auth_error not in ("raise", "retry"):
        raise InvalidOptionError(f"on_auth_error must be 'raise' or 'retry', got {on_auth_error!r}")
    if backoff is None:
        backoff = Backoff()
    elif not isinstance(backoff, Backoff):
        raise InvalidOptionError(f"backoff must be a crwatch.Backoff, got {backoff!r}")
    if (
        not isinstance(watch_timeout, tuple)
        or len(watch_timeout) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in watch_timeout)
        or not 1 <= watch_timeout[0] <= watch_timeout[1]
    ):
        raise InvalidOptionError(
            f"watch_timeout must be (low, high) whole seconds, 1 <= low <= high, "
            f"got {watch_timeout!r}"
        )
    if not isinstance(gc_freeze, str) or gc_freeze not in GC_FREEZE_POLICIES:
        raise InvalidOptionError(f'gc_freeze must be "list", "keep" or "off", got {gc_freeze!r}')
    if seed is None:
        seed = random.SystemRandom().getrandbits(64)
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidOptionError(f"seed must be an int or None, got {seed!r}")
    config = Config(
        streaming_list=bool(streaming_list),
        page_size=page_size,
        initial_list_deadline=initial_list_deadline,
        backoff=backoff,
        on_auth_error=on_auth_error,
        watch_timeout=watch_timeout,
    )
    return _Settings(
        transport=transport,
        resource=resource,
        namespace=namespace,
        label_selector=label_selector or None,
        field_selector=field_selector or None,
        stall_timeout=stall_timeout,
        max_event_bytes=max_event_bytes,
        config=config,
        seed=seed,
        gc_freeze=gc_freeze,
    )


def _positive(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidOptionError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


# --- the public entry point -------------------------------------------------------------------


def watch(
    client: Client,
    resource: Resource | str,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    stall_timeout: float = 90.0,
    streaming_list: bool | Literal["auto"] = "auto",
    initial_list_deadline: float = 60.0,
    page_size: int | None = 500,
    max_event_bytes: int = 16 * _MiB,
    on_auth_error: Literal["raise", "retry"] = "raise",
    backoff: Backoff | None = None,
    buffer_size: int = 128,
    watch_timeout: tuple[int, int] = (300, 600),
    seed: int | None = None,
    gc_freeze: GcFreeze = "list",
) -> Watch:
    """Watch one resource type: its current objects as ADDED events, then every change.

    ::

        async with crwatch.watch(client, widgets, namespace="default") as events:
            async for event in events:
                print(event.type, event.key)

    The watch survives disconnects, server timeouts and 410 Expired (it relists and emits
    only the differences, with synthetic DELETED events for objects that vanished),
    detects stalled connections, and backs off with jitter between failed attempts.

    Args:
        client: the :class:`crwatch.Client` to use (entered, or wrapping an ``ApiClient``).
        resource: a :class:`crwatch.Resource`, or text for :meth:`Resource.parse`
            (``"widgets.v1.example.com"``).
        namespace: watch one namespace. Default ``None``: all namespaces (or a
            cluster-scoped resource).
        label_selector: a label selector (``"tier=edge,env!=prod"``). Default ``None``.
        field_selector: a field selector (``"metadata.name=a"``). Default ``None``.
        stall_timeout: seconds without a single byte after which a watch is dropped and
            resumed from the last resourceVersion. Must exceed the server's bookmark interval
            (about 60 s on kube-apiserver). Default 90.
        streaming_list: ``"auto"`` or ``True`` (default ``"auto"``) gets the initial state
            with a streaming list (``sendInitialEvents``) and falls back to a paginated list
            when the server refuses it or misses ``initial_list_deadline``; ``False`` always
            uses paginated lists.
        initial_list_deadline: seconds a streaming list may take to send its end bookmark
            before falling back to a paginated list. Default 60.
        page_size: objects per list page (``limit``); ``None`` lists in one request.
            Default 500.
        max_event_bytes: the largest watch event accepted, in bytes; larger events are
            skipped and reported (logged and counted). Default 16 MiB (etcd stores at most
            1.5 MiB per object).
        on_auth_error: on 401, 403 or 404, ``"raise"`` (default) ends the stream by raising
            :class:`crwatch.UnauthorizedError`, :class:`crwatch.ForbiddenError` or
            :class:`crwatch.NotFoundError`; ``"retry"`` logs and retries at the slowest
            backoff pace.
        backoff: delays between failed attempts. Default ``Backoff()``: 0.8 s doubling to
            30 s with full jitter.
        buffer_size: events of a list (or relist) handed over at a time before the watch
            waits for the consumer to take them. Default 128.
        watch_timeout: each watch asks the server to end it after a random number of
            seconds in ``[low, high)`` (it is then resumed at once). Default ``(300, 600)``.
        seed: seed of the jitter's random numbers, for reproducible tests. Default ``None``.
        gc_freeze: how lists hide the objects they cache from Python's cyclic garbage
            collector (:func:`gc.freeze`, which acts on the whole process). Without it the
            collector walks the growing cache again and again during a list: two thirds of
            the time for 100,000 objects. ``"list"`` (default) freezes after every page
            (every 500 objects of a streaming list) and unfreezes once no list runs any
            more; the next full collection then walks the cache once. A process that has
            frozen objects itself is left alone. ``"keep"`` freezes as well and leaves
            everything frozen, so later full collections skip the cache too; but a
            reference cycle frozen while alive is never collected once it dies (until
            :func:`gc.unfreeze`). ``"off"`` never touches the collector. See "Large caches
            and the garbage collector" in the informer guide.

    Returns:
        An async context manager; entering it starts watching and gives an
        :class:`EventStream` (an async iterator of :class:`crwatch.Event`).

    Raises:
        InvalidOptionError: an option is invalid (raised here, not at first iteration).
    """
    settings = _settings(
        client,
        resource,
        namespace=namespace,
        label_selector=label_selector,
        field_selector=field_selector,
        stall_timeout=stall_timeout,
        streaming_list=streaming_list,
        initial_list_deadline=initial_list_deadline,
        page_size=page_size,
        max_event_bytes=max_event_bytes,
        on_auth_error=on_auth_error,
        backoff=backoff,
        watch_timeout=watch_timeout,
        seed=seed,
        gc_freeze=gc_freeze,
    )
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 0:
        raise InvalidOptionError(f"buffer_size must be an int >= 0, got {buffer_size!r}")
    return Watch(settings, buffer_size=buffer_size)
