"""FakeApiServer lifecycle, discovery, CRDs and object CRUD, through kubernetes-asyncio."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from fakeserver_helpers import WIDGETS, get_json, register_widgets, request, session, watch, widget
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from crwatch.testing import ApiError, FakeApiServer, Fault

pytestmark = pytest.mark.anyio


# Keeps every field: these tests are about storage and list/watch, not schemas.
OPEN_SCHEMA = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd_body(**spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "group": "example.com",
        "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": OPEN_SCHEMA},
                "subresources": {"status": {}},
                "selectableFields": [{"jsonPath": ".spec.color"}],
            },
            {
                "name": "v1beta1",
                "served": False,
                "storage": False,
                "schema": {"openAPIV3Schema": OPEN_SCHEMA},
            },
        ],
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": spec,
    }


async def test_context_manager_gives_url_on_loopback() -> None:
    """`async with` starts the server on 127.0.0.1 with a free port and stops it after."""
    async with FakeApiServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.port > 0
        status, body, _ = await get_json(server, "/version")
        assert status == 200
        assert body["major"] == "1"
    with pytest.raises(Exception):  # noqa: B017  (any connection error)
        await get_json(server, "/version")


async def test_start_stop_and_fixed_port() -> None:
    """`start()`/`stop()` work without `async with`, and a fixed port is honoured."""
    probe = FakeApiServer()
    await probe.start()
    port = probe.port
    await probe.stop()
    server = FakeApiServer(port=port)
    await server.start()
    try:
        assert server.port == port
        assert (await get_json(server, "/api"))[0] == 200
    finally:
        await server.stop()
    await server.stop()  # idempotent


async def test_kubeconfig_connects_kubernetes_asyncio(tmp_path: Path) -> None:
    """`kubeconfig()` writes a file kubernetes-asyncio can load, token included."""
    async with FakeApiServer(token="s3cret") as server:
        path = server.kubeconfig(tmp_path / "kc")
        assert "s3cret" in path.read_text()
        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(path), client_configuration=configuration)
        async with client.ApiClient(configuration) as api:
            namespaces = await client.CoreV1Api(api).list_namespace()
            assert "default" in [ns.metadata.name for ns in namespaces.items]


async def test_repr_hides_token() -> None:
    """The token never appears in the server's repr."""
    server = FakeApiServer(token="very-secret-token")
    assert "very-secret-token" not in repr(server)
    async with server:
        assert "very-secret-token" not in repr(server)
        assert server.url in repr(server)


async def test_discovery_documents(fake_apiserver: FakeApiServer) -> None:
    """/api, /api/v1, /apis and /apis/{g}/{v} are legacy JSON discovery documents."""
    status, body, headers = await get_json(fake_apiserver, "/api")
    assert status == 200
    assert body["versions"] == ["v1"]
    assert headers["Content-Type"] == "application/json"
    _, core, _ = await get_json(fake_apiserver, "/api/v1")
    names = {r["name"]: r for r in core["resources"]}
    assert names["namespaces"]["namespaced"] is False
    assert names["configmaps"]["namespaced"] is True
    _, groups, _ = await get_json(fake_apiserver, "/apis")
    assert {"apiextensions.k8s.io", "coordination.k8s.io"} <= {g["name"] for g in groups["groups"]}
    _, leases, _ = await get_json(fake_apiserver, "/apis/coordination.k8s.io/v1")
    assert leases["resources"][0]["kind"] == "Lease"
    for path in ("/openapi/v3/apis/example.com/v1", "/apis/example.com/v1"):
        status, text, _ = await get_json(fake_apiserver, path)
        assert (status, text) == (404, "404 page not found\n")


async def test_crd_post_registers_type_immediately(k8s_api_client: Any) -> None:
    """POSTing a CRD serves its group in discovery at once, with names, scope and status."""
    ext = client.ApiextensionsV1Api(k8s_api_client)
    crd = await ext.create_custom_resource_definition(_crd_body())
    assert crd.status.accepted_names.list_kind == "WidgetList"
    assert {c.type for c in crd.status.conditions} == {"Established", "NamesAccepted"}
    api = client.ApisApi(k8s_api_client)
    groups = await api.get_api_versions()
    group = next(g for g in groups.groups if g.name == "example.com")
    assert [v.version for v in group.versions] == ["v1"]  # v1beta1 is not served
    resources = await client.CustomObjectsApi(k8s_api_client).get_api_resources("example.com", "v1")
    by_name = {r.name: r for r in resources.resources}
    assert by_name["widgets"].short_names == ["wd"]
    assert by_name["widgets"].singular_name == "widget"
    assert by_name["widgets/status"].verbs == ["get", "patch", "update"]
    got = await ext.read_custom_resource_definition("widgets.example.com")
    assert got.metadata.uid == crd.metadata.uid
    listed = await ext.list_custom_resource_definition()
    assert [c.metadata.name for c in listed.items] == ["widgets.example.com"]


