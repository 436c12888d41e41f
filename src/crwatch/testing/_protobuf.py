"""Decode the few protobuf request bodies kubectl sends for built-in kinds.

kubectl writes built-in objects (``kubectl create namespace``, ``create configmap``, ...)
as ``application/vnd.kubernetes.protobuf`` and does not retry with JSON on a 415. The
fake stores JSON, so it decodes those bodies here: the ``k8s`` + NUL envelope around a
``runtime.Unknown`` (https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding)
and the messages of the kinds listed in `_KINDS`, with field numbers from k8s.io/api's
``generated.proto`` files. Anything else raises `ProtobufError` (the server answers 415).
Responses stay JSON: kubectl accepts them.
"""

from __future__ import annotations

import base64
from typing import Any, Final

Obj = dict[str, Any]

MAGIC: Final = b"k8s\x00"


class ProtobufError(ValueError):
    """A protobuf body this fake cannot decode."""


# A schema maps a field number to (json name, type). Types: "string", "bytes", "bool",
# "map" (map<string,string>), "bytesmap" (map<string,bytes>), "strings" (repeated
# string), a schema name, or "[]" + a schema name (repeated message). Fields not listed
# (status, timestamps, managedFields) are skipped: a create does not send them.
_SCHEMAS: Final[dict[str, dict[int, tuple[str, str]]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"), 4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "strings"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "strings")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "bytesmap"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "bytesmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
}
_KINDS: Final = {("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret")}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4  # fixed-width numbers: none in these kinds
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _entry(data: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, item in _fields(data):
        if isinstance(item, bytes):
            if number == 1:
                key = item.decode()
            elif number == 2:
                value = item
    return key, value


def _message(data: bytes, schema: str) -> Obj:
    fields = _SCHEMAS[schema]
    out: Obj = {}
    for number, value in _fields(data):
        if number not in fields:
            continue
        name, kind = fields[number]
        if kind == "bool":
            out[name] = bool(value)
            continue
        if not isinstance(value, bytes):
            raise ProtobufError(f"{schema}.{name}: unexpected wire type")
        if kind == "string":
            out[name] = value.decode()
        elif kind == "bytes":
            out[name] = value
        elif kind == "strings":
            out.setdefault(name, []).append(value.decode())
        elif kind in ("map", "bytesmap"):
            key, raw = _entry(value)
            text = raw.decode() if kind == "map" else base64.b64encode(raw).decode()
            out.setdefault(name, {})[key] = text
        elif kind.startswith("[]"):
            out.setdefault(name, []).append(_message(value, kind[2:]))
        else:
            out[name] = _message(value, kind)
    return out


def decode(body: bytes) -> Obj:
    """Decode a protobuf request body into the JSON form of the object."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope")
    unknown = _message(body[len(MAGIC) :], "Unknown")
    type_meta = unknown.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if (api_version, kind) not in _KINDS:
        raise ProtobufError(f"protobuf bodies of {api_version}/{kind} are not supported")
    obj = _message(unknown.get("raw", b""), kind)
    return {"apiVersion": api_version, "kind": kind, **obj}
