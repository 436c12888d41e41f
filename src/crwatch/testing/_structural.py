"""Is a CRD's schema structural? The 422 causes apiextensions-apiserver gives a v1 CRD.

A v1 CustomResourceDefinition needs a structural ``openAPIV3Schema`` for every version
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):
a type on the root, on every specified field and on array items (unless
``x-kubernetes-int-or-string`` or ``x-kubernetes-preserve-unknown-fields``), no ``$ref``
and the like, only value validations inside ``allOf``/``anyOf``/``oneOf``/``not``,
``metadata`` restricted to ``name``/``generateName``, and defaults that are pruned and
valid. Printer columns need a name, a type and a jsonPath.
"""

from __future__ import annotations

from typing import Any, Final

from ._schema import (
    INT_OR_STRING,
    PRESERVE,
    Cause,
    Obj,
    default_and_prune,
    forbidden_cause,
    invalid_cause,
    not_supported_cause,
    pruned_fields,
    required_cause,
    validate,
)
from ._schema import child_path as _child

_TYPES: Final = ("array", "boolean", "integer", "number", "object", "string")
_UNSUPPORTED: Final = (
    "$ref",
    "$schema",
    "id",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
)
# Inside allOf/anyOf/oneOf/not a structural schema may only repeat value validations
# (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
_JUNCTOR_FORBIDDEN: Final = ("type", "default", "additionalProperties", "nullable", "description")
_COLUMN_TYPES: Final = ("integer", "number", "string", "boolean", "date")


def structural_errors(schema: Any, path: str) -> list[Cause]:
    """Why ``schema`` (an ``openAPIV3Schema`` at ``path``) is not structural; empty if it is."""
    causes: list[Cause] = []
    if not isinstance(schema, dict):
        return [required_cause(path, "schemas are required")]
    if schema.get("type") != "object":
        if not schema.get("type"):
            causes.append(required_cause(f"{path}.type", "must not be empty at the root"))
        else:
            causes.append(
                invalid_cause(f"{path}.type", schema["type"], "must be object at the root")
            )
    meta = (
        (schema.get("properties") or {}).get("metadata")
        if isinstance(schema.get("properties"), dict)
        else None
    )
    if isinstance(meta, dict):
        extra = set(meta) - {"type", "properties"}
        names = set(meta.get("properties") or {})
        if extra or not names <= {"name", "generateName"} or meta.get("type", "object") != "object":
            causes.append(
                forbidden_cause(
                    f"{path}.properties[metadata]",
                    "must not specify anything other than name and generateName, but metadata "
                    "is implicitly specified",
                )
            )
    _structural(schema, path, causes, in_junctor=False)
    return causes


