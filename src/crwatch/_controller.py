"""``Controller``: level-triggered reconciles of one resource over a :class:`WorkQueue`.

Events only name keys. The controller subscribes to shared informers (the primary
resource, the ones it ``owns``, the ones it ``watches`` through mappers), turns every event
into keys of the primary resource and adds them to a work queue; ``workers`` tasks take
keys and call the user's reconcile with the object as the cache holds it *then*, so many
events for a key while it waits give one reconcile with the latest state (the queue
deduplicates, and never hands one key to two workers). The reconcile returns what to do
next (:class:`Action`); an error is logged with the key and the key retried with per-key
backoff through the queue's rate limiter.

The shape follows controller-runtime's controller
(https://github.com/kubernetes-sigs/controller-runtime/blob/main/pkg/internal/controller/controller.go)
and kube-rs's ``Controller`` (kube-runtime/src/controller/mod.rs).

Sync reconcile functions run in worker threads (``anyio.to_thread``), at most ``workers`` at
a time: a sync reconcile that blocks (a network call, a subprocess) would otherwise stall
the event loop, and with it the informers and every other worker. A sync reconcile cannot
be cancelled: past ``reconcile_timeout`` it is reported, and its result used when it
returns.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup
from attrs import field, frozen

from ._client import Client
from ._clock import Clock, default_clock, validate_clock
from ._events import Event, EventType, object_key
from ._exceptions import (
    CrwatchError,
    InvalidOptionError,
    MapperError,
    QueueShutDown,
    ReconcileError,
    ReconcileResultError,
    ReconcileTimeout,
)
from ._informer import Informer, InformerStatistics, Subscription
from ._middleware import Middleware, changed
from ._options import namespace_set
from ._ratelimit import RateLimiter
from ._recorder import EventRecorder
from ._resource import Resource
from ._shared import SharedInformers
from ._store import Store
from ._workqueue import Durations, WorkQueue, WorkQueueStatistics, _Histogram

__all__ = [
    "Action",
    "Context",
    "Controller",
    "ControllerStatistics",
    "Mapper",
    "Recorder",
]

log = logging.getLogger("crwatch")

T = TypeVar("T")

#: A mapper of ``Controller(watches=[(resource, mapper)])``: the keys (``"namespace/name"``)
#: or the objects of the primary resource that a watched object concerns.
Mapper = Callable[[dict[str, Any]], "Iterable[str | Mapping[str, Any]] | str | None"]

_DELETED: Final = EventType.DELETED


@frozen
class Action:
    """What a reconcile asks for next; ``None`` means :meth:`await_change`.

    Build one with :meth:`requeue`, :meth:`backoff` or :meth:`await_change`.

    Attributes:
        kind: ``"requeue"``, ``"backoff"`` or ``"await_change"``.
        after: for ``"requeue"``, the delay in seconds (``0``: at once).
    """

    kind: Literal["requeue", "backoff", "await_change"]
    after: float = 0.0

    @classmethod
    def requeue(cls, after: float | None = None) -> Action:
        """Reconcile the key again: at once, or ``after`` seconds (a periodic check).

        The key's backoff is reset. A change to the object meanwhile reconciles it sooner.

        Raises:
            InvalidOptionError: ``after`` is not a finite number >= 0.
        """
        if after is None:
            return cls("requeue", 0.0)
        if (
            isinstance(after, bool)
            or not isinstance(after, (int, float))
            or not math.isfinite(after)
            or after < 0
        ):
            raise InvalidOptionError(f"after must be a finite number >= 0, got {after!r}")
        return cls("requeue", float(after))

    @classmethod
    def backoff(cls) -> Action:
        """Reconcile the key again after its backoff (what an error gets by default).

        The delay comes from the queue's rate limiter and grows with each backoff in a
        row (5 ms, 10 ms, ... 1000 s by default) until a reconcile ends any other way.
        """
        return cls("backoff")

    @classmethod
    def await_change(cls) -> Action:
        """Do nothing until the object (or something mapped to it) changes; same as ``None``."""
        return cls("await_change")


_AWAIT_CHANGE: Final = Action("await_change")
_YIELD_EVERY: Final = 32  # reconciles a worker runs at most without yielding to the loop
_BACKOFF: Final = Action("backoff")


@runtime_checkable
class Recorder(Protocol):
    """Where :meth:`Context.record` sends events about objects (core/v1 Events).

    ``record`` must not block and must not raise: it is called from reconciles.
    """

    def record(
        self, obj: Mapping[str, Any], reason: str, message: str, *, type: str = "Normal"
    ) -> None:
        """Record that ``reason`` happened to ``obj``, with a human-readable ``message``."""
        ...


class _LogRecorder:
    """The recorder used when none is given: a DEBUG log line per event."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def record(
        self, obj: Mapping[str, Any], reason: str, message: str, *, type: str = "Normal"
    ) -> None:
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        key = object_key(dict(obj)) if isinstance(meta, Mapping) else "?"
        log.debug("controller %s: event %s %s on %s: %s", self._name, type, reason, key, message)


