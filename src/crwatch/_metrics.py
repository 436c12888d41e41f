"""The metrics recorder: crwatch objects' ``statistics()`` turned into metric families.

Collection is poll-based: a :class:`Registry` holds the objects registered with it and reads
their ``statistics()`` only when an exporter collects (a Prometheus scrape, an OpenTelemetry
export). Nothing runs per event and no task is started; the counters are the ones
``statistics()`` already keeps, so a registry costs nothing between scrapes.

The translation from a statistics record to samples is a set of pure functions (record in,
samples out), so exporters are thin: :mod:`crwatch.prometheus` and :mod:`crwatch.otel` map
the families onto their own types.

Names follow the Prometheus conventions (https://prometheus.io/docs/practices/naming/):
base units (seconds), a ``_total`` suffix on counters added by the exporter. The work-queue
families reuse client-go's names (``workqueue_*``,
https://github.com/kubernetes/component-base/blob/master/metrics/prometheus/workqueue/metrics.go)
and the controller families controller-runtime's (``controller_runtime_*``,
https://github.com/kubernetes-sigs/controller-runtime/blob/main/pkg/internal/controller/metrics/metrics.go),
so dashboards made for Go controllers work unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Literal, Protocol

from attrs import field, frozen

from ._controller import ControllerStatistics
from ._exceptions import InvalidOptionError
from ._informer import InformerStatistics, SubscriberStatistics
from ._watch import WatchStatistics
from ._workqueue import Durations, WorkQueueStatistics

__all__ = [
    "METRICS",
    "Metric",
    "MetricInfo",
    "Registry",
    "Sample",
    "default_registry",
    "info",
    "register",
    "unregister",
]

Kind = Literal["counter", "gauge", "histogram"]
Labels = tuple[tuple[str, str], ...]
Record = WatchStatistics | InformerStatistics | WorkQueueStatistics | ControllerStatistics


@frozen
class MetricInfo:
    """What a metric family is: its name, type, unit, labels and meaning.

    Attributes:
        name: the family's name; Prometheus exporters add ``_total`` to counters.
        kind: ``"counter"``, ``"gauge"`` or ``"histogram"``.
        help: one line saying what it measures.
        labels: the label names, in order.
        unit: the unit (``"seconds"``) or ``""``.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    unit: str = ""


@frozen
class Sample:
    """One labelled value of a metric family.

    Attributes:
        labels: ``(name, value)`` pairs, in the family's label order.
        value: a number, or a :class:`crwatch.Durations` histogram for histograms.
    """

    labels: Labels
    value: float | Durations = field(eq=False)


@frozen
class Metric:
    """A metric family with its samples, as :meth:`Registry.collect` returns it.

    Attributes:
        info: the family's :class:`MetricInfo`.
        samples: one :class:`Sample` per label set.
    """

    info: MetricInfo
    samples: tuple[Sample, ...]


def _info(name: str, kind: Kind, help: str, *labels: str, unit: str = "") -> MetricInfo:
    return MetricInfo(name, kind, help, labels, unit)


_R = "resource"
_S = "subscriber"

