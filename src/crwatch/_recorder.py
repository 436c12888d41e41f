"""The event recorder: core/v1 Events about objects, aggregated and rate limited.

Modelled on client-go's ``tools/record`` (events_cache.go), whose defaults it keeps:

- **Spam filter**: a token bucket per (source, involved object, type, reason, message),
  25 events of burst refilled at one per 5 minutes; events over it are dropped.
- **Aggregation**: the same event (same object, type, reason, message, source) seen again
  within the window (10 minutes) is not a new Event object: the existing one is PATCHed with
  ``count + 1`` and a new ``lastTimestamp``.
- **Never blocks, never raises**: ``record()`` puts the event in a bounded buffer (1000,
  client-go's broadcaster queue) and returns; a task owned by the ``async with`` writes
  them. A full buffer drops the new event. Failures are counted and logged at most once per
  interval.

Events are named ``<object name>.<hex nanoseconds>`` in the object's namespace (``default``
for a cluster-scoped object), like client-go's; see
https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/.
"""

from __future__ import annotations

import collections
import logging
import math
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus
from attrs import define, frozen

from ._clock import Clock, validate_clock
from ._exceptions import CrwatchError, InvalidOptionError, NotFoundError
from ._resource import Resource

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["EVENTS", "EventRecorder", "EventRecorderStatistics", "TokenBucket"]

log = logging.getLogger("crwatch.events")

#: core/v1 Events.
EVENTS: Final = Resource("", "v1", "events", kind="Event", namespaced=True)

#: client-go's defaults (tools/record/events_cache.go).
SPAM_BURST: Final = 25
SPAM_REFILL_PER_SECOND: Final = 1.0 / 300.0
AGGREGATION_WINDOW: Final = 600.0
CACHE_SIZE: Final = 4096
BUFFER_SIZE: Final = 1000

_TYPES: Final = ("Normal", "Warning")


@define
class TokenBucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second (pure, no clock)."""

    burst: float
    rate: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, burst: float, rate: float, now: float) -> TokenBucket:
        """Return a full bucket as of ``now``."""
        return cls(burst, rate, burst, now)

    def take(self, now: float) -> bool:
        """Take one token if there is one (after refilling up to ``now``)."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@frozen
class EventRecorderStatistics:
    """A snapshot of an :class:`EventRecorder`'s counters."""

    recorded: int
    """Calls of ``record()``."""
    created: int
    """Event objects created."""
    aggregated: int
    """Repeats written as a ``count`` bump of an existing Event (PATCH)."""
    throttled: int
    """Events dropped by the spam filter."""
    dropped: int
    """Events dropped because the buffer was full (or the recorder had closed)."""
    invalid: int
    """Calls refused: a bad type, reason or object (logged)."""
    failed: int
    """Writes the API server refused or that got no answer."""
    pending: int
    """Events waiting in the buffer."""
    last_error: BaseException | None
    """The last write error, if any."""


@frozen
class _Pending:
    key: tuple[str, ...]
    namespace: str
    involved: dict[str, Any]
    reason: str
    message: str
    type: str
    action: str | None
    when: datetime
    at: float


