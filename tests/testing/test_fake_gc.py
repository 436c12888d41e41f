"""Garbage collection by ownerReferences in FakeApiServer, driven through kubernetes-asyncio."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fakeserver_helpers import register_widgets, watch, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from crwatch.testing import FakeApiServer, ResourceType

pytestmark = pytest.mark.anyio

NS = "default"


def owner_ref(owner: dict[str, Any], *, block: bool | None = None) -> dict[str, Any]:
    """Build an ownerReference to ``owner``, like controller-runtime's SetControllerReference."""
    ref: dict[str, Any] = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block is not None:
        ref["blockOwnerDeletion"] = block
    return ref


def configmap(name: str, *refs: dict[str, Any], finalizers: tuple[str, ...] = ()) -> Any:
    """Build a ConfigMap body owned by ``refs``."""
    meta: dict[str, Any] = {"name": name, "ownerReferences": list(refs)}
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


async def names(core: client.CoreV1Api) -> list[str]:
    """Names of the ConfigMaps in the test namespace."""
    listed = await core.list_namespaced_config_map(NS)
    return [item.metadata.name for item in listed.items]


async def make_owner(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    """Create a Widget over HTTP and return it."""
    created: dict[str, Any] = await custom.create_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", widget(name)
    )
    return created


@pytest.fixture
def widgets(fake_apiserver: FakeApiServer) -> ResourceType:
    """Register the widgets CRD."""
    return register_widgets(fake_apiserver)


async def test_background_deletion_removes_dependents_after_the_owner(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """Deleting an owner (default propagation) deletes its dependents, owner first.

    The DELETE answers once the cascade is done; a watch shows the owner's DELETED event
    before the dependents'. A dependent that still has another, existing owner stays and
    only loses the reference to the deleted one.
    """
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    owner = await make_owner(custom, "w1")
    other = await make_owner(custom, "w2")
    await core.create_namespaced_config_map(NS, configmap("child-a", owner_ref(owner)))
    await core.create_namespaced_config_map(NS, configmap("child-b", owner_ref(owner)))
    await core.create_namespaced_config_map(
        NS, configmap("shared", owner_ref(owner), owner_ref(other))
    )
    await core.create_namespaced_config_map(NS, configmap("unrelated"))
    start = fake_apiserver.resource_version
    await custom.delete_namespaced_custom_object("example.com", "v1", NS, "widgets", "w1")
    assert await names(core) == ["shared", "unrelated"]
    shared = await core.read_namespaced_config_map("shared", NS)
    assert [r.uid for r in shared.metadata.owner_references] == [other["metadata"]["uid"]]
    async with (
        watch(fake_apiserver, "/apis/example.com/v1/namespaces/default/widgets",
              resourceVersion=str(start)) as widget_stream,
        watch(fake_apiserver, "/api/v1/namespaces/default/configmaps",
              resourceVersion=str(start)) as cm_stream,
    ):  # fmt: skip
        owner_gone = await widget_stream.event()
        children = await cm_stream.events(3)
    assert owner_gone["type"] == "DELETED"
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in children] == [
        ("DELETED", "child-a"),
        ("DELETED", "child-b"),
        ("MODIFIED", "shared"),
    ]
    owner_rv = int(owner_gone["object"]["metadata"]["resourceVersion"])
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > owner_rv for e in children)


