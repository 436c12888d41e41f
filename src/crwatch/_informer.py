"""``Informer``: one list/watch, one indexed cache, many isolated subscribers.

The informer owns one list/watch driver (``_core.Core``, the same loop as ``watch()``)
whose delivery is a ``_lanes.FanOut``: every change is applied to the cache and its indexes
first, then appended synchronously to each subscriber's ``_lanes.Lane``, a bounded buffer
with a declared overflow policy (see ``_lanes``). The driver never awaits a subscriber, so a
slow subscriber delays neither the cache nor the others.

Each callback subscriber has its own task (in the informer's task group) that pulls from its
lane, through its middlewares, and calls the callback; a stream subscriber pulls from its lane
in the consumer's task (or, with middlewares, through a pump task owned by the stream's own
``async with``). The one exception: a plain sync callback (no middlewares) that has caught up
is called by the driver itself as each change is applied (``Lane.direct``), which saves a task
switch per burst and lets each event die young; a sync callback blocks the event loop
wherever it runs, so this takes nothing from the others.

Middleware hook (the contract with ``_middleware``): a middleware is an async-stream
transformer ``Callable[[AsyncIterator[Event]], AsyncIterator[Any]]``. The middlewares given
to ``subscribe``/``stream`` are composed in order over the lane's event iterator (the first
receives the lane, the second the first's output...), inside the subscriber's own task,
after the lane's bounded buffer; the callback (or the stream's consumer) receives whatever
comes out of the last one (an ``Event``, a batch...). See :func:`_compose`.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import field, frozen

from ._backoff import Backoff
from ._client import Client
from ._core import Core, Delivery, Transform
from ._events import Event
from ._exceptions import CrwatchError, InvalidOptionError, SyncTimeout
from ._gc import GcFreeze
from ._lanes import OVERFLOWS, FanOut, Lane, Overflow
from ._multinamespace import Members, NamespacesStore
from ._options import CacheMode, ListWatchOptions, MiB, target
from ._resource import Resource
from ._store import IndexFunc, Store

__all__ = [
    "Informer",
    "InformerStatistics",
    "InformerStream",
    "Middleware",
    "NamespaceStatistics",
    "SubscriberStatistics",
    "Subscription",
    "drop_managed_fields",
]

log = logging.getLogger("crwatch")

#: An async-stream transformer applied in a subscriber's lane (see the module docstring).
Middleware: TypeAlias = Callable[[AsyncIterator[Any]], AsyncIterator[Any]]
#: A subscriber callback: called once per item (an Event unless a middleware changed it).
Callback: TypeAlias = Callable[[Any], "Awaitable[object] | object"]
#: ``on_error(subscription, error)``: told about every subscriber failure.
ErrorHook: TypeAlias = Callable[["Subscription", BaseException], object]

_ERROR_POLICIES: Final = ("continue", "unsubscribe", "stop")
_counter = itertools.count(1)


def drop_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop ``metadata.managedFields`` from ``obj`` and return it: a ``transform=`` for caches.

    Server-side apply bookkeeping is often a third of an object's size and rarely read by
    controllers. The object is changed in place (the informer passes freshly parsed objects
    that nothing else holds) and returned.
    """
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


@frozen
class SubscriberStatistics:
    """Counters of one subscriber, in :attr:`InformerStatistics.subscribers`.

    Attributes:
        name: the subscriber's name.
        buffer_size: its buffer size.
        overflow: its overflow policy (``"wait"``, ``"coalesce"`` or ``"fail"``).
        depth: events and pending keys not yet taken by the subscriber.
        delivered: events taken by the subscriber (before its middlewares).
        coalesced: intermediate states skipped because the buffer was full (folded into
            the key's newest state, or a create and delete both skipped).
        dropped: events discarded when the subscriber failed.
        errors: errors raised by the callback or the middlewares.
        closed: whether the subscriber has stopped receiving events.
        last_error: the subscriber's most recent error, if any.
    """

    name: str
    buffer_size: int
    overflow: str
    depth: int
    delivered: int
    coalesced: int
    dropped: int
    errors: int
    closed: bool
    last_error: BaseException | None = field(eq=False)


@frozen
class NamespaceStatistics:
    """The list/watch counters of one namespace, in :attr:`InformerStatistics.namespaces`.

    An informer runs one list/watch per namespace of ``namespaces=``, else one in all. The
    fields mean what those of :class:`InformerStatistics` mean, for this list/watch only.

    Attributes:
        namespace: the namespace watched, or ``None`` for all namespaces (and for
            cluster-scoped resources).
        objects: objects of this namespace in the cache.
        synced: whether this namespace's initial list is in the cache.
        resource_version: the last resourceVersion this list/watch has seen.
        events: changes it applied.
        lists: complete lists it applied.
        relists: its lists after the first.
        watches: watch requests it opened.
        reconnects: its watch requests after the first.
        errors: its failed requests.
        stalls: its watches dropped for silence.
        malformed_lines: its stream lines skipped as malformed.
        oversized_events: its stream lines skipped as too large.
        last_error: its most recent failure, if any.
        last_error_time: when that happened (``time.time()``), or ``None``.
        seconds_since_last_byte: seconds since its server connection last sent anything.
    """

    namespace: str | None
    objects: int
    synced: bool
    resource_version: str
    events: int
    lists: int
    relists: int
    watches: int
    reconnects: int
    errors: int
    stalls: int
    malformed_lines: int
    oversized_events: int
    last_error: BaseException | None = field(eq=False)
    last_error_time: float | None
    seconds_since_last_byte: float | None


