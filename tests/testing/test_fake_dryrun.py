"""dryRun, DELETE answers and the last bookmark before timeoutSeconds, over HTTP."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fakeserver_helpers import WIDGETS, register_widgets, request, watch, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

GROUP, VERSION = "example.com", "v1"
APPLY = "application/apply-patch+yaml"


def snapshot(server: FakeApiServer) -> tuple[int, list[dict[str, Any]]]:
    """Return the RV counter and every widget: what a dry run must leave alone."""
    return server.resource_version, server.list(("example.com", "v1", "widgets"))


async def test_dry_run_create_answers_the_object_and_stores_nothing(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A dry-run create answers the object it would create and stores nothing.

    The answer (201) has a generated name, uid, creationTimestamp and managedFields but no
    resourceVersion; there is no event and the RV counter does not move.
    """
    register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    before = snapshot(fake_apiserver)
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"generateName": "w-"}}
    async with watch(fake_apiserver, resourceVersion=before[0]) as stream:
        made = await api.create_namespaced_custom_object(
            GROUP, VERSION, "default", "widgets", body, dry_run="All"
        )
        assert made["metadata"]["name"].startswith("w-")
        assert len(made["metadata"]["name"]) == len("w-") + 5
        assert made["metadata"]["uid"]
        assert made["metadata"]["creationTimestamp"]
        assert made["metadata"]["generation"] == 1
        assert "resourceVersion" not in made["metadata"]
        assert made["metadata"]["managedFields"][0]["manager"] == "OpenAPI-Generator"
        assert snapshot(fake_apiserver) == before
        assert await stream.silent(0.1)
    # A dry run still runs the checks: an existing name is 409 AlreadyExists.
    fake_apiserver.create(("example.com", "v1", "widgets"), widget("taken"))
    with pytest.raises(ApiException) as err:
        await api.create_namespaced_custom_object(
            GROUP, VERSION, "default", "widgets", widget("taken"), dry_run="All"
        )
    assert err.value.status == 409


async def test_dry_run_update_patch_apply_change_nothing(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Dry-run PUT, merge patch and apply answer the would-be object and change nothing.

    The answer keeps the old RV and bumps the generation; the stored object, the RV counter
    and the watch stay unchanged; conflicts are still reported.
    """
    widgets = register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    made = fake_apiserver.apply(widgets, widget("a", color="red"), field_manager="alice")
    before = snapshot(fake_apiserver)
    rv = made["metadata"]["resourceVersion"]
    async with watch(fake_apiserver, resourceVersion=before[0]) as stream:
        put = await api.replace_namespaced_custom_object(
            GROUP, VERSION, "default", "widgets", "a", {**made, "spec": {"color": "green"}},
            dry_run="All",
        )  # fmt: skip
        assert put["spec"] == {"color": "green"}
        assert put["metadata"]["generation"] == 2
        assert put["metadata"]["resourceVersion"] == rv
        patched = await api.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "widgets", "a", {"spec": {"size": 2}},
            dry_run="All", _content_type="application/merge-patch+json",
        )  # fmt: skip
        assert patched["spec"] == {"color": "red", "size": 2}
        applied = await api.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "widgets", "a", widget("a", color="red", size=9),
            dry_run="All", field_manager="alice", _content_type=APPLY,
        )  # fmt: skip
        assert applied["spec"] == {"color": "red", "size": 9}
        with pytest.raises(ApiException) as err:
            await api.patch_namespaced_custom_object(
                GROUP, VERSION, "default", "widgets", "a", widget("a", color="blue"),
                dry_run="All", field_manager="bob", _content_type=APPLY,
            )  # fmt: skip
        assert err.value.status == 409
        assert snapshot(fake_apiserver) == before
        assert await stream.silent(0.1)


async def test_dry_run_create_by_apply(fake_apiserver: FakeApiServer) -> None:
    """A dry-run apply of a missing object answers 201 and creates nothing."""
    register_widgets(fake_apiserver)
    before = snapshot(fake_apiserver)
    code, body = await request(
        fake_apiserver, "PATCH", f"{WIDGETS}/new?fieldManager=m&dryRun=All", widget("new"), APPLY
    )
    assert code == 201
    assert body["metadata"]["name"] == "new"
    assert snapshot(fake_apiserver) == before


async def test_dry_run_delete_and_deletecollection(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A dry-run DELETE, of one object or a collection, removes nothing.

    dryRun may come in the query or the DeleteOptions body; the answer is what the delete
    would answer (Status Success, the marked object, or the list).
    """
    widgets = register_widgets(fake_apiserver)
    api = client.CustomObjectsApi(k8s_api_client)
    made = fake_apiserver.create(widgets, widget("a"))
    fake_apiserver.create(widgets, {"metadata": {"name": "b", "finalizers": ["x.io/y"]}})
    before = snapshot(fake_apiserver)
    gone = await api.delete_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", "a", dry_run="All"
    )
    assert gone["status"] == "Success"
    assert gone["details"]["uid"] == made["metadata"]["uid"]
    marked = await api.delete_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", "b", body={"dryRun": ["All"]}
    )
    assert marked["metadata"]["deletionTimestamp"]
    listed = await api.delete_collection_namespaced_custom_object(
        GROUP, VERSION, "default", "widgets", dry_run="All"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    assert snapshot(fake_apiserver) == before


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", WIDGETS, "CreateOptions"),
        ("PUT", f"{WIDGETS}/a", "UpdateOptions"),
        ("PATCH", f"{WIDGETS}/a", "PatchOptions"),
        ("DELETE", f"{WIDGETS}/a", "DeleteOptions"),
        ("DELETE", WIDGETS, "DeleteOptions"),
    ],
)
async def test_unknown_dry_run_value_is_invalid(
    fake_apiserver: FakeApiServer, method: str, path: str, kind: str
) -> None:
    """An unknown dryRun value answers 422 Invalid naming the options kind.

    As kube-apiserver's ValidateDryRun does, and writes nothing.
    """
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a"))
    before = snapshot(fake_apiserver)
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    code, body = await request(fake_apiserver, method, f"{path}?dryRun=yes", widget("a"), ctype)
    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        f'{kind}.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{{"yes"}}: '
        'supported values: "All"'
    )
    assert body["details"]["causes"][0]["field"] == "dryRun"
    assert snapshot(fake_apiserver) == before