async def test_crd_validation_rejects_bad_name(k8s_api_client: Any) -> None:
    """A CRD whose name is not plural.group is rejected with 422 Invalid."""
    body = _crd_body()
    body["metadata"]["name"] = "wrong.example.com"
    with pytest.raises(ApiException) as err:
        await client.ApiextensionsV1Api(k8s_api_client).create_custom_resource_definition(body)
    assert err.value.status == 422


async def test_unserved_version_and_scope_give_plain_404(fake_apiserver: FakeApiServer) -> None:
    """Unserved versions, unknown plurals and wrong scopes get the plain-text 404."""
    await request(
        fake_apiserver,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        _crd_body(),
    )
    for path in (
        "/apis/example.com/v1beta1/namespaces/default/widgets",
        "/apis/example.com/v1/namespaces/default/gadgets",
        "/apis/example.com/v1/widgets/x",  # named object without namespace
        "/apis/example.com/v1/namespaces/default/widgets/x/scale",
    ):
        status, text, headers = await get_json(fake_apiserver, path)
        assert (status, text) == (404, "404 page not found\n"), path
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
    fake_apiserver.register_crd(
        group="example.com", version="v1", plural="gizmos", kind="Gizmo", namespaced=False
    )
    status, _, _ = await get_json(fake_apiserver, "/apis/example.com/v1/namespaces/default/gizmos")
    assert status == 404
    assert (await get_json(fake_apiserver, "/apis/example.com/v1/gizmos"))[0] == 200


async def test_deleting_crd_unregisters_type_and_objects(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Deleting the CRD removes its objects and stops serving the type."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a", size=1))
    await client.ApiextensionsV1Api(k8s_api_client).delete_custom_resource_definition(
        "widgets.example.com"
    )
    status, _, _ = await get_json(fake_apiserver, WIDGETS)
    assert status == 404
    _, groups, _ = await get_json(fake_apiserver, "/apis")
    assert "example.com" not in {g["name"] for g in groups["groups"]}
    with pytest.raises(KeyError):
        fake_apiserver.resource("example.com", "v1", "widgets")
    again = register_widgets(fake_apiserver)
    assert fake_apiserver.list(again) == []


