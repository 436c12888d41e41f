"""Protobuf request bodies (what kubectl sends for built-in kinds) in FakeApiServer."""

from __future__ import annotations

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crwatch.testing import FakeApiServer
from crwatch.testing._protobuf import ProtobufError, decode

pytestmark = pytest.mark.anyio


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | int) -> bytes:
    """Encode one protobuf field (length-delimited for bytes, varint for ints)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def entry(key: str, value: bytes) -> bytes:
    """Encode one map entry."""
    return field(1, key.encode()) + field(2, value)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """Wrap a message in the k8s protobuf envelope (runtime.Unknown)."""
    type_meta = field(1, api_version.encode()) + field(2, kind.encode())
    return b"k8s\x00" + field(1, type_meta) + field(2, raw)


def configmap_proto(name: str, data: dict[str, str]) -> bytes:
    """Encode a ConfigMap the way client-go's protobuf serializer lays it out."""
    ref = (
        field(1, b"Widget")
        + field(3, b"w1")
        + field(4, b"u-1")
        + field(5, b"example.com/v1")
        + field(7, 1)
    )
    meta = (
        field(1, name.encode())
        + field(11, entry("app", b"web"))
        + field(13, ref)
        + field(14, b"example.com/hold")
    )
    raw = field(1, meta)
    for key, value in data.items():
        raw += field(2, entry(key, value.encode()))
    raw += field(3, entry("blob", b"\x00\x01"))
    return envelope("v1", "ConfigMap", raw)


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=300), max_size=5))
def test_decode_configmap(data: dict[str, str]) -> None:
    """A ConfigMap decodes to its JSON form: metadata, data, binaryData (base64)."""
    obj = decode(configmap_proto("c", data))
    assert obj["apiVersion"] == "v1"
    assert obj["kind"] == "ConfigMap"
    assert obj["metadata"] == {
        "name": "c",
        "labels": {"app": "web"},
        "ownerReferences": [
            {
                "kind": "Widget",
                "name": "w1",
                "uid": "u-1",
                "apiVersion": "example.com/v1",
                "blockOwnerDeletion": True,
            }
        ],
        "finalizers": ["example.com/hold"],
    }
    assert obj.get("data", {}) == data
    assert obj["binaryData"] == {"blob": "AAE="}


def test_decode_refuses_what_it_does_not_know() -> None:
    """Other kinds, a missing envelope or a truncated body raise ProtobufError."""
    with pytest.raises(ProtobufError, match="apps/v1/Deployment"):
        decode(envelope("apps/v1", "Deployment", b""))
    with pytest.raises(ProtobufError, match="envelope"):
        decode(b'{"kind": "ConfigMap"}')
    with pytest.raises(ProtobufError, match="truncated"):
        decode(configmap_proto("c", {"k": "v"})[:-3])


async def test_protobuf_create_over_http(fake_apiserver: FakeApiServer) -> None:
    """A protobuf POST of a ConfigMap is stored; an unsupported kind answers 415 Status."""
    headers = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    async with aiohttp.ClientSession(fake_apiserver.url) as http:
        async with http.post(
            "/api/v1/namespaces/default/configmaps",
            data=configmap_proto("c", {"k": "v"}),
            headers=headers,
        ) as response:
            assert response.status == 201
            created = await response.json()
        async with http.post(
            "/apis/apps/v1/namespaces/default/deployments",
            data=envelope("apps/v1", "Deployment", b""),
            headers=headers,
        ) as response:
            assert response.status == 404  # not served at all
        async with http.post(
            "/api/v1/namespaces/default/configmaps",
            data=envelope("v1", "Pod", b""),
            headers=headers,
        ) as response:
            assert response.status == 415
            status = await response.json()
    assert created["data"] == {"k": "v"}
    assert created["metadata"]["name"] == "c"
    assert status["reason"] == "UnsupportedMediaType"
    configmaps = fake_apiserver.resource("", "v1", "configmaps")
    assert fake_apiserver.get(configmaps, "c")["binaryData"] == {"blob": "AAE="}
