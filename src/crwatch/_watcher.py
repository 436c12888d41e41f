"""The list/watch driver: performs the state machine's actions with anyio, and ``watch()``.

The loop is short on purpose: ``_machine.step`` decides, this module only does I/O (through
``_transport``), reads lines (through ``_wire``), keeps the consumer's view (``_store``) and
hands events out through a memory object stream. The background task belongs to the task
group of the ``async with``; user code never runs inside it.
"""

from __future__ import annotations

import collections
import logging
import math
import random
from types import TracebackType
from typing import Final, Literal, NoReturn

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import field, frozen

from ._backoff import Backoff
from ._client import Client
from ._events import Event
from ._exceptions import (
    ApiError,
    BadRequestError,
    CrwatchError,
    EventTooLargeError,
    ExpiredError,
    InvalidOptionError,
    MalformedLineError,
    StallTimeout,
    TransportError,
)
from ._machine import (
    Collect,
    Config,
    Deliver,
    DiscardCollected,
    Failed,
    InitialDeadlinePassed,
    ListPage,
    Observation,
    PageReceived,
    Phase,
    Raise,
    ReplaceAll,
    Sleep,
    SleepDone,
    Start,
    StartStreamingList,
    StartWatch,
    State,
    StreamEnded,
    WatchEvents,
    initial_state,
    step,
)
from ._resource import Resource
from ._store import Store
from ._transport import Transport, WatchStream
from ._wire import SNIPPET_BYTES, LineSplitter, RawEvent, parse_event, status_to_error

__all__ = ["EventStream", "Watch", "WatchStatistics", "watch"]

log = logging.getLogger("crwatch")

_MiB: Final = 1024 * 1024


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


