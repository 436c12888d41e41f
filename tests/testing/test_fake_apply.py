"""Server-side apply and managedFields on FakeApiServer, through kubernetes-asyncio over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fakeserver_helpers import WIDGETS, register_widgets, request, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

import crwatch
from _support import widget_cluster
from crwatch.testing import ApiError, FakeApiServer, ResourceType

pytestmark = pytest.mark.anyio

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
GROUP, VERSION = "example.com", "v1"


async def apply(
    api: client.CustomObjectsApi,
    body: dict[str, Any],
    manager: str,
    *,
    force: bool | None = None,
    dry_run: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Apply ``body`` as ``manager`` with the generated client.

    (HTTP status, object).  The generated client knows only 200 for PATCH, so it would hand back
    ``None`` for the 201 of a create-by-apply: read the raw response instead.
    """
    extra: dict[str, Any] = {}
    if force is not None:
        extra["force"] = force
    if dry_run is not None:
        extra["dry_run"] = dry_run
    response = await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "widgets",
        body["metadata"]["name"],
        body,
        field_manager=manager,
        _content_type=APPLY,
        _preload_content=False,
        **extra,
    )
    raw = await response.read()
    if response.status >= 400:  # unread responses are not checked by the client
        error = ApiException(status=response.status, reason=response.reason)
        error.body = raw
        raise error
    return response.status, orjson.loads(raw)


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Map (manager, operation) to fieldsV1 of every managedFields entry."""
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"]["managedFields"]}


PORTS_CRD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer"},
                        },
                    },
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "zones": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                },
                "selector": {
                    "type": "object",
                    "x-kubernetes-map-type": "atomic",
                    "additionalProperties": {"type": "string"},
                },
                "replicas": {"type": "integer"},
            },
        }
    },
}


def register_typed(server: FakeApiServer) -> ResourceType:
    """Widgets whose CRD schema declares map, set, atomic lists and an atomic map."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": GROUP,
            "names": {"plural": "widgets", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": PORTS_CRD_SCHEMA},
                }
            ],
        },
    }
    server.create(("apiextensions.k8s.io", "v1", "customresourcedefinitions"), crd)
    return server.resource(GROUP, VERSION, "widgets")


async def test_apply_creates_then_updates_with_apply_entry(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """An apply to a missing object creates it (201), applying again changes it (200).

    The Apply entry holds exactly the configuration's fields in fieldsV1 form.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    body = widget("a", color="red", size=1)
    body["metadata"]["labels"] = {"app": "demo"}
    code, made = await apply(api, body, "alice")
    assert code == 201
    assert made["spec"] == {"color": "red", "size": 1}
    [entry] = made["metadata"]["managedFields"]
    assert entry["manager"] == "alice"
    assert entry["operation"] == "Apply"
    assert entry["apiVersion"] == "example.com/v1"
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {".": {}, "f:color": {}, "f:size": {}},
    }
    code, again = await apply(api, widget("a", color="blue", size=1), "alice")
    assert code == 200
    assert again["spec"] == {"color": "blue", "size": 1}
    # alice no longer applies the label: nobody owns it, so it is removed.
    assert "labels" not in again["metadata"]
    assert int(again["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    got = await api.get_namespaced_custom_object(GROUP, VERSION, "default", "widgets", "a")
    assert got["metadata"]["managedFields"] == again["metadata"]["managedFields"]


async def test_reapplying_the_same_configuration_stores_nothing(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Applying an unchanged configuration is a no-op: same resourceVersion, RV counter still."""
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    _, first = await apply(api, widget("a", color="red"), "alice")
    rv = fake_apiserver.resource_version
    _, second = await apply(api, widget("a", color="red"), "alice")
    assert second == first
    assert fake_apiserver.resource_version == rv


async def test_apply_conflict_then_force_moves_ownership(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A second manager changing an owned field gets 409 with kube's message and causes.

    force=true takes the field over; applying the same value is shared ownership.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    await apply(api, widget("a", color="red", size=1), "alice")
    with pytest.raises(ApiException) as err:
        await apply(api, widget("a", color="blue"), "bob")
    assert err.value.status == 409
    status = orjson.loads(err.value.body)
    assert status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "alice": .spec.color'
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "alice"',
            "field": ".spec.color",
        }
    ]
    # Nothing was written by the refused apply.
    assert fake_apiserver.get(("example.com", "v1", "widgets"), "a")["spec"]["color"] == "red"
    _, forced = await apply(api, widget("a", color="blue"), "bob", force=True)
    assert forced["spec"] == {"color": "blue", "size": 1}
    owned = entries(forced)
    assert owned[("alice", "Apply")] == {"f:spec": {".": {}, "f:size": {}}}
    assert owned[("bob", "Apply")] == {"f:spec": {".": {}, "f:color": {}}}
    # Same value as the owner: no conflict, both own it.
    _, shared = await apply(api, widget("a", size=1), "carol")
    assert entries(shared)[("carol", "Apply")] == {"f:spec": {".": {}, "f:size": {}}}