@frozen
class InformerStatistics:
    """A snapshot of an informer's state, from :meth:`Informer.statistics`.

    Attributes:
        objects: objects in the cache.
        synced: whether the initial state is in the cache.
        resource_version: the last resourceVersion the cache has seen (``""`` before sync).
        events: changes applied to the cache and handed to the subscribers.
        lists: complete lists applied (the initial one and the relists).
        relists: lists after the initial one (after a 410, for example).
        watches: watch requests opened (including streaming lists).
        reconnects: watch requests after the first one.
        errors: failed requests (each followed by a retry, a relist or the end).
        stalls: watches dropped because no byte arrived for ``stall_timeout``.
        last_error: the most recent list/watch failure, if any.
        last_error_time: when it happened (``time.time()``), or ``None``.
        seconds_since_last_byte: seconds since the server last sent anything, or ``None``.
        subscribers: one record per subscriber, including those an error ended
            (``closed``, with ``last_error``); not those unsubscribed or left.
        malformed_lines: stream lines skipped because they were not watch events, or their
            object lacked a name, a resourceVersion or a namespace fitting the watch (each
            one is logged, and a relist repairs what it may have carried).
        oversized_events: stream lines skipped because they exceeded ``max_event_bytes``.
        events_by_type: ``events`` by type: ``{"ADDED": n, "MODIFIED": n, "DELETED": n}``.
        relists_by_reason: ``relists`` by what caused them: the failure's class name
            (``"ExpiredError"`` for a 410) or ``"closed"``.
        reconnects_by_reason: ``reconnects`` by what caused them: the failure's class name
            (``"StallTimeout"``, ``"TransportError"``, ...) or ``"closed"`` (the server
            ended the watch, as it does at its timeout).
        last_list_seconds: how long the last complete list took (from its first request,
            retries included), or ``None``.
        last_watch_seconds: how long the last watch that ended was open, or ``None``.
        namespaces: one record per list/watch: one per namespace of ``namespaces=``
            (sorted), else a single one. With several, the counters above are their sums,
            ``synced`` holds once every namespace's initial list is in,
            ``resource_version`` is the lowest of theirs (``""`` until all have synced:
            every namespace has seen at least that version), ``last_error`` is the most
            recent and ``seconds_since_last_byte`` the longest (the quietest connection,
            the one a stall alert is about); the by-type and by-reason counts are summed,
            ``last_list_seconds`` is the longest and ``last_watch_seconds`` the shortest.
    """

    objects: int
    synced: bool
    resource_version: str
    events: int
    lists: int
    relists: int
    watches: int
    reconnects: int
    errors: int
    stalls: int
    last_error: BaseException | None = field(eq=False)
    last_error_time: float | None
    seconds_since_last_byte: float | None
    subscribers: tuple[SubscriberStatistics, ...]
    malformed_lines: int = 0
    oversized_events: int = 0
    events_by_type: Mapping[str, int] = field(factory=dict)
    relists_by_reason: Mapping[str, int] = field(factory=dict)
    reconnects_by_reason: Mapping[str, int] = field(factory=dict)
    last_list_seconds: float | None = None
    last_watch_seconds: float | None = None
    namespaces: tuple[NamespaceStatistics, ...] = ()


def _namespace_statistics(core: Core, now: float) -> NamespaceStatistics:
    c = core.counters
    return NamespaceStatistics(
        namespace=core.options.namespace,
        objects=len(core.cache),
        synced=core.synced_now(),
        resource_version=core.resource_version,
        events=c.events,
        lists=c.lists,
        relists=max(0, c.lists - 1),
        watches=c.watches,
        reconnects=max(0, c.watches - 1),
        errors=c.errors,
        stalls=c.stalls,
        malformed_lines=c.malformed_lines,
        oversized_events=c.oversized_events,
        last_error=c.last_error,
        last_error_time=c.last_error_at,
        seconds_since_last_byte=None if c.last_byte_at is None else now - c.last_byte_at,
    )


