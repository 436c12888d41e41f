"""``watch()``: one list/watch whose single consumer pulls the events itself.

:func:`watch` returns a :class:`Watch`; entering it starts one :class:`~crwatch._core.Core`
with a :class:`_Handoff` as its delivery, and gives an :class:`EventStream`. Nobody else
shares that core, so the consumer can do the per-event work in its own task: the driver
reads a chunk, frames it into lines and parks; each ``__anext__`` then parses and applies
the next line (``Core.take_line``) and lets the driver go on once the lines run out. An event
costs no task switch and its parsed object dies young. The events of a list (and the lines
the driver must handle itself) go through a lane that the driver fills at most
``buffer_size`` at a time: a full buffer simply pauses the reading (plain backpressure, no
event ever coalesced).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Literal, NoReturn

import anyio
from anyio.abc import TaskGroup
from attrs import field, frozen

from ._backoff import Backoff
from ._client import Client
from ._core import Core
from ._events import Event
from ._exceptions import CrwatchError, InvalidOptionError
from ._gc import GcFreeze
from ._lanes import Lane
from ._options import CacheMode, ListWatchOptions, MiB, target
from ._resource import Resource
from ._transport import Transport

__all__ = ["EventStream", "Watch", "WatchStatistics", "watch"]


@frozen
class WatchStatistics:
    """Counters of one :func:`crwatch.watch`, from :meth:`EventStream.statistics`.

    Attributes:
        events: events handed to the consumer's stream.
        lists: complete lists (initial and relists) applied.
        watches: watch requests opened (including streaming lists).
        malformed_lines: stream lines skipped because they were not watch events, or their
            object lacked a name, a resourceVersion or a namespace fitting the watch.
        oversized_events: stream lines skipped because they exceeded ``max_event_bytes``.
        stalls: watches dropped because no byte arrived for ``stall_timeout``.
        errors: failed requests (each followed by a retry, a relist or the end).
        resource_version: the last resourceVersion seen (``""`` before the first list).
        synced: whether the initial state has been delivered.
        last_error: the most recent failure, if any.
        seconds_since_last_byte: seconds since the server last sent anything, or ``None``.
        events_by_type: ``events`` by type: ``{"ADDED": n, "MODIFIED": n, "DELETED": n}``.
        relists_by_reason: lists after the first, by what caused them: the failure's class
            name (``"ExpiredError"`` for a 410) or ``"closed"``.
        reconnects_by_reason: watch requests after the first, by what caused them: the
            failure's class name or ``"closed"`` (the server ended the watch).
        last_list_seconds: how long the last complete list took, or ``None``.
        last_watch_seconds: how long the last watch that ended was open, or ``None``.
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
    seconds_since_last_byte: float | None = None
    events_by_type: Mapping[str, int] = field(factory=dict)
    relists_by_reason: Mapping[str, int] = field(factory=dict)
    reconnects_by_reason: Mapping[str, int] = field(factory=dict)
    last_list_seconds: float | None = None
    last_watch_seconds: float | None = None


class _Handoff:
    """``watch()``'s delivery: its consumer applies watch lines itself (see the module doc).

    Changes the driver applies (a list's differences) go into the consumer's lane, at most
    ``buffer_size`` before the driver waits; each time the driver yields it parks until the
    consumer has used everything (:meth:`resume`).
    """

    __slots__ = ("_lane", "_resume")

    #: The consumer parses and applies each watch change (``Core.take_line``).
    pulls = True

    def __init__(self, lane: Lane) -> None:
        self._lane = lane
        self._resume: asyncio.Future[None] | None = None

    def push(self, event: Event) -> bool:
        lane = self._lane
        lane.push(event)
        return lane.backlog >= lane.size

    def listed(self, events: list[Event], first: bool) -> Iterator[None]:
        lane = self._lane
        for event in events:
            lane.push(event)
            if lane.backlog >= lane.size:
                yield

    def busy(self) -> bool:
        return self._lane.backlog > 0

    async def pause(self) -> None:
        # A bare future, as lanes use (see ``_lanes``): the consumer resolves it.
        resume = self._resume = asyncio.get_running_loop().create_future()
        self._lane.wake()
        try:
            await resume
        finally:
            self._resume = None

    def resume(self) -> None:
        """Let a parked driver go on (the consumer used everything it was handed)."""
        resume = self._resume
        if resume is not None and not resume.done():
            resume.set_result(None)

    def close(self, error: BaseException | None) -> None:
        self._lane.close(error)


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

    __slots__ = ("_core", "_handoff", "_lane", "_watch")

    def __init__(self, owner: Watch) -> None:
        # The watch's private parts are taken from it here, so that no private type shows in
        # this constructor's signature.
        self._watch = owner
        self._core = owner._core
        self._lane = owner._lane
        self._handoff = owner._handoff

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        # The per-event path: the next line, parsed and applied right here.
        take_line = self._core.take_line
        event = take_line()
        if event is not None:
            return event
        lane = self._lane
        while not lane.readable():
            event = take_line()
            if event is not None:
                return event
            self._handoff.resume()
            await lane.wait_readable()
        return lane.take_nowait()

    def statistics(self) -> WatchStatistics:
        """Return the counters of the watch so far."""
        return self._watch.statistics()