async def test_conflicts_with_several_managers_list_each(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Conflicts with several managers are grouped by manager in the message.

    And an Update manager is named with the apiVersion it wrote.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    await apply(api, widget("a", color="red"), "alice")
    await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "widgets",
        "a",
        {"spec": {"size": 2}},
        field_manager="editor",
        _content_type=MERGE,
    )
    with pytest.raises(ApiException) as err:
        await apply(api, widget("a", color="blue", size=3), "bob")
    status = orjson.loads(err.value.body)
    assert status["message"] == (
        "Apply failed with 2 conflicts: "
        'conflicts with "alice":\n- .spec.color\n'
        'conflicts with "editor" using example.com/v1:\n- .spec.size'
    )
    assert {(c["field"], c["message"]) for c in status["details"]["causes"]} == {
        (".spec.color", 'conflict with "alice"'),
        (".spec.size", 'conflict with "editor" using example.com/v1'),
    }


async def test_update_entries_for_create_patch_and_put(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Create, merge patch and PUT record Update entries for their field manager.

    The manager is the fieldManager parameter, else the User-Agent up to its first '/'; a
    field changed by another writer moves to that writer.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    made = await api.create_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", widget("a", color="red", size=1)
    )
    # kubernetes-asyncio's User-Agent is "OpenAPI-Generator/<version>/python".
    assert entries(made) == {
        ("OpenAPI-Generator", "Update"): {"f:spec": {".": {}, "f:color": {}, "f:size": {}}}
    }
    patched = await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "widgets",
        "a",
        {"spec": {"color": "blue"}},
        field_manager="painter",
        _content_type=MERGE,
    )
    owned = entries(patched)
    assert owned[("painter", "Update")] == {"f:spec": {"f:color": {}}}
    assert owned[("OpenAPI-Generator", "Update")] == {"f:spec": {".": {}, "f:size": {}}}
    painter = next(e for e in patched["metadata"]["managedFields"] if e["manager"] == "painter")
    assert painter["apiVersion"] == "example.com/v1"
    assert painter["time"].endswith("Z")
    body = {**patched, "spec": {"color": "blue"}}
    replaced = await api.replace_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", "a", body, field_manager="janitor"
    )
    # The size removal takes it from its owner (who keeps .spec itself); janitor changed
    # nothing it could own, so it gets no entry.
    assert entries(replaced) == {
        ("painter", "Update"): {"f:spec": {"f:color": {}}},
        ("OpenAPI-Generator", "Update"): {"f:spec": {}},
    }