def _merged_snapshots(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge the namespaces' by-type, by-reason and duration figures into one record's.

    Counts add up; the list duration is the longest (the slowest namespace), the watch
    duration the shortest (the namespace whose watches are cut soonest).
    """
    if len(snapshots) == 1:
        return snapshots[0]
    merged: dict[str, Any] = {}
    for name in ("events_by_type", "relists_by_reason", "reconnects_by_reason"):
        total: dict[str, int] = {}
        for snapshot in snapshots:
            for key, n in snapshot[name].items():
                total[key] = total.get(key, 0) + n
        merged[name] = total
    lists = [x["last_list_seconds"] for x in snapshots if x["last_list_seconds"] is not None]
    watches = [x["last_watch_seconds"] for x in snapshots if x["last_watch_seconds"] is not None]
    merged["last_list_seconds"] = max(lists, default=None)
    merged["last_watch_seconds"] = min(watches, default=None)
    return merged


def _lowest_version(versions: Iterable[str]) -> str:
    """Return the lowest resourceVersion (as integers), or ``""`` if one is unknown."""
    lowest: tuple[int, str] | None = None
    for rv in versions:
        if not rv.isdigit():
            return ""
        if lowest is None or int(rv) < lowest[0]:
            lowest = (int(rv), rv)
    return "" if lowest is None else lowest[1]


def _most_recent_error(records: Sequence[NamespaceStatistics]) -> NamespaceStatistics | None:
    failed = [r for r in records if r.last_error is not None]
    # A skipped line records an error without a time: it counts as older than timed ones.
    return max(failed, key=lambda r: r.last_error_time or 0.0, default=None)


def _compose(source: AsyncIterator[Event], middlewares: Sequence[Middleware]) -> AsyncIterator[Any]:
    """Apply the middlewares in order over a lane: the hook point for ``_middleware``."""
    stream: AsyncIterator[Any] = source
    for middleware in middlewares:
        stream = middleware(stream)
    return stream


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        # Shielded: the subscriber is usually being cancelled, and the generators' own
        # cleanup must still run; bounded, so a middleware stuck in its cleanup cannot hang.
        with anyio.move_on_after(5, shield=True):
            await aclose()


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine (an ``async def``, also behind a partial)."""
    if inspect.iscoroutinefunction(fn):
        return True
    # An instance whose class defines ``async def __call__``, looked up along the MRO and
    # not in the class's own __dict__ only: a subclass inherits ``__call__``.
    call = next(
        (c.__dict__["__call__"] for c in type(fn).__mro__ if "__call__" in c.__dict__), None
    )
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def _check_subscriber(
    middlewares: tuple[Middleware, ...], buffer_size: int, overflow: str, name: str | None
) -> None:
    for middleware in middlewares:
        if not callable(middleware):
            raise InvalidOptionError(f"middlewares must be callables, got {middleware!r}")
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise InvalidOptionError(f"buffer_size must be an int >= 1, got {buffer_size!r}")
    if overflow not in OVERFLOWS:
        raise InvalidOptionError(
            f"overflow must be one of {', '.join(map(repr, OVERFLOWS))}, got {overflow!r}"
        )
    if name is not None and not isinstance(name, str):
        raise InvalidOptionError(f"name must be a string or None, got {name!r}")


class Subscription:
    """A subscriber of an :class:`Informer`: a callback, or a stream.

    Returned by :meth:`Informer.subscribe` (and the base of :class:`InformerStream`); use it
    to read the subscriber's counters or to unsubscribe.
    """

    __slots__ = (
        "_awaiting",
        "_errors",
        "_failed",
        "_fn",
        "_informer",
        "_lane",
        "_last_error",
        "_middlewares",
        "name",
    )

    def __init__(
        self,
        informer: Informer,
        middlewares: tuple[Middleware, ...],
        fn: Callback | None = None,
        *,
        name: str,
        buffer_size: int,
        overflow: Overflow,
    ) -> None:
        # The lane (the subscriber's buffer) is private: built here from public options so
        # that no private type shows in this constructor's signature.
        lane = Lane(name, buffer_size, overflow)
        self._informer = informer
        self._lane = lane
        self._middlewares = middlewares
        self._errors = 0
        self._last_error: BaseException | None = None
        self._fn = fn  # a callback whose task has not started yet
        self._failed = False  # ended by an error: kept in the informer's statistics
        # What a callback called directly returned to be awaited (see ``_direct``).
        self._awaiting: Awaitable[Any] | None = None
        #: The subscriber's name (in logs, errors and statistics).
        self.name: str = lane.name

    def __repr__(self) -> str:
        return f"<crwatch.{type(self).__name__} {self.name!r} depth={self._lane.depth}>"

    def statistics(self) -> SubscriberStatistics:
        """Return this subscriber's counters."""
        lane = self._lane
        return SubscriberStatistics(
            name=self.name,
            buffer_size=lane.size,
            overflow=lane.overflow,
            depth=lane.depth,
            delivered=lane.delivered,
            coalesced=lane.coalesced,
            dropped=lane.dropped,
            errors=self._errors,
            closed=lane.closed,
            last_error=self._last_error,
        )

    def unsubscribe(self) -> None:
        """Stop delivering to this subscriber; events not yet delivered are dropped."""
        self._end()
        self._informer._forget(self)

    def _end(self) -> None:
        self._informer._detach(self._lane)
        self._lane.discard()

    def _start(self, task_group: TaskGroup) -> None:
        """Start the callback's task in the informer's task group (streams have none)."""
        fn, self._fn = self._fn, None
        if fn is not None:
            task_group.start_soon(self._deliver, fn, name=f"crwatch.sub {self.name}")

    def _failure(self, error: BaseException, *, ended: bool) -> bool:
        """Record and report an error of this subscriber; return whether it stops."""
        self._errors += 1
        self._last_error = error
        policy = self._informer._report(self, error)
        if policy == "stop":
            return True
        if ended or policy == "unsubscribe":
            self._failed = True
            return True
        return False

    async def _deliver(self, fn: Callback) -> None:
        """Run the callback's task: take from the lane (through the middlewares), call ``fn``."""
        lane = self._lane
        chain = _compose(lane, self._middlewares)
        try:
            with anyio.CancelScope() as scope:
                # A lane that fails (overflow="fail") stops its callback even mid-call.
                lane.on_fail = scope.cancel
                if lane.error is not None and lane.closed:
                    scope.cancel()
                direct = not self._middlewares
                if direct and not _is_async_callable(fn):
                    lane.direct = self._direct(fn)
                while True:
                    awaiting = self._awaiting
                    if awaiting is not None:
                        self._awaiting = None
                        try:
                            await awaiting
                        except anyio.get_cancelled_exc_class():
                            raise
                        except Exception as exc:
                            if self._failure(exc, ended=False):
                                return
                        continue
                    if direct:
                        # The backlog of a plain callback: no coroutine per event.
                        try:
                            item: Any = lane.take_nowait()
                        except anyio.WouldBlock:
                            await lane.wait_readable()
                            continue
                        except StopAsyncIteration:
                            break
                    else:
                        try:
                            item = await chain.__anext__()
                        except StopAsyncIteration:
                            break
                    try:
                        result = fn(item)
                        if result is not None and inspect.isawaitable(result):
                            # It is an async callback after all: no more direct calls, or
                            # the driver would call it again while this one is awaited.
                            lane.direct = None
                            await result
                    except anyio.get_cancelled_exc_class():
                        raise
                    except Exception as exc:
                        if self._failure(exc, ended=False):
                            return
            if scope.cancelled_caught and lane.error is not None:
                self._failure(lane.error, ended=True)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            # The lane failed (overflow="fail"), a middleware raised, or the informer
            # failed (that error comes out of the informer itself).
            if not self._informer._is_fatal(exc):
                self._failure(exc, ended=True)
        finally:
            lane.on_fail = None
            lane.direct = None
            awaiting, self._awaiting = self._awaiting, None
            if inspect.iscoroutine(awaiting):
                awaiting.close()  # handed over as the subscriber ended: never run
            if self._failed:
                self._end()  # its record stays in statistics(): closed, last_error
            else:
                self.unsubscribe()
            await _close(chain)

    def _direct(self, fn: Callback) -> Callable[[Event], None]:
        """Build the caller of a sync callback for its lane's ``direct`` (see ``Lane.push``).

        It runs in the informer's task, right after the cache changed, while the subscriber
        is caught up; errors are handled as in :meth:`_deliver`. A callable that returns an
        awaitable anyway hands it to its own task, which awaits it and delivers from then on.
        """
        lane = self._lane

        def call(event: Event) -> None:
            try:
                result = fn(event)
            except Exception as exc:
                if self._failure(exc, ended=False):
                    lane.direct = None
                    lane.discard()  # its task ends (``_failed`` says how it ended)
                return
            if result is not None and inspect.isawaitable(result):
                lane.direct = None
                self._awaiting = result
                lane.wake()

        return call


class InformerStream(Subscription):
    """The subscriber of ``async with informer.stream() as events``: an async iterator.

    Iteration yields the cache's current state as ADDED (once synced), then each change
    (or, with middlewares, whatever the last middleware yields). It ends when the informer
    stops, raising the informer's fatal error if there was one, or raises
    :class:`crwatch.SubscriberOverflowError` if this stream fell behind with
    ``overflow="fail"``.
    """

    __slots__ = ("_error", "_receive", "_task_group")

    def __init__(
        self,
        informer: Informer,
        middlewares: tuple[Middleware, ...],
        *,
        name: str,
        buffer_size: int,
        overflow: Overflow,
    ) -> None:
        super().__init__(
            informer, middlewares, name=name, buffer_size=buffer_size, overflow=overflow
        )
        self._receive: MemoryObjectReceiveStream[Any] | None = None
        self._task_group: TaskGroup | None = None
        self._error: BaseException | None = None

    async def __aenter__(self) -> InformerStream:
        if self._task_group is not None or self._lane.closed:
            raise CrwatchError("an informer stream can be entered only once")
        self._informer._attach(self, self._lane)
        if self._middlewares:
            # The middlewares run in a task of this stream (its "lane task"), so their
            # timers and state never depend on how the consumer iterates.
            send, self._receive = anyio.create_memory_object_stream[Any](0)
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
            task_group.start_soon(self._pump, send, name=f"crwatch.stream {self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.unsubscribe()
        task_group = self._task_group
        if task_group is not None:
            task_group.cancel_scope.cancel()
            try:
                # As in Watch: the body's exception propagates as itself, not in a group.
                await task_group.__aexit__(None, None, None)
            finally:
                if self._receive is not None:
                    self._receive.close()
        return None

    async def _pump(self, send: MemoryObjectSendStream[Any]) -> None:
        chain = _compose(self._lane, self._middlewares)
        async with send:
            try:
                async for item in chain:
                    await send.send(item)
            except anyio.get_cancelled_exc_class():
                raise
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            except Exception as exc:
                self._error = exc
            finally:
                await _close(chain)

    def __aiter__(self) -> InformerStream:
        return self

    async def __anext__(self) -> Any:
        receive = self._receive
        if receive is None:
            lane = self._lane
            try:
                return lane.take_nowait()
            except anyio.WouldBlock:
                return await lane.__anext__()
        try:
            try:
                return receive.receive_nowait()
            except anyio.WouldBlock:
                return await receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None


class Informer:
    """A shared, indexed cache of one resource type, and its subscribers.

    ::

        informer = crwatch.Informer(client, widgets, label_selector="tier=edge",
                                    transform=crwatch.drop_managed_fields,
                                    indexes={"owner": owner_uids})
        informer.subscribe(on_change)                   # sync or async; one call per event
        async with informer:                            # owns its tasks
            await informer.wait_synced()
            informer.store.get("default/edge-a")
            async with informer.stream() as events:     # an async iterator subscriber
                async for event in events: ...

    One list/watch feeds one cache, whatever the number of subscribers. Each change is
    applied to the cache and its indexes, then handed to each subscriber with ``event.old``
    from the cache, in order per object. Each subscriber has its own bounded buffer and
    overflow policy, so a slow or failing subscriber affects only itself. The list/watch
    options are those of :func:`crwatch.watch`.

    Args:
        client: the :class:`crwatch.Client` to use.
        resource: a :class:`crwatch.Resource`, or text for :meth:`Resource.parse`.
        namespace: watch one namespace. Default ``None``: all namespaces.
        namespaces: watch these namespaces (a set of names): one list/watch per
            namespace, one cache and one set of subscribers (see the informer guide,
            "Several namespaces"). Not with ``namespace``, nor for a cluster-scoped
            resource. Default ``None``.
        label_selector: a label selector. Default ``None``.
        field_selector: a field selector. Default ``None``.
        transform: called on every object before it is cached (and before any subscriber
            sees it); returns the object to keep, for example
            :func:`crwatch.drop_managed_fields`. Default ``None``.
        indexes: index functions by name: ``fn(obj)`` returns the object's values
            (strings) for :meth:`Store.by_index`. They must be pure and fast; one that
            raises is logged and leaves that object out of that index. Default none.
        on_error: ``on_error(subscription, error)`` is called (in the subscriber's task) for
            every error a callback or middleware raises, and for overflow failures, after
            the error is logged. Default ``None``.
        subscriber_errors: what a subscriber's error does to it: ``"continue"`` (default:
            it keeps receiving the next events), ``"unsubscribe"`` (it stops receiving) or
            ``"stop"`` (the whole informer stops and the error comes out of
            ``async with informer``). Errors that end a subscriber anyway (overflow, a
            middleware's) follow ``"stop"`` too.
        stall_timeout: see :func:`crwatch.watch`. Default 90.
        streaming_list: see :func:`crwatch.watch`. Default ``"auto"``.
        initial_list_deadline: see :func:`crwatch.watch`. Default 60.
        page_size: see :func:`crwatch.watch`. Default 500.
        max_event_bytes: see :func:`crwatch.watch`. Default 16 MiB.
        on_auth_error: ``"raise"`` (default): a 401/403/404 stops the informer with that
            error; ``"retry"``: retried slowly, and :meth:`wait_synced` reports it in
            :class:`crwatch.SyncTimeout`.
        backoff: see :func:`crwatch.watch`. Default ``Backoff()``.
        watch_timeout: see :func:`crwatch.watch`. Default ``(300, 600)``.
        seed: see :func:`crwatch.watch`. Default ``None``.
        gc_freeze: see :func:`crwatch.watch` and the informer guide: how lists hide the
            objects they cache from the cyclic garbage collector (:func:`gc.freeze`), for
            ``cache="objects"``. ``"off"`` (default): never; ``"list"``: only while a list
            runs; ``"keep"``: for good.
        metadata_only: see :func:`crwatch.watch`: cache and deliver each object's
            ``PartialObjectMetadata`` only. Default ``False``.
        cache: ``"compact"`` (default) keeps each object as its JSON bytes (about 1.2x its
            size on the wire instead of ~4x in dicts): ``store.get()``, ``store.list()``
            and ``by_index()`` decode a new dict on every call (change it freely), events
            carry the dicts parsed from the wire, and ``event.old`` is decoded when first
            read. ``"objects"`` keeps the parsed dicts, shared by ``store`` reads and
            events: for code that reads the whole cache again and again. See "The cache's
            representation" in the informer guide.

    Raises:
        InvalidOptionError: an option is invalid (raised here, not when entering).
    """

    def __init__(
        self,
        client: Client,
        resource: Resource | str,
        *,
        namespace: str | None = None,
        namespaces: Iterable[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | None = None,
        indexes: Mapping[str, IndexFunc] | None = None,
        on_error: ErrorHook | None = None,
        subscriber_errors: Literal["continue", "unsubscribe", "stop"] = "continue",
        stall_timeout: float = 90.0,
        streaming_list: bool | Literal["auto"] = "auto",
        initial_list_deadline: float = 60.0,
        page_size: int | None = 500,
        max_event_bytes: int = 16 * MiB,
        on_auth_error: Literal["raise", "retry"] = "raise",
        backoff: Backoff | None = None,
        watch_timeout: tuple[int, int] = (300, 600),
        seed: int | None = None,
        gc_freeze: GcFreeze = "off",
        metadata_only: bool = False,
        cache: CacheMode = "compact",
    ) -> None:
        transport, resource = target(client, resource)
        options = ListWatchOptions(
            namespace=namespace,
            namespaces=namespaces,
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
            metadata_only=metadata_only,
            cache=cache,
        )
        if transform is not None and not callable(transform):
            raise InvalidOptionError(f"transform must be a callable or None, got {transform!r}")
        if indexes is None:
            indexes = {}
        if not isinstance(indexes, Mapping) or not all(
            isinstance(name, str) and callable(fn) for name, fn in indexes.items()
        ):
            raise InvalidOptionError(
                f"indexes must map names to callables (obj -> values), got {indexes!r}"
            )
        if on_error is not None and not callable(on_error):
            raise InvalidOptionError(f"on_error must be a callable or None, got {on_error!r}")
        if subscriber_errors not in _ERROR_POLICIES:
            raise InvalidOptionError(
                f"subscriber_errors must be one of {', '.join(map(repr, _ERROR_POLICIES))}, "
                f"got {subscriber_errors!r}"
            )
        self._fanout = FanOut()
        if options.namespaces is None:
            scopes: list[tuple[ListWatchOptions, Delivery]] = [(options, self._fanout)]
        else:
            if resource.namespaced is False:
                raise InvalidOptionError(
                    f"namespaces: {resource} is cluster-scoped; its objects are in no namespace"
                )
            # One core (list/watch loop, cache) per namespace, over one fan-out.
            members = Members(self._fanout)
            scopes = [
                (options.for_namespace(ns, i), members.member())
                for i, ns in enumerate(sorted(options.namespaces))
            ]
        self._cores: tuple[Core, ...] = tuple(
            Core(
                transport,
                resource,
                scope,
                delivery,
                transform=transform,
                indexes=dict(indexes),
                on_fatal=self._stop,
            )
            for scope, delivery in scopes
        )
        self._core = self._cores[0]
        self._namespaces = options.namespaces
        self._store = (
            Store(self._core.cache)
            if options.namespaces is None
            else NamespacesStore(
                [(core.options.namespace or "", core.cache) for core in self._cores]
            )
        )
        self._on_error = on_error
        self._subscriber_errors = subscriber_errors
        self._subscriptions: dict[int, Subscription] = {}
        self._task_group: TaskGroup | None = None
        self._fatal: BaseException | None = None

    def __repr__(self) -> str:
        core = self._core
        namespace = core.options.namespace
        if self._namespaces is not None:
            where = f" in {sorted(self._namespaces)!r}"
        else:
            where = f" in {namespace!r}" if namespace else ""
        return (
            f"<crwatch.Informer {core.resource}{where} {len(self._store)} objects, "
            f"{len(self._subscriptions)} subscribers>"
        )

    @property
    def namespaces(self) -> frozenset[str] | None:
        """The namespaces watched with ``namespaces=``, else ``None``."""
        return self._namespaces

    @property
    def store(self) -> Store:
        """The cache, read-only: ``get(key)``, ``list()``, ``keys()``, ``by_index(...)``."""
        return self._store

    # --- subscribers ---

    def subscribe(
        self,
        fn: Callback,
        *middlewares: Middleware,
        buffer_size: int = 1024,
        overflow: Overflow = "wait",
        name: str | None = None,
    ) -> Subscription:
        """Call ``fn`` for every change; return the subscription.

        ``fn`` may be sync or async; it is called once per event (or per item the last
        middleware yields), in order, never concurrently with itself. An async ``fn`` (or
        one with middlewares) runs in a task of its own, after its buffer. A plain sync
        ``fn`` is called as soon as each change is in the cache, by the informer's task
        itself, while it is caught up (its backlog, such as the cache's state for a late
        subscriber, comes first from its own task): like any sync code it blocks the event
        loop while it runs, so make slow callbacks async. Subscribing after the informer
        has synced first delivers the cache's current state as ADDED, then live events,
        with no gap and no duplicate.

        Args:
            fn: the callback.
            *middlewares: async-stream transformers applied in order between the buffer and
                ``fn`` (filters, batching, rate limits).
            buffer_size: events buffered before ``overflow`` applies. Default 1024.
            overflow: ``"wait"`` (default): the excess is kept as the newest state per key
                (deletions kept) until the subscriber catches up; ``"coalesce"``: on
                overflow the whole buffer folds into the newest state per key;
                ``"fail"``: the subscriber fails with
                :class:`crwatch.SubscriberOverflowError`.
            name: a name for logs and statistics. Default: the callback's name.

        Raises:
            InvalidOptionError: an argument is invalid.
        """
        if not callable(fn):
            raise InvalidOptionError(f"fn must be a callable, got {fn!r}")
        _check_subscriber(middlewares, buffer_size, overflow, name)
        if name is None:
            name = getattr(fn, "__qualname__", None) or repr(fn)
        subscription = Subscription(
            self, middlewares, fn, name=name, buffer_size=buffer_size, overflow=overflow
        )
        self._attach(subscription, subscription._lane)
        if self._task_group is not None:
            subscription._start(self._task_group)
        return subscription

    def stream(
        self,
        *middlewares: Middleware,
        buffer_size: int = 1024,
        overflow: Overflow = "wait",
        name: str | None = None,
    ) -> InformerStream:
        """Return a stream subscriber: ``async with informer.stream() as events: ...``.

        The options are those of :meth:`subscribe`. The stream receives events from the
        moment its ``async with`` is entered (the cache's state first, once synced) until
        it is left.

        Raises:
            InvalidOptionError: an argument is invalid.
        """
        _check_subscriber(middlewares, buffer_size, overflow, name)
        if name is None:
            name = f"stream-{next(_counter)}"
        return InformerStream(
            self, middlewares, name=name, buffer_size=buffer_size, overflow=overflow
        )

    def _attach(self, subscription: Subscription, lane: Lane) -> None:
        cores = self._cores
        if any(core.finished for core in cores):
            raise CrwatchError("the informer has stopped")
        self._subscriptions[id(subscription)] = subscription
        # The namespaces whose initial list is in (all of them once synced).
        snapshot = (
            cores[0].snapshot()
            if len(cores) == 1
            else itertools.chain.from_iterable(core.snapshot() for core in cores)
        )
        self._fanout.attach(lane, snapshot)

    def _detach(self, lane: Lane) -> None:
        self._fanout.detach(lane)

    def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.pop(id(subscription), None)

    def _is_fatal(self, error: BaseException) -> bool:
        """Whether ``error`` is the informer's own (it comes out of ``async with``)."""
        return any(error is core.error for core in self._cores)

    def _report(self, subscription: Subscription, error: BaseException) -> str:
        """Log a subscriber's error, tell ``on_error``; return the ``subscriber_errors`` policy.

        With ``"stop"`` the informer stops here.
        """
        log.error(
            "informer %s: subscriber %r failed: %r",
            self._core.resource,
            subscription.name,
            error,
            exc_info=error,
        )
        if self._on_error is not None:
            try:
                self._on_error(subscription, error)
            except Exception:
                log.exception("informer %s: the on_error hook failed", self._core.resource)
        if self._subscriber_errors == "stop":
            self._stop(error)
        return self._subscriber_errors

    # --- lifecycle ---

    async def __aenter__(self) -> Informer:
        if self._task_group is not None:
            raise CrwatchError("an Informer can be entered only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        resource = self._core.resource
        for core in self._cores:
            namespace = core.options.namespace if self._namespaces is not None else None
            where = f" {namespace}" if namespace else ""
            task_group.start_soon(core.run, name=f"crwatch.informer {resource}{where}")
        for subscription in list(self._subscriptions.values()):
            subscription._start(task_group)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        task_group.cancel_scope.cancel()
        # As in Watch: the body's exception is not handed to the task group (which would
        # wrap it in an ExceptionGroup). The tasks never raise: errors are recorded.
        await task_group.__aexit__(None, None, None)
        fatal = self._fatal
        if fatal is not None and (exc is None or isinstance(exc, anyio.get_cancelled_exc_class())):
            # The informer stopped itself (cancelling the body): its error is the outcome.
            raise fatal
        return None

    def _stop(self, error: BaseException) -> None:
        """Stop the informer: its error comes out of ``async with informer``."""
        if self._fatal is not None:
            return
        self._fatal = error
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    # --- waiting ---

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until the initial state is in the cache (of every namespace, with ``namespaces``).

        Args:
            timeout: seconds to wait at most. Default ``None``: no limit.

        Raises:
            SyncTimeout: not synced within ``timeout``; its ``last_error`` (also in the
                message) is why, for example a :class:`crwatch.ForbiddenError`.
            CrwatchError: the informer failed for good (that error itself, for example
                :class:`crwatch.ForbiddenError`), or has stopped.
        """
        await self._wait(-1, timeout, "synced")

    async def wait_for(self, resource_version: str | int, *, timeout: float | None = None) -> None:
        """Wait until the cache has seen ``resource_version`` (read-your-writes).

        Returns once the informer is synced and its last resourceVersion (of an event or a
        bookmark) is at least ``resource_version``, compared as integers (docs/protocol.md,
        "resourceVersions"). With ``namespaces``, every namespace's list/watch must have
        seen it (a write names no namespace to the informer), so a quiet namespace gets
        there through its next bookmark.
        Pass the ``metadata.resourceVersion`` a write returned to see that write, or a later
        state, in :attr:`store`. A write outside the watched selection is seen only through
        a later event or bookmark.

        Args:
            resource_version: a resourceVersion (``"12345"`` or ``12345``).
            timeout: seconds to wait at most. Default ``None``: no limit.

        Raises:
            InvalidOptionError: ``resource_version`` is not a decimal resourceVersion.
            SyncTimeout: not reached within ``timeout``.
            CrwatchError: the informer failed for good (that error), or has stopped.
        """
        if isinstance(resource_version, int) and not isinstance(resource_version, bool):
            target = resource_version
        elif isinstance(resource_version, str) and resource_version.isdigit():
            target = int(resource_version)
        else:
            raise InvalidOptionError(
                f"resource_version must be a decimal resourceVersion, got {resource_version!r}"
            )
        if target < 0:
            raise InvalidOptionError(f"resource_version must be >= 0, got {resource_version!r}")
        await self._wait(target, timeout, f"resourceVersion {target}")

    async def _wait(self, target: int, timeout: float | None, what: str) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise InvalidOptionError(f"timeout must be a number >= 0 or None, got {timeout!r}")
        if self._task_group is None:
            raise CrwatchError("the informer is not running: wait inside `async with informer:`")
        cores = self._cores
        with anyio.move_on_after(timeout):
            # Again until all hold at once: a namespace may be relisting (not synced)
            # by the time another is waited for.
            while not all(core.synced_now(target) for core in cores) and not any(
                core.finished for core in cores
            ):
                for core in cores:
                    await core.wait_progress(target)
        if all(core.synced_now(target) for core in cores):
            return
        if self._fatal is not None:
            raise self._fatal
        for core in cores:
            if core.error is not None:
                raise core.error
        if any(core.finished for core in cores):
            raise CrwatchError("the informer has stopped")
        failed = _most_recent_error([_namespace_statistics(core, 0.0) for core in cores])
        last = None if failed is None else failed.last_error
        reason = f"; last error: {last}" if last is not None else ""
        pending = [core.options.namespace or "" for core in cores if not core.synced_now(target)]
        where = f" (namespaces {', '.join(pending)})" if self._namespaces is not None else ""
        raise SyncTimeout(
            f"informer {self._core.resource}: not {what}{where} after {timeout:g} s{reason}",
            last_error=last,
        )

    def statistics(self) -> InformerStatistics:
        """Return a snapshot of the cache's and the subscribers' counters.

        With ``namespaces``, the list/watch counters are summed over the namespaces, and
        :attr:`InformerStatistics.namespaces` has each one's own.
        """
        now = time.monotonic()
        records = tuple(_namespace_statistics(core, now) for core in self._cores)
        subscribers = tuple(s.statistics() for s in self._subscriptions.values())
        if len(records) == 1:
            r = records[0]
            resource_version = r.resource_version
            failed: NamespaceStatistics | None = r
        else:
            synced = all(r.synced for r in records)
            resource_version = (
                _lowest_version(r.resource_version for r in records) if synced else ""
            )
            failed = _most_recent_error(records)
        ages = [r.seconds_since_last_byte for r in records if r.seconds_since_last_byte is not None]
        return InformerStatistics(
            **_merged_snapshots([core.counters.snapshot() for core in self._cores]),
            objects=sum(r.objects for r in records),
            synced=all(r.synced for r in records),
            resource_version=resource_version,
            events=sum(r.events for r in records),
            lists=sum(r.lists for r in records),
            relists=sum(r.relists for r in records),
            watches=sum(r.watches for r in records),
            reconnects=sum(r.reconnects for r in records),
            errors=sum(r.errors for r in records),
            stalls=sum(r.stalls for r in records),
            malformed_lines=sum(r.malformed_lines for r in records),
            oversized_events=sum(r.oversized_events for r in records),
            last_error=None if failed is None else failed.last_error,
            last_error_time=None if failed is None else failed.last_error_time,
            seconds_since_last_byte=max(ages, default=None),
            subscribers=subscribers,
            namespaces=records,
        )
