"""CRD structural schemas in FakeApiServer: pruning, defaulting, validation, fieldValidation.

Driven over HTTP with kubernetes-asyncio (and raw aiohttp where headers matter); the pure
walk also gets unit and hypothesis tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakeserver_helpers import WIDGETS, request, session
from hypothesis import given
from hypothesis import strategies as st
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from crwatch.testing import ApiError, FakeApiServer, ResourceType
from crwatch.testing._schema import PERMISSIVE_SCHEMA, default_and_prune, go_number, validate

pytestmark = pytest.mark.anyio

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "label": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "replicas": {"type": "integer", "default": 1},
                "port": {"x-kubernetes-int-or-string": True},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1},
                "note": {"type": "string", "nullable": True},
                "mode": {"type": "string", "default": "auto"},
                "id": {"type": "string", "format": "uuid"},
                "template": {
                    "type": "object",
                    "properties": {"port": {"type": "integer", "default": 80}},
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
                "inner": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "zones": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                    },
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {"phase": {"type": "string", "enum": ["Ready", "Failed"]}},
        },
    },
}


def widgets_with_schema(server: FakeApiServer, schema: dict[str, Any] = SCHEMA) -> ResourceType:
    """Register widgets.example.com with the test schema and the status subresource."""
    return server.register_crd(
        group="example.com",
        version="v1",
        plural="widgets",
        kind="Widget",
        status_subresource=True,
        schema=schema,
    )


def body(name: str, **spec: Any) -> dict[str, Any]:
    """Build a Widget manifest."""
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


async def create(k8s_api_client: Any, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST a Widget through kubernetes-asyncio."""
    api = client.CustomObjectsApi(k8s_api_client)
    created: dict[str, Any] = await api.create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", obj, **kwargs
    )
    return created