async def test_create_get_list_roundtrip(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Created objects get uid, creationTimestamp, generation 1, RV, apiVersion and kind."""
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    before = fake_apiserver.resource_version
    made = await api.create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", {"metadata": {"name": "a"}, "spec": {"x": 1}}
    )
    meta = made["metadata"]
    assert made["apiVersion"] == "example.com/v1"
    assert made["kind"] == "Widget"
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) == before + 1 == fake_apiserver.resource_version
    got = await api.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "a")
    assert got == made
    listed = await api.list_namespaced_custom_object("example.com", "v1", "default", "widgets")
    assert listed["items"] == [made]


async def test_create_returns_201_and_409_already_exists(fake_apiserver: FakeApiServer) -> None:
    """POST answers 201; a second POST of the same name is 409 AlreadyExists."""
    register_widgets(fake_apiserver)
    status, _ = await request(fake_apiserver, "POST", WIDGETS, widget("a"))
    assert status == 201
    status, body = await request(fake_apiserver, "POST", WIDGETS, widget("a"))
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'widgets.example.com "a" already exists'


async def test_not_found_status_shape(fake_apiserver: FakeApiServer) -> None:
    """A missing named object gives the JSON NotFound Status with name/group/kind=plural."""
    register_widgets(fake_apiserver)
    status, body, _ = await get_json(fake_apiserver, f"{WIDGETS}/x")
    assert status == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'widgets.example.com "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "group": "example.com", "kind": "widgets"},
        "code": 404,
    }


async def test_generate_name(fake_apiserver: FakeApiServer) -> None:
    """GenerateName gets a random 5-character suffix."""
    register_widgets(fake_apiserver)
    status, body = await request(
        fake_apiserver, "POST", WIDGETS, {"metadata": {"generateName": "w-"}}
    )
    assert status == 201
    assert body["metadata"]["name"].startswith("w-")
    assert len(body["metadata"]["name"]) == 7


async def test_global_resource_version_shared_by_all_resources(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """One counter: writes to configmaps, leases and widgets get consecutive RVs."""
    widgets = register_widgets(fake_apiserver)
    cm = await client.CoreV1Api(k8s_api_client).create_namespaced_config_map(
        "default", {"metadata": {"name": "c"}, "data": {"k": "v"}}
    )
    lease = await client.CoordinationV1Api(k8s_api_client).create_namespaced_lease(
        "default", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}
    )
    w = fake_apiserver.create(widgets, widget("a"))
    rvs = [
        int(cm.metadata.resource_version),
        int(lease.metadata.resource_version),
        int(w["metadata"]["resourceVersion"]),
    ]
    assert rvs == [rvs[0], rvs[0] + 1, rvs[0] + 2]


async def test_update_optimistic_concurrency(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """PUT with a stale resourceVersion is 409 Conflict; a fresh one bumps RV and generation."""
    widgets = register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    made = fake_apiserver.create(widgets, widget("a", size=1))
    fresh = dict(made, spec={"size": 2})
    updated = await api.replace_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "a", fresh
    )
    assert updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    stale = dict(made, spec={"size": 3})
    with pytest.raises(ApiException) as err:
        await api.replace_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "a", stale
        )
    assert err.value.status == 409
    body = orjson.loads(err.value.body)
    assert body["reason"] == "Conflict"
    assert body["message"].startswith('Operation cannot be fulfilled on widgets.example.com "a"')
    unconditional = {"metadata": {"name": "a"}, "spec": {"size": 4}}
    done = await api.replace_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "a", unconditional
    )
    assert done["spec"] == {"size": 4}
    assert done["metadata"]["uid"] == made["metadata"]["uid"]


async def test_generation_only_for_spec_changes(fake_apiserver: FakeApiServer) -> None:
    """Metadata and status writes keep generation; spec changes bump it; no-ops store nothing."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a", size=1))
    labeled = fake_apiserver.patch(widgets, "a", {"metadata": {"labels": {"x": "y"}}})
    assert labeled["metadata"]["generation"] == 1
    status = fake_apiserver.patch(widgets, "a", {"status": {"ok": True}}, status=True)
    assert status["metadata"]["generation"] == 1
    rv = fake_apiserver.resource_version
    same = fake_apiserver.patch(widgets, "a", {"spec": {"size": 1}})
    assert fake_apiserver.resource_version == rv
    assert same["metadata"]["resourceVersion"] == str(rv)
    bumped = fake_apiserver.patch(widgets, "a", {"spec": {"size": 2}})
    assert bumped["metadata"]["generation"] == 2


async def test_status_subresource(fake_apiserver: FakeApiServer, k8s_api_client: Any) -> None:
    """/status writes change only status; main-resource writes ignore status."""
    widgets = register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    made = fake_apiserver.create(widgets, {**widget("a", size=1), "status": {"phase": "x"}})
    assert "status" not in made  # dropped on create when the subresource is on
    body = {"metadata": {"name": "a"}, "spec": {"size": 9}, "status": {"phase": "Ready"}}
    after = await api.replace_namespaced_custom_object_status(
        "example.com", "v1", "default", "widgets", "a", body
    )
    assert after["status"] == {"phase": "Ready"}
    assert after["spec"] == {"size": 1}
    main = await api.patch_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        "a",
        {"status": {"phase": "Hacked"}},
        _content_type="application/merge-patch+json",
    )
    assert main["status"] == {"phase": "Ready"}
    got = await api.get_namespaced_custom_object_status(
        "example.com", "v1", "default", "widgets", "a"
    )
    assert got["status"] == {"phase": "Ready"}
    patched = await api.patch_namespaced_custom_object_status(
        "example.com",
        "v1",
        "default",
        "widgets",
        "a",
        [{"op": "replace", "path": "/status/phase", "value": "Done"}],
    )
    assert patched["status"] == {"phase": "Done"}


