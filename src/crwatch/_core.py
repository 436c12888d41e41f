"""The list/watch driver shared by ``watch()`` and ``Informer``: I/O around ``_machine.step``.

One :class:`Core` per watch or informer performs the state machine's actions with anyio:
``_machine.step`` decides, the driver only does I/O (through ``_transport``), frames lines
(through ``_wire``), keeps the cache (``_store.Cache``) and hands every change to its
:class:`Delivery`, the consumption strategy its owner injects:

- the informer's ``_lanes.FanOut`` pushes each change into every subscriber's lane as soon
  as it is in the cache, and the driver yields after a burst so the subscribers take them;
- ``watch()``'s hand-off (``_watch``) lets its consumer apply the watch lines itself: the
  driver reads and frames a chunk and parks (the delivery's ``pause``); the consumer's
  ``__anext__`` parses and applies one line per event (:meth:`Core.take_line`), so an
  event costs no task switch and its parsed object dies young.

The per-event path (see ``_machine``'s "fast path"): while WATCHING each change is parsed
once, checked (:func:`admission`), applied (:meth:`Core._apply`) and handed over before the
next line is parsed; its resourceVersion is folded into the machine's state before the next
step. Everything else (bookmarks, errors, the end, a skipped line, a deadline) is an
observation for ``step``.

A watch event whose object lacks what the cache needs (metadata, a name, a resourceVersion,
a namespace consistent with the watch's scope) is a malformed line: counted, logged, and
repaired by a relist, like a line that is not JSON.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Protocol, TypeAlias

import anyio

from . import _gc
from ._events import CHANGE_TYPES, Event, EventType, Packed, object_key, pack, pack_unparsed
from ._exceptions import (
    ApiError,
    BadRequestError,
    CrwatchError,
    EventTooLargeError,
    ExpiredError,
    MalformedLineError,
    ResourceVersionRollbackError,
    ResourceVersionTooLargeError,
    StallTimeout,
    TransportError,
)
from ._machine import (
    Collect,
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
from ._options import ListWatchOptions
from ._resource import Resource
from ._store import Cache, IndexFunc
from ._transport import Transport, WatchStream
from ._wire import (
    SNIPPET_BYTES,
    LineSplitter,
    RawEvent,
    RawItem,
    event_from_json,
    loads,
    parse_event,
    peek_line,
    status_to_error,
)

__all__ = ["Core", "Delivery", "Transform", "admission"]

log = logging.getLogger("crwatch")

#: A transform: called on every object before it is cached; returns the object to cache.
Transform: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]

_ADDED: Final = EventType.ADDED

#: How kube-apiserver (and FakeApiServer) begin a bookmark line: with a pulling consumer
#: the driver handles those itself, so bookmarks advance the resourceVersion while the
#: consumer is busy. Only a shortcut: a bookmark encoded otherwise takes the consumer's path
#: and works the same.
_BOOKMARK_PREFIX: Final = b'{"type":"BOOKMARK"'

#: Unless ``gc_freeze="off"``: objects of a streaming list between two ``gc.freeze()`` (a page).
_FREEZE_EVERY: Final = 500

#: A list's objects so far, keyed: dicts, or packed for a compact cache.
_Collected: TypeAlias = "list[tuple[str, dict[str, Any] | Packed]]"
_Problem: TypeAlias = "MalformedLineError | EventTooLargeError"
_Line: TypeAlias = "bytes | RawEvent | MalformedLineError | EventTooLargeError"


class Delivery(Protocol):
    """How a :class:`Core` hands changes to its consumers: injected by its owner."""

    #: Whether the consumer applies watch changes itself (:meth:`Core.take_line`): the
    #: driver then stops at each change line while WATCHING instead of applying it.
    pulls: bool

    def push(self, event: Event) -> bool:
        """Hand over one change (in the cache already); return whether to yield now."""

    def listed(self, events: list[Event], first: bool) -> Iterable[None]:
        """Hand over the differences a list found; the driver yields once per item."""

    def busy(self) -> bool:
        """Whether the consumers should run before the driver waits for the network."""

    async def pause(self) -> None:
        """Let the consumers run: what the driver does each time it yields."""

    def close(self, error: BaseException | None) -> None:
        """Tell the consumers the driver ended (with ``error``, if it failed for good)."""


def admission(namespace: str | None, namespaced: bool | None) -> Callable[[Any], str | None]:
    """Return the check a watched object's ``metadata`` must pass to enter the cache.

    The check returns the object's key (``namespace/name``, or ``name`` when cluster-scoped),
    or ``None`` when the metadata is not a mapping, has no name or no resourceVersion (each
    a non-empty string: every object the API server serves has both,
    https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions), or a
    namespace that does not fit the watch's scope: another namespace than the one watched,
    none for a namespaced resource, one for a cluster-scoped resource. Keying such an object
    would file it under a key no later event or list matches, and the cache would never
    converge again.
    """
    # One rule, specialised by scope: this runs once per event.
    if namespace:
        prefix = f"{namespace}/"

        def in_namespace(meta: Any) -> str | None:
            if type(meta) is dict and meta.get("namespace") == namespace:
                name = meta.get("name")
                rv = meta.get("resourceVersion")
                if type(name) is str and name and type(rv) is str and rv:
                    return prefix + name
            return None

        return in_namespace

    def anywhere(meta: Any) -> str | None:
        if type(meta) is dict:
            name = meta.get("name")
            rv = meta.get("resourceVersion")
            if type(name) is str and name and type(rv) is str and rv:
                ns = meta.get("namespace")
                if not ns:
                    return None if namespaced else name
                if type(ns) is str and namespaced is not False:
                    return f"{ns}/{name}"
        return None

    return anywhere


#: Failures a relist answers: routine on a healthy cluster, so logged at INFO, not WARNING.
_RELIST_ERRORS: Final = (ExpiredError, ResourceVersionTooLargeError)


def _rv_int(rv: str) -> int | None:
    # ResourceVersions order as decimal integers (required for conformance from 1.35:
    # https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions).
    return int(rv) if rv.isdigit() else None


class _Counters:
    """The mutable counters behind a watch's or an informer's ``statistics()`` record."""

    __slots__ = (
        "by_type",
        "cause",
        "errors",
        "events",
        "last_byte_at",
        "last_error",
        "last_error_at",
        "last_list_seconds",
        "last_watch_seconds",
        "list_cause",
        "list_started_at",
        "lists",
        "malformed_lines",
        "oversized_events",
        "reconnect_reasons",
        "relist_reasons",
        "stalls",
        "watch_opened_at",
        "watches",
    )

    def __init__(self) -> None:
        self.events: int = 0
        self.by_type: dict[EventType, int] = dict.fromkeys(EventType, 0)
        self.lists: int = 0
        self.watches: int = 0
        self.malformed_lines: int = 0
        self.oversized_events: int = 0
        self.stalls: int = 0
        self.errors: int = 0
        self.last_error: BaseException | None = None
        #: Wall-clock time of the last error; monotonic time of the last byte read.
        self.last_error_at: float | None = None
        self.last_byte_at: float | None = None
        #: Why the next request is made: the class name of the failure before it, or
        #: "closed" (the server ended the watch: its timeout, or a routine close).
        self.cause = "closed"
        self.relist_reasons: dict[str, int] = {}
        self.reconnect_reasons: dict[str, int] = {}
        #: A list in progress (monotonic start, and the cause of a relist) and the last
        #: complete list's and ended watch's durations.
        self.list_started_at: float | None = None
        self.list_cause = "closed"
        self.last_list_seconds: float | None = None
        self.watch_opened_at: float | None = None
        self.last_watch_seconds: float | None = None

    def start_list(self) -> None:
        """Note a list beginning (first page or streaming list); a retry keeps the first start."""
        if self.list_started_at is None:
            self.list_started_at = time.monotonic()
            self.list_cause = self.cause

    def end_list(self, events: list[Event], first: bool) -> None:
        """Count a complete list applied to the cache, and the ``events`` it gave."""
        self.lists += 1
        self.events += len(events)
        by_type = self.by_type
        for event in events:
            by_type[event.type] += 1
        if self.list_started_at is not None:
            self.last_list_seconds = time.monotonic() - self.list_started_at
            self.list_started_at = None
        if not first:
            reason = self.list_cause
            self.relist_reasons[reason] = self.relist_reasons.get(reason, 0) + 1

    def start_watch(self) -> None:
        """Count a watch request about to be sent; after the first, a reconnect and its cause."""
        if self.watches:
            reason = self.cause
            self.reconnect_reasons[reason] = self.reconnect_reasons.get(reason, 0) + 1
        self.cause = "closed"
        self.watches += 1

    def watch_opened(self) -> None:
        self.watch_opened_at = self.last_byte_at = time.monotonic()

    def watch_closed(self) -> None:
        if self.watch_opened_at is not None:
            self.last_watch_seconds = time.monotonic() - self.watch_opened_at
            self.watch_opened_at = None

    def snapshot(self) -> dict[str, Any]:
        """Return the fields ``InformerStatistics`` and ``WatchStatistics`` share past counts."""
        return {
            "events_by_type": {t.value: n for t, n in self.by_type.items()},
            "relists_by_reason": dict(self.relist_reasons),
            "reconnects_by_reason": dict(self.reconnect_reasons),
            "last_list_seconds": self.last_list_seconds,
            "last_watch_seconds": self.last_watch_seconds,
        }


class _OpenStream:
    """A watch response being read: the byte stream, its line splitter, lines not yet used."""

    __slots__ = ("deadline", "eof", "pending", "splitter", "stream")

    def __init__(self, stream: WatchStream, max_event_bytes: int, deadline: float | None) -> None:
        self.stream = stream
        self.splitter = LineSplitter(max_event_bytes)
        # Lines not used yet; the head may already be parsed (see ``Core.take_line``).
        self.pending: collections.deque[_Line] = collections.deque()
        self.deadline = deadline
        self.eof = False


class _Yield:
    """The type of ``_YIELD``: ``_read``'s answer when the driver must let consumers run."""