def _structural(
    node: Obj, path: str, causes: list[Cause], *, in_junctor: bool, data: str = ""
) -> None:
    for key in _UNSUPPORTED:
        if key in node:
            causes.append(forbidden_cause(f"{path}.{key}", f"{key} is not supported"))
    if node.get("uniqueItems") is True:
        causes.append(
            forbidden_cause(
                f"{path}.uniqueItems",
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    kind = node.get("type")
    if kind and kind not in _TYPES:
        causes.append(not_supported_cause(f"{path}.type", kind, _TYPES))
    if node.get(PRESERVE) is False:
        causes.append(invalid_cause(f"{path}.{PRESERVE}", False, "must be true or undefined"))
    if in_junctor:
        for key in _JUNCTOR_FORBIDDEN:
            if key in node:
                causes.append(forbidden_cause(f"{path}.{key}", "must be empty to be structural"))
    props = node.get("properties")
    additional = node.get("additionalProperties")
    if props and additional is not None and additional is not False:
        causes.append(
            forbidden_cause(
                f"{path}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    if isinstance(props, dict):
        for name, prop in props.items():
            sub = f"{path}.properties[{name}]"
            if not isinstance(prop, dict):
                causes.append(invalid_cause(sub, prop, "must be a schema object"))
                continue
            if not in_junctor and not _typed(prop):
                causes.append(
                    required_cause(f"{sub}.type", "must not be empty for specified object fields")
                )
            _structural(prop, sub, causes, in_junctor=in_junctor, data=_child(data, name))
            if "default" in prop and not in_junctor:
                _check_default(prop, sub, _child(data, name), causes)
    if isinstance(additional, dict):
        sub = f"{path}.additionalProperties"
        if not in_junctor and not _typed(additional):
            causes.append(
                required_cause(f"{sub}.type", "must not be empty for specified object fields")
            )
        _structural(additional, sub, causes, in_junctor=in_junctor, data=data)
    items = node.get("items")
    if isinstance(items, dict):
        sub = f"{path}.items"
        if not in_junctor and not _typed(items):
            causes.append(
                required_cause(f"{sub}.type", "must not be empty for specified array items")
            )
        _structural(items, sub, causes, in_junctor=in_junctor, data=data)
    elif items is not None:
        causes.append(
            forbidden_cause(f"{path}.items", "items must be a schema object and not an array")
        )
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, sub_schema in enumerate(node.get(junctor) or ()):
            if isinstance(sub_schema, dict):
                _structural(sub_schema, f"{path}.{junctor}[{i}]", causes, in_junctor=True)
    if isinstance(node.get("not"), dict):
        _structural(node["not"], f"{path}.not", causes, in_junctor=True)


def _typed(node: Obj) -> bool:
    return bool(node.get("type") or node.get(INT_OR_STRING) or node.get(PRESERVE))


def _check_default(prop: Obj, path: str, data: str, causes: list[Cause]) -> None:
    # A default must be pruned and valid where it lands in the object (the message names
    # the object path, the cause field the schema path).
    value = prop["default"]
    pruned = default_and_prune(value, prop)
    if pruned_fields(value, pruned):
        causes.append(invalid_cause(f"{path}.default", value, "must not have unknown fields"))
        return
    for _, reason, message in validate(pruned, prop, data):
        causes.append((f"{path}.default", reason, message))


def printer_column_errors(columns: Any, path: str) -> list[Cause]:
    """Invalid ``additionalPrinterColumns`` entries (name, type and jsonPath are required)."""
    causes: list[Cause] = []
    if columns is None:
        return causes
    if not isinstance(columns, list):
        return [invalid_cause(path, columns, "must be a list")]
    for i, col in enumerate(columns):
        sub = f"{path}[{i}]"
        if not isinstance(col, dict):
            causes.append(invalid_cause(sub, col, "must be an object"))
            continue
        if not col.get("name"):
            causes.append(required_cause(f"{sub}.name"))
        if col.get("type") not in _COLUMN_TYPES:
            causes.append(not_supported_cause(f"{sub}.type", col.get("type", ""), _COLUMN_TYPES))
        if not col.get("jsonPath"):
            causes.append(required_cause(f"{sub}.jsonPath"))
    return causes


def crd_errors(spec: Obj) -> list[Cause]:
    """Return the schema and printer-column problems of a v1 CRD spec (422 causes)."""
    causes: list[Cause] = []
    if spec.get("preserveUnknownFields") is True:
        causes.append(
            invalid_cause(
                "spec.preserveUnknownFields",
                True,
                "must be false in order to use defaults in the schema",
            )
        )
    for i, ver in enumerate(spec.get("versions") or ()):
        if not isinstance(ver, dict):
            continue
        base = f"spec.versions[{i}]"
        schema = (
            (ver.get("schema") or {}).get("openAPIV3Schema")
            if isinstance(ver.get("schema"), dict)
            else None
        )
        causes.extend(structural_errors(schema, f"{base}.schema.openAPIV3Schema"))
        causes.extend(
            printer_column_errors(
                ver.get("additionalPrinterColumns"), f"{base}.additionalPrinterColumns"
            )
        )
    return causes