#: Every family a registry can produce, in the order :meth:`Registry.collect` returns them.
METRICS: tuple[MetricInfo, ...] = (
    # --- watches and informers (label ``resource``) ---
    _info("crwatch_watch_events", "counter", "Changes delivered (cache updates).", _R),
    _info("crwatch_watch_lists", "counter", "Complete lists applied (initial too).", _R),
    _info("crwatch_watch_relists", "counter", "Lists after the initial one (after a 410).", _R),
    _info("crwatch_watch_requests", "counter", "Watch requests opened (streaming lists too).", _R),
    _info("crwatch_watch_reconnects", "counter", "Watch requests after the first one.", _R),
    _info("crwatch_watch_errors", "counter", "Failed list or watch requests.", _R),
    _info("crwatch_watch_stalls", "counter", "Watches dropped because no byte arrived.", _R),
    _info("crwatch_watch_malformed_lines", "counter", "Stream lines skipped as malformed.", _R),
    _info("crwatch_watch_oversized_events", "counter", "Events skipped as too large.", _R),
    _info("crwatch_watch_synced", "gauge", "1 once the initial state is delivered, else 0.", _R),
    _info("crwatch_watch_events_by_type", "counter", "Changes delivered, by type.", _R, "type"),
    _info(
        "crwatch_watch_relists_by_reason",
        "counter",
        "Lists after the initial one, by cause (the failure's class name, or closed).",
        _R,
        "reason",
    ),
    _info(
        "crwatch_watch_reconnects_by_reason",
        "counter",
        "Watch requests after the first one, by cause (the failure's class name, or closed).",
        _R,
        "reason",
    ),
    _info(
        "crwatch_watch_list_duration_seconds",
        "gauge",
        "How long the last complete list took, retries included.",
        _R,
        unit="seconds",
    ),
    _info(
        "crwatch_watch_duration_seconds",
        "gauge",
        "How long the last watch that ended was open.",
        _R,
        unit="seconds",
    ),
    _info(
        "crwatch_watch_last_byte_age_seconds",
        "gauge",
        "Seconds since the server last sent a byte.",
        _R,
        unit="seconds",
    ),
    _info(
        "crwatch_watch_last_error_timestamp_seconds",
        "gauge",
        "Unix time of the most recent list/watch failure.",
        _R,
        unit="seconds",
    ),
    _info("crwatch_informer_objects", "gauge", "Objects in the informer's cache.", _R),
    # --- informer subscribers (labels ``resource``, ``subscriber``) ---
    _info("crwatch_subscriber_depth", "gauge", "Events waiting in the buffer.", _R, _S),
    _info("crwatch_subscriber_buffer_size", "gauge", "The buffer's capacity.", _R, _S),
    _info("crwatch_subscriber_delivered", "counter", "Events taken by the subscriber.", _R, _S),
    _info("crwatch_subscriber_coalesced", "counter", "States skipped: buffer full.", _R, _S),
    _info("crwatch_subscriber_dropped", "counter", "Events discarded: subscriber failed.", _R, _S),
    _info("crwatch_subscriber_errors", "counter", "Errors of the callback/middlewares.", _R, _S),
    _info("crwatch_subscriber_closed", "gauge", "1 once the subscriber stopped receiving.", _R, _S),
    # --- work queues: client-go's names (label ``name``) ---
    _info("workqueue_depth", "gauge", "Current depth of the work queue.", "name"),
    _info("workqueue_adds", "counter", "Adds handled by the work queue.", "name"),
    _info(
        "workqueue_queue_duration_seconds",
        "histogram",
        "How long an item stays in the queue before a worker takes it.",
        "name",
        unit="seconds",
    ),
    _info(
        "workqueue_work_duration_seconds",
        "histogram",
        "How long processing an item takes.",
        "name",
        unit="seconds",
    ),
    _info(
        "workqueue_unfinished_work_seconds",
        "gauge",
        "Seconds of work in progress not yet observed by work_duration.",
        "name",
        unit="seconds",
    ),
    _info(
        "workqueue_longest_running_processor_seconds",
        "gauge",
        "Seconds the longest-running item in flight has run.",
        "name",
        unit="seconds",
    ),
    _info("workqueue_retries", "counter", "Retries handled by the work queue.", "name"),
    # --- controllers: controller-runtime's names (label ``controller``) ---
    _info(
        "controller_runtime_reconcile",
        "counter",
        "Reconciles per controller and result (success, error, requeue).",
        "controller",
        "result",
    ),
    _info(
        "controller_runtime_reconcile_errors",
        "counter",
        "Reconciles that failed.",
        "controller",
    ),
    _info(
        "controller_runtime_reconcile_time_seconds",
        "histogram",
        "How long reconciles took.",
        "controller",
        unit="seconds",
    ),
    _info(
        "controller_runtime_max_concurrent_reconciles",
        "gauge",
        "The worker limit.",
        "controller",
    ),
    _info("controller_runtime_active_workers", "gauge", "Reconciles running now.", "controller"),
    _info(
        "crwatch_controller_reconcile_timeouts",
        "counter",
        "Reconciles cancelled after reconcile_timeout.",
        "controller",
    ),
    _info(
        "crwatch_controller_mapper_errors",
        "counter",
        "Events a mapper failed on.",
        "controller",
    ),
    _info("crwatch_controller_resyncs", "counter", "Periodic resyncs done.", "controller"),
    _info("crwatch_controller_synced", "gauge", "1 once every cache has synced.", "controller"),
)

