"""Middlewares: async-stream transformers between an event source and a consumer.

A middleware is a callable ``middleware(source) -> AsyncIterator``: it takes the async
iterator of what comes before it (events, or batches once a :func:`batch` ran) and returns
the async iterator of what it passes on. Factories here return frozen values that are such
callables, so one value can serve many subscribers (each call builds fresh state).

Two families:

- **filters** (:func:`only`, :func:`where`, :func:`changed`): pull, test, pass on. Plain
  async iterators without tasks; they also filter the events inside a :class:`Batch`.
- **time-based stages** (:func:`batch`, :func:`rate_limit`, :func:`debounce`): they must
  wait for "the next item OR a deadline". Cancelling ``__anext__`` of an async generator
  kills the generator, so they never cancel a pull from upstream: each owns a *pump*, one
  asyncio task (started on the first ``__anext__``, ended by ``aclose()``) that pulls the
  upstream into a one-item slot. The stage waits on the slot's event under a clock deadline;
  cancelling that wait loses nothing, so the stages' own ``__anext__`` is cancellation-safe.
  A bare task is the price of the contract (a middleware is a plain function of an
  iterator, with no task group to run in); ``aclose()`` (or ``async with pipe(...)``)
  cancels and awaits it, and closes the upstream.

Coalescing (``batch(coalesce=True)``, ``rate_limit(coalesce=True)``, ``debounce``) keeps per
key the net effect of the events it holds, judged against what the consumer has seen,
which the first held event tells: a held run starting with ADDED is an object the
consumer never saw (ADDED ... DELETED collapses to nothing); a run starting with MODIFIED or
DELETED is an object the consumer saw, and its deletion is always delivered. The rule is
``_coalesce.Run``, the same one a subscriber's full buffer applies.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable, Iterator
from types import TracebackType
from typing import Any, Final

import anyio
from attrs import field, frozen

from ._clock import Clock, validate_clock
from ._coalesce import Run
from ._events import Event, EventType
from ._exceptions import CrwatchError, InvalidOptionError
from ._predicates import Predicate, generation_differs

__all__ = [
    "Batch",
    "Middleware",
    "Pipeline",
    "batch",
    "changed",
    "debounce",
    "generation_changed",
    "only",
    "pipe",
    "rate_limit",
    "where",
]

#: A middleware: takes the upstream async iterator, returns the downstream one.
Middleware = Callable[[AsyncIterator[Any]], AsyncIterator[Any]]

_ADDED: Final = EventType.ADDED
_MODIFIED: Final = EventType.MODIFIED
_DELETED: Final = EventType.DELETED


@frozen
class Batch:
    """Events delivered together by :func:`crwatch.batch`, in the order they happened.

    ``len(batch)``, ``for event in batch`` and ``batch[i]`` work as on the ``events``
    tuple. A batch is never empty.

    Attributes:
        events: the events, oldest first.
    """

    events: tuple[Event, ...]

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __getitem__(self, index: int) -> Event:
        return self.events[index]

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the batch's objects, each once, in order of first appearance."""
        return tuple(dict.fromkeys(event.key for event in self.events))