async def test_delete_answers_for_builtins_and_finalizers(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A configmap DELETE answers Status Success without a group.

    An object that has finalizers answers itself: 200 with a propagationPolicy, 202 only with
    ``orphanDependents: false`` (the DELETE handler's rule).
    """
    core = client.CoreV1Api(k8s_api_client)
    made = await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cm"}, "data": {"k": "v"}}
    )
    gone = await core.delete_namespaced_config_map("cm", "default")
    assert gone.status == "Success"
    assert gone.details.name == "cm"
    assert gone.details.kind == "configmaps"
    assert gone.details.group is None
    assert gone.details.uid == made.metadata.uid
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "f", "finalizers": ["x.io/y"]}})
    code, body = await request(
        fake_apiserver, "DELETE", f"{WIDGETS}/f", {"propagationPolicy": "Background"}
    )
    assert code == 200
    assert body["metadata"]["deletionTimestamp"]
    code, body = await request(
        fake_apiserver, "DELETE", f"{WIDGETS}/f", {"orphanDependents": False}
    )
    assert code == 202
    assert body["metadata"]["deletionTimestamp"]


async def test_managed_fields_on_builtins(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Built-in objects carry managedFields too (ObjectMeta's label map is granular)."""
    core = client.CoreV1Api(k8s_api_client)
    made = await core.create_namespaced_config_map(
        "default",
        {"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}},
        field_manager="maker",
    )
    [entry] = made.metadata.managed_fields
    assert entry.manager == "maker"
    assert entry.fields_v1 == {
        "f:data": {".": {}, "f:k": {}},
        "f:metadata": {"f:labels": {".": {}, "f:a": {}}},
    }


async def test_last_bookmark_before_timeout_repeats_a_sent_rv(
    fake_apiserver: FakeApiServer,
) -> None:
    """The bookmark due before timeoutSeconds may repeat an RV the client already has.

    It goes out whenever the server's RV is newer than the watch's start RV.
    """
    widgets = register_widgets(fake_apiserver)
    start = fake_apiserver.resource_version
    made = fake_apiserver.create(widgets, widget("a"))
    rv = made["metadata"]["resourceVersion"]
    # timeoutSeconds=2: the last call (2 s before the end) is due at once.
    async with watch(
        fake_apiserver, resourceVersion=start, allowWatchBookmarks="true", timeoutSeconds=2
    ) as stream:
        added, mark = await stream.events(2, timeout=1.5)
    assert (added["type"], added["object"]["metadata"]["resourceVersion"]) == ("ADDED", rv)
    assert (mark["type"], mark["object"]["metadata"]["resourceVersion"]) == ("BOOKMARK", rv)
    assert orjson.dumps(mark["object"]["metadata"]) == orjson.dumps({"resourceVersion": rv})
