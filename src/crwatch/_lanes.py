"""Subscriber lanes: one bounded buffer per subscriber, and the fan-out over them.

A :class:`Lane` is what a subscriber reads: the list/watch driver pushes events into it
synchronously (never awaiting a subscriber), the subscriber takes them at its own pace.
:class:`FanOut` is the informer's delivery strategy for the driver: it pushes each change
to every lane and tells the driver when to let the subscribers run.

Overflow policies of a lane (``buffer_size`` events held in order, then):

``"wait"``
    The excess is held as per-key pending state: the newest state of each changed key, in
    the order keys first changed, with deletions kept (see ``_coalesce``: a delete followed
    by a re-create gives both events; a create followed by a delete the subscriber never saw
    gives neither). The driver and the other subscribers never wait; this subscriber catches
    up at its own pace and skips only intermediate states (counted as ``coalesced``). Memory
    is bounded by ``buffer_size`` plus the number of cached keys, never by the event rate.
``"coalesce"``
    Drop-oldest-and-coalesce: on overflow the buffered events are folded into the per-key
    pending state too, so a slow subscriber jumps to the latest state of every key with the
    fewest calls.
``"fail"``
    The subscriber fails with :class:`SubscriberOverflowError`; the others continue.

Per key, a subscriber always sees changes in order; the order across keys is kept while the
buffer has room. A new subscriber first gets the cache's current state as ADDED through the
pending state (later changes to those keys fold in until it has read them), then live events:
no gap and no duplicate, because attaching happens synchronously between two driver steps.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal, TypeAlias

import anyio
import anyio.lowlevel

from ._coalesce import Run
from ._events import Event, EventType
from ._exceptions import SubscriberOverflowError

__all__ = ["BURST", "IDLE_BURSTS", "OVERFLOWS", "FanOut", "Lane", "Overflow"]

_DELETED: Final = EventType.DELETED

#: What a full subscriber buffer does: see the module docstring.
Overflow: TypeAlias = Literal["wait", "coalesce", "fail"]
OVERFLOWS: Final = ("wait", "coalesce", "fail")

#: The most events the driver hands to the lanes before it lets the subscribers run.
BURST: Final = 64
#: While bursts wake no subscriber task, at most this many in a row end without yielding.
IDLE_BURSTS: Final = 16

_gc_count = gc.get_count


class Lane:
    """One subscriber's bounded buffer: the driver pushes synchronously, the subscriber takes.

    See the module docstring for the overflow policies. ``push`` never awaits and never
    raises; the subscriber side (:meth:`take_nowait`, or async iteration) ends after the
    buffered events when the lane is closed, raising the error it was closed with, or at
    once with :class:`SubscriberOverflowError` if the lane failed.

    ``name``, ``size``, ``overflow`` and the counters (``delivered``, ``coalesced``,
    ``dropped``) are for reading; ``direct`` and ``on_fail`` are hooks the owner sets.
    """

    __slots__ = (
        "_blocking",
        "_carry",
        "_closed",
        "_error",
        "_extra",
        "_failed",
        "_limit",
        "_pending",
        "_queue",
        "_waiter",
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
        self.name: str = name
        self.size: int = max(size, 1)
        self.overflow: Overflow = overflow
        # watch() only: the driver bounds what it pushes itself (it waits while the
        # :attr:`backlog` is ``size``), so the lane takes everything in order.
        self._blocking = blocking
        self._queue: collections.deque[Event] = collections.deque()
        # key -> the net effect of its changes past the buffer (``_coalesce.Run``), drained
        # after the queue, oldest first.
        self._pending: collections.OrderedDict[str, Run] = collections.OrderedDict()
        # What ``push`` may append without the slow path: ``size`` while open with nothing
        # pending (unbounded for a blocking lane), else 0. Kept by ``_relimit``.
        self._limit = self.size
        # The live event of a taken pending run whose deletion was delivered first.
        self._carry: Event | None = None
        # Wake-ups are bare asyncio futures (crwatch runs on asyncio only: aiohttp): one
        # anyio.Event costs ~1 us to build and doubles a wake-up round trip (6.5 against
        # 3.2 us, measured), paid once per subscriber per burst. Cancelling the waiting
        # task cancels the future; a cancelled or done future is simply not set.
        self._waiter: asyncio.Future[None] | None = None
        #: Whether the reader was woken since the driver last let it run (see ``FanOut``).
        self.woken: bool = False
        self._closed = False
        self._failed = False
        self._error: BaseException | None = None
        self._extra = 0  # live events folded into a snapshot not read yet ("fail" lanes)
        self._relimit()
        #: Called (synchronously, by the driver) when the lane fails, to stop its reader.
        self.on_fail: Callable[[], None] | None = None
        #: A sync callback's caller, run by ``push`` itself while nothing is buffered (the
        #: subscriber is caught up, so the order holds): no hand-off, and the event dies
        #: young. Set by the informer for plain sync callbacks; it must not raise.
        self.direct: Callable[[Event], None] | None = None
        self.delivered: int = 0
        self.coalesced: int = 0
        self.dropped: int = 0

    def __repr__(self) -> str:
        return f"<Lane {self.name!r} {self.overflow} depth={self.depth}/{self.size}>"

    @property
    def depth(self) -> int:
        """Events and pending keys not yet taken by the subscriber."""
        return len(self._queue) + len(self._pending) + (self._carry is not None)

    @property
    def backlog(self) -> int:
        """Events buffered in order (not counting pending per-key state)."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """Whether the lane was closed, or failed."""
        return self._closed

    @property
    def error(self) -> BaseException | None:
        """The error the subscriber gets at the end, if any."""
        return self._error

    # --- the driver's side (synchronous) ---

    def _relimit(self) -> None:
        if self._closed or self._pending:
            self._limit = 0
        else:
            self._limit = sys.maxsize if self._blocking else self.size

    def push(self, event: Event) -> None:
        """Append one event (the per-event path: no await, no allocation if room)."""
        queue = self._queue
        if len(queue) < self._limit:
            if not queue:
                direct = self.direct
                if direct is not None and self._carry is None:
                    self.delivered += 1
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
                run = pending.get(event.key)
                if run is not None:
                    self.coalesced += run.add(event)  # a live change never empties a run
                    return
            self._fold(event)
        elif len(self._queue) < self.size or self._blocking:
            self._queue.append(event)
        elif self.overflow == "fail":
            self._overflowed()
            return
        else:
            if self.overflow == "coalesce":
                queue = self._queue
                while queue:
                    self._fold(queue.popleft())
            self._fold(event)
        self._relimit()
        self.wake()

    def _fold(self, event: Event) -> None:
        """Fold ``event`` into its key's pending run (see ``_coalesce``)."""
        pending = self._pending
        key = event.key
        run = pending.get(key)
        if run is None:
            pending[key] = Run(event)
            return
        self.coalesced += run.add(event)
        if run.empty:
            del pending[key]

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
            self._fold(event)
        self._relimit()
        if self._pending:
            self.wake()

    def close(self, error: BaseException | None = None) -> None:
        """No more events: the subscriber drains what is buffered, then gets ``error``."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._relimit()
        self.wake()

    def fail(self, error: BaseException) -> None:
        """Drop everything buffered; the subscriber gets ``error`` on its next read."""
        if self._closed and self._failed:
            return
        self.dropped += self.depth
        self._queue.clear()
        self._pending.clear()
        self._carry = None
        self._closed = self._failed = True
        self._error = error
        self._relimit()
        self.wake()
        if self.on_fail is not None:
            self.on_fail()

    def discard(self) -> None:
        """Drop everything buffered and end the subscriber's iteration (unsubscribed)."""
        self._queue.clear()
        self._pending.clear()
        self._carry = None
        self._closed = True
        self._relimit()
        self.wake()

    def wake(self) -> None:
        """Wake the reader waiting in :meth:`wait_readable` (or iteration), if any."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
                self.woken = True

    # --- the subscriber's side ---

    def readable(self) -> bool:
        """Whether :meth:`take_nowait` has something to return (an event, the end, an error)."""
        return bool(self._queue or self._pending or self._carry is not None or self._closed)

    def take_nowait(self) -> Event:
        """Take the next event.

        Raises:
            anyio.WouldBlock: nothing buffered yet.
            StopAsyncIteration: the lane was closed cleanly and is drained.
            BaseException: the error the lane was closed or failed with.
        """
        queue = self._queue
        if queue and self._carry is None:
            # The common case first: a failed lane's queue is empty, and a carried event
            # is older than anything pushed after its run was taken.
            self.delivered += 1
            return queue.popleft()
        return self._take_slow()

    def _take_slow(self) -> Event:
        if self._failed:
            assert self._error is not None
            raise self._error
        carry = self._carry
        if carry is not None:
            self._carry = None
            event = carry
        elif self._queue:
            event = self._queue.popleft()
        elif self._pending:
            _, run = self._pending.popitem(last=False)
            deleted = run.deleted
            live = run.live()
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
                return self.take_nowait()
            except anyio.WouldBlock:
                pass
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    async def wait_readable(self) -> None:
        """Wait until :meth:`take_nowait` has something to return (an event, the end, an error)."""
        if self.readable():
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter


def _gc_budget() -> int:
    """Young-generation allocations the driver may add before it lets the subscribers run.

    Each buffered event keeps its object and ``event.old`` alive. Letting one network read
    of them (~128) pile up made young garbage collections find them alive and promote them,
    until full collections took half the time (bench/profile_watch.py: 25 -> 14 CPU us per
    event once bursts stayed under half the gen0 threshold; a fixed burst of 32 ~2 KB
    objects already fell off that cliff). Yielding costs ~5 us (a loop iteration and a
    task switch per subscriber), so the driver yields as rarely as this budget allows. It
    reads the GC's settings, never changes them.
    """
    threshold = gc.get_threshold()[0]
    return threshold // 2 if threshold > 0 else 1 << 30


class FanOut:
    """The informer's delivery: every change to every lane, then yield after a burst.

    The driver pushes each change as soon as it is in the cache; a lane whose subscriber is
    a caught-up sync callback calls it right there (``Lane.direct``). After a short burst
    (:data:`BURST` events, or half the young GC generation's threshold of allocations:
    :func:`_gc_budget`) the driver yields once so that the subscribers take what it pushed
    before the garbage collector promotes the objects they hold. If the burst woke no
    subscriber task it yields only every :data:`IDLE_BURSTS` bursts (:meth:`_none_woken`).
    """

    __slots__ = ("_burst", "_gc_budget", "_gc_mark", "_idle_bursts", "lanes")

    #: The driver applies each watch change itself (subscribers never parse lines).
    pulls = False

    def __init__(self) -> None:
        #: The lanes, read afresh for each event (a direct callback may subscribe).
        self.lanes: tuple[Lane, ...] = ()
        self._burst = 0
        self._gc_mark = 0
        self._gc_budget = _gc_budget()
        self._idle_bursts = 0  # bursts that ended without yielding, in a row

    def attach(self, lane: Lane, snapshot: Iterable[Event] = ()) -> None:
        """Add a lane; it first gets ``snapshot`` (the cache's state) as pending state."""
        lane.push_snapshot(snapshot)
        self.lanes = (*self.lanes, lane)

    def detach(self, lane: Lane) -> None:
        """Remove a lane (its subscriber is gone)."""
        self.lanes = tuple(other for other in self.lanes if other is not lane)

    def push(self, event: Event) -> bool:
        """Hand one change to every lane; return whether the driver should yield now.

        The one burst rule (see the class docstring) follows the pushes, inline: this runs
        once per event.
        """
        for lane in self.lanes:
            lane.push(event)
        burst = self._burst = self._burst + 1
        if burst >= BURST or (
            # gc.get_count() builds a tuple: every 8th event is enough.
            not burst & 7 and _gc_count()[0] - self._gc_mark > self._gc_budget
        ):
            return not self._none_woken()
        return False

    def listed(self, events: list[Event], first: bool) -> Iterator[None]:
        """Hand over the differences a list found (the first: as every lane's snapshot)."""
        self._gc_mark = _gc_count()[0]  # a list may have frozen (emptied) the young generation
        for lane in self.lanes:
            if first:
                lane.push_snapshot(events)
            else:
                for event in events:
                    lane.push(event)
        return iter(())

    def busy(self) -> bool:
        """Whether the subscribers should run before the driver waits for the network."""
        return bool(self._burst) and not self._none_woken()

    def _none_woken(self) -> bool:
        """Whether no subscriber task waits to run: then a burst may end without yielding.

        The yield after a burst is for readers the burst woke (a lane they waited on got
        events), so that they take them while young. Sync callbacks that kept up were
        called as each change was applied (``Lane.direct``), and a reader still busy with
        an earlier event (a slow or stuck callback) takes nothing from a yield now: neither
        needs one. Yielding anyway cost an informer with one sync callback ~1 us per event
        (10.8 -> 9.8 us CPU, 10 alternating runs of 200,000 events), as each pass of the
        event loop also reads the socket, in smaller pieces. The loop still yields when its
        read waits for the network, and after :data:`IDLE_BURSTS` bursts in a row, so other
        tasks never wait long on a busy stream.
        """
        if self._idle_bursts >= IDLE_BURSTS:
            self._idle_bursts = 0
            return False
        for lane in self.lanes:
            if lane.woken:
                return False
        self._idle_bursts += 1
        self._burst = 0
        self._gc_mark = _gc_count()[0]
        return True

    async def pause(self) -> None:
        """Let the subscribers run (a checkpoint), then start counting a new burst."""
        self._burst = self._idle_bursts = 0
        lanes = self.lanes
        for lane in lanes:
            lane.woken = False  # they get to run now
        if lanes:
            await anyio.lowlevel.checkpoint()
        self._gc_mark = _gc_count()[0]

    def close(self, error: BaseException | None) -> None:
        """End every lane: each subscriber drains it, then gets ``error``."""
        for lane in self.lanes:
            lane.close(error)
