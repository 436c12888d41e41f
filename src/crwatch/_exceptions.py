"""The crwatch exception tree.

Every error crwatch raises derives from :class:`CrwatchError`; where a builtin already names
the meaning, the class derives from it too, so ``except TimeoutError`` keeps working::

    CrwatchError
    ├── InvalidOptionError (ValueError)          a wrong argument, raised at call time
    ├── ApiError                                 the API server answered with a Status
    │   ├── BadRequestError         400 / 422    (also InvalidError for 422)
    │   ├── UnauthorizedError       401
    │   ├── ForbiddenError          403          (PermissionError)
    │   ├── NotFoundError           404          (LookupError)
    │   ├── ConflictError           409
    │   ├── ExpiredError            410          resourceVersion or continue token too old
    │   ├── TooManyRequestsError    429          honour ``retry_after``
    │   └── ServerError             5xx          (ResourceVersionTooLargeError for 504 + cause)
    ├── TransportError (ConnectionError)         no answer: refused, reset, TLS, DNS
    ├── StreamError                              a watch stream could not be read
    │   ├── MalformedLineError (ValueError)      a line that is not a watch event
    │   ├── EventTooLargeError                   a line over ``max_event_bytes``
    │   └── StallTimeout (TimeoutError)          no byte for ``stall_timeout`` seconds
    ├── SyncTimeout (TimeoutError)               initial state not complete in time
    ├── ResourceVersionRollbackError             the server went back to older versions
    ├── SubscriberOverflowError                  an ``overflow="fail"`` subscriber fell behind
    ├── QueueShutDown                            a work queue was shut down: ``get()`` ends
    ├── ReconcileError                           a reconcile failed; ``key`` names the object
    │   ├── ReconcileTimeout (TimeoutError)      it ran past ``reconcile_timeout``
    │   └── ReconcileResultError (TypeError)     it returned neither an Action nor None
    ├── MapperError                              a mapper raised or returned something not a key
    └── DiscoveryError (LookupError)             a resource name discovery cannot resolve
        ├── UnknownResourceError                 the server serves no such resource type
        └── AmbiguousResourceError               several API groups serve it: ``candidates``

Third-party errors (aiohttp, kubernetes-asyncio) are translated at exactly one boundary,
``crwatch._transport``; nothing above it sees them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmbiguousResourceError",
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "CrwatchError",
    "DiscoveryError",
    "EventTooLargeError",
    "ExpiredError",
    "ForbiddenError",
    "InvalidError",
    "InvalidOptionError",
    "MalformedLineError",
    "MapperError",
    "NotFoundError",
    "QueueShutDown",
    "ReconcileError",
    "ReconcileResultError",
    "ReconcileTimeout",
    "ResourceVersionRollbackError",
    "ResourceVersionTooLargeError",
    "ServerError",
    "StallTimeout",
    "StreamError",
    "SubscriberOverflowError",
    "SyncTimeout",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
    "UnknownResourceError",
]


class CrwatchError(Exception):
    """Base class of every error crwatch raises."""


class InvalidOptionError(CrwatchError, ValueError):
    """An argument or option is invalid; raised when the call is made, not later."""


class ApiError(CrwatchError):
    """The API server answered with an error status (a ``metav1.Status`` when it sent one).

    Attributes:
        code: the HTTP status code (or the Status ``code`` of an in-stream ERROR event).
        reason: the Status ``reason`` (``"Expired"``, ``"Forbidden"``...), ``""`` when absent.
        message: the Status ``message`` or the plain-text body.
        details: the Status ``details`` dict (may be empty).
        retry_after: seconds to wait before retrying, from ``Retry-After`` or
            ``details.retryAfterSeconds``; ``None`` when the server gave none.
        verb: the request's Kubernetes verb (``"list"``, ``"watch"``...), when known.
        resource: the resource the request was about (``"widgets.v1.example.com"``), when known.
        continue_token: a fresh continue token carried by a 410 on a paginated list.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        reason: str = "",
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
        verb: str | None = None,
        resource: str | None = None,
        continue_token: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.reason = reason
        self.details: dict[str, Any] = details if details is not None else {}
        self.retry_after = retry_after
        self.verb = verb
        self.resource = resource
        self.continue_token = continue_token
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = ""
        if self.verb and self.resource:
            where = f"{self.verb} {self.resource}: "
        elif self.resource:
            where = f"{self.resource}: "
        reason = f" {self.reason}" if self.reason else ""
        return f"{where}{self.code}{reason}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:  # keep errors picklable despite keyword-only args
        return (_rebuild_api_error, (type(self), self.message, self.__dict__.copy()))


def _rebuild_api_error(cls: type[ApiError], message: str, state: dict[str, Any]) -> ApiError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err._describe())
    return err


class BadRequestError(ApiError):
    """400 BadRequest: the request could not be parsed (a bad selector, a bad token)."""


class InvalidError(BadRequestError):
    """422 Invalid: the request was understood but its options are not allowed together."""


class UnauthorizedError(ApiError):
    """401 Unauthorized: the credentials are missing, wrong or expired."""


class ForbiddenError(ApiError, PermissionError):
    """403 Forbidden: the user may not perform this verb on this resource."""


class NotFoundError(ApiError, LookupError):
    """404 NotFound: the resource type (or the named object) does not exist on the server."""


class ConflictError(ApiError):
    """409 Conflict or AlreadyExists: a stale ``resourceVersion`` or a duplicate name."""


class ExpiredError(ApiError):
    """410 Expired/Gone: the resourceVersion or continue token is older than the server keeps."""


class TooManyRequestsError(ApiError):
    """429 TooManyRequests: throttled; wait ``retry_after`` seconds before trying again."""