_BY_NAME = {info.name: info for info in METRICS}


class _HasStatistics(Protocol):
    """What :meth:`Registry.register` accepts: an object with a ``statistics()`` method."""

    def statistics(self) -> object:
        """Return the object's frozen statistics record (read at each collection)."""


Point = tuple[str, Labels, "float | Durations"]


def _watch_points(resource: str, s: WatchStatistics | InformerStatistics) -> Iterator[Point]:
    """Yield the ``crwatch_watch_*`` points both records share, and each one's own."""
    labels: Labels = ((_R, resource),)
    yield "crwatch_watch_events", labels, s.events
    yield "crwatch_watch_lists", labels, s.lists
    yield "crwatch_watch_requests", labels, s.watches
    yield "crwatch_watch_errors", labels, s.errors
    yield "crwatch_watch_stalls", labels, s.stalls
    yield "crwatch_watch_synced", labels, float(s.synced)
    yield "crwatch_watch_malformed_lines", labels, s.malformed_lines
    yield "crwatch_watch_oversized_events", labels, s.oversized_events
    for kind, n in s.events_by_type.items():
        yield "crwatch_watch_events_by_type", (*labels, ("type", kind)), n
    for reason, n in s.relists_by_reason.items():
        yield "crwatch_watch_relists_by_reason", (*labels, ("reason", reason)), n
    for reason, n in s.reconnects_by_reason.items():
        yield "crwatch_watch_reconnects_by_reason", (*labels, ("reason", reason)), n
    if s.last_list_seconds is not None:
        yield "crwatch_watch_list_duration_seconds", labels, s.last_list_seconds
    if s.last_watch_seconds is not None:
        yield "crwatch_watch_duration_seconds", labels, s.last_watch_seconds
    if s.seconds_since_last_byte is not None:
        yield "crwatch_watch_last_byte_age_seconds", labels, s.seconds_since_last_byte
    if isinstance(s, InformerStatistics):
        yield "crwatch_watch_relists", labels, s.relists
        yield "crwatch_watch_reconnects", labels, s.reconnects
        yield "crwatch_informer_objects", labels, s.objects
        if s.last_error_time is not None:
            yield "crwatch_watch_last_error_timestamp_seconds", labels, s.last_error_time
        for sub in s.subscribers:
            yield from _subscriber_points(resource, sub)
    else:
        # WatchStatistics has no relist/reconnect counters: every list after the first is
        # a relist, every watch request after the first a reconnect.
        yield "crwatch_watch_relists", labels, max(0, s.lists - 1)
        yield "crwatch_watch_reconnects", labels, max(0, s.watches - 1)


def _subscriber_points(resource: str, s: SubscriberStatistics) -> Iterator[Point]:
    labels: Labels = ((_R, resource), (_S, s.name))
    yield "crwatch_subscriber_depth", labels, s.depth
    yield "crwatch_subscriber_buffer_size", labels, s.buffer_size
    yield "crwatch_subscriber_delivered", labels, s.delivered
    yield "crwatch_subscriber_coalesced", labels, s.coalesced
    yield "crwatch_subscriber_dropped", labels, s.dropped
    yield "crwatch_subscriber_errors", labels, s.errors
    yield "crwatch_subscriber_closed", labels, float(s.closed)


