"""Event values and the exception tree."""

from __future__ import annotations

import pickle

import pytest

import crwatch
from crwatch._exceptions import api_error_class


def test_event_key_and_type() -> None:
    """Keys are namespace/name (name alone when cluster-scoped); types compare to strings."""
    obj = {"metadata": {"name": "a", "namespace": "default", "resourceVersion": "7"}}
    event = crwatch.Event.from_object("ADDED", obj)
    assert event.type == "ADDED"
    assert event.type is crwatch.EventType.ADDED
    assert event.key == "default/a"
    assert event.object is obj  # not copied
    assert event.resource_version == "7"
    assert not event.synthetic
    assert crwatch.object_key({"metadata": {"name": "cluster-thing"}}) == "cluster-thing"


def test_event_repr_hides_the_object() -> None:
    """Reprs stay short: the (possibly huge, possibly secret) object is not printed."""
    event = crwatch.Event.from_object("DELETED", {"metadata": {"name": "s"}, "data": "hunter2"})
    assert "hunter2" not in repr(event)
    with pytest.raises(AttributeError):
        event.synthetic = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("code", "cls", "builtin"),
    [
        (401, crwatch.UnauthorizedError, None),
        (403, crwatch.ForbiddenError, PermissionError),
        (404, crwatch.NotFoundError, LookupError),
        (410, crwatch.ExpiredError, None),
        (422, crwatch.InvalidError, None),
        (429, crwatch.TooManyRequestsError, None),
        (503, crwatch.ServerError, None),
    ],
)
def test_status_codes_map_to_the_tree(code: int, cls: type, builtin: type | None) -> None:
    """Each status code maps to its class; classes also derive from the matching builtin."""
    assert api_error_class(code) is cls
    err = cls("nope", code=code, verb="watch", resource="widgets.v1.example.com")
    assert isinstance(err, crwatch.ApiError)
    assert isinstance(err, crwatch.CrwatchError)
    if builtin is not None:
        assert isinstance(err, builtin)
    assert "watch widgets.v1.example.com" in str(err)


def test_too_large_resource_version_is_recognised() -> None:
    """A 504 with cause ResourceVersionTooLarge is its own class (it means: relist)."""
    details = {"causes": [{"reason": "ResourceVersionTooLarge"}], "retryAfterSeconds": 1}
    assert api_error_class(504, details) is crwatch.ResourceVersionTooLargeError
    assert api_error_class(504) is crwatch.ServerError


def test_api_errors_pickle() -> None:
    """Errors survive pickling with their structured attributes (for process pools, logs)."""
    err = crwatch.TooManyRequestsError("slow down", code=429, retry_after=3.0, verb="list")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is crwatch.TooManyRequestsError
    assert copy.retry_after == 3.0
    assert str(copy) == str(err)


def test_timeouts_are_timeout_errors() -> None:
    """StallTimeout and SyncTimeout can be caught as TimeoutError."""
    assert issubclass(crwatch.StallTimeout, TimeoutError)
    assert issubclass(crwatch.SyncTimeout, TimeoutError)
    assert issubclass(crwatch.TransportError, ConnectionError)