class ServerError(ApiError):
    """5xx: the server failed (InternalError, ServiceUnavailable, Timeout...)."""


class ResourceVersionTooLargeError(ServerError):
    """504 with cause ``ResourceVersionTooLarge``: the server has not reached that version yet."""


class TransportError(CrwatchError, ConnectionError):
    """The request got no HTTP answer: connection refused or reset, TLS or DNS failure."""


class StreamError(CrwatchError):
    """A watch stream could not be read as a sequence of watch events."""


class MalformedLineError(StreamError, ValueError):
    """A line of a watch stream is not a JSON watch event.

    Attributes:
        line: the first bytes of the offending line (at most 200), for diagnosis.
    """

    def __init__(self, message: str, *, line: bytes = b"") -> None:
        self.line: bytes = line[:200]
        super().__init__(message)


class EventTooLargeError(StreamError):
    """A watch event is larger than ``max_event_bytes``; it was skipped.

    Attributes:
        size: bytes read of the line before giving up (at least ``limit``).
        limit: the configured ``max_event_bytes``.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message)


class StallTimeout(StreamError, TimeoutError):
    """No byte arrived on a watch for ``stall_timeout`` seconds; the connection was dropped."""


class SyncTimeout(CrwatchError, TimeoutError):
    """The initial state did not arrive in time.

    Attributes:
        last_error: the error that kept the initial list from completing, if any.
    """

    def __init__(self, message: str, *, last_error: BaseException | None = None) -> None:
        self.last_error = last_error
        super().__init__(message)


class ResourceVersionRollbackError(CrwatchError):
    """The server's resourceVersion went back below one a wait was for (a restored backup).

    Raised by :meth:`crwatch.Informer.wait_for` when a relist answered an older
    resourceVersion than the cache had seen while the wait was pending: the version waited
    for belonged to a history the server no longer has, and may never come.

    Attributes:
        resource_version: the resourceVersion waited for.
        previous: the last resourceVersion seen before the relist.
        current: the relist's resourceVersion.
    """

    def __init__(self, message: str, *, resource_version: int, previous: str, current: str):
        self.resource_version = resource_version
        self.previous = previous
        self.current = current
        super().__init__(message)


class SubscriberOverflowError(CrwatchError):
    """A subscriber with ``overflow="fail"`` fell ``buffer_size`` events behind.

    Only that subscriber fails; the cache and the other subscribers go on.

    Attributes:
        subscriber: the subscriber's name.
        buffer_size: its buffer size.
    """

    def __init__(self, message: str, *, subscriber: str = "", buffer_size: int = 0) -> None:
        self.subscriber = subscriber
        self.buffer_size = buffer_size
        super().__init__(message)


class QueueShutDown(CrwatchError):
    """The :class:`crwatch.WorkQueue` was shut down: ``get()`` has no key to give any more.

    ``async for key in queue`` ends instead of raising it.
    """


class ReconcileError(CrwatchError):
    """A reconcile failed; the controller logged it and retries the key with backoff.

    The user's own exception (when the reconcile raised) is the ``__cause__``.

    Attributes:
        key: the key of the object that was reconciled (``namespace/name``).
        controller: the controller's name.
    """

    def __init__(self, message: str, *, key: str = "", controller: str = "") -> None:
        self.key = key
        self.controller = controller
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


class ReconcileTimeout(ReconcileError, TimeoutError):
    """A reconcile ran past the controller's ``reconcile_timeout``.

    Attributes:
        timeout: the deadline, in seconds.
    """

    def __init__(self, message: str, *, key: str = "", controller: str = "", timeout: float = 0):
        self.timeout = timeout
        super().__init__(message, key=key, controller=controller)


class ReconcileResultError(ReconcileError, TypeError):
    """A reconcile returned something other than a :class:`crwatch.Action` or ``None``."""


class MapperError(CrwatchError):
    """A mapper of ``Controller(watches=...)`` raised, or returned something not a key.

    The event is skipped for the keys it could not give; the controller goes on.

    Attributes:
        key: the key of the watched object the mapper was given.
        resource: the watched resource (``secrets.v1``).
    """

    def __init__(self, message: str, *, key: str = "", resource: str = "") -> None:
        self.key = key
        self.resource = resource
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


class DiscoveryError(CrwatchError, LookupError):
    """A resource name (``"widgets"``, ``"wd"``, ``"Widget"``) that discovery cannot resolve.

    Attributes:
        name: the name as it was given.
    """

    def __init__(self, message: str, *, name: str = "") -> None:
        self.name = name
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


class UnknownResourceError(DiscoveryError):
    """The server serves no resource type of that name, even after discovery was re-read."""


class AmbiguousResourceError(DiscoveryError):
    """Several API groups (none of them the core group) serve a resource of that name.

    Attributes:
        candidates: the matching resources, one per group, as ``plural.version.group``
            text; any of them, given in full, resolves.
    """

    def __init__(self, message: str, *, name: str = "", candidates: tuple[str, ...] = ()):
        self.candidates = candidates
        super().__init__(message, name=name)


def _rebuild(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, *args)
    return err


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: ExpiredError,
    422: InvalidError,
    429: TooManyRequestsError,
}


def api_error_class(code: int, details: dict[str, Any] | None = None) -> type[ApiError]:
    """Return the :class:`ApiError` subclass for an HTTP status code (and Status details)."""
    if code == 504 and details:
        for cause in details.get("causes") or ():
            if isinstance(cause, dict) and cause.get("reason") == "ResourceVersionTooLarge":
                return ResourceVersionTooLargeError
    if code in _BY_CODE:
        return _BY_CODE[code]
    if code >= 500:
        return ServerError
    return ApiError