class Context(Generic[T]):
    """What a reconcile gets: the key, the object as cached, and the controller's tools.

    ``T`` is the type you give the objects (``dict[str, Any]``, or a ``TypedDict``). With
    the default compact cache each reconcile gets a dict of its own, decoded from the cache
    (changing it, say to build an update, changes nothing else); with ``cache="objects"``
    the objects are the cache's dicts, shared: treat them as read-only there.
    """

    __slots__ = ("_controller", "_in_thread", "key", "object", "retries")

    def __init__(self, controller: Controller[T], key: str, obj: T | None, retries: int) -> None:
        self._controller = controller
        self._in_thread = False
        #: The key being reconciled: ``namespace/name`` (``name`` when cluster-scoped).
        self.key: str = key
        #: The object as the cache holds it when the reconcile starts; ``None`` when gone.
        self.object: T | None = obj
        #: How many reconciles of this key failed (or backed off) in a row before this one.
        self.retries: int = retries

    def __repr__(self) -> str:
        return f"<crwatch.Context {self.key!r} retries={self.retries}>"

    @property
    def client(self) -> Client:
        """The controller's :class:`crwatch.Client`."""
        return self._controller.client

    @property
    def controller(self) -> Controller[T]:
        """The controller running this reconcile."""
        return self._controller

    def store(self, resource: Resource | str) -> Store:
        """Return the cache of a resource the controller watches (its own, owns or watches).

        Raises:
            InvalidOptionError: the controller does not watch ``resource``.
        """
        return self._controller.store(resource)

    def record(
        self, obj: Mapping[str, Any], reason: str, message: str, *, type: str = "Normal"
    ) -> None:
        """Record an event about ``obj`` through the controller's recorder; never raises."""
        try:
            if self._in_thread:
                anyio.from_thread.run_sync(self._record, obj, reason, message, type)
            else:
                self._record(obj, reason, message, type)
        except Exception:
            log.exception(
                "controller %s: recording an event for %s failed", self._controller.name, self.key
            )

    def _record(self, obj: Mapping[str, Any], reason: str, message: str, type: str) -> None:
        self._controller._recorder.record(obj, reason, message, type=type)


@frozen
class ControllerStatistics:
    """A snapshot of a :class:`Controller`, from :meth:`Controller.statistics`.

    Attributes:
        name: the controller's name (also its queue's name).
        workers: the worker limit.
        active: reconciles running now.
        synced: whether every cache has synced (reconciles start after that).
        reconciles: reconciles finished (whatever their outcome).
        errors: reconciles that raised, timed out, or returned a wrong type.
        timeouts: reconciles that ran past ``reconcile_timeout``.
        requeues: reconciles followed by a requeue or a backoff, the backoff after an error
            included (so ``requeues - errors`` asked to run again themselves, with the
            default error policy).
        mapper_errors: events a mapper failed on (raised, or returned non-keys).
        foreign_owners: events of owned-type objects whose controller is of another kind.
        resyncs: periodic resyncs done.
        cancelled: reconciles cancelled at shutdown after ``shutdown_timeout``.
        last_error: the most recent reconcile or mapper error, if any.
        last_error_key: the key it concerned (``""`` when none).
        reconcile_duration: how long reconciles took.
        queue: the work queue's statistics.
        informers: the statistics of the informers the controller uses (primary first).
    """

    name: str
    workers: int
    active: int
    synced: bool
    reconciles: int
    errors: int
    timeouts: int
    requeues: int
    mapper_errors: int
    foreign_owners: int
    resyncs: int
    cancelled: int
    last_error: BaseException | None = field(eq=False)
    last_error_key: str
    reconcile_duration: Durations
    queue: WorkQueueStatistics
    informers: tuple[InformerStatistics, ...]


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine (an ``async def``, also behind a partial)."""
    if inspect.iscoroutinefunction(fn):
        return True
    # Looked up along the class's MRO, not in its own __dict__: a subclass inherits
    # ``__call__``.
    call = next(
        (c.__dict__["__call__"] for c in type(fn).__mro__ if "__call__" in c.__dict__), None
    )
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def _as_resource(value: object, what: str) -> Resource:
    if isinstance(value, Resource):
        return value
    if isinstance(value, str):
        return Resource.parse(value)
    raise InvalidOptionError(f"{what} must be a crwatch.Resource or text, got {value!r}")


def _is_predicate(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes two positional arguments (old, new) rather than one stream."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    try:
        signature.bind(None)
    except TypeError:
        return True
    return False


def _same(a: Resource, b: Resource) -> bool:
    return (a.group, a.version, a.plural) == (b.group, b.version, b.plural)


def _positive_or_none(name: str, value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidOptionError(f"{name} must be a positive number or None, got {value!r}")
    return float(value)


class _Slot:
    """One worker's state, for the watchdog and the shutdown."""

    __slots__ = ("deadline", "key", "reported", "scope", "timed_out")

    def __init__(self) -> None:
        self.key: str | None = None  # the key being reconciled, None between reconciles
        self.deadline = math.inf
        self.reported = False  # the watchdog has dealt with this reconcile's deadline
        self.timed_out = False  # the watchdog cancelled ``scope`` for the deadline
        self.scope: anyio.CancelScope | None = None