async def test_managed_fields_in_an_update_replace_or_reset(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """An update that sends managedFields [{}] clears them.

    The object is then untracked by updates until the next apply, which gives its existing
    fields to before-first-apply.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    made = fake_apiserver.create(("example.com", "v1", "widgets"), widget("a", color="red"))
    assert entries(made) == {("crwatch-testing", "Update"): {"f:spec": {".": {}, "f:color": {}}}}
    body = {**made, "metadata": {**made["metadata"], "managedFields": [{}]}}
    body["spec"] = {"color": "red", "size": 1}
    cleared = await api.replace_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", "a", body
    )
    assert "managedFields" not in cleared["metadata"]
    _, applied = await apply(api, widget("a", color="red"), "alice")
    owned = entries(applied)
    # alice applied the value it already had: color is shared, not taken.
    assert owned[("before-first-apply", "Update")] == {
        "f:spec": {".": {}, "f:color": {}, "f:size": {}}
    }
    assert owned[("alice", "Apply")] == {"f:spec": {".": {}, "f:color": {}}}


async def test_fields_no_longer_applied_are_removed_unless_owned(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A field a manager stops applying goes when nobody else owns it, else it stays."""
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    await apply(api, widget("a", color="red", size=1, shape="round"), "alice")
    await apply(api, widget("a", shape="round"), "bob")
    _, obj = await apply(api, widget("a", color="red"), "alice")
    assert obj["spec"] == {"color": "red", "shape": "round"}


async def test_list_map_keys_set_and_atomic_from_the_crd_schema(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """The CRD schema's list and map types decide how two managers' values merge.

    x-kubernetes-list-type map merges items by key (k:{...} in fieldsV1), set by value
    (v:...); other lists and x-kubernetes-map-type atomic maps are replaced whole.
    """
    register_typed(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    base = widget(
        "a",
        ports=[{"name": "http", "port": 80}],
        zones=["a"],
        tags=["x"],
        selector={"app": "web"},
    )
    _, first = await apply(api, base, "alice")
    assert entries(first)[("alice", "Apply")] == {
        "f:spec": {
            "f:ports": {'k:{"name":"http"}': {".": {}, "f:name": {}, "f:port": {}}},
            "f:selector": {},
            "f:tags": {},
            "f:zones": {'v:"a"': {}},
        }
    }
    _, both = await apply(
        api, widget("a", ports=[{"name": "metrics", "port": 9090}], zones=["b"]), "bob"
    )
    assert both["spec"]["ports"] == [
        {"name": "http", "port": 80},
        {"name": "metrics", "port": 9090},
    ]
    assert both["spec"]["zones"] == ["a", "b"]
    with pytest.raises(ApiException) as err:
        await apply(api, widget("a", tags=["y"]), "bob")
    assert orjson.loads(err.value.body)["details"]["causes"][0]["field"] == ".spec.tags"
    with pytest.raises(ApiException) as err:
        await apply(api, widget("a", selector={"tier": "db"}), "bob")
    assert orjson.loads(err.value.body)["details"]["causes"][0]["field"] == ".spec.selector"
    with pytest.raises(ApiException) as err:
        await apply(api, widget("a", ports=[{"name": "http", "port": 8080}]), "bob")
    assert orjson.loads(err.value.body)["message"] == (
        'Apply failed with 1 conflict: conflict with "alice": .spec.ports[name="http"].port'
    )
    # alice drops her port: the item goes, bob's stays.
    _, after = await apply(
        api, widget("a", zones=["a"], tags=["x"], selector={"app": "web"}), "alice"
    )
    assert after["spec"]["ports"] == [{"name": "metrics", "port": 9090}]


async def test_apply_status_subresource_and_main_resource_ignore_each_other(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """With the status subresource, main resource and /status applies ignore each other.

    An apply to the main resource ignores status and one to /status changes only status,
    each recorded with its subresource.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    body = {**widget("a", color="red"), "status": {"ready": True}}
    _, made = await apply(api, body, "alice")
    assert "status" not in made
    response = await api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        "widgets",
        "a",
        {**widget("a", color="ignored"), "status": {"ready": True}},
        field_manager="ctrl",
        _content_type=APPLY,
    )
    assert response["status"] == {"ready": True}
    assert response["spec"] == {"color": "red"}
    status_entry = next(e for e in response["metadata"]["managedFields"] if e["manager"] == "ctrl")
    assert status_entry["subresource"] == "status"
    assert status_entry["fieldsV1"] == {"f:status": {".": {}, "f:ready": {}}}


async def test_apply_bad_requests(fake_apiserver: FakeApiServer) -> None:
    """Bad apply requests answer like kube-apiserver.

    A missing fieldManager, or force on a non-apply patch, is 422 PatchOptions Invalid;
    managedFields in an apply body are refused with 400.
    """
    register_widgets(fake_apiserver)
    code, body = await request(
        fake_apiserver, "PATCH", f"{WIDGETS}/a", widget("a", color="red"), APPLY
    )
    assert code == 422
    assert body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
        "for apply patch"
    )
    assert body["details"] == {
        "group": "meta.k8s.io",
        "kind": "PatchOptions",
        "causes": [
            {
                "reason": "FieldValueRequired",
                "message": "Required value: is required for apply patch",
                "field": "fieldManager",
            }
        ],
    }
    fake_apiserver.create(("example.com", "v1", "widgets"), widget("a"))
    code, body = await request(fake_apiserver, "PATCH", f"{WIDGETS}/a?force=true", {}, MERGE)
    assert code == 422
    assert body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for '
        "non-apply patch"
    )
    with_mf = widget("b")
    with_mf["metadata"]["managedFields"] = [{"manager": "x"}]
    code, body = await request(
        fake_apiserver, "PATCH", f"{WIDGETS}/b?fieldManager=m", with_mf, APPLY
    )
    assert code == 400
    assert body["message"] == "metadata.managedFields must be nil"


async def test_apply_yaml_body(fake_apiserver: FakeApiServer) -> None:
    """An apply body may be YAML, as kubectl and client-go send it."""
    pytest.importorskip("yaml")
    register_widgets(fake_apiserver)
    text = b"apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: y\nspec:\n  size: 3\n"
    from fakeserver_helpers import session

    async with (
        session(fake_apiserver) as http,
        http.patch(
            f"{WIDGETS}/y",
            params={"fieldManager": "yaml-user"},
            data=text,
            headers={"Content-Type": APPLY},
        ) as response,
    ):
        assert response.status == 201
        obj = orjson.loads(await response.read())
    assert obj["spec"] == {"size": 3}
    assert obj["metadata"]["managedFields"][0]["manager"] == "yaml-user"


async def test_python_api_apply(fake_apiserver: FakeApiServer) -> None:
    """FakeApiServer.apply runs the same apply: create, conflict as ApiError 409, force."""
    widgets = register_widgets(fake_apiserver)
    made = fake_apiserver.apply(widgets, widget("p", color="red"), field_manager="alice")
    assert made["metadata"]["managedFields"][0]["operation"] == "Apply"
    with pytest.raises(ApiError) as err:
        fake_apiserver.apply(widgets, widget("p", color="blue"), field_manager="bob")
    assert err.value.code == 409
    forced = fake_apiserver.apply(
        widgets, widget("p", color="blue"), field_manager="bob", force=True
    )
    assert forced["spec"]["color"] == "blue"
    with pytest.raises(ValueError, match="field_manager"):
        fake_apiserver.apply(widgets, widget("p"), field_manager="")


async def test_informer_drop_managed_fields_has_something_to_drop(tmp_path: Path) -> None:
    """The Informer's drop_managed_fields transform has managedFields to drop.

    Objects from the server carry managedFields: an Informer caching them with
    transform=drop_managed_fields keeps none, a plain Informer keeps them.
    """
    resource = crwatch.Resource("example.com", "v1", "widgets")
    async with widget_cluster(tmp_path) as (server, rtype, crwatch_client):
        server.apply(rtype, widget("a", color="red"), field_manager="alice")
        dropping = crwatch.Informer(
            crwatch_client, resource, namespace="default", transform=crwatch.drop_managed_fields
        )
        keeping = crwatch.Informer(crwatch_client, resource, namespace="default")
        async with dropping, keeping:
            await dropping.wait_synced(timeout=5)
            await keeping.wait_synced(timeout=5)
            dropped = dropping.store.get("default/a")
            kept = keeping.store.get("default/a")
    assert dropped is not None
    assert kept is not None
    assert "managedFields" not in dropped["metadata"]
    assert kept["metadata"]["managedFields"][0]["manager"] == "alice"


async def test_apply_preconditions_and_namespace(fake_apiserver: FakeApiServer) -> None:
    """An apply configuration's resourceVersion and uid are preconditions (409 when stale).

    A namespace that differs from the URL's is a 400, and nothing is written.
    """
    register_widgets(fake_apiserver)
    made = fake_apiserver.apply(
        ("example.com", "v1", "widgets"), widget("a", size=1), field_manager="m"
    )
    stale = widget("a", size=2)
    stale["metadata"]["resourceVersion"] = "1"
    code, body = await request(fake_apiserver, "PATCH", f"{WIDGETS}/a?fieldManager=m", stale, APPLY)
    assert code == 409
    assert "the object has been modified" in body["message"]
    other_uid = widget("a", size=2)
    other_uid["metadata"]["uid"] = "not-the-uid"
    code, body = await request(
        fake_apiserver, "PATCH", f"{WIDGETS}/a?fieldManager=m", other_uid, APPLY
    )
    assert code == 409
    assert "Precondition failed: UID in precondition: not-the-uid" in body["message"]
    elsewhere = widget("a", size=2)
    elsewhere["metadata"]["namespace"] = "kube-system"
    code, body = await request(
        fake_apiserver, "PATCH", f"{WIDGETS}/a?fieldManager=m", elsewhere, APPLY
    )
    assert code == 400
    assert fake_apiserver.get(("example.com", "v1", "widgets"), "a") == made


async def test_json_patch_resets_managed_fields(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A JSON patch replacing managedFields with [{}] clears them.

    That is how the Kubernetes docs reset field management; a patch that does not touch
    them keeps them.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    await apply(api, widget("a", color="red"), "alice")
    kept = await api.patch_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", "a", {"spec": {"size": 1}},
        field_manager="sizer", _content_type=MERGE,
    )  # fmt: skip
    assert set(entries(kept)) == {("alice", "Apply"), ("sizer", "Update")}
    reset = await api.patch_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", "a",
        [{"op": "replace", "path": "/metadata/managedFields", "value": [{}]}],
        _content_type="application/json-patch+json",
    )  # fmt: skip
    assert "managedFields" not in reset["metadata"]
    assert reset["spec"] == {"color": "red", "size": 1}


async def test_kubectl_manager_takes_over_client_side_applied_fields(
    fake_apiserver: FakeApiServer,
) -> None:
    """The kubectl manager's apply takes the fields of last-applied-configuration.

    Only while the object still matches that annotation, and only for the manager named
    kubectl; another manager, or a changed object, still conflicts.
    """
    widgets = register_widgets(fake_apiserver)
    last = orjson.dumps(widget("a", color="red")).decode()
    csa = widget("a", color="red")
    csa["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": last}
    fake_apiserver.create(widgets, csa, field_manager="kubectl-client-side-apply")
    with pytest.raises(ApiError):
        fake_apiserver.apply(widgets, widget("a", color="blue"), field_manager="other")
    upgraded = fake_apiserver.apply(widgets, widget("a", color="blue"), field_manager="kubectl")
    assert upgraded["spec"] == {"color": "blue"}
    fake_apiserver.create(widgets, {**csa, "metadata": {**csa["metadata"], "name": "b"}})
    fake_apiserver.patch(widgets, "b", {"spec": {"color": "green"}}, field_manager="editor")
    with pytest.raises(ApiError):  # the object no longer matches last-applied
        fake_apiserver.apply(widgets, widget("b", color="blue"), field_manager="kubectl")