async def test_status_without_subresource_is_404(fake_apiserver: FakeApiServer) -> None:
    """/status of a CRD without the status subresource is the plain 404."""
    register_widgets(fake_apiserver, status_subresource=False)
    fake_apiserver.create(("example.com", "v1", "widgets"), widget("a"))
    status, text, _ = await get_json(fake_apiserver, f"{WIDGETS}/a/status")
    assert (status, text) == (404, "404 page not found\n")


async def test_merge_and_json_patch_over_http(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """merge-patch and json-patch apply; strategic merge patch on a CR is 415."""
    widgets = register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    fake_apiserver.create(widgets, widget("a", size=1, tags=["a"]))
    merged = await api.patch_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        "a",
        {"spec": {"size": None, "color": "red"}},
        _content_type="application/merge-patch+json",
    )
    assert merged["spec"] == {"tags": ["a"], "color": "red"}
    jp = await api.patch_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        "a",
        [
            {"op": "add", "path": "/spec/tags/-", "value": "b"},
            {"op": "test", "path": "/spec/color", "value": "red"},
        ],
    )
    assert jp["spec"]["tags"] == ["a", "b"]
    with pytest.raises(ApiException) as err:
        await api.patch_namespaced_custom_object(
            "example.com",
            "v1",
            "default",
            "widgets",
            "a",
            [{"op": "test", "path": "/spec/color", "value": "blue"}],
        )
    assert err.value.status == 422
    status, body = await request(
        fake_apiserver,
        "PATCH",
        f"{WIDGETS}/a",
        {"spec": {}},
        content_type="application/strategic-merge-patch+json",
    )
    assert status == 415
    assert body["reason"] == "UnsupportedMediaType"
    status, _ = await request(
        fake_apiserver,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/none",
        {"data": {}},
        content_type="application/strategic-merge-patch+json",
    )
    assert status == 404  # built-ins accept strategic merge patch (as merge patch)


async def test_delete_answers_status_success_and_404_after(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """DELETE of a custom resource without finalizers answers a v1 Status Success.

    Its details carry name, group, resource and uid, like kube-apiserver's registry; a
    second DELETE is 404.
    """
    widgets = register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    made = fake_apiserver.create(widgets, widget("a"))
    gone = await api.delete_namespaced_custom_object("example.com", "v1", "default", "widgets", "a")
    assert gone == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "a",
            "group": "example.com",
            "kind": "widgets",
            "uid": made["metadata"]["uid"],
        },
    }
    with pytest.raises(ApiException) as err:
        await api.delete_namespaced_custom_object("example.com", "v1", "default", "widgets", "a")
    assert err.value.status == 404


