"""Structural schemas of custom resources: pruning, defaulting and validation.

A CRD's per-version ``openAPIV3Schema`` is applied to every write of a custom resource the
way apiextensions-apiserver does it
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):

1. defaulting: missing properties with a ``default`` get it, null values of non-nullable
   properties are dropped first (and then defaulted); nested defaults apply only where
   the parent object exists;
2. pruning: fields the schema does not specify are dropped, unless a node carries
   ``x-kubernetes-preserve-unknown-fields: true``; ``apiVersion``, ``kind`` and the
   ObjectMeta fields of ``metadata`` are always kept at the root (and in
   ``x-kubernetes-embedded-resource`` objects);
3. validation of the value validations OpenAPI v3 allows in a structural schema, answered
   with kube-apiserver's ``field.Error`` messages and a 422 Invalid Status. An update only
   re-validates what it changed (CRD validation ratcheting, on by default since 1.30:
   https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-ratcheting).

The walk is hand-written because no JSON Schema library has Kubernetes' pruning and
defaulting semantics; it copies only the containers it changes, so stored objects that
share sub-trees with the request are never mutated.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import ipaddress
import math
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, Final

import orjson

Obj = dict[str, Any]
Cause = tuple[str, str, str]  # (field, reason, message), like metav1.StatusCause

PRESERVE: Final = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING: Final = "x-kubernetes-int-or-string"
EMBEDDED: Final = "x-kubernetes-embedded-resource"

PERMISSIVE_SCHEMA: Final[Obj] = {"type": "object", PRESERVE: True}
"""The schema `FakeApiServer.register_crd` gives a CRD when none is passed."""

# ObjectMeta's JSON fields: metadata is decoded into ObjectMeta, so anything else is
# dropped (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/).
OBJECT_META_FIELDS: Final = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_ROOT_FIELDS: Final = ("apiVersion", "kind", "metadata")


# -- field.Error formatting ----------------------------------------------------------------
# Messages follow apimachinery's field.Error (ErrorBody: "<Type>: <value>: <detail>",
# https://github.com/kubernetes/apimachinery/blob/master/pkg/util/validation/field/errors.go)
# wrapping kube-openapi's texts ("<path> in body must be of type integer: ...",
# https://github.com/kubernetes/kube-openapi/blob/master/pkg/validation/errors/schema.go), as
# apiextensions-apiserver converts them (kubeOpenAPIResultToFieldErrors in
# https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/validation/validation.go).


def go_value(value: Any) -> str:
    """Format a bad value like apimachinery's ``field.Error`` (strings quoted, JSON else)."""
    if value is None:
        return '"null"'
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_number(value)
    return orjson.dumps(value).decode()