def _queue_points(name: str, s: WorkQueueStatistics) -> Iterator[Point]:
    labels: Labels = (("name", name),)
    yield "workqueue_depth", labels, s.depth
    yield "workqueue_adds", labels, s.adds
    yield "workqueue_queue_duration_seconds", labels, s.queue_latency
    yield "workqueue_work_duration_seconds", labels, s.work_duration
    yield "workqueue_unfinished_work_seconds", labels, s.unfinished_work
    yield "workqueue_longest_running_processor_seconds", labels, s.longest_running
    yield "workqueue_retries", labels, s.retries


def _controller_points(name: str, s: ControllerStatistics) -> Iterator[Point]:
    labels: Labels = (("controller", name),)
    # controller-runtime counts each reconcile once under one result: "error" when it
    # failed, "requeue"/"requeue_after" when it asked to run again, else "success"
    # (pkg/internal/controller/controller.go, reconcileHandler). ControllerStatistics
    # .requeues also counts the backoff an error leads to (as documented), so the
    # requeues that were not errors are requeues - errors; the two requeue results are
    # one here, "requeue", as the record does not tell them apart.
    requeue = max(0, s.requeues - s.errors)
    success = max(0, s.reconciles - s.errors - requeue)
    for result, value in (("success", success), ("error", s.errors), ("requeue", requeue)):
        yield "controller_runtime_reconcile", (*labels, ("result", result)), value
    yield "controller_runtime_reconcile_errors", labels, s.errors
    yield "controller_runtime_reconcile_time_seconds", labels, s.reconcile_duration
    yield "controller_runtime_max_concurrent_reconciles", labels, s.workers
    yield "controller_runtime_active_workers", labels, s.active
    yield "crwatch_controller_reconcile_timeouts", labels, s.timeouts
    yield "crwatch_controller_mapper_errors", labels, s.mapper_errors
    yield "crwatch_controller_resyncs", labels, s.resyncs
    yield "crwatch_controller_synced", labels, float(s.synced)
    yield from _queue_points(s.queue.name, s.queue)


def points(name: str, record: object) -> Iterator[Point]:
    """Return the points of one statistics record, labelled with ``name``."""
    if isinstance(record, (WatchStatistics, InformerStatistics)):
        return _watch_points(name, record)
    if isinstance(record, WorkQueueStatistics):
        return _queue_points(name, record)
    if isinstance(record, ControllerStatistics):
        return _controller_points(name, record)
    raise InvalidOptionError(
        f"cannot export statistics of type {type(record).__name__}: expected those of "
        "crwatch.watch(), an Informer, a WorkQueue or a Controller"
    )


def _add(a: float | Durations, b: float | Durations) -> float | Durations:
    if isinstance(a, Durations) and isinstance(b, Durations):
        return Durations(
            count=a.count + b.count,
            total=a.total + b.total,
            maximum=max(a.maximum, b.maximum),
            buckets=tuple(x + y for x, y in zip(a.buckets, b.buckets, strict=True)),
        )
    assert not isinstance(a, Durations)
    assert not isinstance(b, Durations)
    return a + b


def families(pairs: Iterable[tuple[str, object]]) -> tuple[Metric, ...]:
    """Build every family of :data:`METRICS` from ``(name, statistics record)`` pairs.

    Samples with the same labels (two subscribers sharing a name) are summed.
    """
    values: dict[str, dict[Labels, float | Durations]] = {info.name: {} for info in METRICS}
    for name, record in pairs:
        for metric, labels, value in points(name, record):
            family = values[metric]
            family[labels] = _add(family[labels], value) if labels in family else value
    return tuple(
        Metric(info, tuple(Sample(labels, value) for labels, value in values[info.name].items()))
        for info in METRICS
    )


def _name_of(obj: object, record: object, name: str | None) -> str:
    if name is not None:
        if not isinstance(name, str) or not name:
            raise InvalidOptionError(f"name must be a non-empty string, got {name!r}")
        return name
    if isinstance(record, (WorkQueueStatistics, ControllerStatistics)):
        return record.name
    raise InvalidOptionError(
        f"{type(obj).__name__} has no name of its own: "
        'register it with a name, e.g. register(informer, name="widgets")'
    )


