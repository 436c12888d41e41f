"""``WorkQueue``: a deduplicating queue of keys with a processing set, delays and backoff.

The semantics are client-go's work queue's
(https://github.com/kubernetes/client-go/blob/master/util/workqueue/queue.go), the queue
every Kubernetes controller runs on:

- a key waits at most once, however often it is added before a worker takes it (*dirty*);
- a key a worker took is *in flight* until the worker calls :meth:`WorkQueue.done`; no other
  worker gets it meanwhile, and a key added while in flight waits until ``done`` and is then
  queued again, so nothing added is lost and nothing runs twice at once;
- :meth:`WorkQueue.add_after` holds a key back until a time (the earliest one wins when a
  key is held back twice), :meth:`WorkQueue.add_rate_limited` for as long as the rate
  limiter says (per-key backoff), :meth:`WorkQueue.forget` resets that backoff;
- :meth:`WorkQueue.shutdown` stops it, handing out what is queued first or not (``drain``).

Delayed keys need no timer task: a waiting :meth:`WorkQueue.get` also waits for the
earliest delayed key's time, and every operation moves the keys whose time has come into
the queue first. So the queue is a plain object, usable without ``async with``, and its
time comes from an injectable :class:`crwatch.Clock`.

Waiters wake on bare asyncio futures, one per waiting ``get()``, as the informer's
subscriber lanes do: anyio.Event doubled the cost of a wake-up there, and a no-op worker's
loop is made of wake-ups (bench/README.md, the queue row).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import heapq
import itertools
import math
import time
from collections.abc import Callable, Hashable
from typing import ClassVar, Final, Generic, TypeVar

import anyio
from attrs import frozen

from ._clock import Clock, default_clock, validate_clock
from ._exceptions import InvalidOptionError, QueueShutDown
from ._ratelimit import RateLimiter, default_rate_limiter

__all__ = ["Durations", "WorkQueue", "WorkQueueStatistics"]

K = TypeVar("K", bound=Hashable)

#: Upper bounds (seconds) of the duration histograms: client-go's workqueue metrics use
#: ``prometheus.ExponentialBuckets(10e-9, 10, 10)`` for ``queue_duration_seconds`` and
#: ``work_duration_seconds`` (k8s.io/component-base/metrics/prometheus/workqueue).
_BOUNDS: Final = tuple(10.0 ** (e - 8) for e in range(10))


@frozen
class Durations:
    """A histogram of durations in seconds, in the shape Prometheus exports.

    Attributes:
        count: how many durations were observed.
        total: their sum, in seconds.
        maximum: the longest one, in seconds (0 when none).
        buckets: cumulative counts: ``buckets[i]`` durations were ``<= Durations.bounds[i]``
            (the ``+Inf`` bucket is ``count``).
    """

    #: The buckets' upper bounds: 10 ns to 10 s by powers of ten, as client-go's.
    bounds: ClassVar[tuple[float, ...]] = _BOUNDS

    count: int
    total: float
    maximum: float
    buckets: tuple[int, ...]

    @property
    def mean(self) -> float:
        """The mean duration in seconds (0 when none was observed)."""
        return self.total / self.count if self.count else 0.0


class _Histogram:
    """Observed durations: per-bucket counts (the last is +Inf), their sum and maximum."""

    __slots__ = ("counts", "maximum", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.maximum = 0.0
        self.counts = [0] * (len(_BOUNDS) + 1)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, seconds: float) -> None:
        self.total += seconds
        if seconds > self.maximum:
            self.maximum = seconds
        self.counts[bisect.bisect_left(_BOUNDS, seconds)] += 1

    def snapshot(self) -> Durations:
        return Durations(
            count=self.count,
            total=self.total,
            maximum=self.maximum,
            buckets=tuple(itertools.accumulate(self.counts[: len(_BOUNDS)])),
        )


@frozen
class WorkQueueStatistics:
    """A snapshot of a :class:`WorkQueue`, from :meth:`WorkQueue.statistics`.

    The fields carry what client-go's workqueue metrics publish (their names in brackets),
    so an exporter can publish them under those names.

    Attributes:
        name: the queue's name (``name`` label).
        depth: keys waiting to be handed out [``depth``].
        in_flight: keys handed out and not yet ``done``.
        delayed: keys held back by ``add_after``/``add_rate_limited`` until their time.
        adds: keys added that were not already waiting [``adds_total``].
        deduplicated: adds of a key that was already waiting (nothing queued).
        retries: delayed and rate-limited adds [``retries_total``].
        processed: keys marked ``done``.
        longest_running: seconds the longest-running key in flight has run
            [``longest_running_processor_seconds``].
        unfinished_work: seconds of work in flight, summed over the keys
            [``unfinished_work_seconds``].
        queue_latency: how long keys waited before a worker took them
            [``queue_duration_seconds``].
        work_duration: how long workers held keys [``work_duration_seconds``].
        shut_down: whether :meth:`WorkQueue.shutdown` was called.
    """

    name: str
    depth: int
    in_flight: int
    delayed: int
    adds: int
    deduplicated: int
    retries: int
    processed: int
    longest_running: float
    unfinished_work: float
    queue_latency: Durations
    work_duration: Durations
    shut_down: bool


def _check_delay(delay: object) -> float:
    if (
        isinstance(delay, bool)
        or not isinstance(delay, (int, float))
        or math.isnan(delay)
        or math.isinf(delay)
    ):
        raise InvalidOptionError(f"delay must be a finite number of seconds, got {delay!r}")
    return float(delay)


class WorkQueue(Generic[K]):
    """A queue of keys for workers: deduplicated, one worker per key, delays and backoff.

    ::

        queue: crwatch.WorkQueue[str] = crwatch.WorkQueue()
        queue.add("default/a"); queue.add("default/a")     # waits once
        key = await queue.get()                            # now in flight
        try:
            ...                                            # work on key
        except Exception:
            queue.add_rate_limited(key)                    # back off: 5 ms, 10 ms, ...
        else:
            queue.forget(key)                              # success: reset the backoff
        finally:
            queue.done(key)                                # re-queued if added meanwhile

    Adding never waits (the queue is unbounded: a key takes room once); :meth:`get` waits
    for a key, :meth:`get_nowait` does not. Keys are handed out in the order they were
    first added. Everything runs in the event loop's thread; the queue is not thread-safe.

    Args:
        rate_limiter: what :meth:`add_rate_limited` asks for delays. Default ``None``:
            :func:`crwatch.default_rate_limiter` (per key 5 ms doubling to 1000 s, overall
            10 per second with bursts of 100), on ``clock``.
        clock: where time comes from (delays, latencies). Default ``None``: the event
            loop's clock; tests pass a :class:`crwatch.ManualClock`.
        name: a name for logs and statistics. Default ``""``.

    Raises:
        InvalidOptionError: an argument is invalid.
    """

    __slots__ = (
        "_adds",
        "_clock",
        "_deduplicated",
        "_delayed",
        "_delayed_at",
        "_dirty",
        "_drain",
        "_idle_waiters",
        "_latency",
        "_limiter",
        "_now",
        "_processing",
        "_queue",
        "_requeues",
        "_retries",
        "_seq",
        "_shut_down",
        "_waiters",
        "_work",
        "name",
    )

    def __init__(
        self,
        *,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        name: str = "",
    ) -> None:
        self._clock = validate_clock(clock)
        if rate_limiter is None:
            rate_limiter = default_rate_limiter(clock=clock)
        elif not isinstance(rate_limiter, RateLimiter):
            raise InvalidOptionError(
                f"rate_limiter must have when(), forget() and retries() (see "
                f"crwatch.RateLimiter), got {rate_limiter!r}"
            )
        if not isinstance(name, str):
            raise InvalidOptionError(f"name must be a string, got {name!r}")
        #: The queue's name, in logs and statistics.
        self.name: str = name
        self._limiter = rate_limiter
        # The default clock is the event loop's, which on asyncio is time.monotonic():
        # read it directly, this runs a few times per key.
        self._now: Callable[[], float] = (
            time.monotonic if self._clock is default_clock() else self._clock.now
        )
        self._queue: collections.deque[K] = collections.deque()
        # Keys waiting to be handed out, or added again while in flight: when they were
        # added (for the queue latency).
        self._dirty: dict[K, float] = {}
        self._processing: dict[K, float] = {}  # key -> when a worker took it
        self._delayed: list[tuple[float, int, K]] = []  # heap of (ready at, seq, key)
        self._delayed_at: dict[K, float] = {}  # the live entry of each delayed key
        self._seq = itertools.count()
        # Rate-limited adds per key since it was last forgotten: keys that never failed (most
        # of them) cost no call into the rate limiter on forget() and num_requeues().
        self._requeues: dict[K, int] = {}
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._shut_down = False
        self._drain = False
        self._adds = 0
        self._deduplicated = 0
        self._retries = 0
        self._latency = _Histogram()
        self._work = _Histogram()

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        state = " shut down" if self._shut_down else ""
        return (
            f"<crwatch.WorkQueue{name} depth={len(self._queue)} "
            f"in_flight={len(self._processing)} delayed={len(self._delayed_at)}{state}>"
        )

    def __len__(self) -> int:
        """Return the number of keys waiting to be handed out (delayed ones not counted)."""
        return len(self._queue)

    @property
    def shut_down(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._shut_down

    @property
    def rate_limiter(self) -> RateLimiter:
        """The rate limiter of :meth:`add_rate_limited`."""
        return self._limiter

    def in_flight(self, key: K) -> bool:
        """Return whether a worker holds ``key`` (got it and has not called :meth:`done`)."""
        return key in self._processing

    # --- adding ---

    def add(self, key: K) -> None:
        """Queue ``key`` unless it is already waiting; never waits.

        A key in flight is queued again when its worker calls :meth:`done`. Ignored after
        :meth:`shutdown`.
        """
        if self._shut_down:
            return
        if self._delayed:
            self._promote()
        # _add, inlined: this runs once per event a controller maps to a key.
        dirty = self._dirty
        if key in dirty:
            self._deduplicated += 1
            return
        self._adds += 1
        dirty[key] = self._now()
        if key in self._processing:
            return  # done() queues it
        self._queue.append(key)
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _add(self, key: K, now: float) -> None:
        dirty = self._dirty
        if key in dirty:
            self._deduplicated += 1
            return
        self._adds += 1
        dirty[key] = now
        if key in self._processing:
            return  # done() queues it
        self._queue.append(key)
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` once ``delay`` seconds have passed; never waits.

        A key already held back keeps the earlier of its two times. ``delay <= 0`` adds it
        now. Ignored after :meth:`shutdown`.

        Raises:
            InvalidOptionError: ``delay`` is not a finite number.
        """
        delay = _check_delay(delay)
        if self._shut_down:
            return
        self._retries += 1
        now = self._now()
        if delay <= 0:
            self._add(key, now)
            return
        ready = now + delay
        current = self._delayed_at.get(key)
        if current is not None and current <= ready:
            return
        self._delayed_at[key] = ready
        entry = (ready, next(self._seq), key)
        heapq.heappush(self._delayed, entry)
        if self._delayed[0] is entry:
            self._wake_one()  # a waiter may wait for a later time: let it look again

    def add_rate_limited(self, key: K) -> None:
        """Queue ``key`` after the delay the rate limiter gives it (its backoff); never waits.

        Ignored after :meth:`shutdown` (the rate limiter is not asked).
        """
        if self._shut_down:
            return
        self._requeues[key] = self._requeues.get(key, 0) + 1
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff in the rate limiter (call it when the key succeeded)."""
        if self._requeues.pop(key, None) is not None:
            self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        """Return how many times ``key`` was rate-limited since it was last forgotten.

        Counted by the queue (:meth:`add_rate_limited` adds one, :meth:`forget` resets), so
        the rate limiter is asked nothing for keys that never failed.
        """
        return self._requeues.get(key, 0)

    def _promote(self) -> None:
        """Move the delayed keys whose time has come into the queue."""
        delayed = self._delayed
        now = self._now()
        delayed_at = self._delayed_at
        while delayed and delayed[0][0] <= now:
            ready, _, key = heapq.heappop(delayed)
            if delayed_at.get(key) == ready:
                del delayed_at[key]
                self._add(key, now)

    def _next_ready(self) -> float | None:
        delayed = self._delayed
        delayed_at = self._delayed_at
        while delayed and delayed_at.get(delayed[0][2]) != delayed[0][0]:
            heapq.heappop(delayed)  # superseded by an earlier time
        return delayed[0][0] if delayed else None

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # --- taking ---

    def get_nowait(self) -> K:
        """Take the next key: it is in flight until :meth:`done`.

        Raises:
            anyio.WouldBlock: no key is waiting.
            QueueShutDown: the queue was shut down (and, with ``drain``, is empty).
        """
        if self._delayed:
            self._promote()
        if self._queue:
            return self._take()
        # Draining, a key re-added while in flight is still to come (dirty, not queued).
        if self._shut_down and not self._dirty:
            raise QueueShutDown(f"work queue {self.name!r} is shut down")
        raise anyio.WouldBlock

    def _take(self) -> K:
        key = self._queue.popleft()
        now = self._now()
        waited = now - self._dirty.pop(key)
        # _Histogram.observe, inlined (the per-key path).
        latency = self._latency
        latency.total += waited
        if waited > latency.maximum:
            latency.maximum = waited
        latency.counts[bisect.bisect_left(_BOUNDS, waited)] += 1
        self._processing[key] = now
        return key

    async def get(self) -> K:
        """Wait for a key and take it: it is in flight until :meth:`done`.

        Cancelling a waiting ``get()`` loses nothing: the key stays queued. Like
        :meth:`asyncio.Queue.get`, it returns without yielding to the event loop when a
        key is waiting.

        Raises:
            QueueShutDown: the queue was shut down (and, with ``drain``, is empty).
        """
        while True:
            if self._delayed:
                self._promote()
            if self._queue:
                return self._take()
            if self._shut_down and not self._dirty:
                raise QueueShutDown(f"work queue {self.name!r} is shut down")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            ready = self._next_ready()
            try:
                if ready is None:
                    await waiter
                else:
                    # Also wake when the earliest delayed key is due.
                    with self._clock.move_on_at(ready):
                        await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken for a key it will not take: pass the wake on
                else:
                    self._forget_waiter(waiter)
                raise
            if not waiter.done() or waiter.cancelled():
                self._forget_waiter(waiter)

    def _forget_waiter(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def __aiter__(self) -> WorkQueue[K]:
        return self

    async def __anext__(self) -> K:
        """``async for key in queue``: :meth:`get` until the queue is shut down."""
        if self._queue and not self._delayed:
            return self._take()  # get()'s fast path, without a second coroutine
        try:
            return await self.get()
        except QueueShutDown:
            raise StopAsyncIteration from None

    def done(self, key: K) -> None:
        """Tell the queue a worker finished with ``key``; queue it again if it was re-added.

        Raises:
            InvalidOptionError: ``key`` is not in flight (never handed out, or done twice).
        """
        try:
            started = self._processing.pop(key)
        except KeyError:
            raise InvalidOptionError(
                f"done({key!r}): that key is not in flight in work queue {self.name!r}"
            ) from None
        took = self._now() - started
        work = self._work  # _Histogram.observe, inlined (the per-key path)
        work.total += took
        if took > work.maximum:
            work.maximum = took
        work.counts[bisect.bisect_left(_BOUNDS, took)] += 1
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()
        elif self._shut_down and not self._dirty:
            self._wake_all()  # drained: the waiting get()s end
        if self._idle_waiters and not self._processing and not self._queue:
            self._wake_idle()

    # --- stopping ---

    def shutdown(self, *, drain: bool = False) -> None:
        """Stop the queue: adds are ignored and :meth:`get` raises :class:`QueueShutDown`.

        Keys held back by a delay are dropped. Keys in flight stay in flight until their
        workers call :meth:`done` (wait for that with :meth:`wait_idle`).

        Args:
            drain: ``False`` (default): drop the waiting keys now. ``True``: keep handing
                out the waiting keys (and those re-added while in flight before the
                shutdown) until none is left, then raise :class:`QueueShutDown`.
        """
        if self._shut_down:
            if not drain and self._drain:
                self._drain = False
                self._drop_waiting()
            return
        self._shut_down = True
        self._drain = bool(drain)
        self._delayed.clear()
        self._delayed_at.clear()
        if not drain:
            self._drop_waiting()
        self._wake_all()
        if not self._processing and not self._queue:
            self._wake_idle()

    def _drop_waiting(self) -> None:
        self._queue.clear()
        self._dirty.clear()
        self._wake_all()
        if not self._processing:
            self._wake_idle()

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def idle(self) -> bool:
        """Return whether no key is waiting, held back by a delay, or in flight."""
        return not (self._queue or self._processing or self._delayed_at)

    async def wait_idle(self) -> None:
        """Wait until no key is waiting, held back by a delay, or in flight."""
        while not self.idle():
            if self._delayed_at and not (self._queue or self._processing):
                # Only delayed keys: they become work at their time.
                ready = self._next_ready()
                if ready is not None:
                    await self._clock.sleep_until(ready)
                self._promote()
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            try:
                await waiter
            finally:
                waiter.cancel()

    # --- counters ---

    def statistics(self) -> WorkQueueStatistics:
        """Return a snapshot of the queue's state and counters."""
        if self._delayed and not self._shut_down:
            self._promote()
        now = self._now()
        running = [now - started for started in self._processing.values()]
        return WorkQueueStatistics(
            name=self.name,
            depth=len(self._queue),
            in_flight=len(self._processing),
            delayed=len(self._delayed_at),
            adds=self._adds,
            deduplicated=self._deduplicated,
            retries=self._retries,
            processed=self._work.count,
            longest_running=max(running, default=0.0),
            unfinished_work=sum(running, 0.0),
            queue_latency=self._latency.snapshot(),
            work_duration=self._work.snapshot(),
            shut_down=self._shut_down,
        )