def go_number(value: float) -> str:
    """Format a number like Go's ``%v`` (integral values without a fraction)."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:  # Go writes 1e+21, Python 1e+21 too, but 1e-07 stays 1e-07
        mantissa, _, exp = text.partition("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exp.lstrip('+-').zfill(2)}"
    return text


def invalid_cause(path: str, value: Any, detail: str) -> Cause:
    """``field.Invalid``: reason ``FieldValueInvalid``."""
    return (path, "FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}")


def type_invalid_cause(path: str, value: Any, detail: str) -> Cause:
    """``field.TypeInvalid``: reason ``FieldValueTypeInvalid``."""
    return (path, "FieldValueTypeInvalid", f"Invalid value: {go_value(value)}: {detail}")


def required_cause(path: str, detail: str = "") -> Cause:
    """``field.Required``: reason ``FieldValueRequired``."""
    return (path, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def forbidden_cause(path: str, detail: str) -> Cause:
    """``field.Forbidden``: reason ``FieldValueForbidden``."""
    return (path, "FieldValueForbidden", f"Forbidden: {detail}")


def not_supported_cause(path: str, value: Any, allowed: Iterable[Any]) -> Cause:
    """``field.NotSupported``: reason ``FieldValueNotSupported``."""
    quoted = ", ".join(
        orjson.dumps(v if isinstance(v, str) else orjson.dumps(v).decode()).decode()
        for v in allowed
    )
    return (
        path,
        "FieldValueNotSupported",
        f"Unsupported value: {go_value(value)}: supported values: {quoted}",
    )


# -- JSON helpers ---------------------------------------------------------------------------


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values (``true`` is not ``1``; ``1`` is ``1.0`` like in Go's JSON)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def child_path(path: str, key: str) -> str:
    """Join a field path and a key (``spec`` + ``size`` is ``spec.size``)."""
    return f"{path}.{key}" if path else key


def pruned_fields(before: Any, after: Any, path: str = "") -> list[str]:
    """Field paths present in ``before`` and dropped in ``after`` (for fieldValidation)."""
    out: list[str] = []
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            sub = child_path(path, key)
            if key not in after:
                if value is not None:
                    out.append(sub)
            elif after[key] is not value:
                out.extend(pruned_fields(value, after[key], sub))
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (x, y) in enumerate(zip(before, after, strict=True)):
            if x is not y:
                out.extend(pruned_fields(x, y, f"{path}[{i}]"))
    return out


# -- validation -----------------------------------------------------------------------------


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in text.upper() or " " in text


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


_HOSTNAME = re.compile(
    r"^(?=.{1,255}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_MAC = re.compile(r"^(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")


def _is_hostname(text: str) -> bool:
    return _HOSTNAME.match(text) is not None


def _is_mac(text: str) -> bool:
    return _MAC.match(text) is not None


# The formats kube-apiserver checks that are cheap to check here (the others pass).
_FORMAT_CHECKS: Final[dict[str, Callable[[str], bool]]] = {
    "date-time": _is_datetime,
    "date": _is_date,
    "uuid": _is_uuid,
    "byte": _is_base64,
    "ipv4": _is_ipv4,
    "ipv6": _is_ipv6,
    "cidr": _is_cidr,
    "hostname": _is_hostname,
    "mac": _is_mac,
}

_PATTERNS: dict[str, re.Pattern[str] | None] = {}


def _pattern(text: str) -> re.Pattern[str] | None:
    compiled = _PATTERNS.get(text, _MISSING)
    if compiled is _MISSING:
        try:
            compiled = re.compile(text)
        except re.error:
            compiled = None
        _PATTERNS[text] = compiled
    return compiled  # type: ignore[return-value]


# -- compiled schema nodes -----------------------------------------------------------------


class Node:
    """One schema node, compiled: the keywords read on every write, as attributes.

    Walking raw dicts costs a dozen ``dict.get`` calls per value; a compiled node makes
    validation of a 2 KB object a few microseconds per field.
    """

    __slots__ = (
        "additional",
        "additional_true",
        "all_of",
        "any_of",
        "defaults",
        "direct",
        "embedded",
        "enum",
        "excl_max",
        "excl_min",
        "fmt",
        "int_or_string",
        "items",
        "leaf",
        "list_keys",
        "list_type",
        "max_items",
        "max_length",
        "max_props",
        "maximum",
        "min_items",
        "min_length",
        "min_props",
        "minimum",
        "multiple",
        "not_",
        "nullable",
        "one_of",
        "pattern",
        "preserve",
        "props",
        "required",
        "schema",
        "type",
        "unique",
    )

    def __init__(self, schema: Obj) -> None:
        self.schema: Obj = schema
        get = schema.get
        self.type: str | None = get("type") or None
        self.nullable: bool = bool(get("nullable"))
        self.int_or_string: bool = bool(get(INT_OR_STRING))
        self.preserve: bool = bool(get(PRESERVE))
        self.embedded: bool = bool(get(EMBEDDED))
        enum = get("enum")
        self.enum: list[Any] | None = list(enum) if isinstance(enum, list) else None
        self.min_length: Any | None = get("minLength")
        self.max_length: Any | None = get("maxLength")
        pattern = get("pattern")
        self.pattern: tuple[str, re.Pattern[str] | None] | None = (
            (pattern, _pattern(pattern)) if isinstance(pattern, str) and pattern else None
        )
        fmt = get("format")
        self.fmt: tuple[str, Callable[[str], bool]] | None = (
            (fmt, _FORMAT_CHECKS[fmt]) if fmt in _FORMAT_CHECKS else None
        )
        self.minimum: Any | None = get("minimum")
        self.maximum: Any | None = get("maximum")
        self.excl_min: bool = bool(get("exclusiveMinimum"))
        self.excl_max: bool = bool(get("exclusiveMaximum"))
        self.multiple: Any | None = get("multipleOf") or None
        self.min_items: Any | None = get("minItems")
        self.max_items: Any | None = get("maxItems")
        self.unique: bool = bool(get("uniqueItems"))
        self.list_type: str | None = get("x-kubernetes-list-type")
        keys = get("x-kubernetes-list-map-keys")
        self.list_keys: tuple[str, ...] = tuple(keys) if isinstance(keys, list) else ()
        self.min_props: Any | None = get("minProperties")
        self.max_props: Any | None = get("maxProperties")
        required = get("required")
        self.required: tuple[str, ...] = tuple(required) if isinstance(required, list) else ()
        props = get("properties")
        self.props: dict[str, Node] | None = (
            {k: Node(v) for k, v in props.items() if isinstance(v, dict)}
            if isinstance(props, dict) and props
            else None
        )
        additional = get("additionalProperties")
        self.additional: Node | None = Node(additional) if isinstance(additional, dict) else None
        self.additional_true: bool = additional is True
        items = get("items")
        self.items: Node | None = Node(items) if isinstance(items, dict) else None
        self.all_of: tuple[Node, ...] = tuple(
            Node(s) for s in get("allOf") or () if isinstance(s, dict)
        )
        self.any_of: tuple[Node, ...] = tuple(
            Node(s) for s in get("anyOf") or () if isinstance(s, dict)
        )
        self.one_of: tuple[Node, ...] = tuple(
            Node(s) for s in get("oneOf") or () if isinstance(s, dict)
        )
        negated = get("not")
        self.not_: Node | None = Node(negated) if isinstance(negated, dict) else None
        self.defaults: tuple[tuple[str, Node], ...] = tuple(
            (k, n) for k, n in (self.props or {}).items() if "default" in n.schema
        )
        # Objects and strings with nothing but their own checks are validated without the
        # generic entry (_validate): a shortcut for the bulk of a typical object.
        plain = self.enum is None and not (
            self.int_or_string or self.all_of or self.any_of or self.one_of or self.not_
        )
        self.direct = self.type if plain and self.type in ("object", "string") else ""
        # A leaf only checks its type: most fields of most objects.
        self.leaf: bool = not (
            self.enum is not None
            or self.min_length is not None
            or self.max_length is not None
            or self.pattern
            or self.fmt
            or self.minimum is not None
            or self.maximum is not None
            or self.multiple
            or self.items
            or self.min_items is not None
            or self.max_items is not None
            or self.unique
            or self.list_type in ("set", "map")
            or self.embedded
            or self.props
            or self.additional
            or self.required
            or self.min_props is not None
            or self.max_props is not None
            or self.all_of
            or self.any_of
            or self.one_of
            or self.not_
        )


def compile_schema(schema: Obj | Node) -> Node:
    """Compile a structural schema (a compiled one is returned as is)."""
    return schema if isinstance(schema, Node) else Node(schema)


_PY_TYPES: Final[dict[type, str]] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}


# -- defaulting and pruning ----------------------------------------------------------------


def default_and_prune(value: Any, schema: Obj | Node, *, root: bool = False) -> Any:
    """Apply defaults, drop non-nullable nulls and prune unknown fields; copy on write.

    ``root`` keeps ``apiVersion``/``kind``/``metadata`` (metadata pruned to ObjectMeta).
    """
    return _prune(value, compile_schema(schema), root)


def _prune(value: Any, node: Node, root: bool = False) -> Any:
    kind = type(value)
    if kind is dict:
        return _prune_object(value, node, root or node.embedded)
    if kind is list:
        items = node.items
        if items is None:
            return value
        out: list[Any] | None = None
        for i, item in enumerate(value):
            if type(item) is dict:
                new = _prune_object(item, items, items.embedded)
                if new is not item:
                    if out is None:
                        out = list(value)
                    out[i] = new
            elif type(item) is list:
                new = _prune(item, items)
                if new is not item:
                    if out is None:
                        out = list(value)
                    out[i] = new
        return value if out is None else out
    return value


def _prune_object(value: Obj, node: Node, embedded: bool) -> Obj:
    props = node.props
    out: Obj | None = None
    if props is not None:
        for key, prop in props.items():
            if key in value and value[key] is None and not prop.nullable:
                # Nulls of non-nullable fields are pruned before defaulting
                # (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting-and-nullable).
                if out is None:
                    out = dict(value)
                del out[key]
        for key, prop in node.defaults:
            if key not in (value if out is None else out):
                if out is None:
                    out = dict(value)
                out[key] = orjson.loads(orjson.dumps(prop.schema["default"]))
    elif node.preserve and node.additional is None and not embedded:
        return value  # keeps everything below, nothing to default
    additional = node.additional
    keep_unknown = node.preserve or node.additional_true
    src = value if out is None else out
    for key in list(src):
        child = src[key]
        if embedded and key in _ROOT_FIELDS:
            if key == "metadata" and type(child) is dict:
                new_meta = _object_meta(child)
                if new_meta is not child:
                    if out is None:
                        out = dict(value)
                    out[key] = new_meta
            continue
        sub = props.get(key) if props is not None else None
        if sub is None:
            sub = additional
            if sub is None:
                if not keep_unknown:
                    if out is None:
                        out = dict(value)
                    del out[key]
                continue
        kind = type(child)
        if kind is dict or kind is list:
            new = _prune_object(child, sub, sub.embedded) if kind is dict else _prune(child, sub)
            if new is not child:
                if out is None:
                    out = dict(value)
                out[key] = new
    return value if out is None else out


def _object_meta(meta: Obj) -> Obj:
    for key in meta:
        if key not in OBJECT_META_FIELDS:
            return {k: v for k, v in meta.items() if k in OBJECT_META_FIELDS}
    return meta


class _Missing:
    pass


_MISSING: Final = _Missing()


def validate(value: Any, schema: Obj | Node, path: str, old: Any = _MISSING) -> list[Cause]:
    """Validate ``value`` against a structural schema node; return field causes.

    ``old`` (on updates) is the stored value at the same path: an unchanged sub-tree is
    not validated again (validation ratcheting).
    """
    causes: list[Cause] = []
    _validate(value, compile_schema(schema), path, old, causes)
    return causes


def _unchanged(value: Any, old: Any) -> bool:
    if old is _MISSING or value != old:
        return False
    kind = type(value)
    if kind is dict or kind is list:
        # == says 1 == True == 1.0; the JSON texts do not (key order may differ: then the
        # sub-tree is simply validated again).
        return orjson.dumps(value) == orjson.dumps(old)
    return kind is type(old)


def _validate(value: Any, node: Node, path: str, old: Any, causes: list[Cause]) -> None:
    if old is not _MISSING and _unchanged(value, old):
        return  # ratcheting: unchanged values are not validated again
    actual = _PY_TYPES.get(type(value), "object")
    expected = node.type
    if node.int_or_string:
        if not (
            actual in ("integer", "string") or (actual == "number" and float(value).is_integer())
        ):
            if actual != "null" or not node.nullable:
                name = path or "."
                causes.append(
                    type_invalid_cause(
                        path, actual, f'{name} in body must be of type integer,string: "{actual}"'
                    )
                )
            return
    elif expected is not None and actual != expected:
        if actual == "null":
            if not node.nullable:
                causes.append(
                    type_invalid_cause(
                        path, "null", f'{path or "."} in body must be of type {expected}: "null"'
                    )
                )
            return
        if not (
            (expected == "number" and actual == "integer")
            or (
                expected == "integer"
                and actual == "number"
                and math.isfinite(value)
                and float(value).is_integer()
            )
        ):
            causes.append(
                type_invalid_cause(
                    path, actual, f'{path or "."} in body must be of type {expected}: "{actual}"'
                )
            )
            return
    if node.leaf or value is None:
        return
    name = path or "."
    if node.enum is not None and not any(json_equal(value, a) for a in node.enum):
        causes.append(not_supported_cause(path, value, node.enum))
    if actual == "string":
        _validate_string(value, node, path, name, causes)
    elif actual == "integer" or actual == "number":
        _validate_number(value, node, path, name, causes)
    elif actual == "array":
        _validate_array(value, node, path, name, old, causes)
    elif actual == "object":
        _validate_object(value, node, path, name, old, causes)
    for sub in node.all_of:
        _validate(value, sub, path, _MISSING, causes)
    if node.any_of and not any(not validate(value, s, path) for s in node.any_of):
        causes.append(
            invalid_cause(path, "", f"{name} in body must validate at least one schema (anyOf)")
        )
    if node.one_of and sum(1 for s in node.one_of if not validate(value, s, path)) != 1:
        causes.append(
            invalid_cause(path, "", f"{name} in body must validate one and only one schema (oneOf)")
        )
    if node.not_ is not None and not validate(value, node.not_, path):
        causes.append(invalid_cause(path, "", f"{name} in body must not validate the schema (not)"))


def _validate_string(value: str, node: Node, path: str, name: str, causes: list[Cause]) -> None:
    length = len(value)
    if node.max_length is not None and length > node.max_length:
        causes.append(
            (path, "FieldValueTooLong", f"Too long: may not be more than {node.max_length} bytes")
        )
    if node.min_length is not None and length < node.min_length:
        causes.append(
            invalid_cause(
                path, value, f"{name} in body should be at least {node.min_length} chars long"
            )
        )
    if node.pattern is not None:
        text, compiled = node.pattern
        if compiled is not None and compiled.search(value) is None:
            causes.append(invalid_cause(path, value, f"{name} in body should match '{text}'"))
    if node.fmt is not None:
        fmt, check = node.fmt
        if not check(value):
            causes.append(
                type_invalid_cause(
                    path, value, f"{name} in body must be of type {fmt}: {go_value(value)}"
                )
            )


def _validate_number(value: float, node: Node, path: str, name: str, causes: list[Cause]) -> None:
    maximum = node.maximum
    if maximum is not None and (value > maximum or (node.excl_max and value == maximum)):
        word = "less than" if node.excl_max else "less than or equal to"
        causes.append(
            invalid_cause(path, value, f"{name} in body should be {word} {go_number(maximum)}")
        )
    minimum = node.minimum
    if minimum is not None and (value < minimum or (node.excl_min and value == minimum)):
        word = "greater than" if node.excl_min else "greater than or equal to"
        causes.append(
            invalid_cause(path, value, f"{name} in body should be {word} {go_number(minimum)}")
        )
    multiple = node.multiple
    if multiple:
        quotient = value / multiple
        if not math.isclose(quotient, round(quotient), rel_tol=0, abs_tol=1e-9):
            causes.append(
                invalid_cause(
                    path, value, f"{name} in body should be a multiple of {go_number(multiple)}"
                )
            )


def _validate_array(
    value: list[Any], node: Node, path: str, name: str, old: Any, causes: list[Cause]
) -> None:
    items = node.items
    if items is not None:
        olds = old if type(old) is list and len(old) == len(value) else None
        leaf_type = items.type if items.leaf and not items.int_or_string else None
        direct = items.direct
        for i, item in enumerate(value):
            kind = _PY_TYPES.get(type(item))
            if leaf_type is not None and kind == leaf_type:
                continue  # the common case, checked inline
            old_item = olds[i] if olds else _MISSING
            if kind == direct and (old_item is _MISSING or not _unchanged(item, old_item)):
                sub = f"{path}[{i}]"
                if kind == "object":
                    _validate_object(item, items, sub, sub, old_item, causes)
                else:
                    _validate_string(item, items, sub, sub, causes)
                continue
            _validate(item, items, f"{path}[{i}]", old_item, causes)
    count = len(value)
    if node.min_items is not None and count < node.min_items:
        causes.append(
            invalid_cause(
                path, count, f"{name} in body should have at least {node.min_items} items"
            )
        )
    if node.max_items is not None and count > node.max_items:
        causes.append(
            (
                path,
                "FieldValueTooMany",
                f"Too many: {count}: must have at most {node.max_items} items",
            )
        )
    if node.unique:
        seen = [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in value]
        if len(set(seen)) != len(seen):
            causes.append((path, "FieldValueDuplicate", f"Duplicate value: {go_value(value)}"))
    if node.list_type in ("set", "map"):
        _check_list_type(value, node, path, causes)


def _check_list_type(value: list[Any], node: Node, path: str, causes: list[Cause]) -> None:
    # x-kubernetes-list-type set: no two equal items; map: no two items with the same
    # values of x-kubernetes-list-map-keys (https://kubernetes.io/docs/reference/using-api/
    # server-side-apply/#merge-strategy); reported per duplicate item like kube-apiserver.
    seen: set[bytes] = set()
    for i, item in enumerate(value):
        if node.list_type == "set":
            key: Any = item
        elif isinstance(item, dict):
            key = {k: item[k] for k in node.list_keys if k in item}
        else:
            continue
        encoded = orjson.dumps(key, option=orjson.OPT_SORT_KEYS)
        if encoded in seen:
            causes.append(
                (f"{path}[{i}]", "FieldValueDuplicate", f"Duplicate value: {go_value(key)}")
            )
        seen.add(encoded)


def _validate_object(
    value: Obj, node: Node, path: str, name: str, old: Any, causes: list[Cause]
) -> None:
    olds: Obj | None = old if type(old) is dict else None
    if node.embedded:
        # An embedded resource needs apiVersion and kind, like a top-level object.
        for key in ("apiVersion", "kind"):
            if not value.get(key):
                causes.append(required_cause(child_path(path, key), "must not be empty"))
    for key in node.required:
        if key not in value:
            causes.append(required_cause(child_path(path, key)))
    props = node.props
    additional = node.additional
    for key, child in value.items():
        sub = props.get(key) if props is not None else None
        if sub is None:
            sub = additional
            if sub is None:
                continue
        kind = _PY_TYPES.get(type(child))
        if sub.leaf and not sub.int_or_string and kind == sub.type:
            continue  # the common case, checked inline
        old_child = olds.get(key, _MISSING) if olds is not None else _MISSING
        if kind == sub.direct:
            if old_child is _MISSING or not _unchanged(child, old_child):
                sub_path = child_path(path, key)
                if kind == "object":
                    _validate_object(child, sub, sub_path, sub_path, old_child, causes)
                else:
                    _validate_string(child, sub, sub_path, sub_path, causes)
            continue
        _validate(child, sub, child_path(path, key), old_child, causes)
    count = len(value)
    if node.max_props is not None and count > node.max_props:
        causes.append(
            (
                path,
                "FieldValueTooMany",
                f"Too many: {count}: must have at most {node.max_props} items",
            )
        )
    if node.min_props is not None and count < node.min_props:
        causes.append(
            invalid_cause(
                path, count, f"{name} in body should have at least {node.min_props} properties"
            )
        )


# -- the registry the write path consults ---------------------------------------------------


class VersionSchema:
    """The schema and printer columns of one served version of a CRD."""

    __slots__ = ("columns", "kind", "node", "permissive", "schema")

    def __init__(self, schema: Obj, columns: list[Obj], kind: str) -> None:
        self.schema: Obj = schema
        self.node: Node = Node(schema)
        self.columns: list[Obj] = columns
        self.kind: str = kind
        # Fast path: a root that keeps everything and checks nothing below it.
        self.permissive: bool = bool(schema.get(PRESERVE)) and not any(
            k in schema
            for k in (
                "properties",
                "additionalProperties",
                "required",
                "anyOf",
                "allOf",
                "oneOf",
                "not",
                "minProperties",
                "maxProperties",
            )
        )


# Set by the HTTP handler for one request: the ``fieldValidation`` directive
# (https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation) and the
# warnings to send back. The Python API leaves it unset, which means Ignore.
FIELD_VALIDATION: Final[contextvars.ContextVar[str]] = contextvars.ContextVar(
    "crwatch_fake_field_validation", default="Ignore"
)
WARNINGS: Final[contextvars.ContextVar[list[str] | None]] = contextvars.ContextVar(
    "crwatch_fake_warnings", default=None
)


class SchemaRegistry:
    """Schemas of every served CRD version, and the admission step of custom resources.

    `ClusterState` owns one; the write path calls `admit` on every object it is about to
    store (create, update, patch, status writes, apply).
    """

    def __init__(
        self,
        on_invalid: Callable[[str, str, str, list[Cause]], Exception],
        on_bad_request: Callable[[str], Exception],
    ) -> None:
        self._versions: dict[tuple[str, str, str], VersionSchema] = {}
        self._invalid = on_invalid
        self._bad_request = on_bad_request

    def sync_crd(self, crd: Obj) -> None:
        """Record the schemas and printer columns of a created or updated CRD."""
        spec = crd["spec"]
        group, plural = spec["group"], spec["names"]["plural"]
        self.drop_crd(crd)
        for ver in spec.get("versions") or ():
            schema = (ver.get("schema") or {}).get("openAPIV3Schema") or PERMISSIVE_SCHEMA
            columns = [c for c in ver.get("additionalPrinterColumns") or () if isinstance(c, dict)]
            self._versions[(group, ver["name"], plural)] = VersionSchema(
                schema, columns, spec["names"]["kind"]
            )

    def drop_crd(self, crd: Obj) -> None:
        """Forget every version of a CRD."""
        spec = crd["spec"]
        group, plural = spec["group"], spec["names"]["plural"]
        for key in [k for k in self._versions if k[0] == group and k[2] == plural]:
            del self._versions[key]

    def get(self, group: str, version: str, plural: str) -> VersionSchema | None:
        """Return the schema of one CRD version, or ``None`` (built-in resources)."""
        return self._versions.get((group, version, plural))

    def admit(self, group: str, version: str, plural: str, obj: Obj, old: Obj | None = None) -> Obj:
        """Default, prune and validate a custom resource about to be stored; return it.

        ``obj`` is not mutated (changed containers are copied). ``old`` is the stored
        object on updates (unchanged fields are not validated again). Raises the
        ``on_invalid`` error (422 Invalid) for schema violations, and the
        ``on_bad_request`` error (400) for unknown fields under ``fieldValidation=Strict``;
        under ``Warn`` the unknown fields become ``Warning`` headers.
        """
        entry = self._versions.get((group, version, plural))
        if entry is None:
            return obj
        admitted: Obj = _prune(obj, entry.node, True)
        mode = FIELD_VALIDATION.get()
        if mode != "Ignore" and admitted is not obj:
            unknown = pruned_fields(obj, admitted)
            if unknown and mode == "Strict":
                raise self._bad_request(
                    "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in unknown)
                )
            warnings = WARNINGS.get()
            if warnings is not None:
                warnings.extend(f'unknown field "{f}"' for f in unknown)
        if entry.permissive:
            return admitted
        causes: list[Cause] = []
        _validate(admitted, entry.node, "", _MISSING if old is None else old, causes)
        if causes:
            name = str((admitted.get("metadata") or {}).get("name", ""))
            raise self._invalid(entry.kind, group, name, causes)
        return admitted

    def default_stored(
        self, group: str, version: str, plural: str, objects: dict[str, Obj]
    ) -> None:
        """Default stored objects after a schema change, as reads from storage would.

        Replaces changed objects with new dicts (stored dicts are never mutated).
        """
        entry = self._versions.get((group, version, plural))
        if entry is None or entry.permissive:
            return
        for key, obj in list(objects.items()):
            defaulted = _prune(obj, entry.node, True)
            if defaulted is not obj:
                objects[key] = defaulted
