"""Table, PartialObjectMetadata and OpenAPI documents of FakeApiServer, over HTTP.

Reads go through kubernetes-asyncio's ``ApiClient.call_api`` (its typed methods pin
``Accept: application/json``, so the Accept header is set by hand, the way client-go's
metadata client and kubectl set it).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from fakeserver_helpers import session
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from crwatch.testing import FakeApiServer, ResourceType
from crwatch.testing._builtin_schemas import BUILTIN_SCHEMAS
from crwatch.testing._table import (
    PLAIN,
    View,
    builtin_columns,
    human_duration,
    lookup,
    negotiate,
    parse_json_path,
)

pytestmark = pytest.mark.anyio

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
KUBECTL_TABLE = f"{TABLE},application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
PARTIAL = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Clock:
    """A settable clock for the server's timestamps and Table ages."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """Give the server a settable clock."""
    return Clock()


@pytest.fixture
def fake_apiserver_options(clock: Clock) -> dict[str, Any]:
    """Fast bookmarks and the test clock."""
    return {"bookmark_interval": 0.05, "too_large_rv_wait": 0.05, "now": clock}


COLUMNS = [
    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
    {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
    {"name": "First", "type": "string", "jsonPath": ".spec.parts[0].name"},
    {"name": "App", "type": "string", "jsonPath": ".metadata.labels['app.kubernetes.io/name']"},
    {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def register(server: FakeApiServer, **kwargs: Any) -> ResourceType:
    """widgets.example.com with printer columns."""
    options: dict[str, Any] = {
        "group": "example.com",
        "version": "v1",
        "plural": "widgets",
        "kind": "Widget",
        "printer_columns": COLUMNS,
    }
    options.update(kwargs)
    return server.register_crd(**options)


async def call(api: ApiClient, path: str, accept: str, **query: str) -> tuple[int, dict[str, Any]]:
    """GET ``path`` with ``accept`` through kubernetes-asyncio; (status, decoded body)."""
    try:
        data, status, _ = await api.call_api(
            path,
            "GET",
            query_params=list(query.items()),
            header_params={"Accept": accept},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
        )
    except ApiException as exc:
        return exc.status, orjson.loads(exc.body)
    return status, data


async def test_table_list_has_printer_columns(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient, clock: Clock
) -> None:
    """A Table list has Name plus the CRD's columns, cells typed, missing cells null."""
    widgets = register(fake_apiserver)
    fake_apiserver.create(
        widgets,
        {
            "metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "shop"}},
            "spec": {"size": 3, "color": "red", "parts": [{"name": "wheel"}]},
        },
    )
    fake_apiserver.create(widgets, {"metadata": {"name": "b"}, "spec": {"size": 4.0}})
    clock.now = START + timedelta(seconds=65)
    status, body = await call(k8s_api_client, WIDGETS, KUBECTL_TABLE)
    assert status == 200
    assert (body["kind"], body["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in body["columnDefinitions"]] == [
        "Name",
        "Size",
        "Color",
        "First",
        "App",
        "Ready",
        "Age",
    ]
    assert body["columnDefinitions"][0]["format"] == "name"
    assert body["columnDefinitions"][2]["priority"] == 1
    assert [r["cells"] for r in body["rows"]] == [
        ["a", 3, "red", "wheel", "shop", None, "65s"],
        ["b", 4, None, None, None, None, "65s"],
    ]
    assert body["metadata"]["resourceVersion"] == str(fake_apiserver.resource_version)
    row_object = body["rows"][0]["object"]
    assert row_object["kind"] == "PartialObjectMetadata"
    assert row_object["metadata"]["name"] == "a"
    assert "spec" not in row_object


async def test_table_include_object(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """includeObject=None drops row objects, Object carries the whole object, junk is 422."""
    widgets = register(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "a"}, "spec": {"size": 1}})
    _, body = await call(k8s_api_client, WIDGETS, TABLE, includeObject="None")
    assert "object" not in body["rows"][0]
    _, body = await call(k8s_api_client, WIDGETS, TABLE, includeObject="Object")
    assert body["rows"][0]["object"]["spec"] == {"size": 1}
    status, body = await call(k8s_api_client, WIDGETS, TABLE, includeObject="All")
    assert (status, body["reason"]) == (422, "Invalid")


async def test_table_get_and_v1beta1(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """A single object as a one-row Table; a client asking only v1beta1 gets v1beta1."""
    widgets = register(fake_apiserver)
    created = fake_apiserver.create(widgets, {"metadata": {"name": "a"}, "spec": {"size": 1}})
    status, body = await call(k8s_api_client, f"{WIDGETS}/a", TABLE)
    assert status == 200
    assert [r["cells"][:2] for r in body["rows"]] == [["a", 1]]
    assert body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    _, body = await call(
        k8s_api_client, f"{WIDGETS}/a", "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
    )
    assert body["apiVersion"] == "meta.k8s.io/v1beta1"


async def test_table_default_columns(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient, clock: Clock
) -> None:
    """Without printer columns a CRD shows Name and Age; built-ins show their own columns."""
    widgets = register(fake_apiserver, printer_columns=())
    fake_apiserver.create(widgets, {"metadata": {"name": "a"}})
    fake_apiserver.create(("", "v1", "configmaps"), {"metadata": {"name": "c"}, "data": {"k": "v"}})
    clock.now = START + timedelta(hours=3, minutes=5)
    _, body = await call(k8s_api_client, WIDGETS, TABLE)
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Age"]
    assert body["rows"][0]["cells"] == ["a", "3h5m"]
    _, body = await call(k8s_api_client, "/api/v1/namespaces", TABLE)
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert ["default", "Active", "3h5m"] in [r["cells"] for r in body["rows"]]
    _, body = await call(
        k8s_api_client, "/api/v1/namespaces/default/configmaps", TABLE, includeObject="Object"
    )
    assert body["rows"][0]["cells"][:2] == ["c", 1]
    assert body["rows"][0]["object"]["kind"] == "ConfigMap"  # list items get their kind back


async def test_partial_object_metadata_get_and_list(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """Metadata-only get and list answer PartialObjectMetadata(List); mismatches are 406."""
    widgets = register(fake_apiserver)
    created = fake_apiserver.create(
        widgets, {"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"size": 1}}
    )
    status, body = await call(k8s_api_client, f"{WIDGETS}/a", f"{PARTIAL},application/json")
    assert status == 200
    assert body == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": created["metadata"],
    }
    status, body = await call(k8s_api_client, WIDGETS, f"{PARTIAL_LIST},application/json")
    assert status == 200
    assert body["kind"] == "PartialObjectMetadataList"
    assert body["metadata"]["resourceVersion"] == str(fake_apiserver.resource_version)
    assert body["items"] == [
        {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": created["metadata"],
        }
    ]
    for path, accept in ((WIDGETS, PARTIAL), (f"{WIDGETS}/a", PARTIAL_LIST)):
        status, body = await call(k8s_api_client, path, accept)
        assert (status, body["reason"]) == (406, "NotAcceptable")
    status, body = await call(k8s_api_client, WIDGETS, "application/json;as=Pod;g=meta.k8s.io;v=v1")
    assert status == 406


async def test_serve_views_off_answers_objects_or_406(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """``serve_views=False``: view clauses are skipped, as by a server without the views.

    With a plain JSON fallback clause the object itself comes back; with only a view
    clause (PartialObjectMetadata or Table) the answer is 406.
    """
    widgets = register(fake_apiserver)
    created = fake_apiserver.create(widgets, {"metadata": {"name": "a"}, "spec": {"size": 1}})
    fake_apiserver.serve_views = False
    status, body = await call(k8s_api_client, f"{WIDGETS}/a", f"{PARTIAL},application/json")
    assert (status, body) == (200, created)
    status, body = await call(k8s_api_client, WIDGETS, f"{PARTIAL_LIST},application/json")
    assert (status, body["kind"], body["items"]) == (200, "WidgetList", [created])
    for path, accept in ((f"{WIDGETS}/a", PARTIAL), (WIDGETS, TABLE)):
        status, body = await call(k8s_api_client, path, accept)
        assert (status, body["reason"]) == (406, "NotAcceptable")
    fake_apiserver.serve_views = True
    status, body = await call(k8s_api_client, f"{WIDGETS}/a", f"{PARTIAL},application/json")
    assert (status, body["kind"]) == (200, "PartialObjectMetadata")


async def test_partial_object_metadata_watch(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """A metadata-only watch gets PartialObjectMetadata objects in every event, bookmarks too."""
    widgets = register(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "a"}, "spec": {"size": 1}})
    # Without preloading, kubernetes-asyncio hands back the streaming aiohttp response.
    response = await k8s_api_client.call_api(
        WIDGETS,
        "GET",
        query_params=[("watch", "true"), ("allowWatchBookmarks", "true")],
        header_params={"Accept": f"{PARTIAL},application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    async with response:
        assert response.status == 200
        added = orjson.loads(await response.content.readline())
        assert added["type"] == "ADDED"
        assert added["object"]["kind"] == "PartialObjectMetadata"
        assert added["object"]["metadata"]["name"] == "a"
        assert "spec" not in added["object"]
        fake_apiserver.patch(widgets, "a", {"spec": {"size": 2}})
        fake_apiserver.delete(widgets, "a")
        seen = []
        while len(seen) < 3:
            event = orjson.loads(await response.content.readline())
            seen.append(event)
            assert event["object"]["kind"] == "PartialObjectMetadata"
            assert set(event["object"]) == {"kind", "apiVersion", "metadata"}
            if len([e for e in seen if e["type"] != "BOOKMARK"]) == 2:
                fake_apiserver.advance_resource_version()
        assert [e["type"] for e in seen] == ["MODIFIED", "DELETED", "BOOKMARK"]


async def test_partial_object_metadata_streaming_list_and_selectors(
    fake_apiserver: FakeApiServer,
) -> None:
    """Metadata-only streaming lists and selector exits stay metadata-only.

    The initial-events-end bookmark is a PartialObjectMetadata, and an object leaving the
    label selection is a DELETED PartialObjectMetadata of its last selected state.
    """
    widgets = register(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "a", "labels": {"tier": "edge"}}})
    params = {
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "labelSelector": "tier=edge",
    }
    async with (
        session(fake_apiserver) as http,
        http.get(WIDGETS, params=params, headers={"Accept": PARTIAL}) as response,
    ):
        added = orjson.loads(await response.content.readline())
        end = orjson.loads(await response.content.readline())
        fake_apiserver.patch(widgets, "a", {"metadata": {"labels": {"tier": "core"}}})
        left = orjson.loads(await response.content.readline())
    assert (added["type"], added["object"]["kind"]) == ("ADDED", "PartialObjectMetadata")
    assert end["type"] == "BOOKMARK"
    assert end["object"]["kind"] == "PartialObjectMetadata"
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert left["type"] == "DELETED"
    assert left["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            **added["object"]["metadata"],
            "resourceVersion": left["object"]["metadata"]["resourceVersion"],
        },
    }


async def test_table_watch_sends_column_definitions_once(fake_apiserver: FakeApiServer) -> None:
    """As for kubectl get -w, each event is a one-row Table; columns come with the first only."""
    widgets = register(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "a"}, "spec": {"size": 1}})
    async with (
        session(fake_apiserver) as http,
        http.get(WIDGETS, params={"watch": "true"}, headers={"Accept": KUBECTL_TABLE}) as response,
    ):
        first = orjson.loads(await response.content.readline())
        fake_apiserver.patch(widgets, "a", {"spec": {"size": 2}})
        second = orjson.loads(await response.content.readline())
    assert first["object"]["kind"] == "Table"
    assert first["object"]["columnDefinitions"][1]["name"] == "Size"
    assert first["object"]["rows"][0]["cells"][:2] == ["a", 1]
    assert second["type"] == "MODIFIED"
    assert second["object"]["columnDefinitions"] == []
    assert second["object"]["rows"][0]["cells"][:2] == ["a", 2]


# -- OpenAPI ----------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "What the widget should be.",
            "properties": {"size": {"type": "integer", "description": "How big."}},
        }
    },
}