class _Counters:
    __slots__ = (
        "errors",
        "events",
        "last_error",
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


class _OpenStream:
    """A watch response being read: the byte stream, its line splitter, lines not yet used."""

    __slots__ = ("deadline", "eof", "pending", "splitter", "stream")

    def __init__(self, stream: WatchStream, max_event_bytes: int, deadline: float | None) -> None:
        self.stream = stream
        self.splitter = LineSplitter(max_event_bytes)
        self.pending: collections.deque[bytes | EventTooLargeError] = collections.deque()
        self.deadline = deadline
        self.eof = False


class EventStream:
    """The value of ``async with crwatch.watch(...) as events``: an async iterator of events.

    Iteration yields :class:`crwatch.Event` values: the initial state as ADDED, then the
    changes. It ends by raising the error that stopped the watch (for example
    :class:`crwatch.ForbiddenError`), and never ends on its own otherwise.
    """

    __slots__ = ("_receive", "_watch")

    def __init__(self, receive: MemoryObjectReceiveStream[Event], owner: Watch) -> None:
        self._receive = receive
        self._watch = owner

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        try:
            # Buffered events are taken without a checkpoint (anyio's receive() yields to
            # the event loop on every call, a third of the per-event cost); the buffer is
            # bounded, so the consumer still waits, and yields, at least once per buffer.
            try:
                return self._receive.receive_nowait()
            except anyio.WouldBlock:
                return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            error = self._watch._error
            if error is not None:
                raise error from None
            raise StopAsyncIteration from None

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
        *,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        stall_timeout: float,
        max_event_bytes: int,
        buffer_size: int,
        config: Config,
        seed: int,
    ) -> None:
        self._transport = transport
        self._resource = resource
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._stall_timeout = stall_timeout
        self._max_event_bytes = max_event_bytes
        self._buffer_size = buffer_size
        self._config = config
        self._state: State = initial_state(config, seed)
        self._store = Store()
        self._counters = _Counters()
        self._error: BaseException | None = None
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[Event] | None = None

    def __aiter__(self) -> NoReturn:
        raise TypeError(
            "crwatch.watch() returns an async context manager: "
            "use `async with crwatch.watch(...) as events: async for event in events: ...`"
        )

    def __repr__(self) -> str:
        where = f" in {self._namespace!r}" if self._namespace else ""
        return f"<crwatch.Watch {self._resource}{where} {self._state.phase.name}>"

    def statistics(self) -> WatchStatistics:
        """Return the counters of the watch so far."""
        c = self._counters
        return WatchStatistics(
            events=c.events,
            lists=c.lists,
            watches=c.watches,
            malformed_lines=c.malformed_lines,
            oversized_events=c.oversized_events,
            stalls=c.stalls,
            errors=c.errors,
            resource_version=self._state.resource_version,
            synced=self._state.synced,
            last_error=c.last_error,
        )

    async def __aenter__(self) -> EventStream:
        if self._task_group is not None:
            raise CrwatchError("a Watch can be entered only once")
        send, receive = anyio.create_memory_object_stream[Event](self._buffer_size)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._receive = receive
        task_group.start_soon(self._run, send, name=f"crwatch.watch {self._resource}")
        return EventStream(receive, self)

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
            # task never raises (it hands errors to the EventStream), so nothing is lost.
            await task_group.__aexit__(None, None, None)
        finally:
            if self._receive is not None:
                self._receive.close()
        return None

    # --- the driver -----------------------------------------------------------------------

    async def _run(self, send: MemoryObjectSendStream[Event]) -> None:
        async with send:
            try:
                await self._loop(send)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                if not isinstance(exc, CrwatchError):
                    log.exception("watch %s: unexpected error", self._resource)
                self._error = exc

    async def _loop(self, send: MemoryObjectSendStream[Event]) -> None:
        resource = self._resource
        store = self._store
        counters = self._counters
        collected: list[dict[str, object]] = []
        stream: _OpenStream | None = None
        observation: Observation | None = Start()
        try:
            while True:
                assert observation is not None
                if isinstance(observation, Failed):
                    self._note_failure(observation.error)
                self._state, actions = step(self._state, observation, anyio.current_time())
                observation = None
                for action in actions:
                    if isinstance(action, Deliver):
                        for raw in action.events:
                            event = store.apply(raw.type, raw.object)
                            if event is not None:
                                counters.events += 1
                                # Skip anyio's checkpoint while the buffer has room: the
                                # read of the next chunk yields to the event loop anyway.
                                try:
                                    send.send_nowait(event)
                                except anyio.WouldBlock:
                                    await send.send(event)
                    elif isinstance(action, Collect):
                        collected.extend(action.objects)
                    elif isinstance(action, ReplaceAll):
                        events = store.replace(collected)
                        collected = []
                        counters.lists += 1
                        log.debug(
                            "watch %s: list at resourceVersion %s: %d objects, %d changes",
                            resource,
                            action.resource_version,
                            len(store),
                            len(events),
                        )
                        for event in events:
                            counters.events += 1
                            try:
                                send.send_nowait(event)
                            except anyio.WouldBlock:
                                await send.send(event)
                    elif isinstance(action, DiscardCollected):
                        collected = []
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
                if observation is None:
                    if stream is None:  # pragma: no cover - a machine bug
                        raise RuntimeError(f"nothing to wait for in phase {self._state.phase}")
                    observation = await self._read(stream)
        finally:
            if stream is not None:
                stream.stream.close()

    def _note_failure(self, error: CrwatchError) -> None:
        counters = self._counters
        counters.errors += 1
        counters.last_error = error
        if isinstance(error, StallTimeout):
            counters.stalls += 1
        if isinstance(error, ExpiredError):
            log.info("%s; relisting", error)
        elif isinstance(error, BadRequestError) and self._state.phase is Phase.STREAMING_LIST:
            log.info("%s; falling back to paginated lists", error)

    async def _open(
        self, action: StartWatch | StartStreamingList
    ) -> tuple[_OpenStream | None, Observation | None]:
        streaming = isinstance(action, StartStreamingList)
        self._counters.watches += 1
        try:
            # The stall timeout also covers a server that never sends the response headers.
            with anyio.fail_after(self._stall_timeout):
                opened = await self._transport.open_watch(
                    self._resource,
                    namespace=self._namespace,
                    label_selector=self._label_selector,
                    field_selector=self._field_selector,
                    resource_version=action.resource_version,
                    timeout_seconds=action.timeout_seconds,
                    send_initial_events=streaming,
                )
        except TimeoutError:
            return None, Failed(self._stalled("no response headers"))
        except (ApiError, TransportError) as exc:
            return None, Failed(exc)
        deadline = action.deadline if isinstance(action, StartStreamingList) else None
        return _OpenStream(opened, self._max_event_bytes, deadline), None

    async def _list(self, action: ListPage) -> Observation:
        try:
            page = await self._transport.list_page(
                self._resource,
                namespace=self._namespace,
                label_selector=self._label_selector,
                field_selector=self._field_selector,
                resource_version=action.resource_version,
                continue_token=action.continue_token,
                limit=action.limit,
                read_timeout=self._stall_timeout,
            )
        except (ApiError, TransportError) as exc:
            return Failed(exc)
        return PageReceived(page.items, page.resource_version, page.continue_token)

    def _stalled(self, what: str) -> StallTimeout:
        return StallTimeout(
            f"watch {self._resource}: {what} for {self._stall_timeout:g} s; reconnecting"
        )

    async def _read(self, open_stream: _OpenStream) -> Observation:
        """Read until the next observation: events, the end, a failure, or the deadline."""
        pending = open_stream.pending
        counters = self._counters
        events: list[RawEvent] = []
        while True:
            while pending:
                line = pending.popleft()
                if isinstance(line, EventTooLargeError):
                    counters.oversized_events += 1
                    counters.last_error = line
                    log.warning("watch %s: %s", self._resource, line)
                    continue
                try:
                    raw = parse_event(line)
                except MalformedLineError as exc:
                    counters.malformed_lines += 1
                    counters.last_error = exc
                    log.warning(
                        "watch %s: skipped a malformed line (%s): %r",
                        self._resource,
                        exc,
                        exc.line[:SNIPPET_BYTES],
                    )
                    continue
                if raw.type == "ERROR":
                    if events:  # deliver what came before it first
                        pending.appendleft(line)
                        return WatchEvents(events)
                    error = status_to_error(raw.object, verb="watch", resource=str(self._resource))
                    return Failed(error)
                events.append(raw)
            if events:
                return WatchEvents(events)
            if open_stream.eof:
                return StreamEnded()
            timeout = self._stall_timeout
            deadline = open_stream.deadline
            if deadline is not None and self._state.phase is Phase.STREAMING_LIST:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return InitialDeadlinePassed()
                timeout = min(timeout, remaining)
            else:
                deadline = None
            chunk = b""
            with anyio.move_on_after(timeout) as scope:
                try:
                    chunk = await open_stream.stream.read()
                except TransportError as exc:
                    return Failed(exc)
            if scope.cancelled_caught:
                if deadline is not None and anyio.current_time() >= deadline:
                    return InitialDeadlinePassed()
                return Failed(self._stalled("no byte received"))
            if chunk:
                pending.extend(open_stream.splitter.feed(chunk))
                continue
            open_stream.eof = True
            tail = open_stream.splitter.close()
            if tail:
                # A partial last line: the connection ended mid-event. Report it; the
                # re-watch from the last resourceVersion delivers that event again.
                pending.append(tail)


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
        buffer_size: events buffered for a slow consumer before the watch waits. Default 128.
        watch_timeout: each watch asks the server to end it after a random number of
            seconds in ``[low, high)`` (it is then resumed at once). Default ``(300, 600)``.
        seed: seed of the jitter's random numbers, for reproducible tests. Default ``None``.

    Returns:
        An async context manager; entering it starts watching and gives an
        :class:`EventStream` (an async iterator of :class:`crwatch.Event`).

    Raises:
        InvalidOptionError: an option is invalid (raised here, not at first iteration).
    """
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
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 0:
        raise InvalidOptionError(f"buffer_size must be an int >= 0, got {buffer_size!r}")
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
    return Watch(
        transport,
        resource,
        namespace=namespace,
        label_selector=label_selector or None,
        field_selector=field_selector or None,
        stall_timeout=stall_timeout,
        max_event_bytes=max_event_bytes,
        buffer_size=buffer_size,
        config=config,
        seed=seed,
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
