"""Namespace lifecycle in FakeApiServer (admission and deletion), through kubernetes-asyncio."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fakeserver_helpers import register_widgets, watch, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from crwatch.testing import ApiError, FakeApiServer

pytestmark = pytest.mark.anyio


def cm(name: str) -> dict[str, Any]:
    """Build a ConfigMap body."""
    return {"metadata": {"name": name}, "data": {"k": "v"}}


async def test_initial_namespaces_exist(k8s_api_client: Any) -> None:
    """A new server has default, kube-node-lease, kube-public and kube-system, all Active."""
    core = client.CoreV1Api(k8s_api_client)
    listed = await core.list_namespace()
    assert [(n.metadata.name, n.status.phase) for n in listed.items] == [
        ("default", "Active"),
        ("kube-node-lease", "Active"),
        ("kube-public", "Active"),
        ("kube-system", "Active"),
    ]


async def test_create_in_a_missing_namespace_answers_404(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A create in a namespace that does not exist: 404 ``namespaces "x" not found``.

    The Status is kube-apiserver's (details name the namespace, kind ``namespaces``), for
    built-ins and custom resources alike, and nothing is stored.
    """
    widgets = register_widgets(fake_apiserver)
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("nope", cm("c"))
    status = orjson.loads(err.value.body)
    assert err.value.status == 404
    assert status["message"] == 'namespaces "nope" not found'
    assert status["reason"] == "NotFound"
    assert status["details"] == {"name": "nope", "kind": "namespaces"}
    with pytest.raises(ApiException) as err:
        await custom.create_namespaced_custom_object(
            "example.com", "v1", "nope", "widgets", widget("w")
        )
    assert err.value.status == 404
    assert fake_apiserver.list(widgets) == []
    # Once the namespace exists, the same create works.
    await core.create_namespace({"metadata": {"name": "nope"}})
    await core.create_namespaced_config_map("nope", cm("c"))