async def test_openapi_v3_index_and_group_version_document(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """/openapi/v3 lists every group-version; the CRD's document carries its schema."""
    register(fake_apiserver, schema=SCHEMA)
    status, index = await call(k8s_api_client, "/openapi/v3", "application/json, */*")
    assert status == 200
    assert {"api/v1", "apis/example.com/v1", "apis/coordination.k8s.io/v1"} <= set(index["paths"])
    url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/example.com/v1?hash=")
    path, _, digest = url.partition("?hash=")
    status, doc = await call(k8s_api_client, path, "application/json", hash=digest)
    assert status == 200
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Widget", "version": "v1"}
    ]
    assert widget["properties"]["spec"]["properties"]["size"] == {
        "type": "integer",
        "description": "How big.",
    }
    assert {"apiVersion", "kind", "metadata"} <= set(widget["properties"])
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Widget"
    assert {"name": "fieldValidation", "in": "query"}.items() <= patch["parameters"][2].items()
    meta_ref = widget["properties"]["metadata"]["allOf"][0]["$ref"]
    assert meta_ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]


async def test_openapi_v3_hash_follows_the_schema(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """Changing the CRD's schema changes its document's hash (clients cache by it)."""
    register(fake_apiserver, schema=SCHEMA)
    _, before = await call(k8s_api_client, "/openapi/v3", "application/json")
    crds = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    crd = fake_apiserver.get(crds, "widgets.example.com")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"] = {
        "type": "object"
    }
    fake_apiserver.update(crds, crd)
    _, after = await call(k8s_api_client, "/openapi/v3", "application/json")
    key = "apis/example.com/v1"
    assert before["paths"][key] != after["paths"][key]
    assert before["paths"]["api/v1"] == after["paths"]["api/v1"]