@define
class _Seen:
    name: str
    count: int
    first: str
    at: float


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Write core/v1 Events about objects, like client-go's event recorder.

    ::

        async with crwatch.EventRecorder(client, component="widgets-controller") as events:
            events.record(widget, "Synced", "created 2 config maps")
            events.record(widget, "Failed", "upstream unreachable", type="Warning")

    :meth:`record` never blocks and never raises: the event goes into a bounded buffer that
    a task owned by the ``async with`` block drains; repeats within ``aggregation_window``
    bump the ``count`` of one Event object; a token bucket per object and event limits spam.
    What is dropped, refused or failed is counted in :meth:`statistics` and logged (write
    failures at most once per ``error_log_interval``). Leaving the block writes what is
    still buffered, for at most ``flush_timeout`` seconds.

    Args:
        client: the client for the writes.
        component: ``source.component`` and ``reportingComponent`` of the Events.
        host: ``source.host`` and ``reportingInstance`` (default: the host name).
        buffer_size: events held before new ones are dropped (default 1000).
        burst: events per object and event allowed at once (default 25).
        refill_per_second: the rate the burst refills at (default one per 300 s).
        aggregation_window: seconds within which a repeat bumps ``count`` (default 600).
        cache_size: events remembered for aggregation and spam filtering (default 4096).
        error_log_interval: seconds between two logged write failures (default 60).
        flush_timeout: seconds allowed on exit to write the buffer (default 5).
        clock: where time comes from (default: the event loop's).

    Raises:
        InvalidOptionError: a bad argument.
    """

    def __init__(
        self,
        client: Client,
        *,
        component: str,
        host: str | None = None,
        buffer_size: int = BUFFER_SIZE,
        burst: int = SPAM_BURST,
        refill_per_second: float = SPAM_REFILL_PER_SECOND,
        aggregation_window: float = AGGREGATION_WINDOW,
        cache_size: int = CACHE_SIZE,
        error_log_interval: float = 60.0,
        flush_timeout: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(component, str) or not component.strip():
            raise InvalidOptionError(f"component must be a non-empty string, got {component!r}")
        if host is None:
            host = socket.gethostname()
        if not isinstance(host, str):
            raise InvalidOptionError(f"host must be a string, got {host!r}")
        for name, value in (
            ("buffer_size", buffer_size),
            ("burst", burst),
            ("cache_size", cache_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOptionError(f"{name} must be an int >= 1, got {value!r}")
        for name, number in (
            ("refill_per_second", refill_per_second),
            ("aggregation_window", aggregation_window),
            ("error_log_interval", error_log_interval),
            ("flush_timeout", flush_timeout),
        ):
            if (
                isinstance(number, bool)
                or not isinstance(number, (int, float))
                or not math.isfinite(number)
                or number < 0
            ):
                raise InvalidOptionError(f"{name} must be a finite number >= 0, got {number!r}")
        self._client = client
        self._component = component
        self._host = host
        self._buffer_size = buffer_size
        self._burst = burst
        self._rate = float(refill_per_second)
        self._window = float(aggregation_window)
        self._cache_size = cache_size
        self._log_interval = float(error_log_interval)
        self._flush_timeout = float(flush_timeout)
        self._clock = validate_clock(clock)
        self._buffer: collections.deque[_Pending] = collections.deque()
        self._buckets: collections.OrderedDict[tuple[str, ...], TokenBucket] = (
            collections.OrderedDict()
        )
        self._seen: collections.OrderedDict[tuple[str, ...], _Seen] = collections.OrderedDict()
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._drain_scope = anyio.CancelScope(shield=True)
        self._drained = anyio.Event()
        self._closed = False
        self._submitted = 0
        self._done = 0
        self._last_logged: float | None = None
        self._counts = {
            "recorded": 0,
            "created": 0,
            "aggregated": 0,
            "throttled": 0,
            "dropped": 0,
            "invalid": 0,
            "failed": 0,
        }
        self._last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<crwatch.EventRecorder component={self._component!r} pending={len(self._buffer)}>"

    # -- public -----------------------------------------------------------------------------

    def record(
        self,
        obj: Mapping[str, Any],
        reason: str,
        message: str,
        *,
        type: str = "Normal",
        action: str | None = None,
    ) -> None:
        """Record an event about ``obj``; return at once, never raise.

        Args:
            obj: the object the event is about (its ``apiVersion``, ``kind`` and
                ``metadata`` make the ``involvedObject`` reference).
            reason: a short CamelCase reason (``"Synced"``).
            message: a human-readable description.
            type: ``"Normal"`` or ``"Warning"``.
            action: what was done or failed (``"Reconcile"``), optional.
        """
        self._counts["recorded"] += 1
        try:
            pending = self._build(obj, reason, message, type, action)
        except InvalidOptionError as exc:
            self._counts["invalid"] += 1
            log.warning("event not recorded: %s", exc)
            return
        if self._closed or len(self._buffer) >= self._buffer_size:
            self._counts["dropped"] += 1
            return
        bucket = self._buckets.get(pending.key)
        if bucket is None:
            bucket = TokenBucket.full(self._burst, self._rate, pending.at)
            self._buckets[pending.key] = bucket
            if len(self._buckets) > self._cache_size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(pending.key)
        if not bucket.take(pending.at):
            self._counts["throttled"] += 1
            return
        self._buffer.append(pending)
        self._submitted += 1
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every event recorded so far is written (or failed, or dropped).

        Raises:
            CrwatchError: the recorder is not running (not entered, or already left)
                while events are pending.
        """
        target = self._submitted
        while self._done < target:
            if self._task_group is None:
                raise CrwatchError("the EventRecorder is not running: use `async with` first")
            await self._progress.wait()

    def statistics(self) -> EventRecorderStatistics:
        """Return a snapshot of the recorder's counters."""
        return EventRecorderStatistics(
            pending=len(self._buffer), last_error=self._last_error, **self._counts
        )

    async def __aenter__(self) -> EventRecorder:
        if self._task_group is not None or self._closed:
            raise CrwatchError("an EventRecorder can be entered once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        # Shielded: when the caller's scope is cancelled, the writer must still be there to
        # write the buffer on exit (for at most flush_timeout); __aexit__ cancels it.
        self._drain_scope = anyio.CancelScope(shield=True)
        self._drained = anyio.Event()
        await task_group.start(self._drain, name=f"crwatch.events {self._component}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        self._closed = True
        if exc_type is None:
            # Shielded so that the buffer is written even when the caller is cancelled next.
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._flush_timeout):
                await self.flush()
        self._drain_scope.cancel()
        with anyio.CancelScope(shield=True):
            # Wait for the writer here, shielded: leaving the task group while it still runs
            # would take a pending cancellation of the caller's scope and raise it out of
            # this exit, skipping whatever the caller still has to leave after it.
            await self._drained.wait()
        task_group.cancel_scope.cancel()
        try:
            return await task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None
            left = len(self._buffer)
            if left:
                self._counts["dropped"] += left
                self._done += left
                self._buffer.clear()
                log.warning("%d events not written before the recorder closed", left)

    # -- building and writing ---------------------------------------------------------------

    def _build(
        self, obj: object, reason: object, message: object, type_: object, action: object
    ) -> _Pending:
        if type_ not in _TYPES:
            raise InvalidOptionError(f"type must be 'Normal' or 'Warning', got {type_!r}")
        if not isinstance(reason, str) or not reason:
            raise InvalidOptionError(f"reason must be a non-empty string, got {reason!r}")
        if not isinstance(message, str):
            raise InvalidOptionError(f"message must be a string, got {message!r}")
        if action is not None and not isinstance(action, str):
            raise InvalidOptionError(f"action must be a string, got {action!r}")
        if not isinstance(obj, Mapping):
            raise InvalidOptionError(f"obj must be an object (a mapping), got {obj!r:.80}")
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping) or not meta.get("name"):
            raise InvalidOptionError("obj has no metadata.name")
        involved: dict[str, Any] = {
            key: str(value)
            for key, value in (
                ("apiVersion", obj.get("apiVersion")),
                ("kind", obj.get("kind")),
                ("name", meta.get("name")),
                ("namespace", meta.get("namespace")),
                ("uid", meta.get("uid")),
                ("resourceVersion", meta.get("resourceVersion")),
            )
            if value
        }
        namespace = involved.get("namespace") or "default"
        key = (
            self._component,
            self._host,
            involved.get("apiVersion", ""),
            involved.get("kind", ""),
            involved.get("namespace", ""),
            involved["name"],
            involved.get("uid", ""),
            type_,
            reason,
            message,
        )
        return _Pending(
            key,
            namespace,
            involved,
            reason,
            message,
            str(type_),
            action,
            datetime.now(timezone.utc),
            self._clock.now(),
        )

    async def _drain(self, *, task_status: TaskStatus[None]) -> None:
        try:
            with self._drain_scope:
                task_status.started()
                await self._drain_loop()
        finally:
            self._drained.set()

    async def _drain_loop(self) -> None:
        while True:
            while not self._buffer:
                await self._wake.wait()
                self._wake = anyio.Event()
            pending = self._buffer.popleft()
            try:
                await self._write(pending)
            finally:
                self._done += 1
                self._progress.set()
                self._progress = anyio.Event()

    async def _write(self, pending: _Pending) -> None:
        stamp = _stamp(pending.when)
        seen = self._seen.get(pending.key)
        if seen is not None and pending.at - seen.at > self._window:
            seen = None
        try:
            if seen is not None:
                seen.count += 1
                seen.at = pending.at
                self._seen.move_to_end(pending.key)
                try:
                    await self._client.patch(
                        EVENTS,
                        seen.name,
                        {"count": seen.count, "lastTimestamp": stamp},
                        namespace=pending.namespace,
                    )
                except NotFoundError:
                    pass  # the Event expired (its TTL): create it again below
                else:
                    self._counts["aggregated"] += 1
                    return
            count = seen.count if seen is not None else 1
            first = seen.first if seen is not None else stamp
            name = f"{pending.involved['name']}.{time.time_ns():x}"
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": pending.namespace},
                "involvedObject": pending.involved,
                "reason": pending.reason,
                "message": pending.message,
                "type": pending.type,
                "source": {"component": self._component, "host": self._host},
                "reportingComponent": self._component,
                "reportingInstance": self._host,
                "firstTimestamp": first,
                "lastTimestamp": stamp,
                "count": count,
            }
            if pending.action:
                body["action"] = pending.action
            await self._client.create(EVENTS, body, namespace=pending.namespace)
        except CrwatchError as exc:
            self._fail(exc)
            return
        self._counts["created"] += 1
        self._seen[pending.key] = _Seen(name, count, first, pending.at)
        self._seen.move_to_end(pending.key)
        if len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)

    def _fail(self, exc: CrwatchError) -> None:
        self._counts["failed"] += 1
        self._last_error = exc
        now = self._clock.now()
        if self._last_logged is None or now - self._last_logged >= self._log_interval:
            self._last_logged = now
            log.warning(
                "writing an event failed (%d failures so far; logged at most every %gs): %s",
                self._counts["failed"],
                self._log_interval,
                exc,
            )