@pytest.mark.parametrize("fake_apiserver_options", [{"auto_create_namespaces": True}])
async def test_auto_create_namespaces_option(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """``auto_create_namespaces=True``: an HTTP create in a missing namespace creates it."""
    core = client.CoreV1Api(k8s_api_client)
    await core.create_namespaced_config_map("fresh", cm("c"))
    ns = await core.read_namespace("fresh")
    assert ns.status.phase == "Active"


async def test_python_api_creates_the_namespace(fake_apiserver: FakeApiServer) -> None:
    """The Python API (test setup) creates a missing namespace before the object."""
    configmaps = fake_apiserver.resource("", "v1", "configmaps")
    fake_apiserver.create(configmaps, cm("c"), namespace="setup")
    namespaces = fake_apiserver.resource("", "v1", "namespaces")
    assert fake_apiserver.get(namespaces, "setup")["status"] == {"phase": "Active"}


async def test_deleting_a_namespace_terminates_then_removes_it(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Namespace deletion: Terminating, its content deleted, finalizers honoured, then gone.

    The DELETE answers the namespace marked Terminating; objects without finalizers go at
    once (configmaps, leases, events, custom resources); one held by a finalizer keeps the
    namespace, which reports it in its conditions and refuses new objects with 403. Other
    namespaces are untouched. Removing the finalizer lets both go.
    """
    widgets = register_widgets(fake_apiserver)
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    coordination = client.CoordinationV1Api(k8s_api_client)
    await core.create_namespace({"metadata": {"name": "team"}})
    await core.create_namespaced_config_map("team", cm("c"))
    await core.create_namespaced_config_map("default", cm("stays"))
    await coordination.create_namespaced_lease("team", {"metadata": {"name": "l"}})
    await core.create_namespaced_event(
        "team", {"metadata": {"name": "e"}, "involvedObject": {"name": "c"}, "reason": "R"}
    )
    await custom.create_namespaced_custom_object(
        "example.com", "v1", "team", "widgets", widget("free")
    )
    held = widget("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await custom.create_namespaced_custom_object("example.com", "v1", "team", "widgets", held)

    # The answer is the Namespace, not the V1Status the generated client expects: read it raw.
    response = await core.delete_namespace("team", _preload_content=False)
    answer = await response.json()
    assert answer["kind"] == "Namespace"
    assert answer["status"]["phase"] == "Terminating"
    assert answer["metadata"]["deletionTimestamp"]
    assert answer["spec"]["finalizers"] == ["kubernetes"]
    assert (await core.list_namespaced_config_map("team")).items == []
    assert (await coordination.list_namespaced_lease("team")).items == []
    assert (await core.list_namespaced_event("team")).items == []
    assert [w["metadata"]["name"] for w in fake_apiserver.list(widgets)] == ["held"]
    assert [c.metadata.name for c in (await core.list_config_map_for_all_namespaces()).items] == [
        "stays"
    ]
    ns = await core.read_namespace("team")
    conditions = {c.type: c for c in ns.status.conditions}
    assert conditions["NamespaceContentRemaining"].status == "True"
    assert conditions["NamespaceContentRemaining"].message == (
        "Some resources are remaining: widgets.example.com has 1 resource instances"
    )
    assert conditions["NamespaceFinalizersRemaining"].message == (
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances"
    )

    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("team", cm("late"))
    status = orjson.loads(err.value.body)
    assert err.value.status == 403
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'configmaps "late" is forbidden: unable to create new content in namespace team '
        "because it is being terminated"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": "namespace team is being terminated",
            "field": "metadata.namespace",
        }
    ]
    with pytest.raises(ApiError) as py_err:  # the Python API refuses too
        fake_apiserver.create(widgets, widget("late"), namespace="team")
    assert py_err.value.code == 403

    await custom.patch_namespaced_custom_object(
        "example.com",
        "v1",
        "team",
        "widgets",
        "held",
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    assert fake_apiserver.list(widgets) == []
    with pytest.raises(ApiException) as err:
        await core.read_namespace("team")
    assert err.value.status == 404


async def test_namespace_watch_sees_terminating_then_deleted(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A watch on namespaces sees MODIFIED (Terminating), MODIFIED (finalized), DELETED."""
    core = client.CoreV1Api(k8s_api_client)
    await core.create_namespace({"metadata": {"name": "gone"}})
    start = fake_apiserver.resource_version
    await core.delete_namespace("gone")
    async with watch(fake_apiserver, "/api/v1/namespaces", resourceVersion=str(start)) as stream:
        events = await stream.events(3)
    assert [(e["type"], e["object"]["status"].get("phase")) for e in events] == [
        ("MODIFIED", "Terminating"),
        ("MODIFIED", "Terminating"),
        ("DELETED", "Terminating"),
    ]
    assert events[0]["object"]["spec"]["finalizers"] == ["kubernetes"]
    assert "finalizers" not in events[1]["object"]["spec"]


async def test_system_namespaces_may_not_be_deleted(k8s_api_client: Any) -> None:
    """Deleting default, kube-system or kube-public answers 403 and changes nothing."""
    core = client.CoreV1Api(k8s_api_client)
    for name in ("default", "kube-system", "kube-public"):
        with pytest.raises(ApiException) as err:
            await core.delete_namespace(name)
        assert err.value.status == 403
        message = orjson.loads(err.value.body)["message"]
        assert message == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
        assert (await core.read_namespace(name)).status.phase == "Active"


async def test_updating_a_terminating_namespace_does_not_remove_it(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A label patch on a Terminating namespace still held by content keeps it Terminating."""
    widgets = register_widgets(fake_apiserver)
    core = client.CoreV1Api(k8s_api_client)
    held = widget("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    fake_apiserver.create(widgets, held, namespace="team")
    await core.delete_namespace("team", _preload_content=False)
    patched = await core.patch_namespace("team", {"metadata": {"labels": {"x": "y"}}})
    assert patched.status.phase == "Terminating"
    assert patched.metadata.labels["x"] == "y"
    assert (await core.read_namespace("team")).spec.finalizers == ["kubernetes"]


async def test_finalize_releases_a_namespace_held_by_a_spec_finalizer(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A spec finalizer other than ``kubernetes`` holds an empty namespace; /finalize frees it.

    The namespace controller removes only its own ``kubernetes`` finalizer; PUT on
    ``/finalize`` with no finalizers then removes the terminating namespace. Other fields in
    the body are ignored, and /finalize on an Active namespace only changes the list.
    """
    core = client.CoreV1Api(k8s_api_client)
    await core.create_namespace(
        {"metadata": {"name": "stuck"}, "spec": {"finalizers": ["example.com/extra"]}}
    )
    created = await core.read_namespace("stuck")
    assert created.spec.finalizers == ["example.com/extra", "kubernetes"]
    await core.delete_namespace("stuck", _preload_content=False)
    held = await core.read_namespace("stuck")
    assert (held.status.phase, held.spec.finalizers) == ("Terminating", ["example.com/extra"])
    await core.replace_namespace_finalize(
        "stuck", {"metadata": {"name": "stuck", "labels": {"ignored": "yes"}}, "spec": {}}
    )
    with pytest.raises(ApiException) as err:
        await core.read_namespace("stuck")
    assert err.value.status == 404

    await core.create_namespace({"metadata": {"name": "active"}})
    done = await core.replace_namespace_finalize(
        "active", {"metadata": {"name": "active"}, "spec": {"finalizers": []}}
    )
    assert (done.status.phase, done.spec.finalizers, done.metadata.labels.get("ignored")) == (
        "Active",
        None,
        None,
    )