async def rejected(k8s_api_client: Any, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST a Widget that must fail; return the decoded Status."""
    with pytest.raises(ApiException) as err:
        await create(k8s_api_client, obj, **kwargs)
    status: dict[str, Any] = json.loads(err.value.body)
    assert status["code"] == err.value.status
    return status


async def test_wrong_type_answers_kube_apiserver_invalid_status(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A string where the schema says integer is a 422 Invalid shaped like kube-apiserver's."""
    widgets = widgets_with_schema(fake_apiserver)
    status = await rejected(k8s_api_client, body("a", size="string"))
    assert status["reason"] == "Invalid"
    assert status["code"] == 422
    assert status["message"] == (
        'Widget.example.com "a" is invalid: spec.size: Invalid value: "string": '
        'spec.size in body must be of type integer: "string"'
    )
    assert status["details"] == {
        "name": "a",
        "group": "example.com",
        "kind": "Widget",
        "causes": [
            {
                "reason": "FieldValueTypeInvalid",
                "message": 'Invalid value: "string": spec.size in body must be of type '
                'integer: "string"',
                "field": "spec.size",
            }
        ],
    }
    assert fake_apiserver.list(widgets) == []


@pytest.mark.parametrize(
    ("spec", "field", "reason", "message"),
    [
        ({}, "spec.size", "FieldValueRequired", "Required value"),
        (
            {"size": 11},
            "spec.size",
            "FieldValueInvalid",
            "Invalid value: 11: spec.size in body should be less than or equal to 10",
        ),
        (
            {"size": 0},
            "spec.size",
            "FieldValueInvalid",
            "Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            {"size": 1, "color": "green"},
            "spec.color",
            "FieldValueNotSupported",
            'Unsupported value: "green": supported values: "red", "blue"',
        ),
        (
            {"size": 1, "label": "a"},
            "spec.label",
            "FieldValueInvalid",
            'Invalid value: "a": spec.label in body should be at least 2 chars long',
        ),
        (
            {"size": 1, "label": "abcdef"},
            "spec.label",
            "FieldValueTooLong",
            "Too long: may not be more than 5 bytes",
        ),
        (
            {"size": 1, "label": "AB"},
            "spec.label",
            "FieldValueInvalid",
            "Invalid value: \"AB\": spec.label in body should match '^[a-z]+$'",
        ),
        (
            {"size": 1, "tags": ["a", "b", "c"]},
            "spec.tags",
            "FieldValueTooMany",
            "Too many: 3: must have at most 2 items",
        ),
        (
            {"size": 1, "tags": ["a", 2]},
            "spec.tags[1]",
            "FieldValueTypeInvalid",
            'Invalid value: "integer": spec.tags[1] in body must be of type string: "integer"',
        ),
        (
            {"size": 1, "port": True},
            "spec.port",
            "FieldValueTypeInvalid",
            'Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
        ),
        (
            {"size": 1, "ratio": 1},
            "spec.ratio",
            "FieldValueInvalid",
            "Invalid value: 1: spec.ratio in body should be less than 1",
        ),
        (
            {"size": 1, "id": "nope"},
            "spec.id",
            "FieldValueTypeInvalid",
            'Invalid value: "nope": spec.id in body must be of type uuid: "nope"',
        ),
        (
            {"size": 1, "limits": {"cpu": "x"}},
            "spec.limits.cpu",
            "FieldValueTypeInvalid",
            'Invalid value: "string": spec.limits.cpu in body must be of type integer: "string"',
        ),
        (
            {"size": 1, "inner": {"kind": "ConfigMap", "data": {}}},
            "spec.inner.apiVersion",
            "FieldValueRequired",
            "Required value: must not be empty",
        ),
        (
            {"size": 1, "zones": ["a", "b", "a"]},
            "spec.zones[2]",
            "FieldValueDuplicate",
            'Duplicate value: "a"',
        ),
        (
            {"size": 1, "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]},
            "spec.ports[1]",
            "FieldValueDuplicate",
            'Duplicate value: {"name":"http"}',
        ),
        (
            {"size": 1.5},
            "spec.size",
            "FieldValueTypeInvalid",
            'Invalid value: "number": spec.size in body must be of type integer: "number"',
        ),
    ],
)
async def test_value_validations(
    fake_apiserver: FakeApiServer,
    k8s_api_client: Any,
    spec: dict[str, Any],
    field: str,
    reason: str,
    message: str,
) -> None:
    """Each OpenAPI value validation answers its kube-apiserver cause (field, reason, text)."""
    widgets_with_schema(fake_apiserver)
    status = await rejected(k8s_api_client, body("a", **spec))
    assert status["details"]["causes"] == [{"reason": reason, "message": message, "field": field}]
    assert status["message"] == f'Widget.example.com "a" is invalid: {field}: {message}'


async def test_valid_values_pass(fake_apiserver: FakeApiServer, k8s_api_client: Any) -> None:
    """Values inside every bound are stored: int-or-string both ways, integral floats, null."""
    widgets_with_schema(fake_apiserver)
    for name, port in (("a", 8080), ("b", "http")):
        created = await create(
            k8s_api_client,
            body(
                name,
                size=10.0,
                color="red",
                label="abc",
                tags=["x"],
                port=port,
                ratio=0.5,
                note=None,
                id="123e4567-e89b-12d3-a456-426614174000",
                limits={"cpu": 2},
            ),
        )
        assert created["spec"]["port"] == port
        assert created["spec"]["note"] is None  # nullable: kept


async def test_several_errors_are_aggregated_in_brackets(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Several violations give one cause each and a bracketed list in the message."""
    widgets_with_schema(fake_apiserver)
    status = await rejected(k8s_api_client, body("a", size=0, color="green"))
    fields = sorted(c["field"] for c in status["details"]["causes"])
    assert fields == ["spec.color", "spec.size"]
    assert status["message"].startswith('Widget.example.com "a" is invalid: [')
    assert status["message"].endswith("]")


async def test_unknown_fields_are_pruned(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Unknown fields go (root, spec, metadata) except under preserve-unknown-fields."""
    widgets = widgets_with_schema(fake_apiserver)
    obj = body("a", size=1, bogus=1, extra={"anything": {"goes": True}})
    obj["metadata"]["labels"] = {"tier": "edge"}
    obj["metadata"]["nonsense"] = "x"
    obj["topLevel"] = "x"
    created = await create(k8s_api_client, obj, field_validation="Ignore")
    assert "bogus" not in created["spec"]
    assert created["spec"]["extra"] == {"anything": {"goes": True}}
    assert "topLevel" not in created
    assert "nonsense" not in created["metadata"]
    assert created["metadata"]["labels"] == {"tier": "edge"}
    assert created["apiVersion"] == "example.com/v1"
    assert created["kind"] == "Widget"
    assert fake_apiserver.get(widgets, "a") == created


async def test_field_validation_strict_and_warn(fake_apiserver: FakeApiServer) -> None:
    """Strict answers 400 for unknown fields; Warn (the default) stores and warns."""
    widgets = widgets_with_schema(fake_apiserver)
    status, answer = await request(
        fake_apiserver, "POST", WIDGETS + "?fieldValidation=Strict", body("a", size=1, bogus=1)
    )
    assert (status, answer["reason"]) == (400, "BadRequest")
    assert answer["message"] == 'strict decoding error: unknown field "spec.bogus"'
    assert fake_apiserver.list(widgets) == []
    async with session(fake_apiserver) as http:
        async with http.post(WIDGETS, json=body("a", size=1, bogus=1)) as response:
            assert response.status == 201
            assert response.headers.getall("Warning") == ['299 - "unknown field \\"spec.bogus\\""']
        async with http.post(
            WIDGETS, params={"fieldValidation": "Sloppy"}, json=body("b", size=1)
        ) as response:
            assert response.status == 422
            assert (await response.json())["details"]["causes"][0]["field"] == "fieldValidation"
    assert "bogus" not in fake_apiserver.get(widgets, "a")["spec"]


async def test_defaults(fake_apiserver: FakeApiServer, k8s_api_client: Any) -> None:
    """Defaults fill missing fields; nested ones only under an existing parent; nulls too."""
    widgets_with_schema(fake_apiserver)
    created = await create(k8s_api_client, body("a", size=1, mode=None))
    assert created["spec"]["replicas"] == 1
    assert created["spec"]["mode"] == "auto"  # null of a non-nullable field: defaulted
    assert "template" not in created["spec"]  # no parent, no nested default
    created = await create(k8s_api_client, body("b", size=1, replicas=3, template={}))
    assert created["spec"]["replicas"] == 3
    assert created["spec"]["template"] == {"port": 80}
    api = client.CustomObjectsApi(k8s_api_client)
    patched = await api.patch_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        "b",
        {"spec": {"replicas": None}},
        _content_type="application/merge-patch+json",
    )
    assert patched["spec"]["replicas"] == 1  # a merge patch deleting it brings the default back


async def test_defaults_apply_to_stored_objects_when_the_schema_changes(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Adding a default to the CRD shows it on objects already stored (defaulting on read)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
    }
    widgets = widgets_with_schema(fake_apiserver, schema)
    await create(k8s_api_client, body("a", size=1))
    rv = fake_apiserver.get(widgets, "a")["metadata"]["resourceVersion"]
    ext = client.ApiextensionsV1Api(k8s_api_client)
    crd = await ext.read_custom_resource_definition("widgets.example.com")
    crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties["size"].default = 5
    crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties["color"] = (
        client.V1JSONSchemaProps(type="string", default="red")
    )
    await ext.replace_custom_resource_definition("widgets.example.com", crd)
    api = client.CustomObjectsApi(k8s_api_client)
    got = await api.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "a")
    assert got["spec"] == {"size": 1, "color": "red"}
    assert got["metadata"]["resourceVersion"] == rv


async def test_status_subresource_validates_status(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A /status write is validated against the status schema; valid ones are stored."""
    widgets = widgets_with_schema(fake_apiserver)
    await create(k8s_api_client, body("a", size=1))
    api = client.CustomObjectsApi(k8s_api_client)
    with pytest.raises(ApiException) as err:
        await api.patch_namespaced_custom_object_status(
            "example.com",
            "v1",
            "default",
            "widgets",
            "a",
            {"status": {"phase": "Lost"}},
            _content_type="application/merge-patch+json",
        )
    assert err.value.status == 422
    cause = json.loads(err.value.body)["details"]["causes"][0]
    assert cause["field"] == "status.phase"
    await api.patch_namespaced_custom_object_status(
        "example.com",
        "v1",
        "default",
        "widgets",
        "a",
        {"status": {"phase": "Ready"}},
        _content_type="application/merge-patch+json",
    )
    assert fake_apiserver.get(widgets, "a")["status"] == {"phase": "Ready"}


async def test_unchanged_invalid_fields_are_ratcheted(fake_apiserver: FakeApiServer) -> None:
    """An update keeps a stored value that a tighter schema now rejects, if it leaves it be."""
    loose: dict[str, Any] = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"size": {"type": "integer"}, "color": {"type": "string"}},
            }
        },
    }
    widgets = widgets_with_schema(fake_apiserver, loose)
    fake_apiserver.create(widgets, body("a", size=50))
    crd = fake_apiserver.get(
        ("apiextensions.k8s.io", "v1", "customresourcedefinitions"), "widgets.example.com"
    )
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "size"
    ]["maximum"] = 10
    fake_apiserver.update(("apiextensions.k8s.io", "v1", "customresourcedefinitions"), crd)
    widgets = fake_apiserver.resource("example.com", "v1", "widgets")
    patched = fake_apiserver.patch(widgets, "a", {"spec": {"color": "red"}})
    assert patched["spec"] == {"size": 50, "color": "red"}
    with pytest.raises(ApiError) as err:
        fake_apiserver.patch(widgets, "a", {"spec": {"size": 40}})
    assert err.value.code == 422


async def test_schemas_are_per_served_version(fake_apiserver: FakeApiServer) -> None:
    """Each served version validates with its own schema."""
    ext = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")

    def version(name: str, size_type: str, storage: bool) -> dict[str, Any]:
        prop = {"type": "object", "properties": {"size": {"type": size_type}}}
        return {
            "name": name,
            "served": True,
            "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": prop}}},
        }

    fake_apiserver.create(
        ext,
        {
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [version("v1", "integer", True), version("v2", "string", False)],
            },
        },
    )
    v1 = fake_apiserver.resource("example.com", "v1", "widgets")
    v2 = fake_apiserver.resource("example.com", "v2", "widgets")
    fake_apiserver.create(v1, body("a", size=1))
    fake_apiserver.create(v2, {"metadata": {"name": "b"}, "spec": {"size": "big"}})
    with pytest.raises(ApiError):
        fake_apiserver.create(v1, body("c", size="big"))
    with pytest.raises(ApiError):
        fake_apiserver.create(v2, {"metadata": {"name": "d"}, "spec": {"size": 1}})


NON_STRUCTURAL: list[tuple[Any, str]] = [
    (None, "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"),
    (
        {"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}},
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must "
        "not be empty for specified object fields",
    ),
    (
        {"type": "string"},
        'spec.versions[0].schema.openAPIV3Schema.type: Invalid value: "string": must be '
        "object at the root",
    ),
    (
        {"type": "object", "x-kubernetes-preserve-unknown-fields": False},
        "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-preserve-unknown-fields: "
        "Invalid value: false: must be true or undefined",
    ),
    (
        {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string", "$ref": "#/x"}}}
            },
        },
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].$ref: "
        "Forbidden: $ref is not supported",
    ),
    (
        {
            "type": "object",
            "properties": {"spec": {"type": "integer", "default": "x"}},
        },
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].default: Invalid value: "
        '"string": spec in body must be of type integer: "string"',
    ),
]


@pytest.mark.parametrize(("schema", "message"), NON_STRUCTURAL)
async def test_crd_without_structural_schema_is_refused(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, schema: Any, message: str
) -> None:
    """POSTing a CRD whose schema is missing or not structural answers 422, like v1 CRDs."""
    version: dict[str, Any] = {"name": "v1", "served": True, "storage": True}
    if schema is not None:
        version["schema"] = {"openAPIV3Schema": schema}
    crd = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [version],
        },
    }
    with pytest.raises(ApiException) as err:
        await client.ApiextensionsV1Api(k8s_api_client).create_custom_resource_definition(crd)
    status = json.loads(err.value.body)
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        f'CustomResourceDefinition.apiextensions.k8s.io "widgets.example.com" is invalid: {message}'
    )
    with pytest.raises(KeyError):
        fake_apiserver.resource("example.com", "v1", "widgets")


async def test_register_crd_refuses_a_non_structural_schema(fake_apiserver: FakeApiServer) -> None:
    """The Python shortcut runs the same CRD validation and raises ApiError 422."""
    with pytest.raises(ApiError) as err:
        widgets_with_schema(fake_apiserver, {"type": "object", "properties": {"spec": {}}})
    assert err.value.code == 422
    assert err.value.status["details"]["causes"][0]["field"] == (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"
    )


async def test_register_crd_default_schema_keeps_everything(fake_apiserver: FakeApiServer) -> None:
    """Without a schema, register_crd keeps every field and checks nothing but metadata."""
    widgets = fake_apiserver.register_crd(
        group="example.com", version="v1", plural="widgets", kind="Widget"
    )
    crd = fake_apiserver.get(
        ("apiextensions.k8s.io", "v1", "customresourcedefinitions"), "widgets.example.com"
    )
    assert crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] == PERMISSIVE_SCHEMA
    stored = fake_apiserver.create(
        widgets, {"metadata": {"name": "a"}, "spec": {"x": [1, {"y": None}]}, "z": 1}
    )
    assert stored["spec"] == {"x": [1, {"y": None}]}
    assert stored["z"] == 1


# -- the pure walk --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(json_values)
def test_default_and_prune_is_idempotent_and_never_mutates(value: Any) -> None:
    """Defaulting and pruning twice is once, and the input is never changed."""
    obj = {"spec": value, "junk": value}
    snapshot = json.dumps(obj, sort_keys=True)
    once = default_and_prune(obj, SCHEMA, root=True)
    assert json.dumps(obj, sort_keys=True) == snapshot
    assert default_and_prune(once, SCHEMA, root=True) == once
    assert "junk" not in once


@given(json_values)
def test_permissive_schema_keeps_every_value(value: Any) -> None:
    """The default register_crd schema prunes nothing and finds nothing to complain about."""
    obj = {"spec": value, "other": value}
    assert default_and_prune(obj, PERMISSIVE_SCHEMA, root=True) is obj
    assert validate(obj, PERMISSIVE_SCHEMA, "") == []


def test_go_number_formatting() -> None:
    """Numbers print like Go's %v: integral floats without a fraction."""
    assert [go_number(v) for v in (10, 10.0, 1.5, -3, 1e21, 1e-7)] == [
        "10",
        "10",
        "1.5",
        "-3",
        "1e+21",
        "1e-07",
    ]


def test_defaults_cascade_into_defaulted_parents() -> None:
    """A defaulted parent object gets its children's defaults too (defaulting is top-down)."""
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "ports": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"protocol": {"type": "string", "default": "TCP"}},
                        },
                    },
                    "nullable": {"type": "string", "nullable": True, "default": "x"},
                },
            }
        },
    }
    assert default_and_prune({}, schema, root=True) == {"spec": {"replicas": 1, "nullable": "x"}}
    obj = {"spec": {"ports": [{"port": 80}, {"protocol": "UDP"}], "nullable": None}}
    assert default_and_prune(obj, schema, root=True) == {
        "spec": {
            "replicas": 1,
            "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}],  # port is not in the schema
            "nullable": None,  # nullable: an explicit null stays, not defaulted
        }
    }


async def test_embedded_resources_keep_their_metadata(fake_apiserver: FakeApiServer) -> None:
    """An x-kubernetes-embedded-resource keeps apiVersion/kind/metadata (ObjectMeta only)."""
    widgets = widgets_with_schema(fake_apiserver)
    stored = fake_apiserver.create(
        widgets,
        body(
            "a",
            size=1,
            inner={
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x", "junk": 1},
                "data": {"k": "v"},
            },
        ),
    )
    assert stored["spec"]["inner"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {"k": "v"},
    }