async def test_delete_with_finalizers_marks_then_update_removes(
    fake_apiserver: FakeApiServer,
) -> None:
    """DELETE with finalizers sets deletionTimestamp; removing the last finalizer deletes."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "a", "finalizers": ["x/y"]}})
    marked = fake_apiserver.delete(widgets, "a")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["generation"] == 2
    assert fake_apiserver.get(widgets, "a")["metadata"]["deletionTimestamp"]
    again = fake_apiserver.delete(widgets, "a")
    assert again["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    fake_apiserver.patch(widgets, "a", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiError) as err:
        fake_apiserver.get(widgets, "a")
    assert err.value.code == 404


async def test_large_bodies_accepted_and_too_large_rejected(fake_apiserver: FakeApiServer) -> None:
    """A 3 MiB request body is accepted; a larger one gets 413 RequestEntityTooLarge."""
    widgets = register_widgets(fake_apiserver)
    filler = "x" * (3 * 1024 * 1024 - 200)
    status, body = await request(fake_apiserver, "POST", WIDGETS, widget("big", blob=filler))
    assert status == 201, body
    assert len(fake_apiserver.get(widgets, "big")["spec"]["blob"]) == len(filler)
    status, body = await request(fake_apiserver, "POST", WIDGETS, widget("huge", blob=filler * 2))
    assert status == 413
    assert body["reason"] == "RequestEntityTooLarge"


async def test_method_not_allowed(fake_apiserver: FakeApiServer) -> None:
    """POST on a named object and PUT on a collection answer 405."""
    register_widgets(fake_apiserver)
    assert (await request(fake_apiserver, "POST", f"{WIDGETS}/a", widget("a")))[0] == 405
    assert (await request(fake_apiserver, "PUT", WIDGETS, widget("a")))[0] == 405


async def test_python_api_by_tuple_and_errors(fake_apiserver: FakeApiServer) -> None:
    """The Python API accepts (group, version, plural) and raises ApiError like HTTP."""
    register_widgets(fake_apiserver)
    ref = ("example.com", "v1", "widgets")
    made = fake_apiserver.create(ref, widget("a"), namespace="ns1")
    assert made["metadata"]["namespace"] == "ns1"
    made["spec"]["mutated"] = True  # copies: never the stored object
    assert "mutated" not in fake_apiserver.get(ref, "a", namespace="ns1")["spec"]
    with pytest.raises(ApiError) as err:
        fake_apiserver.create(ref, widget("a"), namespace="ns1")
    assert err.value.code == 409
    assert err.value.reason == "AlreadyExists"
    updated = fake_apiserver.update(ref, {**made, "spec": {"v": 2}})
    assert updated["spec"] == {"v": 2}
    with pytest.raises(ApiError) as err:
        fake_apiserver.update(ref, {**made, "spec": {"v": 3}})
    assert err.value.code == 409
    jp = fake_apiserver.patch(
        ref,
        "a",
        [{"op": "add", "path": "/spec/w", "value": 1}],
        namespace="ns1",
        patch_type="json",
    )
    assert jp["spec"] == {"v": 2, "w": 1}
    assert [o["metadata"]["name"] for o in fake_apiserver.list(ref)] == ["a"]
    assert fake_apiserver.list(ref, namespace="other") == []
    fake_apiserver.delete(ref, "a", namespace="ns1")
    assert fake_apiserver.list(ref) == []


async def test_cluster_scoped_crd(fake_apiserver: FakeApiServer, k8s_api_client: Any) -> None:
    """Cluster-scoped custom resources live at /apis/g/v/plural without a namespace."""
    gizmos = fake_apiserver.register_crd(
        group="example.com", version="v1", plural="gizmos", kind="Gizmo", namespaced=False
    )
    api = client.CustomObjectsApi(k8s_api_client)
    made = await api.create_cluster_custom_object(
        "example.com", "v1", "gizmos", {"metadata": {"name": "g", "namespace": "ignored"}}
    )
    assert "namespace" not in made["metadata"]
    assert fake_apiserver.get(gizmos, "g")["metadata"]["name"] == "g"
    listed = await api.list_cluster_custom_object("example.com", "v1", "gizmos")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["g"]


async def test_multiple_served_versions(fake_apiserver: FakeApiServer) -> None:
    """Objects are served in every served version with that version's apiVersion."""
    fake_apiserver.register_crd(
        group="example.com", version=["v2", "v1"], plural="widgets", kind="Widget"
    )
    fake_apiserver.create(("example.com", "v2", "widgets"), widget("a"))
    _, body, _ = await get_json(fake_apiserver, "/apis/example.com/v1/namespaces/default/widgets")
    assert body["apiVersion"] == "example.com/v1"
    assert body["items"][0]["apiVersion"] == "example.com/v1"
    _, group, _ = await get_json(fake_apiserver, "/apis/example.com")
    assert group["preferredVersion"]["version"] == "v2"


async def test_clock_knob_sets_timestamps() -> None:
    """The `now` knob drives creationTimestamp and deletionTimestamp."""
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    async with FakeApiServer(now=lambda: moment) as server:
        widgets = register_widgets(server)
        made = server.create(widgets, {"metadata": {"name": "a", "finalizers": ["f/x"]}})
        assert made["metadata"]["creationTimestamp"] == "2030-01-02T03:04:05Z"
        marked = server.delete(widgets, "a")
        assert marked["metadata"]["deletionTimestamp"] == "2030-01-02T03:04:05Z"


async def test_delete_collection(fake_apiserver: FakeApiServer) -> None:
    """DELETE on a collection deletes the selected objects and answers them as a list."""
    widgets = register_widgets(fake_apiserver)
    for name, tier in (("a", "x"), ("b", "y"), ("c", "x")):
        fake_apiserver.create(widgets, {"metadata": {"name": name, "labels": {"tier": tier}}})
    status, body = await request(fake_apiserver, "DELETE", f"{WIDGETS}?labelSelector=tier%3Dx")
    assert status == 200
    assert body["kind"] == "WidgetList"
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "c"]
    assert [o["metadata"]["name"] for o in fake_apiserver.list(widgets)] == ["b"]


