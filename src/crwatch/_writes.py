"""Single-object requests, sans-IO: what ``Client.get/create/replace/patch/apply/delete`` send.

Each builder checks its arguments (raising :class:`~crwatch.InvalidOptionError` at call
time) and returns a :class:`WriteRequest`; :func:`send` hands it to the transport, the one
module that talks HTTP. Objects are raw dicts in and out, and the caller's dicts are never
modified.

Kubernetes facts this module rests on (https://kubernetes.io/docs/reference/using-api/api-concepts/):

- Optimistic concurrency: an update or patch whose body carries ``metadata.resourceVersion``
  fails with 409 Conflict unless it equals the stored one; that is the precondition of PUT,
  of every patch type (the patched object keeps the value the patch gave it) and of
  server-side apply.
- Custom resources accept JSON merge patch and JSON patch, never strategic merge patch
  (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#advanced-topics);
  built-in types accept all three.
- Server-side apply is a PATCH with ``application/apply-patch+yaml``; JSON is valid YAML, a
  ``fieldManager`` is required, and ``force=true`` takes over conflicting fields
  (https://kubernetes.io/docs/reference/using-api/server-side-apply/).
- ``dryRun=All`` runs every stage except persisting
  (https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from attrs import frozen

from ._exceptions import InvalidOptionError, TransportError
from ._resource import Resource
from ._transport import send_request

__all__ = [
    "PatchType",
    "WriteRequest",
    "apply_request",
    "create_request",
    "delete_request",
    "get_request",
    "patch_request",
    "patch_status_request",
    "replace_request",
    "send",
]

PatchType = Literal["merge", "json", "strategic"]

CONTENT_TYPES: Final[Mapping[str, str]] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

#: kube-apiserver rejects a longer fieldManager (apimachinery ValidateFieldManager).
MAX_FIELD_MANAGER: Final = 128

_PROPAGATION: Final = ("Orphan", "Background", "Foreground")
# DNS-1123 label: what a namespace must look like.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_JSON_PATCH_OPS: Final = frozenset({"add", "remove", "replace", "move", "copy", "test"})

Target = str | Mapping[str, Any]


@frozen
class WriteRequest:
    """One HTTP request about one object: method, path, query, body and content type."""

    verb: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    content_type: str = "application/json"


async def send(api_client: Any, request: WriteRequest, resource: Resource) -> dict[str, Any]:
    """Send ``request`` through ``api_client``; return the JSON object the server answered."""
    data = await send_request(
        api_client,
        request.method,
        request.path,
        query=request.query,
        body=request.body,
        content_type=request.content_type,
        verb=request.verb,
        resource=str(resource),
    )
    if not isinstance(data, dict):
        raise TransportError(f"{request.verb} {resource}: the answer is not a JSON object")
    return data


# --- argument checks -----------------------------------------------------------------------


def _check_resource(resource: object) -> Resource:
    if not isinstance(resource, Resource):
        raise InvalidOptionError(f"resource must be a crwatch.Resource, got {resource!r}")
    return resource


def _check_name(name: object, what: str = "name") -> str:
    # A name is one URL path segment: apimachinery's IsValidPathSegmentName forbids these.
    if not isinstance(name, str) or not name:
        raise InvalidOptionError(f"{what} must be a non-empty string, got {name!r}")
    if name in (".", "..") or "/" in name or "%" in name:
        raise InvalidOptionError(f"{what} {name!r} cannot be a URL path segment")
    return name


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidOptionError("the object's metadata must be a mapping")
    return meta


def _check_object(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidOptionError(f"expected an object (a mapping), got {type(obj).__name__}")
    return obj


def locate(resource: Resource, target: Target, namespace: str | None) -> tuple[str, str | None]:
    """Return ``(name, namespace)`` for a name or an object, checked against the resource.

    An object's ``metadata.namespace`` is used when ``namespace`` is not given; both given
    and different is an error. A namespaced resource needs a namespace; a cluster-scoped one
    takes none (``Resource.namespaced=None``, unknown, takes what it is given).
    """
    if isinstance(target, str):
        name = _check_name(target)
        ns = namespace
    else:
        meta = _metadata(_check_object(target))
        name = _check_name(meta.get("name"), "metadata.name")
        given = meta.get("namespace") or None
        if namespace is not None and given is not None and given != namespace:
            raise InvalidOptionError(
                f"namespace={namespace!r} does not match the object's namespace {given!r}"
            )
        ns = namespace if namespace is not None else given
        if resource.namespaced is False:
            ns = None  # a cluster-scoped object may carry a stray namespace; the server drops it
    return name, _check_namespace(resource, ns)


def _check_namespace(resource: Resource, namespace: object) -> str | None:
    if namespace is None or namespace == "":
        if resource.namespaced:
            raise InvalidOptionError(f"{resource} is namespaced: give a namespace")
        return None
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise InvalidOptionError(f"namespace must be a DNS label, got {namespace!r}")
    if resource.namespaced is False:
        raise InvalidOptionError(f"{resource} is cluster-scoped: it takes no namespace")
    return namespace


def _query(
    *, dry_run: bool, field_manager: str | None, force: bool | None = None
) -> tuple[tuple[str, str], ...]:
    query: list[tuple[str, str]] = []
    if not isinstance(dry_run, bool):
        raise InvalidOptionError(f"dry_run must be a bool, got {dry_run!r}")
    if dry_run:
        query.append(("dryRun", "All"))
    if field_manager is not None:
        if (
            not isinstance(field_manager, str)
            or not field_manager
            or len(field_manager) > MAX_FIELD_MANAGER
            or not field_manager.isprintable()
        ):
            raise InvalidOptionError(
                f"field_manager must be 1 to {MAX_FIELD_MANAGER} printable characters, "
                f"got {field_manager!r}"
            )
        query.append(("fieldManager", field_manager))
    if force is not None:
        if not isinstance(force, bool):
            raise InvalidOptionError(f"force must be a bool, got {force!r}")
        if force:
            query.append(("force", "true"))
    return tuple(query)


def _check_resource_version(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidOptionError(f"resource_version must be a non-empty string, got {value!r}")
    return value


def _typed(resource: Resource, obj: Mapping[str, Any], *, required: bool) -> dict[str, Any]:
    """Return a shallow copy of ``obj`` with ``apiVersion`` and ``kind`` filled in."""
    body = dict(obj)
    if not body.get("apiVersion"):
        body["apiVersion"] = resource.api_version
    if not body.get("kind"):
        if resource.kind:
            body["kind"] = resource.kind
        elif required:
            raise InvalidOptionError(
                f"server-side apply needs the object's kind: set obj['kind'] or "
                f"Resource(..., kind=...) for {resource}"
            )
    return body


# --- builders ------------------------------------------------------------------------------


def get_request(resource: Resource, target: Target, *, namespace: str | None) -> WriteRequest:
    """GET one object."""
    resource = _check_resource(resource)
    name, ns = locate(resource, target, namespace)
    return WriteRequest("get", "GET", resource.path(ns, name))


def create_request(
    resource: Resource,
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    dry_run: bool,
    field_manager: str | None,
) -> WriteRequest:
    """POST an object to its collection (``metadata.name`` or ``generateName`` names it)."""
    resource = _check_resource(resource)
    meta = _metadata(_check_object(obj))
    given = meta.get("namespace") or None
    if namespace is not None and given is not None and given != namespace:
        raise InvalidOptionError(
            f"namespace={namespace!r} does not match the object's namespace {given!r}"
        )
    ns = _check_namespace(resource, namespace if namespace is not None else given)
    if meta.get("resourceVersion"):
        # kube-apiserver answers 500 for this (rest.BeforeCreate); say it plainly instead.
        raise InvalidOptionError("an object to create must not carry metadata.resourceVersion")
    return WriteRequest(
        "create",
        "POST",
        resource.path(ns),
        _query(dry_run=dry_run, field_manager=field_manager),
        _typed(resource, obj, required=False),
    )


def replace_request(
    resource: Resource,
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    dry_run: bool,
    field_manager: str | None,
    subresource: str | None = None,
) -> WriteRequest:
    """PUT the whole object (its ``metadata.resourceVersion`` is the precondition)."""
    resource = _check_resource(resource)
    name, ns = locate(resource, _check_object(obj), namespace)
    path = resource.path(ns, name) + (f"/{subresource}" if subresource else "")
    return WriteRequest(
        "update",
        "PUT",
        path,
        _query(dry_run=dry_run, field_manager=field_manager),
        _typed(resource, obj, required=False),
    )


def _check_patch(patch: object, patch_type: object) -> tuple[str, Any]:
    if patch_type is None:
        patch_type = "json" if isinstance(patch, (list, tuple)) else "merge"
    if patch_type not in ("merge", "json", "strategic"):
        raise InvalidOptionError(f"type must be 'merge', 'json' or 'strategic', got {patch_type!r}")
    if patch_type == "json":
        if not isinstance(patch, (list, tuple)):
            raise InvalidOptionError("a JSON patch is a list of operations")
        for op in patch:
            if not isinstance(op, Mapping) or op.get("op") not in _JSON_PATCH_OPS:
                raise InvalidOptionError(f"not a JSON patch operation: {op!r}")
            if not isinstance(op.get("path"), str):
                raise InvalidOptionError(f"a JSON patch operation needs a path: {op!r}")
        return patch_type, [dict(op) for op in patch]
    if not isinstance(patch, Mapping):
        raise InvalidOptionError(f"a {patch_type} patch is a mapping, got {type(patch).__name__}")
    return patch_type, dict(patch)


def _with_resource_version(patch_type: str, body: Any, resource_version: str) -> Any:
    if patch_type == "json":
        # The patched object keeps the value the patch gives it, and the update that
        # follows compares it with the stored one: a stale value is a 409, as for PUT.
        op = {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}
        return [*body, op]
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        raise InvalidOptionError("the patch's metadata must be a mapping")
    return {**body, "metadata": {**(meta or {}), "resourceVersion": resource_version}}


def patch_request(
    resource: Resource,
    target: Target,
    patch: Any,
    *,
    namespace: str | None,
    patch_type: str | None,
    resource_version: str | None,
    dry_run: bool,
    field_manager: str | None,
    subresource: str | None = None,
) -> WriteRequest:
    """PATCH an object: merge patch (a mapping) by default, JSON patch for a list of ops."""
    resource = _check_resource(resource)
    name, ns = locate(resource, target, namespace)
    kind, body = _check_patch(patch, patch_type)
    if resource_version is not None:
        body = _with_resource_version(kind, body, _check_resource_version(resource_version))
    path = resource.path(ns, name) + (f"/{subresource}" if subresource else "")
    return WriteRequest(
        "patch",
        "PATCH",
        path,
        _query(dry_run=dry_run, field_manager=field_manager),
        body,
        CONTENT_TYPES[kind],
    )


def patch_status_request(
    resource: Resource,
    target: Target,
    status: Any,
    *,
    namespace: str | None,
    resource_version: str | None,
    dry_run: bool,
    field_manager: str | None,
) -> WriteRequest:
    """PATCH the status subresource: a mapping is merged into ``status``; a list is a JSON patch."""
    if isinstance(status, (list, tuple)):
        return patch_request(
            resource,
            target,
            status,
            namespace=namespace,
            patch_type="json",
            resource_version=resource_version,
            dry_run=dry_run,
            field_manager=field_manager,
            subresource="status",
        )
    if not isinstance(status, Mapping):
        raise InvalidOptionError(
            f"status must be a mapping (merged into .status) or a JSON patch list, "
            f"got {type(status).__name__}"
        )
    return patch_request(
        resource,
        target,
        {"status": dict(status)},
        namespace=namespace,
        patch_type="merge",
        resource_version=resource_version,
        dry_run=dry_run,
        field_manager=field_manager,
        subresource="status",
    )


def apply_request(
    resource: Resource,
    obj: Mapping[str, Any],
    *,
    field_manager: str,
    force: bool,
    namespace: str | None,
    dry_run: bool,
    subresource: str | None = None,
) -> WriteRequest:
    """Server-side apply: PATCH ``application/apply-patch+yaml`` with the object as JSON."""
    resource = _check_resource(resource)
    if field_manager is None:
        raise InvalidOptionError("server-side apply needs a field_manager")
    name, ns = locate(resource, _check_object(obj), namespace)
    body = _typed(resource, obj, required=True)
    path = resource.path(ns, name) + (f"/{subresource}" if subresource else "")
    return WriteRequest(
        "apply",
        "PATCH",
        path,
        _query(dry_run=dry_run, field_manager=field_manager, force=force),
        body,
        CONTENT_TYPES["apply"],
    )


def delete_request(
    resource: Resource,
    target: Target,
    *,
    namespace: str | None,
    uid: str | None,
    resource_version: str | None,
    propagation_policy: str | None,
    grace_period_seconds: int | None,
    dry_run: bool,
) -> WriteRequest:
    """DELETE an object with DeleteOptions (preconditions, propagation, grace period)."""
    resource = _check_resource(resource)
    name, ns = locate(resource, target, namespace)
    options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
    preconditions: dict[str, str] = {}
    if uid is not None:
        if not isinstance(uid, str) or not uid:
            raise InvalidOptionError(f"uid must be a non-empty string, got {uid!r}")
        preconditions["uid"] = uid
    if resource_version is not None:
        preconditions["resourceVersion"] = _check_resource_version(resource_version)
    if preconditions:
        options["preconditions"] = preconditions
    if propagation_policy is not None:
        if propagation_policy not in _PROPAGATION:
            raise InvalidOptionError(
                f"propagation_policy must be one of {', '.join(_PROPAGATION)}, "
                f"got {propagation_policy!r}"
            )
        options["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        if (
            isinstance(grace_period_seconds, bool)
            or not isinstance(grace_period_seconds, int)
            or grace_period_seconds < 0
        ):
            raise InvalidOptionError(
                f"grace_period_seconds must be an int >= 0, got {grace_period_seconds!r}"
            )
        options["gracePeriodSeconds"] = grace_period_seconds
    return WriteRequest(
        "delete",
        "DELETE",
        resource.path(ns, name),
        _query(dry_run=dry_run, field_manager=None),
        options,
    )