class Watch:
    """The async context manager returned by :func:`crwatch.watch`.

    Entering starts the list/watch task and returns an :class:`EventStream`; leaving
    cancels the task and closes every connection it opened.
    """

    def __init__(
        self,
        transport: Transport,
        resource: Resource,
        options: ListWatchOptions,
        *,
        buffer_size: int,
    ) -> None:
        self._lane = Lane("watch", buffer_size, blocking=True)
        self._handoff = _Handoff(self._lane)
        self._core = Core(transport, resource, options, self._handoff)
        self._task_group: TaskGroup | None = None

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            "crwatch.watch() returns an async context manager: "
            "use `async with crwatch.watch(...) as events: async for event in events: ...`"
        )

    def __repr__(self) -> str:
        core = self._core
        namespace = core.options.namespace
        where = f" in {namespace!r}" if namespace else ""
        return f"<crwatch.Watch {core.resource}{where} {core.state.phase.name}>"

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
            seconds_since_last_byte=(
                None if c.last_byte_at is None else time.monotonic() - c.last_byte_at
            ),
            **c.snapshot(),
        )

    async def __aenter__(self) -> EventStream:
        if self._task_group is not None:
            raise CrwatchError("a Watch can be entered only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._core.run, name=f"crwatch.watch {self._core.resource}")
        return EventStream(self)

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
        return None


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
    max_event_bytes: int = 16 * MiB,
    on_auth_error: Literal["raise", "retry"] = "raise",
    backoff: Backoff | None = None,
    buffer_size: int = 128,
    watch_timeout: tuple[int, int] = (300, 600),
    seed: int | None = None,
    gc_freeze: GcFreeze = "off",
    metadata_only: bool = False,
    cache: CacheMode = "compact",
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
        gc_freeze: whether lists hide what they cache from Python's cyclic garbage
            collector (:func:`gc.freeze`, which acts on the whole process). ``"off"``
            (default) never touches the collector: a compact cache holds nothing it walks,
            and its lists build no objects that live long. With ``cache="objects"`` (or a
            ``transform``, which makes a list parse its pages) the collector walks the
            growing cache again and again during a list, up to two thirds of the time for
            100,000 objects: ``"list"`` freezes after every page (every 500 objects of a
            streaming list) and unfreezes once no list runs any more, so the next full
            collection walks the cache once; a process that has frozen objects itself is
            left alone. ``"keep"`` freezes as well and leaves everything frozen, so later
            full collections skip the cache too; but a reference cycle frozen while alive
            is never collected once it dies (until :func:`gc.unfreeze`). See "Large caches
            and the garbage collector" in the informer guide.
        metadata_only: ``True`` asks the server for each object's metadata only
            (``PartialObjectMetadata``, as client-go's metadata informers do): events then
            carry ``{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {...}}``, with no spec or status, so lines are smaller and cheaper
            to parse. A server that cannot answer that view sends whole objects, which are
            used as they come. Default ``False``.
        cache: how the watch's own state (what a relist is compared with) keeps each
            object. ``"compact"`` (default): the object's JSON bytes, about 1.2x its size
            on the wire instead of ~4x in dicts, with no containers for the cyclic garbage
            collector to walk; events still carry the dicts parsed from the wire, and
            ``event.old`` (and a synthetic deletion's object) is decoded when first read.
            ``"objects"``: the parsed dicts. See "The cache's representation" in the
            informer guide.

    Returns:
        An async context manager; entering it starts watching and gives an
        :class:`EventStream` (an async iterator of :class:`crwatch.Event`).

    Raises:
        InvalidOptionError: an option is invalid (raised here, not at first iteration).
    """
    transport, resource = target(client, resource)
    options = ListWatchOptions(
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
        metadata_only=metadata_only,
        cache=cache,
    )
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 0:
        raise InvalidOptionError(f"buffer_size must be an int >= 0, got {buffer_size!r}")
    return Watch(transport, resource, options, buffer_size=buffer_size)