async def test_statistics_and_advance_resource_version(fake_apiserver: FakeApiServer) -> None:
    """statistics() counts objects, watches and requests; advancing the RV changes no object."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    before = fake_apiserver.statistics()
    assert before.resource_version == fake_apiserver.resource_version
    assert before.open_watches == 0
    rv = fake_apiserver.advance_resource_version(3)
    assert rv == before.resource_version + 3
    assert fake_apiserver.get(widgets, "a") == fake_apiserver.list(widgets)[0]
    _, body, _ = await get_json(fake_apiserver, WIDGETS)
    assert body["metadata"]["resourceVersion"] == str(rv)
    after = fake_apiserver.statistics()
    assert after.objects == before.objects
    assert after.requests == before.requests + 1
    with pytest.raises(ValueError):
        fake_apiserver.advance_resource_version(0)


async def test_core_and_lease_resources(k8s_api_client: Any) -> None:
    """Namespaces (cluster-scoped), configmaps and leases work through the typed clients."""
    core = client.CoreV1Api(k8s_api_client)
    ns = await core.create_namespace({"metadata": {"name": "team-a"}})
    assert ns.status.phase == "Active"
    cm = await core.create_namespaced_config_map(
        "team-a", {"metadata": {"name": "c"}, "data": {"k": "v"}}
    )
    cm.data["k"] = "w"
    replaced = await core.replace_namespaced_config_map("c", "team-a", cm)
    assert replaced.data == {"k": "w"}
    maps = await core.list_namespaced_config_map("team-a")
    assert [m.metadata.name for m in maps.items] == ["c"]
    leases = client.CoordinationV1Api(k8s_api_client)
    lease = await leases.create_namespaced_lease(
        "team-a",
        {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "you"
    updated = await leases.replace_namespaced_lease("leader", "team-a", lease)
    assert updated.spec.holder_identity == "you"
    with pytest.raises(ApiException) as err:
        await leases.replace_namespaced_lease("leader", "team-a", lease)  # stale RV
    assert err.value.status == 409
    await leases.delete_namespaced_lease("leader", "team-a")
    await core.delete_namespace("team-a")
    with pytest.raises(ApiException) as err:
        await core.read_namespace("team-a")
    assert err.value.status == 404
    assert orjson.loads(err.value.body)["message"] == 'namespaces "team-a" not found'


async def test_protobuf_only_accept_is_406(fake_apiserver: FakeApiServer) -> None:
    """A client accepting only protobuf gets 406 (custom resources are JSON only)."""
    register_widgets(fake_apiserver)
    async with session(fake_apiserver) as http:
        async with http.get(
            WIDGETS, headers={"Accept": "application/vnd.kubernetes.protobuf"}
        ) as response:
            assert response.status == 406
        async with http.get(
            WIDGETS, headers={"Accept": "application/vnd.kubernetes.protobuf, application/json"}
        ) as response:
            assert response.status == 200


async def test_update_with_wrong_uid_is_conflict(fake_apiserver: FakeApiServer) -> None:
    """An update whose metadata.uid differs from the stored object is 409 Conflict."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    with pytest.raises(ApiError) as err:
        fake_apiserver.update(widgets, {"metadata": {"name": "a", "uid": "other"}, "spec": {}})
    assert err.value.code == 409
    assert "Precondition failed: UID in precondition: other" in str(err.value)


async def test_bad_json_body_is_400(fake_apiserver: FakeApiServer) -> None:
    """A request body that is not JSON is 400 BadRequest."""
    register_widgets(fake_apiserver)
    async with (
        session(fake_apiserver) as http,
        http.post(WIDGETS, data=b"{nope", headers={"Content-Type": "application/json"}) as response,
    ):
        assert response.status == 400
        assert (await response.json())["reason"] == "BadRequest"


async def test_posted_crd_selectable_fields_work(k8s_api_client: Any) -> None:
    """The selectableFields of a POSTed CRD are usable in field selectors."""
    await client.ApiextensionsV1Api(k8s_api_client).create_custom_resource_definition(_crd_body())
    api = client.CustomObjectsApi(k8s_api_client)
    for name, color in (("a", "red"), ("b", "blue")):
        await api.create_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", widget(name, color=color)
        )
    listed = await api.list_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", field_selector="spec.color=blue"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["b"]
    with pytest.raises(ApiException) as err:
        await api.list_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", field_selector="spec.size=1"
        )
    assert err.value.status == 400


