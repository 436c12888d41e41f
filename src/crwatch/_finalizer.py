"""The finalizer helper: run cleanup before Kubernetes lets an object go.

A finalizer is a name in ``metadata.finalizers``; while the list is not empty, a DELETE only
sets ``metadata.deletionTimestamp`` and the object stays until every finalizer is removed
(https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/). The helper
adds the controller's finalizer before its first ``apply``, runs ``cleanup`` once the
object is being deleted, and removes the finalizer only after ``cleanup`` returned.

Every write is conditional, so two replicas acting on the same stale copy cannot both win:
adding to an empty list carries the object's ``resourceVersion`` (409 when stale), adding
to a list tests the whole list first, removing tests that the entry still holds this
finalizer, and both test the object's UID (JSON patch ``test`` operations, RFC 6902 section
4.6: the patch applies all or nothing).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._exceptions import ConflictError, InvalidError, InvalidOptionError, NotFoundError
from ._resource import Resource

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["finalizer"]

T = TypeVar("T")

# A qualified name, as apimachinery's IsQualifiedName checks finalizer names: an optional
# DNS-subdomain prefix and "/", then a name of at most 63 characters.
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_finalizer_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidOptionError(f"the finalizer name must be a string, got {name!r}")
    prefix, slash, part = name.rpartition("/")
    ok = bool(_NAME_PART.match(part)) and len(part) <= 63
    if slash:
        ok = ok and bool(_PREFIX.match(prefix)) and len(prefix) <= 253
    if not ok:
        raise InvalidOptionError(
            f"the finalizer name must be a qualified name like 'example.com/cleanup', got {name!r}"
        )
    return name


async def _call(fn: Callable[[dict[str, Any]], Awaitable[T] | T], obj: dict[str, Any]) -> T:
    result = fn(obj)
    if inspect.isawaitable(result):
        return await result
    return result


def _lost_race(exc: InvalidError, resource: Resource, name: str, what: str) -> ConflictError:
    # A failed JSON patch "test" is a 422 without causes: the apiserver's patch handler
    # answers NewGenericServerResponse(422, ...) for any error applying a JSON patch
    # (https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go).
    # Say what it means here: the finalizers changed since the object was read.
    return ConflictError(
        f"{what}: the finalizers of {name!r} changed since the object was read ({exc.message})",
        code=409,
        reason="Conflict",
        verb="patch",
        resource=str(resource),
    )


# Two async callbacks need their own overload: against ``Awaitable[T] | T`` alone, mypy
# solves T for a coroutine function as Never and rejects the documented usage.
@overload
async def finalizer(
    client: Client,
    resource: Resource,
    obj: Mapping[str, Any] | None,
    name: str,
    *,
    apply: Callable[[dict[str, Any]], Awaitable[T]],
    cleanup: Callable[[dict[str, Any]], Awaitable[T]],
) -> T | None: ...


@overload
async def finalizer(
    client: Client,
    resource: Resource,
    obj: Mapping[str, Any] | None,
    name: str,
    *,
    apply: Callable[[dict[str, Any]], Awaitable[T] | T],
    cleanup: Callable[[dict[str, Any]], Awaitable[T] | T],
) -> T | None: ...


async def finalizer(
    client: Client,
    resource: Resource,
    obj: Mapping[str, Any] | None,
    name: str,
    *,
    apply: Callable[[dict[str, Any]], Awaitable[T] | T],
    cleanup: Callable[[dict[str, Any]], Awaitable[T] | T],
) -> T | None:
    """Run ``apply`` or ``cleanup`` for ``obj``, keeping the finalizer ``name`` in step.

    ::

        async def reconcile(ctx):
            return await crwatch.finalizer(
                ctx.client, widgets, ctx.object, "example.com/cleanup",
                apply=ensure_routes,          # the object is live: make the world match it
                cleanup=remove_routes,        # the object is being deleted: undo it
            )

    - A live object without the finalizer gets it first (a conditional patch), then
      ``apply`` runs with the patched object.
    - A live object with the finalizer: ``apply`` runs.
    - An object being deleted (``deletionTimestamp`` set) that still carries the finalizer:
      ``cleanup`` runs, and only when it returns is the finalizer removed (a conditional
      patch), which lets Kubernetes delete the object. When ``cleanup`` raises, the
      finalizer stays and the error propagates, so the caller's backoff retries it.
    - An object being deleted without the finalizer, or ``None`` (gone): nothing to do.

    ``cleanup`` may run more than once for one deletion (a crash between its end and the
    finalizer's removal, or a lost race), so make it idempotent.

    Args:
        client: the client for the writes.
        resource: the object's resource type.
        obj: the object as last read (from a cache or the server), or ``None``.
        name: the finalizer, a qualified name such as ``"example.com/cleanup"``.
        apply: called with the live object; sync or async.
        cleanup: called with the object being deleted; sync or async.

    Returns:
        What ``apply`` or ``cleanup`` returned; ``None`` when neither ran.

    Raises:
        ConflictError: the object changed since ``obj`` was read, so the finalizer could not
            be added or removed safely: retry with the latest object.
        InvalidOptionError: a bad argument (``name`` is not a qualified name, ``obj`` has no
            name or resourceVersion).
        Exception: whatever ``apply`` or ``cleanup`` raised, and the write errors of
            :meth:`Client.patch`.
    """
    name = _check_finalizer_name(name)
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise InvalidOptionError(f"obj must be an object (a mapping), got {type(obj).__name__}")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise InvalidOptionError("obj has no metadata: pass the object as read from the server")
    raw = meta.get("finalizers") or []
    if not isinstance(raw, list):
        raise InvalidOptionError("obj's metadata.finalizers is not a list")
    finalizers: list[Any] = list(raw)
    current = dict(obj)
    if meta.get("deletionTimestamp"):
        if name not in finalizers:
            return None
        result = await _call(cleanup, current)
        await _remove(client, resource, current, finalizers, name)
        return result
    if name not in finalizers:
        current = await _add(client, resource, current, finalizers, name)
    return await _call(apply, current)


async def _add(
    client: Client,
    resource: Resource,
    obj: dict[str, Any],
    finalizers: list[Any],
    name: str,
) -> dict[str, Any]:
    if finalizers:
        ops: list[dict[str, Any]] = [
            *_same_uid(obj),
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": name},
        ]
        try:
            return await client.patch(resource, obj, ops)
        except InvalidError as exc:
            if exc.details.get("causes"):
                raise
            raise _lost_race(exc, resource, _key(obj), "adding a finalizer") from exc
    # No list to test: the resourceVersion is the precondition (409 when stale). A JSON
    # patch "test" of a missing member is not portable between patch implementations.
    rv = obj["metadata"].get("resourceVersion")
    if not isinstance(rv, str) or not rv:
        raise InvalidOptionError(
            "obj has no metadata.resourceVersion: pass the object as read from the server"
        )
    return await client.patch(
        resource,
        obj,
        [{"op": "add", "path": "/metadata/finalizers", "value": [name]}],
        resource_version=rv,
    )


async def _remove(
    client: Client,
    resource: Resource,
    obj: dict[str, Any],
    finalizers: list[Any],
    name: str,
) -> None:
    index = finalizers.index(name)
    path = f"/metadata/finalizers/{index}"
    ops = [
        *_same_uid(obj),
        {"op": "test", "path": path, "value": name},
        {"op": "remove", "path": path},
    ]
    try:
        await client.patch(resource, obj, ops)
    except NotFoundError:
        return  # already gone: its finalizers went with it
    except InvalidError as exc:
        if exc.details.get("causes"):
            raise
        raise _lost_race(exc, resource, _key(obj), "removing a finalizer") from exc


def _same_uid(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    # Patches go by name: without this test, a stale copy could act on a namesake created
    # after the object it was read from was deleted.
    uid = (obj.get("metadata") or {}).get("uid")
    return [{"op": "test", "path": "/metadata/uid", "value": uid}] if uid else []


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))
