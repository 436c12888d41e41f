"""Encode the Swagger 2.0 document as gnostic's ``openapi.v2.Document`` protobuf.

kubectl 1.27 and 1.28 read ``/openapi/v2`` only as protobuf
(``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf``), and fail
without it when they validate. The message layout is gnostic's
(https://github.com/google/gnostic/blob/main/openapiv2/OpenAPIv2.proto); only the fields
the fake server's document uses are written. ``Any`` values (defaults, enums, vendor
extensions) carry their value as YAML text, and JSON text is YAML.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

Obj = dict[str, Any]

# Clients ask for ...spec.v2@v1.0+protobuf; the answer's Content-Type must parse as a MIME
# type in Go, which "@" does not.
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 values are ten-byte varints
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _str(field: int, text: Any) -> bytes:
    return _bytes(field, str(text).encode()) if text not in (None, "") else b""


def _bool(field: int, value: Any) -> bytes:
    return _key(field, 0) + b"\x01" if value else b""


def _int(field: int, value: Any) -> bytes:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return b""
    return _key(field, 0) + _varint(int(value))


def _double(field: int, value: Any) -> bytes:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return b""
    return _key(field, 1) + struct.pack("<d", float(value))


def _any(field: int, value: Any) -> bytes:
    # gnostic Any: value = 1 (google.protobuf.Any, unused), yaml = 2
    return _bytes(field, _bytes(2, orjson.dumps(value)))


def _named_any(field: int, name: str, value: Any) -> bytes:
    return _bytes(field, _str(1, name) + _any(2, value))


def _extensions(field: int, obj: Obj) -> bytes:
    return b"".join(_named_any(field, k, v) for k, v in obj.items() if k.startswith("x-"))


def schema(node: Obj) -> bytes:
    """Encode one Schema message."""
    out = [
        _str(1, node.get("$ref")),
        _str(2, node.get("format")),
        _str(3, node.get("title")),
        _str(4, node.get("description")),
    ]
    if "default" in node:
        out.append(_any(5, node["default"]))
    out += [
        _double(6, node.get("multipleOf")),
        _double(7, node.get("maximum")),
        _bool(8, node.get("exclusiveMaximum")),
        _double(9, node.get("minimum")),
        _bool(10, node.get("exclusiveMinimum")),
        _int(11, node.get("maxLength")),
        _int(12, node.get("minLength")),
        _str(13, node.get("pattern")),
        _int(14, node.get("maxItems")),
        _int(15, node.get("minItems")),
        _bool(16, node.get("uniqueItems")),
        _int(17, node.get("maxProperties")),
        _int(18, node.get("minProperties")),
    ]
    out += [_str(19, name) for name in node.get("required") or ()]
    out += [_any(20, value) for value in node.get("enum") or ()]
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out.append(_bytes(21, _bytes(1, schema(additional))))
    elif isinstance(additional, bool):
        out.append(_bytes(21, _key(2, 0) + (b"\x01" if additional else b"\x00")))
    if node.get("type"):
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        out.append(_bytes(22, b"".join(_str(1, k) for k in kinds)))
    items = node.get("items")
    if isinstance(items, dict):
        out.append(_bytes(23, _bytes(1, schema(items))))
    out += [_bytes(24, schema(sub)) for sub in node.get("allOf") or () if isinstance(sub, dict)]
    props = node.get("properties")
    if isinstance(props, dict) and props:
        named = b"".join(
            _bytes(1, _str(1, name) + _bytes(2, schema(sub)))
            for name, sub in props.items()
            if isinstance(sub, dict)
        )
        out.append(_bytes(25, named))
    out.append(_extensions(31, node))
    return b"".join(out)


def _parameter(param: Obj) -> bytes:
    where = param.get("in")
    if where == "body":
        body = (
            _str(1, param.get("description"))
            + _str(2, param.get("name"))
            + _str(3, "body")
            + _bool(4, param.get("required"))
            + _bytes(5, schema(param.get("schema") or {}))
        )
        inner = _bytes(1, body)
    else:
        common = (
            _bool(1, param.get("required"))
            + _str(2, where)
            + _str(3, param.get("description"))
            + _str(4, param.get("name"))
        )
        if where == "query":
            sub = _bytes(
                3, common + _str(6, param.get("type")) + _bool(20, param.get("uniqueItems"))
            )
        else:  # path
            sub = _bytes(4, common + _str(5, param.get("type")))
        inner = _bytes(2, sub)
    return _bytes(1, inner)  # ParametersItem.parameter


def _operation(op: Obj) -> bytes:
    out = [_str(3, op.get("description")), _str(5, op.get("operationId"))]
    out += [_str(6, media) for media in op.get("produces") or ()]
    out += [_str(7, media) for media in op.get("consumes") or ()]
    out += [_bytes(8, _parameter(p)) for p in op.get("parameters") or ()]
    codes = b""
    for code, answer in (op.get("responses") or {}).items():
        response = _str(1, answer.get("description"))
        if isinstance(answer.get("schema"), dict):
            response += _bytes(2, _bytes(1, schema(answer["schema"])))
        codes += _bytes(1, _str(1, code) + _bytes(2, _bytes(1, response)))
    out.append(_bytes(9, codes))
    out += [_str(10, scheme) for scheme in op.get("schemes") or ()]
    out.append(_extensions(13, op))
    return b"".join(out)


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def document(doc: Obj) -> bytes:
    """Encode a Swagger 2.0 document (as built by ``v2_document``)."""
    info = doc.get("info") or {}
    out = [
        _str(1, doc.get("swagger", "2.0")),
        _bytes(2, _str(1, info.get("title")) + _str(2, info.get("version"))),
    ]
    paths = b""
    for path, item in (doc.get("paths") or {}).items():
        body = b"".join(
            _bytes(number, _operation(item[method]))
            for method, number in _METHODS.items()
            if isinstance(item.get(method), dict)
        )
        body += b"".join(_bytes(9, _parameter(p)) for p in item.get("parameters") or ())
        paths += _bytes(2, _str(1, path) + _bytes(2, body))
    out.append(_bytes(8, paths))
    definitions = b"".join(
        _bytes(1, _str(1, name) + _bytes(2, schema(node)))
        for name, node in (doc.get("definitions") or {}).items()
    )
    out.append(_bytes(9, definitions))
    return b"".join(out)