async def test_crd_update_changes_served_versions_and_ends_watches(
    fake_apiserver: FakeApiServer,
) -> None:
    """Patching a CRD's versions re-registers the type and ends its open watches cleanly."""
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    status, _ = await request(fake_apiserver, "POST", crd_path, _crd_body())
    assert status == 201
    fake_apiserver.create(("example.com", "v1", "widgets"), widget("a"))
    async with watch(fake_apiserver, resourceVersion=fake_apiserver.resource_version) as stream:
        body = _crd_body()
        body["spec"]["versions"][1]["served"] = True
        status, updated = await request(
            fake_apiserver,
            "PATCH",
            f"{crd_path}/widgets.example.com",
            {"spec": {"versions": body["spec"]["versions"]}},
            content_type="application/merge-patch+json",
        )
        assert status == 200
        assert updated["metadata"]["generation"] == 2
        assert await stream.rest() == []  # clean EOF
    _, group, _ = await get_json(fake_apiserver, "/apis/example.com")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    _, listed, _ = await get_json(
        fake_apiserver, "/apis/example.com/v1beta1/namespaces/default/widgets"
    )
    assert listed["items"][0]["apiVersion"] == "example.com/v1beta1"


async def test_write_fault_prevents_the_write(fake_apiserver: FakeApiServer) -> None:
    """A status fault on create answers before the handler: nothing is stored."""
    widgets = register_widgets(fake_apiserver)
    rule = fake_apiserver.faults.add(Fault.status(500), verb="create", resource="widgets")
    status, body = await request(fake_apiserver, "POST", WIDGETS, widget("a"))
    assert (status, body["reason"]) == (500, "InternalError")
    assert fake_apiserver.list(widgets) == []
    assert rule.firings[0].method == "POST"


async def test_status_counts_as_spec_without_status_subresource(
    fake_apiserver: FakeApiServer,
) -> None:
    """Without the status subresource, status is ordinary content and bumps generation.

    kube-apiserver's CR strategy ignores only metadata (and status when the subresource is on)
    when deciding whether to bump generation.
    """
    widgets = register_widgets(fake_apiserver, status_subresource=False)
    fake_apiserver.create(widgets, {**widget("a"), "status": {"phase": "x"}})
    assert fake_apiserver.get(widgets, "a")["status"] == {"phase": "x"}
    patched = fake_apiserver.patch(widgets, "a", {"status": {"phase": "y"}})
    assert patched["metadata"]["generation"] == 2


async def test_restart_keeps_port_and_state() -> None:
    """stop() then start() serves the same objects on the same port (a server restart)."""
    server = FakeApiServer()
    await server.start()
    try:
        widgets = register_widgets(server)
        server.create(widgets, widget("a"))
        port, rv = server.port, server.resource_version
        await server.stop()
        await server.start()
        assert server.port == port
        _, body, _ = await get_json(server, WIDGETS)
        assert [i["metadata"]["name"] for i in body["items"]] == ["a"]
        assert body["metadata"]["resourceVersion"] == str(rv)
    finally:
        await server.stop()


async def test_tls_with_token_for_kubernetes_asyncio(tmp_path: Path) -> None:
    """tls=True serves HTTPS; the kubeconfig's CA and token let kubernetes-asyncio connect."""
    async with FakeApiServer(tls=True, token="tls-token") as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_certificate is not None
        assert server.ca_certificate.startswith(b"-----BEGIN CERTIFICATE-----")
        path = server.kubeconfig(tmp_path / "kc")
        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(path), client_configuration=configuration)
        async with client.ApiClient(configuration) as api:
            namespaces = await client.CoreV1Api(api).list_namespace()
        assert "default" in [ns.metadata.name for ns in namespaces.items]
        widgets = register_widgets(server)
        async with watch(server, resourceVersion=server.resource_version) as stream:
            server.create(widgets, widget("a"))
            assert (await stream.event())["type"] == "ADDED"
    assert FakeApiServer().ssl_context() is None


async def test_kubeconfig_needs_a_started_server(tmp_path: Path) -> None:
    """kubeconfig() refuses to write a file before the port (and certificate) are known."""
    with pytest.raises(RuntimeError):
        FakeApiServer().kubeconfig(tmp_path / "kc")
    with pytest.raises(RuntimeError):
        FakeApiServer(port=12345, tls=True).kubeconfig(tmp_path / "kc")
    assert FakeApiServer(port=12345).kubeconfig(tmp_path / "kc").exists()