async def _aclose(iterator: object) -> None:
    """Close an iterator if it can be closed, even while the caller is being cancelled."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


# --- composition ---------------------------------------------------------------------------


class Pipeline:
    """The value of :func:`crwatch.pipe`: an async iterator over the last stage.

    Use it as an async context manager, or call :meth:`aclose`, to close every stage (the
    time-based ones own a task) and the source, last stage first.
    """

    __slots__ = ("_closed", "_stages")

    def __init__(self, source: AsyncIterable[Any], middlewares: tuple[Middleware, ...]) -> None:
        first = _as_iterator(source, "pipe() source")
        stages: list[AsyncIterator[Any]] = [first]
        for middleware in middlewares:
            if not callable(middleware):
                raise InvalidOptionError(
                    f"a middleware must be callable (upstream) -> async iterator, "
                    f"got {middleware!r}"
                )
            stages.append(_as_iterator(middleware(stages[-1]), f"middleware {middleware!r}"))
        self._stages = stages
        self._closed = False

    def __repr__(self) -> str:
        return f"<crwatch.Pipeline of {len(self._stages) - 1} middlewares>"

    def __aiter__(self) -> Pipeline:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        return await self._stages[-1].__anext__()

    async def aclose(self) -> None:
        """Close every stage, downstream first, then the source (if it has ``aclose``)."""
        if self._closed:
            return
        self._closed = True
        for stage in reversed(self._stages):
            await _aclose(stage)

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _as_iterator(value: object, what: str) -> AsyncIterator[Any]:
    if hasattr(value, "__anext__"):
        return value  # type: ignore[return-value]
    if hasattr(value, "__aiter__"):
        return value.__aiter__()  # type: ignore[no-any-return]
    raise InvalidOptionError(f"{what} must be an async iterator or iterable, got {value!r}")


def pipe(source: AsyncIterable[Any], *middlewares: Middleware) -> Pipeline:
    """Apply middlewares, in the order given, to any async iterator of events.

    ::

        async with crwatch.watch(client, specs) as events:
            async with crwatch.pipe(events, crwatch.generation_changed(),
                                    crwatch.batch(max_items=50, max_wait=0.5)) as batches:
                async for batch in batches:
                    ...

    An :class:`crwatch.Informer` subscriber does the same inside its own lane.

    Args:
        source: the upstream, for example the stream of :func:`crwatch.watch`.
        *middlewares: callables ``(upstream) -> async iterator``, such as the values of
            :func:`only`, :func:`batch`... Each is called once, now.

    Returns:
        A :class:`Pipeline`: iterate it; leave its ``async with`` (or ``aclose()`` it) to
        stop the stages' tasks and close the source.

    Raises:
        InvalidOptionError: the source is not async-iterable, a middleware is not callable
            or did not return an async iterator.
    """
    return Pipeline(source, middlewares)


# --- filters -------------------------------------------------------------------------------


class _Filter:
    """Pass on the events ``keep`` accepts; inside a Batch, keep the accepted events."""

    __slots__ = ("_keep", "_source", "_what")

    def __init__(
        self, source: AsyncIterator[Any], keep: Callable[[Event], bool], what: str
    ) -> None:
        self._source = source
        self._keep = keep
        self._what = what

    def __aiter__(self) -> _Filter:
        return self

    async def __anext__(self) -> Any:
        keep = self._keep
        source = self._source
        while True:
            item = await source.__anext__()
            if isinstance(item, Event):
                if keep(item):
                    return item
            elif isinstance(item, Batch):
                events = tuple(event for event in item.events if keep(event))
                if len(events) == len(item.events):
                    return item
                if events:
                    return Batch(events)
            else:
                raise TypeError(f"{self._what} filters Event and Batch items, got {item!r}")

    async def aclose(self) -> None:
        await _aclose(self._source)


def _event_types(types: tuple[EventType | str, ...]) -> frozenset[EventType]:
    if not types:
        raise InvalidOptionError("only() needs at least one event type")
    result = set()
    for value in types:
        try:
            result.add(EventType(value))
        except ValueError:
            raise InvalidOptionError(
                f"unknown event type {value!r}; use ADDED, MODIFIED or DELETED"
            ) from None
    return frozenset(result)


@frozen
class _Only:
    types: frozenset[EventType]

    def __call__(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        types = self.types
        return _Filter(source, lambda event: event.type in types, repr(self))

    def __repr__(self) -> str:
        names = ", ".join(repr(t.value) for t in EventType if t in self.types)
        return f"crwatch.only({names})"


def only(*types: EventType | str) -> Middleware:
    """Pass on only events of the given types: ``crwatch.only("ADDED", "MODIFIED")``.

    This is the explicit way to drop deletions; no other filter drops them unless its own
    function says so.

    Args:
        *types: :class:`crwatch.EventType` members or their names; at least one.

    Raises:
        InvalidOptionError: no type, or an unknown one.
    """
    return _Only(_event_types(types))


@frozen
class _Where:
    fn: Callable[[Event], object]

    def __call__(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        fn = self.fn
        return _Filter(source, lambda event: bool(fn(event)), repr(self))

    def __repr__(self) -> str:
        return f"crwatch.where({getattr(self.fn, '__qualname__', self.fn)!r})"


def where(fn: Callable[[Event], object]) -> Middleware:
    """Pass on the events for which ``fn(event)`` is true.

    ``fn`` sees every event, deletions included, so it decides about those too: test
    ``event.type`` if deletions should pass regardless. It filters events, it is not a
    selector: an object that stops matching gets no DELETED from it.

    Args:
        fn: a function of one :class:`crwatch.Event`; truthy keeps the event.

    Raises:
        InvalidOptionError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise InvalidOptionError(f"where() takes a function of an event, got {fn!r}")
    return _Where(fn)


