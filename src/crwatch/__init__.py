"""crwatch: watch Kubernetes resources from asyncio, correctly.

The public API lives here; every other module is private. ``crwatch.testing`` holds the
in-process fake API server for tests.
"""

from __future__ import annotations

import contextlib as _contextlib

from ._backoff import Backoff
from ._client import Client
from ._clock import Clock, ManualClock
from ._controller import Action, Context, Controller, ControllerStatistics, Mapper, Recorder
from ._discovery import ApiResource, Discovery, DiscoveryStatistics
from ._events import Event, EventType, object_key
from ._exceptions import (
    AmbiguousResourceError,
    ApiError,
    BadRequestError,
    ConflictError,
    CrwatchError,
    DiscoveryError,
    EventTooLargeError,
    ExpiredError,
    ForbiddenError,
    InvalidError,
    InvalidOptionError,
    MalformedLineError,
    MapperError,
    NotFoundError,
    QueueShutDown,
    ReconcileError,
    ReconcileResultError,
    ReconcileTimeout,
    ResourceVersionRollbackError,
    ResourceVersionTooLargeError,
    ServerError,
    StallTimeout,
    StreamError,
    SubscriberOverflowError,
    SyncTimeout,
    TooManyRequestsError,
    TransportError,
    UnauthorizedError,
    UnknownResourceError,
)
from ._finalizer import finalizer
from ._informer import (
    Informer,
    InformerStatistics,
    InformerStream,
    NamespaceStatistics,
    SubscriberStatistics,
    Subscription,
    drop_managed_fields,
)
from ._leader import LeaderElection, LeaderElectionStatistics, LeadershipLost
from ._middleware import (
    Batch,
    Middleware,
    Pipeline,
    batch,
    changed,
    debounce,
    generation_changed,
    only,
    pipe,
    rate_limit,
    where,
)
from ._models import ModelError, TypedStore
from ._predicates import (
    Predicate,
    all_of,
    annotations_differ,
    any_of,
    finalizers_differ,
    generation_differs,
    labels_differ,
    not_,
    resource_version_differs,
)
from ._ratelimit import (
    BucketRateLimiter,
    ExponentialRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_rate_limiter,
)
from ._recorder import EventRecorder, EventRecorderStatistics
from ._resource import Resource
from ._shared import SharedInformers
from ._store import Store
from ._version import __version__
from ._watch import EventStream, Watch, WatchStatistics, watch
from ._workqueue import Durations, WorkQueue, WorkQueueStatistics

__all__ = [
    "Action",
    "AmbiguousResourceError",
    "ApiError",
    "ApiResource",
    "Backoff",
    "BadRequestError",
    "Batch",
    "BucketRateLimiter",
    "Client",
    "Clock",
    "ConflictError",
    "Context",
    "Controller",
    "ControllerStatistics",
    "CrwatchError",
    "Discovery",
    "DiscoveryError",
    "DiscoveryStatistics",
    "Durations",
    "Event",
    "EventRecorder",
    "EventRecorderStatistics",
    "EventStream",
    "EventTooLargeError",
    "EventType",
    "ExpiredError",
    "ExponentialRateLimiter",
    "ForbiddenError",
    "Informer",
    "InformerStatistics",
    "InformerStream",
    "InvalidError",
    "InvalidOptionError",
    "LeaderElection",
    "LeaderElectionStatistics",
    "LeadershipLost",
    "MalformedLineError",
    "ManualClock",
    "Mapper",
    "MapperError",
    "MaxOfRateLimiter",
    "Middleware",
    "ModelError",
    "NamespaceStatistics",
    "NotFoundError",
    "Pipeline",
    "Predicate",
    "QueueShutDown",
    "RateLimiter",
    "ReconcileError",
    "ReconcileResultError",
    "ReconcileTimeout",
    "Recorder",
    "Resource",
    "ResourceVersionRollbackError",
    "ResourceVersionTooLargeError",
    "ServerError",
    "SharedInformers",
    "StallTimeout",
    "Store",
    "StreamError",
    "SubscriberOverflowError",
    "SubscriberStatistics",
    "Subscription",
    "SyncTimeout",
    "TooManyRequestsError",
    "TransportError",
    "TypedStore",
    "UnauthorizedError",
    "UnknownResourceError",
    "Watch",
    "WatchStatistics",
    "WorkQueue",
    "WorkQueueStatistics",
    "__version__",
    "all_of",
    "annotations_differ",
    "any_of",
    "batch",
    "changed",
    "debounce",
    "default_rate_limiter",
    "drop_managed_fields",
    "finalizer",
    "finalizers_differ",
    "generation_changed",
    "generation_differs",
    "labels_differ",
    "not_",
    "object_key",
    "only",
    "pipe",
    "rate_limit",
    "resource_version_differs",
    "watch",
    "where",
]

# One public door: show every public name as crwatch.X in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("crwatch._"):
        with _contextlib.suppress(AttributeError, TypeError):  # builtins and the like
            _obj.__module__ = "crwatch"
del _name, _obj