async def test_foreground_deletion_waits_for_blocking_dependents(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """Foreground: the owner keeps a foregroundDeletion finalizer until blockers are gone.

    Dependents are all deleted; one held by its own finalizer and blocking the owner keeps
    the owner (with deletionTimestamp) until that finalizer is removed; then both go.
    """
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    owner = await make_owner(custom, "w1")
    await core.create_namespaced_config_map(
        NS, configmap("blocker", owner_ref(owner, block=True), finalizers=("example.com/hold",))
    )
    await core.create_namespaced_config_map(NS, configmap("free", owner_ref(owner)))
    answer = await custom.delete_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "w1", propagation_policy="Foreground"
    )
    assert answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert answer["metadata"]["deletionTimestamp"]
    kept = await custom.get_namespaced_custom_object("example.com", "v1", NS, "widgets", "w1")
    assert kept["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert await names(core) == ["blocker"]
    blocker = await core.read_namespaced_config_map("blocker", NS)
    assert blocker.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map("blocker", NS, {"metadata": {"finalizers": None}})
    assert await names(core) == []
    with pytest.raises(ApiException) as err:
        await custom.get_namespaced_custom_object("example.com", "v1", NS, "widgets", "w1")
    assert err.value.status == 404


async def test_foreground_owner_without_blockers_goes_at_once(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """Foreground with only non-blocking dependents: owner and dependents are all gone."""
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    owner = await make_owner(custom, "w1")
    await core.create_namespaced_config_map(NS, configmap("c", owner_ref(owner, block=False)))
    await custom.delete_namespaced_custom_object(
        "example.com",
        "v1",
        NS,
        "widgets",
        "w1",
        body=client.V1DeleteOptions(propagation_policy="Foreground"),
    )
    assert await names(core) == []
    assert fake_apiserver.list(widgets) == []


@pytest.mark.parametrize("how", ["query", "body", "orphanDependents"])
async def test_orphan_keeps_dependents_without_the_reference(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType, how: str
) -> None:
    """Orphan (query, DeleteOptions body, or orphanDependents): dependents stay, unowned."""
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    owner = await make_owner(custom, "w1")
    await core.create_namespaced_config_map(NS, configmap("c", owner_ref(owner)))
    options: dict[str, Any] = {
        "query": {"propagation_policy": "Orphan"},
        "body": {"body": client.V1DeleteOptions(propagation_policy="Orphan")},
        "orphanDependents": {"body": {"orphanDependents": True}},
    }[how]
    await custom.delete_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "w1", **options
    )
    assert fake_apiserver.list(widgets) == []
    child = await core.read_namespaced_config_map("c", NS)
    assert child.metadata.owner_references is None


async def test_dependent_whose_owner_uid_does_not_exist_is_collected(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """An ownerReference to a missing owner, or to an owner of another uid, is dangling.

    Such a dependent is collected right after its create, as the real collector does; a
    reference to a kind the server does not serve cannot be resolved, so that one stays.
    """
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    owner = await make_owner(custom, "w1")
    wrong_uid = {**owner_ref(owner), "uid": "00000000-0000-0000-0000-000000000000"}
    missing = {**owner_ref(owner), "name": "nope"}
    unknown = {"apiVersion": "other.io/v1", "kind": "Thing", "name": "t", "uid": "x"}
    created = await core.create_namespaced_config_map(NS, configmap("wrong-uid", wrong_uid))
    assert created.metadata.name == "wrong-uid"  # the create itself succeeds
    await core.create_namespaced_config_map(NS, configmap("missing", missing))
    await core.create_namespaced_config_map(NS, configmap("unknown", unknown))
    assert await names(core) == ["unknown"]


async def test_cluster_scoped_owner_of_namespaced_dependents(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A cluster-scoped owner collects namespaced dependents; the reverse is unresolvable.

    A cluster-scoped dependent may not have a namespaced owner: the collector leaves it.
    """
    gadgets = fake_apiserver.register_crd(
        group="example.com", version="v1", plural="gadgets", kind="Gadget", namespaced=False
    )
    register_widgets(fake_apiserver)
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    gadget = await custom.create_cluster_custom_object(
        "example.com", "v1", "gadgets", {"metadata": {"name": "g"}}
    )
    wid = await make_owner(custom, "w1")
    await core.create_namespaced_config_map(NS, configmap("c", owner_ref(gadget)))
    odd = {"metadata": {"name": "odd", "ownerReferences": [owner_ref(wid)]}}
    await custom.create_cluster_custom_object("example.com", "v1", "gadgets", odd)
    await custom.delete_namespaced_custom_object("example.com", "v1", NS, "widgets", "w1")
    await custom.delete_cluster_custom_object("example.com", "v1", "gadgets", "g")
    assert await names(core) == []
    assert [g["metadata"]["name"] for g in fake_apiserver.list(gadgets)] == ["odd"]


async def test_cascade_goes_through_several_levels(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """Grandchildren go too: deleting the root collects a whole ownership tree."""
    custom = client.CustomObjectsApi(k8s_api_client)
    core = client.CoreV1Api(k8s_api_client)
    root = await make_owner(custom, "root")
    body = widget("mid")
    body["metadata"]["ownerReferences"] = [owner_ref(root, block=True)]
    mid = await custom.create_namespaced_custom_object("example.com", "v1", NS, "widgets", body)
    await core.create_namespaced_config_map(NS, configmap("leaf", owner_ref(mid, block=True)))
    await custom.delete_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "root", propagation_policy="Foreground"
    )
    assert fake_apiserver.list(widgets) == []
    assert await names(core) == []


async def test_delete_options_are_validated(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """Both orphanDependents and propagationPolicy, or an unknown policy: 422 Invalid."""
    custom = client.CustomObjectsApi(k8s_api_client)
    await make_owner(custom, "w1")
    for options in (
        {"body": {"orphanDependents": True, "propagationPolicy": "Orphan"}},
        {"propagation_policy": "Sideways"},
    ):
        with pytest.raises(ApiException) as err:
            await custom.delete_namespaced_custom_object(
                "example.com", "v1", NS, "widgets", "w1", **options
            )
        assert err.value.status == 422
        status = orjson.loads(err.value.body)
        assert status["reason"] == "Invalid"
        assert status["details"]["causes"][0]["field"] == "propagationPolicy"
    assert len(fake_apiserver.list(widgets)) == 1


async def test_orphan_dependents_false_on_a_kept_owner_answers_202(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """``orphanDependents: false`` on an owner a finalizer keeps answers 202 Accepted."""
    custom = client.CustomObjectsApi(k8s_api_client)
    body = widget("w1")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await custom.create_namespaced_custom_object("example.com", "v1", NS, "widgets", body)
    _, status, _ = await custom.delete_namespaced_custom_object_with_http_info(
        "example.com", "v1", NS, "widgets", "w1", body={"orphanDependents": False}
    )
    assert status == 202


@pytest.mark.parametrize("fake_apiserver_options", [{"garbage_collector": False}])
async def test_without_garbage_collector_dependents_stay(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """``garbage_collector=False`` (like envtest): nothing is collected, policies ignored."""
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    owner = await make_owner(custom, "w1")
    await core.create_namespaced_config_map(NS, configmap("c", owner_ref(owner, block=True)))
    await custom.delete_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "w1", propagation_policy="Foreground"
    )
    assert fake_apiserver.list(widgets) == []
    assert await names(core) == ["c"]


async def test_deletecollection_cascades(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """DELETE on a collection deletes each owner, then collects all their dependents."""
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    for name in ("w1", "w2"):
        owner = await make_owner(custom, name)
        await core.create_namespaced_config_map(NS, configmap(f"c-{name}", owner_ref(owner)))
    await custom.delete_collection_namespaced_custom_object("example.com", "v1", NS, "widgets")
    assert fake_apiserver.list(widgets) == []
    assert await names(core) == []


async def test_gc_finalizers_on_an_owner_kept_by_another_finalizer(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """An owner held by its own finalizer: each DELETE's policy still runs, then goes away.

    Foreground deletes the dependents and drops ``foregroundDeletion``; a second DELETE
    (already deleting) with Orphan orphans a new dependent and drops ``orphan``; the owner's
    own finalizer stays throughout.
    """
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    body = widget("w1")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    owner = await custom.create_namespaced_custom_object("example.com", "v1", NS, "widgets", body)
    await core.create_namespaced_config_map(NS, configmap("first", owner_ref(owner)))
    await custom.delete_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "w1", propagation_policy="Foreground"
    )
    kept = fake_apiserver.get(widgets, "w1")
    assert kept["metadata"]["finalizers"] == ["example.com/hold"]
    assert await names(core) == []
    await core.create_namespaced_config_map(NS, configmap("second", owner_ref(owner)))
    assert await names(core) == ["second"]  # its owner exists: it is not dangling
    await custom.delete_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "w1", propagation_policy="Orphan"
    )
    assert fake_apiserver.get(widgets, "w1")["metadata"]["finalizers"] == ["example.com/hold"]
    second = await core.read_namespaced_config_map("second", NS)
    assert second.metadata.owner_references is None


async def test_orphan_finalizer_set_before_delete_is_honoured(
    fake_apiserver: FakeApiServer, k8s_api_client: Any, widgets: ResourceType
) -> None:
    """A DELETE without options keeps an ``orphan`` finalizer the owner already carries."""
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    body = widget("w1")
    body["metadata"]["finalizers"] = ["orphan"]
    owner = await custom.create_namespaced_custom_object("example.com", "v1", NS, "widgets", body)
    await core.create_namespaced_config_map(NS, configmap("c", owner_ref(owner)))
    await custom.delete_namespaced_custom_object("example.com", "v1", NS, "widgets", "w1")
    assert fake_apiserver.list(widgets) == []
    assert await names(core) == ["c"]