class _Watched:
    """One informer the controller uses, and how its events become keys."""

    __slots__ = ("informer", "kind", "mapper", "resource", "subscription")

    def __init__(
        self, resource: Resource, kind: Literal["primary", "owns", "watches"], mapper: Mapper | None
    ) -> None:
        self.resource = resource
        self.kind = kind
        self.mapper = mapper
        self.informer: Informer | None = None
        self.subscription: Subscription | None = None


class Controller(Generic[T]):
    """Reconcile every object of a resource, level-triggered, with a pool of workers.

    ::

        async def reconcile(ctx: crwatch.Context[dict]) -> crwatch.Action | None:
            if ctx.object is None:
                return None                                  # deleted: nothing to do
            ...
            return crwatch.Action.requeue(after=300)

        controller = crwatch.Controller(client, widgets, reconcile,
                                        owns=[configmaps], workers=4)
        async with controller:                               # or: await controller.run()
            ...

    Every object of ``resource`` is reconciled once the caches have synced, and again
    whenever it changes, an object it ``owns`` changes (through ``ownerReferences`` with
    ``controller: true``), a mapper of ``watches`` names it, its requested requeue time
    comes, or (with ``resync``) periodically. Keys are deduplicated while they wait, and no
    key is reconciled by two workers at once.

    Args:
        client: the :class:`crwatch.Client` for the informers (and ``ctx.client``).
        resource: the primary resource (a :class:`crwatch.Resource`, or text).
        reconcile: ``reconcile(ctx)``, sync or async, returning an :class:`Action` or
            ``None`` (wait for a change). Sync ones run in worker threads.
        owns: resources whose objects' controller owner (same API group and kind as
            ``resource``) is enqueued when they change. Give ``resource`` a ``kind`` (or
            the controller learns it from the cached objects).
        watches: ``(resource, mapper)`` pairs: ``mapper(obj)`` returns the keys (or
            objects) of the primary resource a changed object concerns.
        predicates: filters of the primary resource's events: middlewares such as
            :func:`crwatch.generation_changed`, or ``(old, new) -> bool`` predicates such
            as :func:`crwatch.generation_differs` (wrapped in :func:`crwatch.changed`).
            Deletions always pass.
        workers: reconciles running at once at most. Default 4.
        namespace: watch one namespace (the owned and watched resources too, unless
            cluster-scoped). Default ``None``: all.
        namespaces: watch these namespaces (a set of names; the owned and watched
            resources too, unless cluster-scoped): one list/watch each, one cache (see
            :class:`crwatch.Informer`). Not with ``namespace``. Default ``None``.
        label_selector: a label selector for the primary resource. Default ``None``.
        field_selector: a field selector for the primary resource. Default ``None``.
        resync: seconds between reconciles of every cached key. Default ``None``: never.
        reconcile_timeout: seconds a reconcile may run; past that an async one is
            cancelled (a sync one cannot be) and the key retried with backoff, both logged
            and counted. Default 300; ``None``: no limit.
        shutdown_timeout: at shutdown, seconds the running reconciles get to finish before
            they are cancelled. Default 30; 0 cancels them at once (under leader election,
            keep it below the lease's duration minus its renew deadline, so a new leader
            never overlaps a reconcile of the old one).
        rate_limiter: the queue's backoff. Default :func:`crwatch.default_rate_limiter`.
        error_policy: ``error_policy(ctx, error) -> Action | None``, a plain function, for a
            failed reconcile, after the error is logged. Default: :meth:`Action.backoff`.
        recorder: where :meth:`Context.record` goes (a :class:`Recorder`). Default ``None``:
            a :class:`crwatch.EventRecorder` the controller runs while it runs, writing
            core/v1 Events with ``source.component`` set to the controller's name.
        informers: a :class:`crwatch.SharedInformers` to take the informers from, to share
            them with other controllers. Default ``None``: the controller's own.
        clock: where time comes from. Default ``None``: the event loop's clock.
        name: a name for logs and statistics. Default: the resource (``widgets.v1.example.com``).

    Raises:
        InvalidOptionError: an argument is invalid (raised here, not when running).
    """

    def __init__(
        self,
        client: Client,
        resource: Resource | str,
        reconcile: Callable[[Context[T]], Awaitable[Action | None] | Action | None],
        *,
        owns: Sequence[Resource | str] = (),
        watches: Sequence[tuple[Resource | str, Mapper]] = (),
        predicates: Sequence[Middleware | Callable[[dict[str, Any], dict[str, Any]], bool]] = (),
        workers: int = 4,
        namespace: str | None = None,
        namespaces: Iterable[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync: float | None = None,
        reconcile_timeout: float | None = 300.0,
        shutdown_timeout: float = 30.0,
        rate_limiter: RateLimiter | None = None,
        error_policy: Callable[[Context[T], Exception], Action | None] | None = None,
        recorder: Recorder | None = None,
        informers: SharedInformers | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(client, Client):
            raise InvalidOptionError(f"client must be a crwatch.Client, got {client!r}")
        self._resource = _as_resource(resource, "resource")
        if not callable(reconcile):
            raise InvalidOptionError(f"reconcile must be a callable, got {reconcile!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidOptionError(f"workers must be an int >= 1, got {workers!r}")
        self._resync = _positive_or_none("resync", resync)
        self._reconcile_timeout = _positive_or_none("reconcile_timeout", reconcile_timeout)
        if (
            isinstance(shutdown_timeout, bool)
            or not isinstance(shutdown_timeout, (int, float))
            or not math.isfinite(shutdown_timeout)
            or shutdown_timeout < 0
        ):
            raise InvalidOptionError(
                f"shutdown_timeout must be a number >= 0, got {shutdown_timeout!r}"
            )
        self._shutdown_timeout = float(shutdown_timeout)
        if error_policy is not None and not callable(error_policy):
            raise InvalidOptionError(f"error_policy must be a callable, got {error_policy!r}")
        if recorder is not None and not isinstance(recorder, Recorder):
            raise InvalidOptionError(
                f"recorder must have record(obj, reason, message, *, type) (see "
                f"crwatch.Recorder), got {recorder!r}"
            )
        if informers is not None and not isinstance(informers, SharedInformers):
            raise InvalidOptionError(
                f"informers must be a crwatch.SharedInformers, got {informers!r}"
            )
        for option, value in (
            ("namespace", namespace),
            ("label_selector", label_selector),
            ("field_selector", field_selector),
            ("name", name),
        ):
            if value is not None and not isinstance(value, str):
                raise InvalidOptionError(f"{option} must be a string or None, got {value!r}")
        self._predicates: tuple[Middleware, ...] = ()
        for predicate in predicates:
            if not callable(predicate):
                raise InvalidOptionError(
                    f"predicates must be middlewares or (old, new) -> bool functions, "
                    f"got {predicate!r}"
                )
            stage: Any = changed(predicate) if _is_predicate(predicate) else predicate  # type: ignore[arg-type]
            self._predicates += (stage,)
        self._watched: list[_Watched] = [_Watched(self._resource, "primary", None)]
        for owned in owns:
            self._watched.append(_Watched(_as_resource(owned, "owns"), "owns", None))
        for pair in watches:
            if not (isinstance(pair, tuple) and len(pair) == 2 and callable(pair[1])):
                raise InvalidOptionError(f"watches takes (resource, mapper) pairs, got {pair!r}")
            self._watched.append(_Watched(_as_resource(pair[0], "watches"), "watches", pair[1]))
        self._client = client
        self._reconcile = reconcile
        self._async = _is_async_callable(reconcile)
        self._workers = workers
        self._namespace = namespace or None
        self._namespaces = namespace_set(namespaces)
        if self._namespaces is not None and self._namespace is not None:
            raise InvalidOptionError(
                "namespace and namespaces are mutually exclusive: pass namespaces={...} only"
            )
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._error_policy = error_policy
        self._clock = validate_clock(clock)
        #: The controller's name, in logs and statistics.
        self.name: str = name or str(self._resource)
        # Until the default EventRecorder runs (it owns a task), records go to the log.
        self._recorder: Recorder = recorder if recorder is not None else _LogRecorder(self.name)
        self._own_recorder = (
            EventRecorder(client, component=self.name)
            if recorder is None and isinstance(client, Client)
            else None
        )
        self._queue: WorkQueue[str] = WorkQueue(
            rate_limiter=rate_limiter, clock=clock, name=self.name
        )
        self._given_informers = informers
        self._informers: SharedInformers | None = None
        self._owns_informers = False
        self._task_group: TaskGroup | None = None
        self._entered = False
        self._synced = False
        self._fatal: BaseException | None = None
        self._kind = self._resource.kind
        self._thread_limiter = anyio.CapacityLimiter(workers)
        self._slots = tuple(_Slot() for _ in range(workers))
        self._stopping = False
        self._watchdog_idle: anyio.Event | None = None
        self._get_object: Callable[[str], dict[str, Any] | None] = lambda key: None
        # The default clock is the event loop's, which on asyncio is time.monotonic().
        self._now: Callable[[], float] = (
            time.monotonic if self._clock is default_clock() else self._clock.now
        )
        self._durations = _Histogram()
        self._reconciles = 0
        self._errors = 0
        self._timeouts = 0
        self._requeues = 0
        self._mapper_errors = 0
        self._foreign_owners = 0
        self._resyncs = 0
        self._cancelled = 0
        self._last_error: BaseException | None = None
        self._last_error_key = ""

    def __repr__(self) -> str:
        return (
            f"<crwatch.Controller {self.name!r} workers={self._workers} "
            f"active={self._active()} depth={len(self._queue)}>"
        )

    @property
    def client(self) -> Client:
        """The client given to the controller."""
        return self._client

    @property
    def resource(self) -> Resource:
        """The primary resource."""
        return self._resource

    @property
    def queue(self) -> WorkQueue[str]:
        """The work queue of keys (add keys to it to have them reconciled)."""
        return self._queue

    def store(self, resource: Resource | str | None = None) -> Store:
        """Return the cache of a watched resource (default: the primary one).

        Raises:
            InvalidOptionError: the controller does not watch ``resource``.
            CrwatchError: the controller is not running.
        """
        return self.informer(resource).store

    def informer(self, resource: Resource | str | None = None) -> Informer:
        """Return the (shared) informer of a watched resource (default: the primary one).

        Use it to wait for a write to reach the cache (:meth:`Informer.wait_for`) or to
        read its statistics; its subscribers are shared with every user of the informer.

        Raises:
            InvalidOptionError: the controller does not watch ``resource``.
            CrwatchError: the controller is not running.
        """
        wanted = self._resource if resource is None else _as_resource(resource, "resource")
        for watched in self._watched:
            if _same(watched.resource, wanted):
                if watched.informer is None:
                    raise CrwatchError(f"controller {self.name}: not running")
                return watched.informer
        names = ", ".join(str(w.resource) for w in self._watched)
        raise InvalidOptionError(
            f"controller {self.name} does not watch {wanted}; it watches {names}"
        )

    # --- lifecycle ---

    async def run(self) -> None:
        """Run until cancelled, then shut down gracefully (see ``shutdown_timeout``).

        Raises:
            CrwatchError: an informer failed for good (that error, for example
                :class:`crwatch.ForbiddenError`).
        """
        async with self:
            await anyio.sleep_forever()

    async def __aenter__(self) -> Controller[T]:
        if self._entered:
            raise CrwatchError("a Controller can be run only once")
        self._entered = True
        informers = self._given_informers
        if informers is None:
            informers = SharedInformers()
        if informers.running:
            if informers._owner is not None:
                raise CrwatchError(
                    f"the SharedInformers were entered by {informers._owner!r}: enter them "
                    "yourself (async with informers:) to share them between controllers"
                )
        else:
            await informers.__aenter__()
            informers._owner = self
            self._owns_informers = True
        self._informers = informers
        try:
            if self._own_recorder is not None:
                await self._own_recorder.__aenter__()
                self._recorder = self._own_recorder
            for watched in self._watched:
                await self._subscribe(informers, watched)
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
        except BaseException:
            await self._release()
            raise
        self._task_group = task_group
        task_group.start_soon(self._start, name=f"crwatch.controller {self.name}")
        return self

    async def _subscribe(self, informers: SharedInformers, watched: _Watched) -> None:
        resource = watched.resource
        namespaced = resource.namespaced is not False
        namespace = self._namespace if namespaced else None
        namespaces = self._namespaces if namespaced else None
        if watched.kind == "primary":
            informer = await informers.acquire(
                self._client,
                resource,
                namespace=namespace,
                namespaces=namespaces,
                label_selector=self._label_selector,
                field_selector=self._field_selector,
            )
            watched.informer = informer
            watched.subscription = informer.subscribe(
                self._on_primary, *self._predicates, name=f"controller {self.name}"
            )
            return
        informer = await informers.acquire(
            self._client, resource, namespace=namespace, namespaces=namespaces
        )
        watched.informer = informer
        if watched.kind == "owns":
            callback = self._owner_callback(watched)
        else:
            callback = self._mapper_callback(watched)
        watched.subscription = informer.subscribe(
            callback, name=f"controller {self.name}: {watched.kind} {resource}"
        )

    async def _release(self) -> None:
        informers = self._informers
        for watched in self._watched:
            if watched.subscription is not None:
                watched.subscription.unsubscribe()
                watched.subscription = None
            if watched.informer is not None and informers is not None:
                informers.release(watched.informer)
        if self._recorder is self._own_recorder and self._own_recorder is not None:
            # Entered after the informers, so left before them (anyio's task group order).
            self._recorder = _LogRecorder(self.name)
            await self._own_recorder.__aexit__(None, None, None)
        if self._owns_informers and informers is not None:
            self._owns_informers = False
            await informers.__aexit__(None, None, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        try:
            with anyio.CancelScope(shield=True):
                await self._stop_workers()
        finally:
            # Task groups are left in the task and order they were entered in, outside
            # any new cancel scope (anyio's rule); leaving one waits for its tasks anyway.
            task_group.cancel_scope.cancel()
            try:
                await task_group.__aexit__(None, None, None)
            finally:
                await self._release()
        fatal = self._fatal
        if fatal is not None and (exc is None or isinstance(exc, anyio.get_cancelled_exc_class())):
            raise fatal
        return None

    async def _stop_workers(self) -> None:
        """Stop taking keys; let running reconciles finish until the deadline, then cancel."""
        queue = self._queue
        queue.shutdown()
        running = [slot for slot in self._slots if slot.key is not None]
        if running and self._shutdown_timeout > 0:
            log.info(
                "controller %s: stopping; waiting up to %g s for %d running reconciles",
                self.name,
                self._shutdown_timeout,
                len(running),
            )
            with self._clock.move_on_at(self._clock.now() + self._shutdown_timeout):
                await queue.wait_idle()
        self._stopping = True
        for slot in self._slots:
            if slot.key is not None:
                log.warning(
                    "controller %s: reconcile of %s cancelled: still running %g s after shutdown",
                    self.name,
                    slot.key,
                    self._shutdown_timeout,
                )
                self._cancelled += 1
            if slot.scope is not None:
                slot.scope.cancel()

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            log.error("controller %s: stopping: %r", self.name, error)
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    async def _start(self) -> None:
        """Wait for every cache, then start the workers, the resync and the watchdogs."""
        assert self._task_group is not None
        assert self._informers is not None
        task_group = self._task_group
        informers = self._informers
        for watched in self._watched:
            assert watched.informer is not None
            task_group.start_soon(self._watch_informer, informers, watched.informer)
        try:
            for watched in self._watched:
                assert watched.informer is not None
                await watched.informer.wait_synced()
        except CrwatchError as exc:
            self._fail(exc)
            return
        primary = self._watched[0].informer
        assert primary is not None
        self._get_object = primary.store.get
        self._synced = True
        log.info("controller %s: caches synced; starting %d workers", self.name, self._workers)
        for i, slot in enumerate(self._slots):
            task_group.start_soon(self._worker, slot, name=f"crwatch.worker {self.name} {i}")
        if self._reconcile_timeout is not None:
            task_group.start_soon(self._watchdog, name=f"crwatch.watchdog {self.name}")
        if self._resync is not None:
            task_group.start_soon(self._resync_loop, name=f"crwatch.resync {self.name}")

    async def _watch_informer(self, informers: SharedInformers, informer: Informer) -> None:
        error = await informers.wait_stopped(informer)
        if error is not None:
            self._fail(error)

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until every cache has synced (reconciles start then).

        Args:
            timeout: seconds to wait at most, for all the caches together. Default
                ``None``: no limit.

        Raises:
            SyncTimeout: not synced within ``timeout``.
            InvalidOptionError: ``timeout`` is not a number >= 0.
            CrwatchError: an informer failed for good, or the controller is not running.
        """
        if self._task_group is None:
            raise CrwatchError("the controller is not running: use `async with controller:`")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise InvalidOptionError(f"timeout must be a number >= 0 or None, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        for watched in self._watched:
            assert watched.informer is not None
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await watched.informer.wait_synced(left)

    async def _resync_loop(self) -> None:
        assert self._resync is not None
        clock = self._clock
        next_at = clock.now() + self._resync
        while True:
            await clock.sleep_until(next_at)
            next_at = max(next_at + self._resync, clock.now())
            self._resyncs += 1
            queue = self._queue
            for key in self.store():
                queue.add(key)

    # --- events to keys ---

    def _on_primary(self, event: Event) -> None:
        self._queue.add(event.key)

    def _owner_callback(self, watched: _Watched) -> Callable[[Event], None]:
        group = self._resource.group
        primary = self._watched[0]
        cluster_scoped = self._resource.namespaced is False
        resource_name = str(watched.resource)

        def kind() -> str | None:
            if self._kind is None:
                # Learn the primary kind from the cache: custom resources' list items carry
                # it (built-in types' do not: give Resource(kind=...) for those).
                assert primary.informer is not None
                store = primary.informer.store
                first = next(iter(store), None)
                obj = store.get(first) if first is not None else None
                found = obj.get("kind") if obj is not None else None
                if isinstance(found, str) and found:
                    self._kind = found
            return self._kind

        def owner_key(obj: dict[str, Any]) -> str | None:
            meta = obj.get("metadata")
            if not isinstance(meta, dict):
                return None
            for ref in meta.get("ownerReferences") or ():
                if not isinstance(ref, dict) or ref.get("controller") is not True:
                    continue
                # There is at most one controller reference (ownerReferences docs:
                # https://kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/).
                api_version = str(ref.get("apiVersion", ""))
                ref_group = api_version.rpartition("/")[0]
                name = ref.get("name")
                expected = kind()
                if ref_group != group or (expected is not None and ref.get("kind") != expected):
                    self._foreign_owners += 1
                    log.debug(
                        "controller %s: %s %s is controlled by %s %s/%s, not a %s: ignored",
                        self.name,
                        resource_name,
                        object_key(obj),
                        api_version,
                        ref.get("kind"),
                        name,
                        self._resource,
                    )
                    return None
                if not isinstance(name, str) or not name:
                    return None
                namespace = meta.get("namespace")
                if cluster_scoped or not namespace:
                    return name
                key = f"{namespace}/{name}"
                if self._resource.namespaced is None:
                    # Scope unknown: a namespaced object may be owned by a cluster-scoped
                    # one; the cache tells which key exists.
                    assert primary.informer is not None
                    store = primary.informer.store
                    if key not in store and name in store:
                        return name
                return key
            return None

        queue = self._queue

        def on_owned(event: Event) -> None:
            key = owner_key(event.object)
            if key is not None:
                queue.add(key)
            old = event.old
            if old is not None and event.type is not _DELETED:
                previous = owner_key(old)  # the owner it had before, if it changed
                if previous is not None and previous != key:
                    queue.add(previous)

        return on_owned

    def _mapper_callback(self, watched: _Watched) -> Callable[[Event], None]:
        mapper = watched.mapper
        assert mapper is not None
        resource_name = str(watched.resource)
        queue = self._queue

        def keys_of(obj: dict[str, Any], event_key: str) -> list[str]:
            try:
                result = mapper(obj)
            except Exception as exc:
                self._mapper_failed(
                    MapperError(
                        f"controller {self.name}: mapper {_name(mapper)} raised on "
                        f"{resource_name} {event_key}: {exc!r}",
                        key=event_key,
                        resource=resource_name,
                    ),
                    cause=exc,
                )
                return []
            if result is None:
                return []
            items: list[object]
            if isinstance(result, (str, Mapping)):
                items = [result]
            else:
                try:
                    items = list(result)
                except TypeError:
                    items = [result]
            keys: list[str] = []
            bad: list[object] = []
            for item in items:
                if isinstance(item, str) and item:
                    keys.append(item)
                elif isinstance(item, Mapping) and isinstance(item.get("metadata"), Mapping):
                    keys.append(object_key(dict(item)))
                else:
                    bad.append(item)
            if bad:
                self._mapper_failed(
                    MapperError(
                        f"controller {self.name}: mapper {_name(mapper)} returned non-keys "
                        f"for {resource_name} {event_key}: "
                        f"[{', '.join(_describe(item) for item in bad[:3])}] (expected "
                        "'namespace/name' strings or objects of the primary resource)",
                        key=event_key,
                        resource=resource_name,
                    ),
                    cause=None,
                )
            return keys

        def on_watched(event: Event) -> None:
            for key in keys_of(event.object, event.key):
                queue.add(key)
            if event.old is not None and event.type is not _DELETED:
                for key in keys_of(event.old, event.key):
                    queue.add(key)

        return on_watched

    def _mapper_failed(self, error: MapperError, cause: BaseException | None) -> None:
        error.__cause__ = cause
        self._mapper_errors += 1
        self._last_error = error
        self._last_error_key = error.key
        log.error("%s", error, exc_info=cause)

    # --- workers ---
    #
    # Each worker runs its reconciles inside one long-lived cancel scope, shielded so that a
    # shutdown lets running reconciles finish (_stop_workers cancels the scopes once
    # shutdown_timeout has passed). One watchdog task cancels the scope of a worker whose
    # async reconcile ran past reconcile_timeout; that worker then opens a new scope. A
    # cancel scope per reconcile (two, with the deadline) cost more than the rest of the
    # controller's per-key work together (bench/, the controller row).

    async def _worker(self, slot: _Slot) -> None:
        queue = self._queue
        taken = 0
        while not self._stopping:
            with anyio.CancelScope(shield=True) as scope:
                slot.scope = scope
                while True:
                    taken += 1
                    if not taken % _YIELD_EVERY:
                        # get() does not yield while keys wait, nor may a reconcile: let
                        # the informers and the other workers run now and then.
                        await anyio.lowlevel.checkpoint()
                    try:
                        # get()'s fast path without its coroutine: keys usually wait.
                        key = (
                            queue._take()
                            if queue._queue and not queue._delayed
                            else (await queue.get())
                        )
                    except QueueShutDown:
                        return
                    try:
                        await self._process(key, slot)
                    finally:
                        slot.key = None
                        queue.done(key)
                    if slot.timed_out:
                        # The watchdog cancelled this scope as the reconcile was ending:
                        # leave it before the cancellation hits the next key.
                        break
            slot.timed_out = False

    async def _process(self, key: str, slot: _Slot) -> None:
        queue = self._queue
        ctx: Context[T] = Context(self, key, self._get_object(key), queue.num_requeues(key))  # type: ignore[arg-type]
        now = self._now
        started = now()
        slot.key = key
        slot.reported = False
        timeout = self._reconcile_timeout
        if timeout is not None:
            slot.deadline = started + timeout
            if self._watchdog_idle is not None:
                self._watchdog_idle.set()
        action: Action | None = None
        try:
            if self._async:
                result = await self._reconcile(ctx)  # type: ignore[misc]
            else:
                result = await self._call_sync(ctx)
                if inspect.isawaitable(result):
                    # A plain function that returned a coroutine (a lambda around an
                    # async def): run it here, on the loop.
                    ctx._in_thread = False
                    result = await result
            if result is not None:
                if not isinstance(result, Action):
                    raise ReconcileResultError(
                        f"controller {self.name}: reconcile of {key} returned "
                        f"{_describe(result)}; "
                        "expected a crwatch.Action or None",
                        key=key,
                        controller=self.name,
                    )
                action = result
        except Exception as exc:
            action = self._failed(ctx, exc)
        except anyio.get_cancelled_exc_class():
            if slot.timed_out and not self._stopping:
                assert timeout is not None
                self._timeouts += 1
                self._apply(
                    key,
                    self._failed(
                        ctx,
                        ReconcileTimeout(
                            f"controller {self.name}: reconcile of {key} ran past its "
                            f"{timeout:g} s deadline and was cancelled",
                            key=key,
                            controller=self.name,
                            timeout=timeout,
                        ),
                    ),
                )
            raise
        finally:
            self._reconciles += 1
            took = now() - started
            self._durations.observe(took if took > 0 else 0.0)
        if action is None:
            queue.forget(key)  # the common case: wait for a change
        else:
            self._apply(key, action)

    async def _call_sync(self, ctx: Context[T]) -> object:
        """Run a sync reconcile in a worker thread (it cannot be cancelled)."""
        ctx._in_thread = True
        return await anyio.to_thread.run_sync(self._reconcile, ctx, limiter=self._thread_limiter)

    async def _watchdog(self) -> None:
        """Cancel async reconciles past their deadline; report sync ones."""
        timeout = self._reconcile_timeout
        assert timeout is not None
        clock = self._clock
        slots = self._slots
        while True:
            running = [s.deadline for s in slots if s.key is not None and not s.reported]
            if not running:
                idle = anyio.Event()
                self._watchdog_idle = idle
                await idle.wait()
                self._watchdog_idle = None
                continue
            await clock.sleep_until(min(running))
            now = self._now()
            for slot in slots:
                if slot.key is None or slot.reported or slot.deadline > now:
                    continue
                slot.reported = True
                if self._async:
                    slot.timed_out = True
                    if slot.scope is not None:
                        slot.scope.cancel()
                else:
                    self._timeouts += 1
                    log.error(
                        "controller %s: reconcile of %s still running past its %g s deadline "
                        "(a sync reconcile cannot be cancelled)",
                        self.name,
                        slot.key,
                        timeout,
                    )

    def _failed(self, ctx: Context[T], error: Exception) -> Action:
        self._errors += 1
        self._last_error = error
        self._last_error_key = ctx.key
        if isinstance(error, ReconcileError):
            log.error("%s", error)
        else:
            log.error(
                "controller %s: reconcile of %s failed (%d before in a row): %r",
                self.name,
                ctx.key,
                ctx.retries,
                error,
                exc_info=error,
            )
        policy = self._error_policy
        if policy is None:
            return _BACKOFF
        try:
            action: object = policy(ctx, error)
        except Exception as exc:
            log.error(
                "controller %s: error_policy raised for %s: %r; backing off",
                self.name,
                ctx.key,
                exc,
                exc_info=exc,
            )
            return _BACKOFF
        if action is None:
            return _AWAIT_CHANGE
        if not isinstance(action, Action):
            if inspect.iscoroutine(action):
                action.close()  # an async error_policy: never run (it must be a plain function)
            log.error(
                "controller %s: error_policy returned %s for %s, not an Action (it must be a "
                "plain function returning an Action or None); backing off",
                self.name,
                _describe(action),
                ctx.key,
            )
            return _BACKOFF
        return action

    def _apply(self, key: str, action: Action) -> None:
        queue = self._queue
        kind = action.kind
        if kind == "backoff":
            self._requeues += 1
            queue.add_rate_limited(key)
            return
        queue.forget(key)
        if kind == "requeue":
            self._requeues += 1
            if action.after > 0:
                queue.add_after(key, action.after)
            else:
                queue.add(key)

    # --- counters ---

    def _active(self) -> int:
        return sum(1 for slot in self._slots if slot.key is not None)

    def statistics(self) -> ControllerStatistics:
        """Return a snapshot of the controller's, its queue's and its informers' counters."""
        return ControllerStatistics(
            name=self.name,
            workers=self._workers,
            active=self._active(),
            synced=self._synced,
            reconciles=self._reconciles,
            errors=self._errors,
            timeouts=self._timeouts,
            requeues=self._requeues,
            mapper_errors=self._mapper_errors,
            foreign_owners=self._foreign_owners,
            resyncs=self._resyncs,
            cancelled=self._cancelled,
            last_error=self._last_error,
            last_error_key=self._last_error_key,
            reconcile_duration=self._durations.snapshot(),
            queue=self._queue.statistics(),
            informers=tuple(
                w.informer.statistics() for w in self._watched if w.informer is not None
            ),
        )


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _describe(value: object) -> str:
    """Describe a wrong value for a log line without its contents.

    Scalars are shown (shortened); anything else only by its type, because a mapper or a
    reconcile that returns an object by mistake may return a Secret, and secrets must not
    reach logs.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return f"<{type(value).__name__}>"
