"""Options of write requests (create, update, patch, apply, delete) and their answers.

Parses and validates ``dryRun``, ``fieldManager`` and ``force`` like kube-apiserver's
``ValidateCreateOptions`` / ``ValidateUpdateOptions`` / ``ValidatePatchOptions`` /
``ValidateDeleteOptions`` (k8s.io/apimachinery/pkg/apis/meta/v1/validation), decodes apply
bodies (YAML or JSON), and builds the ``Status`` a finished DELETE answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
from attrs import frozen

from ._apply import APPLY, FIELD_MANAGER_MAX_LENGTH, UPDATE, Operation, manager_from_user_agent
from ._state import ApiError, Obj, ResourceType, query_bool, status_body

try:  # YAML apply bodies need PyYAML (the crwatch[testing] extra); JSON ones do not.
    import yaml as _yaml  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - exercised only without PyYAML
    _yaml = None

APPLY_PATCH: Final = "application/apply-patch+yaml"
_OPTIONS_KIND: Final = {
    "create": "CreateOptions",
    "update": "UpdateOptions",
    "patch": "PatchOptions",
    "delete": "DeleteOptions",
    "deletecollection": "DeleteOptions",
}


@frozen
class WriteOptions:
    """What a write request asked for besides its body."""

    dry_run: bool = False
    field_manager: str = ""
    force: bool = False

    def operation(self, *, apply: bool = False, subresource: str = "") -> Operation:
        """Return the field-management operation of this request."""
        return Operation(
            self.field_manager,
            APPLY if apply else UPDATE,
            subresource=subresource,
            force=self.force,
        )


def options_invalid(kind: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid for bad request options, as ``errors.NewInvalid`` words it."""
    text = ", ".join(f"{f}: {m}" for f, _, m in causes)
    details: Obj = {
        "group": "meta.k8s.io",
        "kind": kind,
        "causes": [{"reason": t, "message": m, "field": f} for f, t, m in causes],
    }
    return ApiError(
        status_body(422, "Invalid", f'{kind}.meta.k8s.io "" is invalid: {text}', details)
    )


def _go_strings(values: Sequence[str]) -> str:
    # Go's %#v of a []string: how field.NotSupported prints the bad dryRun value.
    return "[]string{" + ", ".join(orjson.dumps(v).decode() for v in values) + "}"


def write_options(
    verb: str,
    query: Any,
    *,
    user_agent: str = "",
    apply: bool = False,
    body_dry_run: Any = None,
) -> WriteOptions:
    """Parse and validate the options of a write; raise 422 `ApiError` like kube-apiserver.

    ``query`` is a multidict (``getall``); ``body_dry_run`` is a DELETE body's ``dryRun``.
    """
    kind = _OPTIONS_KIND[verb]
    dry_run: list[str] = list(query.getall("dryRun", []))
    if isinstance(body_dry_run, list):
        dry_run += [str(v) for v in body_dry_run]
    causes: list[tuple[str, str, str]] = []
    manager = query.get("fieldManager", "")
    force_text = query.get("force")
    if verb == "patch":
        if not apply and force_text is not None:
            causes.append(
                (
                    "force",
                    "FieldValueForbidden",
                    "Forbidden: may not be specified for non-apply patch",
                )
            )
        if apply and not manager:
            # Defaulted to "kubectl" by kubectl; controllers must set it.
            causes.append(
                (
                    "fieldManager",
                    "FieldValueRequired",
                    "Required value: is required for apply patch",
                )
            )
    if len(manager) > FIELD_MANAGER_MAX_LENGTH:
        causes.append(
            (
                "fieldManager",
                "FieldValueTooLong",
                f"Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes",
            )
        )
    bad = [v for v in dry_run if v != "All"]
    if bad:
        causes.append(
            (
                "dryRun",
                "FieldValueNotSupported",
                f'Unsupported value: {_go_strings(dry_run)}: supported values: "All"',
            )
        )
    if causes:
        raise options_invalid(kind, causes)
    if not manager:
        manager = manager_from_user_agent(user_agent)
    return WriteOptions(dry_run=bool(dry_run), field_manager=manager, force=query_bool(force_text))


def decode_apply_body(raw: bytes) -> Any:
    """Decode an apply configuration: JSON, or YAML when PyYAML is installed (400 otherwise)."""
    if not raw.strip():
        raise ApiError(status_body(400, "BadRequest", "the apply configuration is empty"))
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    if _yaml is None:
        raise ApiError(
            status_body(
                400,
                "BadRequest",
                "this FakeApiServer decodes YAML apply bodies only with PyYAML installed "
                "(pip install 'crwatch[testing]'); send JSON instead",
            )
        )
    try:
        return _yaml.safe_load(raw)
    except _yaml.YAMLError as exc:
        raise ApiError(status_body(400, "BadRequest", f"error decoding YAML: {exc}")) from None


def delete_answer(
    rtype: ResourceType, obj: Obj, *, orphan_dependents: bool | None
) -> tuple[Obj, int]:
    """Return the body and HTTP code a DELETE answers (registry Store.Delete).

    An object that is gone answers a ``Status`` ``Success`` with its name, group, resource
    and uid; one only marked for deletion (finalizers) answers the object, with 202 only
    when the request set ``orphanDependents: false`` (the apiserver's DELETE handler,
    handlers/delete.go, keeps 200 for every other kept object so as not to break clients).
    Namespaces and CRDs answer the object, as their own registries do.
    """
    meta = obj.get("metadata") or {}
    if (
        meta.get("finalizers")
        or rtype.plural == "namespaces"
        or (rtype.group == "apiextensions.k8s.io")
    ):
        code = 200
        if meta.get("deletionTimestamp") and orphan_dependents is False:
            code = 202
        return obj, code
    details: Obj = {"name": meta.get("name", "")}
    if rtype.group:
        details["group"] = rtype.group
    details["kind"] = rtype.plural
    details["uid"] = meta.get("uid", "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }, 200


def delete_body(body: Any) -> Mapping[str, Any]:
    """Return the DeleteOptions of a DELETE body (``{}`` when there is none)."""
    return body if isinstance(body, dict) else {}