async def test_openapi_v2_and_builtin_kinds(
    fake_apiserver: FakeApiServer, k8s_api_client: ApiClient
) -> None:
    """/openapi/v2 is one Swagger document of every kind, built-ins from their table."""
    register(fake_apiserver, schema=SCHEMA)
    status, doc = await call(k8s_api_client, "/openapi/v2", "application/json")
    assert status == 200
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    assert definitions["com.example.v1.Widget"]["properties"]["spec"]["type"] == "object"
    namespace = definitions["io.k8s.api.core.v1.Namespace"]
    assert namespace["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Namespace", "version": "v1"}
    ]
    assert namespace["properties"]["status"]["properties"]["phase"]["type"] == "string"
    assert b"#/components/" not in orjson.dumps(doc)
    served = {(t.group, t.version, t.kind) for t in _served(fake_apiserver)}
    for key in served & set(BUILTIN_SCHEMAS):
        assert BUILTIN_SCHEMAS[key][0] in definitions


def _fields(data: bytes) -> list[tuple[int, Any]]:
    """Decode one protobuf message's fields (varints and length-delimited only)."""
    out: list[tuple[int, Any]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 2:
            size = varint()
            out.append((field, data[pos : pos + size]))
            pos += size
        elif wire == 1:
            out.append((field, data[pos : pos + 8]))
            pos += 8
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


async def test_openapi_v2_protobuf(fake_apiserver: FakeApiServer) -> None:
    """Asked for protobuf (as kubectl 1.27 asks), /openapi/v2 is gnostic's Document message."""
    register(fake_apiserver, schema=SCHEMA)
    async with (
        session(fake_apiserver) as http,
        http.get(
            "/openapi/v2",
            headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"},
        ) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        raw = await response.read()
    document = dict(_fields(raw))  # swagger = 1, info = 2, paths = 8, definitions = 9
    assert document[1] == b"2.0"
    definitions = {
        dict(_fields(entry))[1].decode(): dict(_fields(entry))[2]
        for _, entry in _fields(document[9])
    }
    widget = dict(_fields(definitions["com.example.v1.Widget"]))
    properties = {
        dict(_fields(entry))[1].decode(): dict(_fields(entry))[2]
        for _, entry in _fields(widget[25])  # Schema.properties
    }
    spec = dict(_fields(properties["spec"]))
    assert spec[4] == b"What the widget should be."  # description
    extensions = {
        dict(_fields(e))[1].decode(): dict(_fields(dict(_fields(e))[2]))[2]  # NamedAny -> yaml
        for f, e in _fields(definitions["com.example.v1.Widget"])
        if f == 31
    }
    assert orjson.loads(extensions["x-kubernetes-group-version-kind"]) == [
        {"group": "example.com", "kind": "Widget", "version": "v1"}
    ]
    paths = [dict(_fields(entry))[1].decode() for _, entry in _fields(document[8])]
    assert "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}" in paths


def _served(server: FakeApiServer) -> list[ResourceType]:
    return [
        server.resource(*key)
        for key in (
            ("", "v1", "namespaces"),
            ("", "v1", "configmaps"),
            ("coordination.k8s.io", "v1", "leases"),
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
        )
    ]


# -- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-0.5, "0s"),
        (59, "59s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 300, "3h5m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (40 * 86400, "40d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    """Ages print like kubectl's AGE column."""
    assert human_duration(seconds) == text


def test_json_path_subset() -> None:
    """Names, indexes, quoted keys, [*] and ==-filters (first result); slices unsupported."""
    obj = {"a": {"b": [{"c": 1}], "x.y/z": "k"}}
    steps = parse_json_path(".a.b[0].c")
    assert steps == ["a", "b", 0, "c"]
    assert lookup(obj, steps) == 1
    assert lookup(obj, parse_json_path(".a['x.y/z']") or []) == "k"
    assert lookup(obj, parse_json_path("{.a.b[3].c}") or []) is None
    conditions = {
        "status": {
            "conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"},
            ]
        }
    }
    ready = parse_json_path('.status.conditions[?(@.type=="Ready")].status') or []
    assert lookup(conditions, ready) == "True"
    assert lookup(conditions, parse_json_path(".status.conditions[*].type") or []) == "Synced"
    assert (
        lookup(conditions, parse_json_path(".status.conditions[?(@.type=='Gone')].x") or []) is None
    )
    assert parse_json_path(".a[1:2]") is None


@pytest.mark.parametrize(
    ("accept", "view"),
    [
        ("", PLAIN),
        ("application/json", PLAIN),
        (KUBECTL_TABLE, View("Table", "v1")),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", View("Table", "v1beta1")),
        (
            f"application/vnd.kubernetes.protobuf;{PARTIAL[17:]},{PARTIAL}",
            View("PartialObjectMetadata"),
        ),
        ("application/json;as=Table;v=v2;g=meta.k8s.io", None),
        ("application/vnd.kubernetes.protobuf", None),
    ],
)
def test_negotiate(accept: str, view: View | None) -> None:
    """The first Accept clause the server can produce wins."""
    assert negotiate(accept) == view


def test_event_columns_like_kubectl_get_events() -> None:
    """Events print LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (core/v1 and events.k8s.io/v1)."""
    now = START + timedelta(minutes=5)
    core = {
        "metadata": {"name": "w1.1"},
        "involvedObject": {"kind": "Widget", "name": "w1"},
        "reason": "Scaled",
        "message": "scaled to 3",
        "type": "Normal",
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    new = {
        "metadata": {"name": "w1.2"},
        "regarding": {"kind": "Widget", "name": "w1"},
        "reason": "Scaled",
        "note": "scaled to 4",
        "type": "Normal",
        "eventTime": "2026-01-01T00:04:00.000000Z",
    }
    for group, event, message, seen in (
        ("", core, "scaled to 3", "5m"),
        ("events.k8s.io", new, "scaled to 4", "60s"),
    ):
        columns = builtin_columns(group, "Event")
        assert [c.name for c in columns if not c.priority] == [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Message",
        ]
        cells = [c.value(event, now) for c in columns]
        assert cells[:5] == [seen, "Normal", "Scaled", "widget/w1", message]