_YIELD: Final = _Yield()


class Core:
    """The list/watch loop and the cache. :meth:`run` is its one task.

    Every change is applied to the cache (and its indexes) first, then handed to the
    :class:`Delivery`, synchronously: consumers always see ``event.old`` from the cache and
    never delay it.
    """

    def __init__(
        self,
        transport: Transport,
        resource: Resource,
        options: ListWatchOptions,
        delivery: Delivery,
        *,
        transform: Transform | None = None,
        indexes: Mapping[str, IndexFunc] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.resource = resource
        self.options = options
        self._transport = transport
        self._delivery = delivery
        self._key = admission(options.namespace, resource.namespaced)
        # gc_freeze (see _gc): whether lists freeze, and whether this core holds a
        # temporary freeze (a list with "list" is running).
        self._gc_freeze = options.gc_freeze != "off"
        self._gc_keep = options.gc_freeze == "keep"
        self._gc_held: int | None = None  # the _gc.begin() token of a running list
        self.state: State = initial_state(options.machine_config(), options.seed)
        self.cache: Cache = Cache(indexes, compact=options.cache == "compact")
        self.transform = transform
        self.counters: _Counters = _Counters()
        self.error: BaseException | None = None
        self._on_fatal = on_fatal
        # The fast path (see _machine): the resourceVersion of the last change applied since
        # the last step ("" if none: every admitted change has one), folded into ``state``
        # by ``_fold`` before each step.
        self._fast_rv = ""
        self._initial_done = False
        self._finished = False
        # A pulling consumer's next line: the stream the driver is parked on (see
        # ``take_line``), never while the delivery is busy.
        self._parked: _OpenStream | None = None
        # Waiters for "synced" and "resourceVersion >= N": (target or -1, event).
        self._waiters: list[tuple[int, anyio.Event]] = []
        # Set when a relist went back below the last resourceVersion (a restored backup):
        # waits pending then for a higher version fail instead of hanging.
        self._rollback: tuple[int, str, str] | None = None  # (count, previous, current)

    # --- state for the owner ---

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen, including changes applied by the fast path."""
        return self._fast_rv or self.state.resource_version

    @property
    def finished(self) -> bool:
        """Whether ``run`` has ended (cancelled or failed for good)."""
        return self._finished

    def snapshot(self) -> Iterator[Event]:
        """Return the cache's state as ADDED events once the initial state is in (else none)."""
        if not self._initial_done:
            return iter(())
        return (Event(_ADDED, obj, key) for key, obj in self.cache.stored_items())

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
                    f"watch {self.resource}: the server's resourceVersion went back "
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
            self.resource,
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

        Each time the loop yields, the delivery lets the consumers run (:meth:`Delivery.pause`).
        A pulling consumer meanwhile takes the lines the driver parked on
        (:meth:`take_line`); one that stops iterating so leaves the bytes unread.
        """
        steps = self._steps()
        pause = self._delivery.pause
        try:
            async for _ in steps:
                try:
                    await pause()
                finally:
                    self._parked = None
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            if not isinstance(exc, CrwatchError):
                log.exception("watch %s: unexpected error", self.resource, exc_info=exc)
            self.error = exc
        finally:
            await steps.aclose()
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._parked = None
        self._delivery.close(self.error)
        self._notify()
        if self.error is not None and self._on_fatal is not None:
            self._on_fatal(self.error)

    def take_line(self) -> Event | None:
        """Parse and apply the next ready watch line, if the driver is parked on one.

        A pulling consumer's per-event path, run in its own task: one line, one cache
        change, one event, without a task switch or a buffer in between. Returns ``None``
        when the line needs the driver (a bookmark, an error, a malformed line) or none is
        ready; the consumer then lets the driver go on.
        """
        open_stream = self._parked
        if open_stream is None:
            return None
        pending = open_stream.pending
        while pending or self._refill(open_stream):
            line = pending.popleft()
            if type(line) is bytes:
                result = self._apply_line(line)
                if isinstance(result, Event):
                    if self._waiters:
                        self._notify()
                    return result
                if result is None:  # a deletion of an unknown key: nothing to hand out
                    continue
                pending.appendleft(result)  # parsed once: the driver takes it from here
            else:
                pending.appendleft(line)
            break
        self._parked = None
        return None

    def _refill(self, open_stream: _OpenStream) -> bool:
        """Frame the bytes already received into ``pending`` (``take_line`` ran out of lines).

        So a consumer keeps up with a busy stream without waking the driver for each network
        read. Returns ``False`` when the driver must act instead: nothing is buffered (it
        waits with the stall timeout), a relist is scheduled (it checks the deadline), or
        the stream failed (it reports the error).
        """
        if self.state.relist_at is not None:
            return False
        try:
            chunk = open_stream.stream.read_nowait()
        except TransportError:
            return False  # the driver's own read raises it again, and reports it
        if not chunk:
            return False
        self.counters.last_byte_at = time.monotonic()
        open_stream.pending.extend(open_stream.splitter.feed(chunk))
        return bool(open_stream.pending)

    # --- changes ---

    def _apply_line(self, line: bytes) -> Event | RawEvent | MalformedLineError | None:
        """Parse one watch line; apply it at once if it is a change (the fast path).

        A change (ADDED, MODIFIED, DELETED of an object that passes :func:`admission`) is
        applied (:meth:`_apply`) and its event returned (``None`` for the deletion of an
        unknown key); anything else comes back as a :class:`RawEvent`, or the
        :class:`MalformedLineError` to report, for the loop. Each line is parsed once.
        """
        try:
            data = loads(line)
        except ValueError:
            try:
                return parse_event(line)  # raises, with the parser's message
            except MalformedLineError as exc:
                return exc
        if type(data) is dict:
            kind = data.get("type")
            obj = data.get("object")
            if type(kind) is str and type(obj) is dict:
                change = CHANGE_TYPES.get(kind)
                if change is not None:
                    meta: Any = obj.get("metadata")
                    key = self._key(meta)
                    if key is None:
                        return _inadmissible(line)
                    self._fast_rv = meta["resourceVersion"]  # admitted: a non-empty str
                    return self._apply(change, obj, key, line)
        try:
            return event_from_json(data, line)
        except MalformedLineError as exc:
            return exc

    def _apply(
        self, change: EventType, obj: dict[str, Any], key: str, line: bytes | None = None
    ) -> Event | None:
        """Apply one admitted change to the cache; return its event (``None``: nothing to say).

        ``line`` is the watch line ``obj`` was parsed from, for a compact cache to keep.
        """
        transform = self.transform
        if transform is not None:
            # Keyed as lists key it: by the object the cache keeps.
            obj = transform(obj)
            key = object_key(obj)
            line = None  # no longer what the line says
        event = self.cache.apply_keyed(change, obj, key, line)
        if event is not None:
            counters = self.counters
            counters.events += 1
            counters.by_type[event.type] += 1
        return event

    def _collect(self, collected: _Collected, objects: Iterable[Any]) -> None:
        """Keep listed objects for the cache, keyed; leave out (and report) inadmissible ones."""
        key_of = self._key
        transform = self.transform
        compact = self.cache.compact
        for obj in objects:
            if type(obj) is RawItem:  # a compact cache's page, not parsed (see split_list)
                meta = obj.metadata
                key = key_of(meta)
                if key is None:
                    self._skipped(_inadmissible(obj.raw[:SNIPPET_BYTES]))
                else:
                    assert meta is not None
                    collected.append((key, pack_unparsed(obj.raw, meta, wrapped=False)))
                continue
            key = key_of(obj.get("metadata")) if type(obj) is dict else None
            if key is None:
                self._skipped(_inadmissible(_snippet(obj)))
            else:
                if transform is not None:
                    obj = transform(obj)
                    key = object_key(obj)
                # A compact cache packs each listed object at once: the page's dicts die
                # young, and a large list never holds them all.
                collected.append((key, pack(obj) if compact else obj))

    def _relisted(self, collected: _Collected, action: ReplaceAll) -> list[Event]:
        """Swap a complete list into the cache; return the differences (see ``Cache``)."""
        cache = self.cache
        events = cache.replace_keyed(collected)
        self.counters.end_list(events, first=not self._initial_done)
        log.debug(
            "watch %s: list at resourceVersion %s: %d objects, %d changes",
            self.resource,
            action.resource_version,
            len(cache),
            len(events),
        )
        self._initial_done = True
        if self._gc_keep:
            self._freeze()
        else:
            self._thaw()
        return events

    def _freeze(self) -> None:
        """``gc_freeze``: hide everything alive from the cyclic GC (see ``_gc``)."""
        if self._gc_keep:
            _gc.keep()
        else:
            if self._gc_held is None:
                self._gc_held = _gc.begin()
            _gc.freeze()

    def _thaw(self) -> None:
        """End the temporary freeze of a list that ended (``gc_freeze="list"``), if held."""
        token = self._gc_held
        if token is not None:
            self._gc_held = None
            _gc.end(token)

    def _fold(self) -> None:
        """Record the fast path's changes in the machine's state (before any step)."""
        rv = self._fast_rv
        if rv:
            self.state = delivered(self.state, rv)
            self._fast_rv = ""

    # --- the loop ---

    async def _steps(self) -> AsyncGenerator[None, None]:
        """Run the list/watch loop: perform the actions; yield where the consumers run."""
        delivery = self._delivery
        collected: _Collected = []
        stream: _OpenStream | None = None
        observation: Observation | None = Start()
        try:
            while True:
                assert observation is not None
                failure = observation.error if isinstance(observation, Failed) else None
                if failure is not None:
                    self._note_failure(failure)
                self._fold()
                before = self.state.resource_version  # for _check_rollback
                phase = self.state.phase
                self.state, actions = step(self.state, observation, anyio.current_time())
                if failure is not None:
                    self._log_failure(failure, phase, actions)
                observation = None
                for action in actions:
                    if isinstance(action, Deliver):
                        for raw in action.events:
                            event = self._apply_raw(raw)
                            if event is not None and delivery.push(event):
                                yield
                    elif isinstance(action, Collect):
                        self._collect(collected, action.objects)
                        if self._gc_freeze:
                            self._freeze()
                    elif isinstance(action, ReplaceAll):
                        if before:
                            self._check_rollback(before, action.resource_version)
                        first = not self._initial_done
                        events = self._relisted(collected, action)
                        collected = []
                        for _ in delivery.listed(events, first):
                            yield
                        # Not held while the watch runs: 100,000 events the collector walks.
                        del events
                        if self._waiters:  # before the watch request that follows
                            self._notify()
                    elif isinstance(action, DiscardCollected):
                        collected = []
                        self._thaw()
                    elif isinstance(action, Raise):
                        raise action.error
                    else:
                        if stream is not None:
                            stream.stream.close()
                            self.counters.watch_closed()
                            stream = None
                        stream, observation = await self._perform(action)
                if self._waiters:
                    self._notify()
                while observation is None:
                    if stream is None:  # pragma: no cover - a machine bug
                        raise RuntimeError(f"nothing to wait for in phase {self.state.phase}")
                    read = await self._read(stream, collected)
                    if read is _YIELD:
                        yield
                    else:
                        assert not isinstance(read, _Yield)
                        observation = read
        finally:
            self._thaw()
            if stream is not None:
                stream.stream.close()
                self.counters.watch_closed()

    def _apply_raw(self, raw: RawEvent) -> Event | None:
        """Apply a change the machine delivered (``Deliver``): checked as a watch line is."""
        key = self._key(raw.object.get("metadata"))
        if key is None:  # pragma: no cover - _read reports these lines before step sees them
            return None
        return self._apply(CHANGE_TYPES[raw.type], raw.object, key)

    async def _perform(self, action: object) -> tuple[_OpenStream | None, Observation | None]:
        """Perform an I/O action: open a watch, list a page, or sleep."""
        if isinstance(action, (StartWatch, StartStreamingList)):
            return await self._open(action)
        if isinstance(action, ListPage):
            return None, await self._list(action)
        assert isinstance(action, Sleep), action
        delay = max(0.0, action.until - anyio.current_time())
        error = action.error
        if error is not None:
            # Logged here, once, with the delay (not also where the failure was noted).
            # Error messages already name the verb and the resource.
            routine = isinstance(error, _RELIST_ERRORS)
            log.log(
                logging.INFO if routine else logging.WARNING,
                "%s; %s in %.1f s",
                error,
                "relisting" if routine else "retrying",
                delay,
                extra=self._log_fields(error, delay=round(delay, 3)),
            )
        await anyio.sleep(delay)
        return None, SleepDone()

    def _note_failure(self, error: CrwatchError) -> None:
        counters = self.counters
        counters.errors += 1
        counters.last_error = error
        counters.last_error_at = time.time()
        counters.cause = type(error).__name__
        if isinstance(error, StallTimeout):
            counters.stalls += 1

    def _log_failure(self, error: CrwatchError, phase: Phase, actions: Iterable[object]) -> None:
        """Log a failure the machine answered at once, as one line.

        A failure it backs off from is logged by the sleep instead, with the delay.
        """
        if any(isinstance(action, Sleep) for action in actions):
            return
        if isinstance(error, _RELIST_ERRORS):
            log.info("%s; relisting", error, extra=self._log_fields(error))
        elif isinstance(error, BadRequestError) and phase is Phase.STREAMING_LIST:
            log.info("%s; falling back to paginated lists", error, extra=self._log_fields(error))

    def _log_fields(self, error: CrwatchError, **more: Any) -> dict[str, Any]:
        """Structured context for log processors: ``extra=`` fields on the record."""
        return {
            "resource": str(self.resource),
            "namespace": self.options.namespace,
            "reason": type(error).__name__,
            "attempt": self.state.attempt,
            **more,
        }

    async def _open(
        self, action: StartWatch | StartStreamingList
    ) -> tuple[_OpenStream | None, Observation | None]:
        streaming = isinstance(action, StartStreamingList)
        options = self.options
        if streaming:
            self.counters.start_list()
        self.counters.start_watch()
        try:
            # The stall timeout also covers a server that never sends the response headers.
            with anyio.fail_after(options.stall_timeout):
                opened = await self._transport.open_watch(
                    self.resource,
                    namespace=options.namespace,
                    label_selector=options.label_selector,
                    field_selector=options.field_selector,
                    resource_version=action.resource_version,
                    timeout_seconds=action.timeout_seconds,
                    send_initial_events=streaming,
                    metadata_only=options.metadata_only,
                )
        except TimeoutError:
            return None, Failed(self._stalled("no response headers"))
        except (ApiError, TransportError) as exc:
            return None, Failed(exc)
        self.counters.watch_opened()
        deadline = action.deadline if isinstance(action, StartStreamingList) else None
        return _OpenStream(opened, options.max_event_bytes, deadline), None

    async def _list(self, action: ListPage) -> Observation:
        options = self.options
        if action.continue_token is None:
            self.counters.start_list()
        try:
            page = await self._transport.list_page(
                self.resource,
                namespace=options.namespace,
                label_selector=options.label_selector,
                field_selector=options.field_selector,
                resource_version=action.resource_version,
                continue_token=action.continue_token,
                limit=action.limit,
                read_timeout=options.stall_timeout,
                metadata_only=options.metadata_only,
                # A compact cache keeps each item's bytes: unless a transform must see the
                # object, the page's items are never parsed.
                raw_items=self.cache.compact and self.transform is None,
            )
        except (ApiError, TransportError) as exc:
            return Failed(exc)
        self.counters.last_byte_at = time.monotonic()
        return PageReceived(page.items, page.resource_version, page.continue_token)

    def _stalled(self, what: str) -> StallTimeout:
        return StallTimeout(
            f"watch {self.resource}: {what} for {self.options.stall_timeout:g} s; reconnecting"
        )

    def _skipped(self, problem: _Problem) -> None:
        counters = self.counters
        if isinstance(problem, EventTooLargeError):
            counters.oversized_events += 1
            log.warning("watch %s: %s", self.resource, problem)
        else:
            counters.malformed_lines += 1
            log.warning(
                "watch %s: skipped a malformed line (%s): %r",
                self.resource,
                problem,
                problem.line[:SNIPPET_BYTES],
            )
        counters.last_error = problem

    async def _read(self, open_stream: _OpenStream, collected: _Collected) -> Observation | _Yield:
        """Read until the next observation for the machine, applying changes on the way.

        While WATCHING each change is applied and handed over as it is parsed (a pulling
        consumer applies it itself: the driver parks on the stream); during a streaming
        list each ADDED object is collected. Returns ``_YIELD`` when the consumers must run
        first: the delivery asked for it after a change, or before waiting on the network.
        """
        pending = open_stream.pending
        delivery = self._delivery
        # Bound once: the loop below runs once per event.
        pulls, push, apply_line, watching, streaming = (
            delivery.pulls,
            delivery.push,
            self._apply_line,
            Phase.WATCHING,
            Phase.STREAMING_LIST,
        )
        # A compact cache keeps a streaming list's lines as they are (see _collect_line).
        raw_list = self.cache.compact and self.transform is None
        while True:
            phase = self.state.phase
            while pending:
                line = pending.popleft()
                if type(line) is bytes:
                    if phase is watching:
                        if pulls and not line.startswith(_BOOKMARK_PREFIX):
                            # The consumer takes it from here (take_line).
                            pending.appendleft(line)
                            if not delivery.busy():
                                self._parked = open_stream
                            return _YIELD
                        result = apply_line(line)
                        if isinstance(result, Event):
                            if self._waiters:
                                self._notify()
                            if push(result):
                                return _YIELD
                            continue
                        if result is None:
                            continue
                        line = result
                    else:
                        if raw_list and phase is streaming and self._collect_line(line, collected):
                            continue
                        try:
                            line = parse_event(line)
                        except MalformedLineError as exc:
                            line = exc
                if not isinstance(line, RawEvent):
                    assert not isinstance(line, bytes)
                    self._skipped(line)
                    if open_stream.eof and not pending and isinstance(line, MalformedLineError):
                        # The incomplete last line of a stream that ended: the re-watch
                        # from the last resourceVersion delivers that event again.
                        continue
                    return LineSkipped(line)
                observation = self._observe(line, phase, collected)
                if observation is not None:
                    return observation
            if delivery.busy():
                # Let the consumers take what was handed over before waiting on the network.
                return _YIELD
            observation = await self._receive(open_stream, phase)
            if observation is not None:
                return observation

    def _collect_line(self, line: bytes, collected: _Collected) -> bool:
        """Collect a streaming list's ADDED line for a compact cache without parsing it.

        Only the type and the key fields are read (``peek_line``); the line is what the
        cache keeps. Returns ``False`` for any other line (a bookmark, an error, anything
        inadmissible or malformed), which then takes the usual path and is reported there.
        """
        head = peek_line(line)
        if head is None or head[0] != "ADDED":
            return False
        meta = head[1]
        key = self._key(meta)
        if key is None:
            return False
        assert meta is not None
        collected.append((key, pack_unparsed(line, meta, wrapped=True)))
        return True

    def _observe(self, raw: RawEvent, phase: Phase, collected: _Collected) -> Observation | None:
        """Return what a parsed line means for the machine (``None``: nothing more to do)."""
        kind = raw.type
        if kind in CHANGE_TYPES:
            key = self._key(raw.object.get("metadata"))
            if key is None:
                problem = _inadmissible(_snippet(raw.object))
                self._skipped(problem)
                return LineSkipped(problem)
            if phase is Phase.STREAMING_LIST and kind == "ADDED":
                obj = raw.object
                if self.transform is not None:
                    obj = self.transform(obj)
                    key = object_key(obj)
                collected.append((key, pack(obj) if self.cache.compact else obj))
                if self._gc_freeze and not len(collected) % _FREEZE_EVERY:
                    self._freeze()
                return None
        elif kind == "ERROR":
            return Failed(status_to_error(raw.object, verb="watch", resource=str(self.resource)))
        return WatchEvent(raw)

    async def _receive(self, open_stream: _OpenStream, phase: Phase) -> Observation | None:
        """Wait for the next bytes (framing them) or a deadline; ``None``: lines to read."""
        if open_stream.eof:
            return StreamEnded()
        timeout = self.options.stall_timeout
        now = anyio.current_time()
        relist_at = self.state.relist_at
        if relist_at is not None and phase is Phase.WATCHING:
            if now >= relist_at:
                return RelistDue()
            timeout = min(timeout, relist_at - now)
        deadline = open_stream.deadline
        if deadline is not None and phase is Phase.STREAMING_LIST:
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
            if not chunk:
                with anyio.move_on_after(timeout) as scope:
                    chunk = await open_stream.stream.read()
                if scope.cancelled_caught:
                    now = anyio.current_time()
                    if deadline is not None and now >= deadline:
                        return InitialDeadlinePassed()
                    if relist_at is not None and phase is Phase.WATCHING and now >= relist_at:
                        return RelistDue()
                    return Failed(self._stalled("no byte received"))
        except TransportError as exc:
            return Failed(exc)
        if chunk:
            self.counters.last_byte_at = time.monotonic()
            open_stream.pending.extend(open_stream.splitter.feed(chunk))
        else:
            open_stream.eof = True
            tail = open_stream.splitter.close()
            if tail:
                # A partial last line: the connection ended mid-event (reported as skipped).
                open_stream.pending.append(tail)
        return None


def _inadmissible(line: bytes) -> MalformedLineError:
    return MalformedLineError(
        "watch event's object has no usable metadata (a name, a resourceVersion and a "
        "namespace that fits the watch)",
        line=line,
    )


def _snippet(obj: object) -> bytes:
    """Return the start of an object, to quote it in an error (never on the per-event path)."""
    return repr(obj)[:SNIPPET_BYTES].encode()