class Registry:
    """The objects whose statistics are exported, and the way to collect them.

    ::

        registry = crwatch.metrics.Registry()
        registry.register(informer, name="widgets")    # label resource="widgets"
        registry.register(controller)                  # its name; its queue too
        for metric in registry.collect(): ...

    :func:`crwatch.metrics.register` registers with the process-wide default registry,
    which the exporters read unless given another one. Registered objects are held (strong
    references) until :meth:`unregister`: a stopped informer keeps reporting its last
    values, as a Prometheus counter would.

    ``collect()`` is safe to call from another thread (prometheus-client's HTTP server
    scrapes in one): it only reads ``statistics()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[int, tuple[_HasStatistics, str, type]] = {}

    def __repr__(self) -> str:
        return f"<crwatch.metrics.Registry {len(self._objects)} objects>"

    def register(self, obj: _HasStatistics, *, name: str | None = None) -> None:
        """Export ``obj``'s statistics from now on.

        Args:
            obj: the value of ``crwatch.watch()`` (the ``Watch`` or its ``EventStream``),
                an :class:`crwatch.Informer`, a :class:`crwatch.WorkQueue` or a
                :class:`crwatch.Controller` (which exports its work queue too).
            name: the ``resource`` label of a watch or informer (required for them), or the
                ``name``/``controller`` label of a queue or controller (default: its own).

        Raises:
            InvalidOptionError: ``obj`` has no supported ``statistics()``, ``name`` is
                missing or invalid, or the same kind of object is already registered under
                that name (Prometheus would see two series with the same labels).
        """
        statistics = getattr(obj, "statistics", None)
        if not callable(statistics):
            raise InvalidOptionError(f"{obj!r} has no statistics() to export")
        record = statistics()
        points(name or "", record)  # raises for unsupported records
        label = _name_of(obj, record, name)
        with self._lock:
            if id(obj) in self._objects:
                raise InvalidOptionError(f"{obj!r} is already registered")
            kind = type(record)
            for _, other, other_kind in self._objects.values():
                if other == label and other_kind is kind:
                    raise InvalidOptionError(
                        f"a {kind.__name__.removesuffix('Statistics')} named {label!r} is "
                        "already registered"
                    )
            self._objects[id(obj)] = (obj, label, kind)

    def unregister(self, obj: object) -> None:
        """Stop exporting ``obj``; nothing happens if it is not registered."""
        with self._lock:
            self._objects.pop(id(obj), None)

    def __contains__(self, obj: object) -> bool:
        return id(obj) in self._objects

    def collect(self) -> tuple[Metric, ...]:
        """Read every registered object's ``statistics()`` now; return all families.

        Every family of :data:`METRICS` is returned, with no samples when nothing
        registered produces it.
        """
        with self._lock:
            objects = list(self._objects.values())
        return families((label, _statistics(obj)) for obj, label, _ in objects)


def _statistics(obj: _HasStatistics) -> object:
    # An informer's statistics() iterates its subscribers; called from a scraping thread
    # while the event loop subscribes, the dict can change size under it. Try again.
    for _ in range(4):
        try:
            return obj.statistics()
        except RuntimeError:
            continue
    return obj.statistics()


#: The process-wide registry :func:`register` adds to and exporters read by default.
default_registry: Registry = Registry()


def register(obj: _HasStatistics, *, name: str | None = None) -> None:
    """Export ``obj``'s statistics through the default registry; see :meth:`Registry.register`."""
    default_registry.register(obj, name=name)


def unregister(obj: object) -> None:
    """Stop exporting ``obj`` through the default registry."""
    default_registry.unregister(obj)


def info(name: str) -> MetricInfo:
    """Return the :class:`MetricInfo` of a family by name."""
    return _BY_NAME[name]