class _ChangeFilter:
    """The state of one ``changed()`` stage: the last state passed on, per key."""

    __slots__ = ("_last", "_predicate")

    def __init__(self, predicate: Predicate) -> None:
        self._predicate = predicate
        self._last: dict[str, dict[str, Any]] = {}

    def __call__(self, event: Event) -> bool:
        if event.type is _DELETED:
            # kube-rs #1768: a predicate filter must never swallow a deletion.
            self._last.pop(event.key, None)
            return True
        previous = self._last.get(event.key)
        if previous is None or event.type is _ADDED or self._predicate(previous, event.object):
            self._last[event.key] = event.object
            return True
        return False


@frozen
class _Changed:
    predicate: Predicate

    def __call__(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return _Filter(source, _ChangeFilter(self.predicate), repr(self))

    def __repr__(self) -> str:
        return f"crwatch.changed({getattr(self.predicate, '__qualname__', self.predicate)})"


def changed(predicate: Predicate) -> Middleware:
    """Pass on MODIFIED events only when ``predicate(old, new)`` says the change matters.

    ``old`` is the last state of that object this stage passed on (not the state just
    before, so changes it held back add up), ``new`` the event's object. ADDED events and
    events for objects the stage has not passed on yet always pass; DELETED events always
    pass (use :func:`only` to drop them). The stage keeps one object reference per live
    key it passed on.

    Args:
        predicate: a pure function ``(old, new) -> bool``, such as
            :func:`crwatch.generation_differs`, or a combination with
            :func:`crwatch.any_of`, :func:`crwatch.all_of`, :func:`crwatch.not_`.

    Raises:
        InvalidOptionError: ``predicate`` is not callable.
    """
    if not callable(predicate):
        raise InvalidOptionError(
            f"changed() takes a predicate (old, new) -> bool, got {predicate!r}"
        )
    return _Changed(predicate)


def generation_changed() -> Middleware:
    """Pass on spec changes only: ``changed(crwatch.generation_differs)``.

    Status-only and metadata-only updates are dropped; ADDED and DELETED always pass.
    """
    return _Changed(generation_differs)


def _event_or_type_error(item: object, what: str) -> Event:
    if not isinstance(item, Event):
        raise TypeError(f"{what} works on Event items (put it before batch()), got {item!r}")
    return item


# --- the pump and the time-based stages ----------------------------------------------------

_EMPTY: Any = object()
_END: Any = object()


class _Pump:
    """Pulls an upstream iterator in its own task into a one-item slot.

    The upstream's ``__anext__`` is never cancelled except by :meth:`aclose`, so a stage
    can wait for "the next item OR a deadline" without killing an async-generator upstream.
    At most one item is held here (it counts toward the stage's bound).
    """

    __slots__ = ("_closed", "_name", "_outcome", "_ready", "_slot", "_source", "_taken", "_task")

    def __init__(self, source: AsyncIterator[Any], name: str) -> None:
        self._source = source
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._slot: collections.deque[Any] = collections.deque()
        self._outcome: Any = None  # None while running, then _END or the upstream's error
        self._ready: anyio.Event | None = None
        self._taken: anyio.Event | None = None
        self._closed = False

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._ready = anyio.Event()
            self._taken = anyio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        source = self._source
        try:
            while True:
                try:
                    item = await source.__anext__()
                except StopAsyncIteration:
                    self._outcome = _END
                    break
                self._slot.append(item)
                assert self._ready is not None
                assert self._taken is not None
                self._ready.set()
                await self._taken.wait()
                self._taken = anyio.Event()
        except Exception as exc:
            self._outcome = exc
        finally:
            if self._outcome is None:  # cancelled: by aclose(), or by the loop shutting down
                self._outcome = CrwatchError(f"the upstream of {self._name} was cancelled")
            if self._ready is not None:
                self._ready.set()
            await _aclose(source)

    def poll(self) -> Any:
        """Return the item in the slot, or ``_EMPTY``."""
        if not self._slot:
            return _EMPTY
        item = self._slot.popleft()
        self._ready = anyio.Event()
        assert self._taken is not None
        self._taken.set()
        return item

    @property
    def outcome(self) -> Any:
        """``None`` while the upstream runs; then ``_END`` or the exception it raised."""
        return self._outcome if not self._slot else None

    async def wait(self) -> None:
        """Wait until :meth:`poll` has an item or :attr:`outcome` is set (cancel-safe)."""
        assert self._ready is not None
        await self._ready.wait()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is None:  # never started: the upstream was never iterated here
            await _aclose(self._source)
            return
        task.cancel()  # its finally closes the upstream, from the task that iterated it
        with anyio.CancelScope(shield=True):
            await asyncio.wait({task})


class _TimedStage:
    """The driver of a time-based stage; subclasses hold the state and the rules.

    Subclass hooks (all synchronous, given the clock's ``now``):

    - ``_on_item(item, now)``: take one upstream item.
    - ``_due(now)``: move what is due into ``self._out``.
    - ``_deadline()``: the next time something may become due, or ``None``.
    - ``_accepting()``: whether to pull more (``False`` = backpressure).
    - ``_on_end(now)``: the upstream ended; flush what need not wait.
    - ``_pending()``: whether anything is still held.
    """

    def __init__(self, source: AsyncIterator[Any], clock: Clock, name: str) -> None:
        self._pump = _Pump(source, name)
        self._clock = clock
        self._out: collections.deque[Any] = collections.deque()
        self._upstream_done = False
        self._finished = False

    def __aiter__(self) -> _TimedStage:
        return self

    async def __anext__(self) -> Any:
        if self._finished:
            raise StopAsyncIteration
        out = self._out
        clock = self._clock
        pump = self._pump
        pump.start()
        while True:
            if out:
                return out.popleft()
            now = clock.now()
            self._due(now)
            if out:
                continue
            if self._upstream_done:
                if not self._pending():
                    self._finished = True
                    outcome = pump.outcome
                    if isinstance(outcome, BaseException):
                        raise outcome
                    raise StopAsyncIteration
                await self._sleep_until_deadline()
                continue
            if not self._accepting():
                await self._sleep_until_deadline()
                continue
            item = pump.poll()
            if item is not _EMPTY:
                self._on_item(item, now)
                continue
            if pump.outcome is not None:
                self._upstream_done = True
                self._on_end(now)
                continue
            deadline = self._deadline()
            if deadline is None:
                await pump.wait()
            else:
                with clock.move_on_at(deadline):
                    await pump.wait()

    async def _sleep_until_deadline(self) -> None:
        deadline = self._deadline()
        assert deadline is not None, "a stage holding items must have a deadline"
        await self._clock.sleep_until(deadline)

    async def aclose(self) -> None:
        """Stop the pump task and close the upstream."""
        self._finished = True
        await self._pump.aclose()

    # hooks
    def _on_item(self, item: Any, now: float) -> None:
        raise NotImplementedError

    def _due(self, now: float) -> None:
        raise NotImplementedError

    def _deadline(self) -> float | None:
        raise NotImplementedError

    def _accepting(self) -> bool:
        return True

    def _on_end(self, now: float) -> None:
        raise NotImplementedError

    def _pending(self) -> bool:
        raise NotImplementedError


class _Batcher(_TimedStage):
    def __init__(
        self,
        source: AsyncIterator[Any],
        clock: Clock,
        max_items: int,
        max_wait: float | None,
        coalesce: bool,
    ) -> None:
        super().__init__(source, clock, "crwatch.batch")
        self._max_items = max_items
        self._max_wait = max_wait
        self._coalesce = coalesce
        self._items: list[Any] = []
        self._by_key: dict[str, Run] = {}
        self._count = 0  # events the next batch would hold
        self._window_end: float | None = None

    def _on_item(self, item: Any, now: float) -> None:
        if self._coalesce:
            event = _event_or_type_error(item, "batch(coalesce=True)")
            pending = self._by_key.get(event.key)
            if pending is None:
                pending = self._by_key[event.key] = Run(event)
                self._count += 1
            else:
                before = pending.size
                pending.add(event)
                self._count += pending.size - before
        else:
            self._items.append(item)
            self._count += 1
        if self._window_end is None and self._max_wait is not None:
            self._window_end = now + self._max_wait
        if self._count >= self._max_items:
            self._flush()

    def _flush(self) -> None:
        if self._coalesce:
            events = tuple(e for pending in self._by_key.values() for e in pending.outputs())
            self._by_key = {}
        else:
            events = tuple(self._items)
            self._items = []
        self._count = 0
        self._window_end = None
        if events:
            self._out.append(Batch(events))

    def _due(self, now: float) -> None:
        if self._window_end is not None and now >= self._window_end:
            self._flush()

    def _deadline(self) -> float | None:
        return self._window_end

    def _on_end(self, now: float) -> None:
        self._flush()

    def _pending(self) -> bool:
        return bool(self._items or self._by_key)


class _Bucket:
    """A token bucket's level at a time; rate and burst belong to the stage."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp

    def level(self, now: float, rate: float, burst: float) -> float:
        return min(burst, self.tokens + (now - self.stamp) * rate)

    def available_at(self, now: float, rate: float, burst: float) -> float:
        missing = 1.0 - self.level(now, rate, burst)
        return now if missing <= 1e-9 else now + missing / rate

    def take(self, now: float, rate: float, burst: float) -> None:
        self.tokens = self.level(now, rate, burst) - 1.0
        self.stamp = now


_SHARED: Final = object()  # the bucket / queue key of items that are not events


class _RateLimiter(_TimedStage):
    """Token bucket at delivery: an item leaves only when its bucket holds a token."""

    def __init__(
        self,
        source: AsyncIterator[Any],
        clock: Clock,
        rate: float,
        burst: int,
        per_key: bool,
        coalesce: bool,
        max_pending: int,
    ) -> None:
        super().__init__(source, clock, "crwatch.rate_limit")
        self._max_pending = max_pending
        self._rate = rate
        self._burst = float(burst)
        self._per_key = per_key
        self._coalesce = coalesce
        self._shared: _Bucket | None = None
        self._buckets: dict[Hashable, _Bucket] = {}
        # Held items per key (one Run per key when coalescing), and one heap entry
        # (time its bucket has a token, sequence, key) per key that holds something.
        self._queues: dict[Hashable, collections.deque[Any]] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self._held = 0  # entries held: items, or merged runs when coalescing

    def _bucket(self, key: Hashable, now: float) -> _Bucket:
        if not self._per_key:
            if self._shared is None:
                self._shared = _Bucket(self._burst, now)
            return self._shared
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        return bucket

    def _accepting(self) -> bool:
        if not self._per_key and not self._coalesce:
            return self._held == 0  # one queue, in order: holding more would help no one
        return self._held < self._max_pending

    def _on_item(self, item: Any, now: float) -> None:
        key: Hashable = item.key if isinstance(item, Event) else _SHARED
        queue = self._queues.get(key)
        if self._coalesce and isinstance(item, Event) and queue:
            queue[-1].add(item)  # merge into the held run: latest state wins
            return
        entry = Run(item) if self._coalesce and isinstance(item, Event) else item
        if queue is None:
            queue = self._queues[key] = collections.deque()
            bucket = self._bucket(key, now)
            ready = bucket.available_at(now, self._rate, self._burst)
            heapq.heappush(self._heap, (ready, next(self._seq), key))
        queue.append(entry)
        self._held += 1

    def _due(self, now: float) -> None:
        heap = self._heap
        rate, burst = self._rate, self._burst
        while heap and heap[0][0] <= now:
            _, seq, key = heap[0]
            bucket = self._bucket(key, now)
            ready = bucket.available_at(now, rate, burst)
            if ready > now:  # the shared bucket was drained since: wait, keep the place
                heapq.heapreplace(heap, (ready, seq, key))
                continue
            queue = self._queues[key]
            entry = queue[0]
            delivered: Any = _EMPTY
            if isinstance(entry, Run):
                outputs = entry.outputs()
                if len(outputs) == 2:  # deleted and created again: the DELETED first
                    delivered = outputs[0]
                    queue[0] = Run(outputs[1])
                else:
                    if outputs:
                        delivered = outputs[0]
                    self._pop(queue)
            else:
                delivered = entry
                self._pop(queue)
            if delivered is not _EMPTY:
                bucket.take(now, rate, burst)
                self._out.append(delivered)
            if queue:
                ready = bucket.available_at(now, rate, burst)
                heapq.heapreplace(heap, (ready, next(self._seq), key))
            else:
                heapq.heappop(heap)
                del self._queues[key]
            if delivered is not _EMPTY:
                self._prune(now)
                return

    def _pop(self, queue: collections.deque[Any]) -> None:
        queue.popleft()
        self._held -= 1

    def _prune(self, now: float) -> None:
        buckets = self._buckets
        if len(buckets) > 1024 and len(buckets) > 2 * len(self._queues):
            rate, burst = self._rate, self._burst
            for key in [
                k
                for k, b in buckets.items()
                if k not in self._queues and b.level(now, rate, burst) >= burst
            ]:
                del buckets[key]

    def _deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def _on_end(self, now: float) -> None:
        pass  # held items still leave at the rate

    def _pending(self) -> bool:
        return bool(self._heap)


class _Held:
    """A debounced key: its merged run, when it started and when it last changed."""

    __slots__ = ("first_at", "last_at", "run")

    def __init__(self, run: Run, now: float) -> None:
        self.run = run
        self.first_at = now
        self.last_at = now


class _Debouncer(_TimedStage):
    def __init__(
        self, source: AsyncIterator[Any], clock: Clock, quiet: float, max_wait: float | None
    ) -> None:
        super().__init__(source, clock, "crwatch.debounce")
        self._quiet = quiet
        self._max_wait = max_wait
        self._entries: dict[str, _Held] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def _when(self, first_at: float, last_at: float) -> float:
        due = last_at + self._quiet
        if self._max_wait is not None:
            due = min(due, first_at + self._max_wait)
        return due

    def _on_item(self, item: Any, now: float) -> None:
        event = _event_or_type_error(item, "debounce()")
        held = self._entries.get(event.key)
        if held is None:
            self._entries[event.key] = _Held(Run(event), now)
            heapq.heappush(self._heap, (self._when(now, now), next(self._seq), event.key))
        else:
            held.run.add(event)
            held.last_at = now  # its heap entry is now early: _due moves it on

    def _due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, key = heap[0]
            held = self._entries[key]
            due = self._when(held.first_at, held.last_at)
            if due > now:
                heapq.heapreplace(heap, (due, seq, key))
                continue
            heapq.heappop(heap)
            del self._entries[key]
            self._out.extend(held.run.outputs())

    def _deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def _on_end(self, now: float) -> None:
        for _, _, key in sorted(self._heap):
            self._out.extend(self._entries[key].run.outputs())
        self._entries.clear()
        self._heap.clear()

    def _pending(self) -> bool:
        return bool(self._entries)


# --- time-based factories ------------------------------------------------------------------


def _positive_number(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidOptionError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{name} must be True or False, got {value!r}")
    return value


@frozen
class _BatchStage:
    max_items: int
    max_wait: float | None
    coalesce: bool
    clock: Clock = field(repr=False)

    def __call__(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return _Batcher(source, self.clock, self.max_items, self.max_wait, self.coalesce)


def batch(
    *,
    max_items: int,
    max_wait: float | None = None,
    coalesce: bool = False,
    clock: Clock | None = None,
) -> Middleware:
    """Group events into :class:`crwatch.Batch` values, by count and by time window.

    A window opens at the first item after a delivery; the batch is delivered when it
    holds ``max_items`` events or ``max_wait`` seconds after the window opened, whichever
    comes first, and at once when the upstream ends.

    With ``coalesce=True`` a window keeps the net effect per object key (latest state
    wins, ``max_items`` counts the events that result):

    ========================================  ==============================================
    events for one key inside the window      delivered
    ========================================  ==============================================
    ADDED, MODIFIED...                        ADDED with the latest state
    ADDED, ..., DELETED                       nothing (the consumer never saw the object)
    MODIFIED, MODIFIED...                     MODIFIED with the latest state, ``old`` the
                                              state before the window
    MODIFIED..., DELETED                      DELETED (never dropped)
    DELETED, ADDED, ...                       DELETED, then ADDED with the latest state
    ========================================  ==============================================

    Keys appear in the order of their first event in the window.

    Bound: holds at most ``max_items`` events plus one pulled item. Runs in the consumer's
    lane: waiting never blocks the upstream or other subscribers.

    Args:
        max_items: deliver as soon as a batch holds this many events (>= 1).
        max_wait: seconds after the first event before a partial batch is delivered;
            ``None`` (default): only full batches, and the rest when the upstream ends.
        coalesce: keep one net event per key, as above. Default ``False``: every event.
        clock: the :class:`crwatch.Clock` to use; default anyio's.

    Raises:
        InvalidOptionError: an option is out of range or of the wrong type.
    """
    return _BatchStage(
        _positive_int("max_items", max_items),
        None if max_wait is None else _positive_number("max_wait", max_wait),
        _flag("coalesce", coalesce),
        validate_clock(clock),
    )


@frozen
class _RateLimitStage:
    per_second: float
    burst: int
    per_key: bool
    coalesce: bool
    max_pending: int
    clock: Clock = field(repr=False)

    def __call__(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return _RateLimiter(
            source,
            self.clock,
            self.per_second,
            self.burst,
            self.per_key,
            self.coalesce,
            self.max_pending,
        )


def rate_limit(
    *,
    per_second: float,
    burst: int = 1,
    per_key: bool = False,
    coalesce: bool = False,
    max_pending: int = 1024,
    clock: Clock | None = None,
) -> Middleware:
    """Deliver at most ``per_second`` items per second on average, ``burst`` at once.

    A token bucket holding up to ``burst`` tokens, refilled at ``per_second``; each
    delivered item (an event, or a whole :class:`crwatch.Batch`) takes a token at the
    moment it is delivered, so over any interval of ``t`` seconds at most
    ``per_second * t + burst`` items leave. Excess items are delayed, never dropped.

    - ``per_key=True``: one bucket per object key (batches share one), so a busy object
      does not hold others back; items of one key keep their order.
    - ``coalesce=True``: while an event waits for its token, later events for the same key
      merge into it with the rules of :func:`batch` (latest state wins, a deletion of a seen
      object always goes out), so the consumer gets the settled state, not a backlog.

    Bound: an overall limit without coalescing holds one item (they leave in order, so
    holding more would help no one). With ``per_key`` or ``coalesce`` it keeps pulling while
    items wait, so other keys pass a throttled one and waiting events can merge, up to
    ``max_pending`` held entries (items, or merged runs of one key each); then it stops
    pulling and the subscriber's buffer fills. Plus one pulled item in every case.

    Args:
        per_second: the refill rate, in items per second (> 0).
        burst: the bucket size: items that may leave back to back (>= 1). Default 1.
        per_key: one bucket per key instead of one overall. Default ``False``.
        coalesce: merge the waiting events of one key. Default ``False``.
        max_pending: the most entries held while waiting (>= 1), with ``per_key`` or
            ``coalesce``. Default 1024.
        clock: the :class:`crwatch.Clock` to use; default anyio's.

    Raises:
        InvalidOptionError: an option is out of range or of the wrong type.
    """
    return _RateLimitStage(
        _positive_number("per_second", per_second),
        _positive_int("burst", burst),
        _flag("per_key", per_key),
        _flag("coalesce", coalesce),
        _positive_int("max_pending", max_pending),
        validate_clock(clock),
    )


@frozen
class _DebounceStage:
    quiet: float
    max_wait: float | None
    clock: Clock = field(repr=False)

    def __call__(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return _Debouncer(source, self.clock, self.quiet, self.max_wait)


def debounce(
    *, quiet: float, max_wait: float | None = None, clock: Clock | None = None
) -> Middleware:
    """Deliver an object's change once it has been quiet for ``quiet`` seconds.

    For reconcilers that want the settled state: the events of one key are merged with the
    rules of :func:`batch` (latest state wins; a deletion of an object the consumer saw is
    always delivered, after the same quiet period) and go out ``quiet`` seconds after that
    key's last event, or ``max_wait`` seconds after its first one if changes never stop.
    Keys are independent; what is held is delivered at once when the upstream ends.

    Bound: one merged run per key (at most the number of objects) plus one pulled item.

    Args:
        quiet: seconds without an event for a key before it is delivered (> 0).
        max_wait: the longest a key is held, in seconds; ``None`` (default): no limit.
        clock: the :class:`crwatch.Clock` to use; default anyio's.

    Raises:
        InvalidOptionError: an option is out of range or of the wrong type.
    """
    return _DebounceStage(
        _positive_number("quiet", quiet),
        None if max_wait is None else _positive_number("max_wait", max_wait),
        validate_clock(clock),
    )
