"""Tests of the single-object requests of ``crwatch.Client``, over HTTP against FakeApiServer.

get, create, replace, patch, apply, the status subresource and delete, with errors typed as
the watch path types them.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch
from crwatch._writes import delete_request, patch_request
from crwatch.testing import FakeApiServer, ResourceType

pytestmark = pytest.mark.anyio

TOKEN = "writes-t0ken"
WIDGETS = crwatch.Resource("example.com", "v1", "widgets", kind="Widget", namespaced=True)
CONFIGMAPS = crwatch.Resource("", "v1", "configmaps", kind="ConfigMap", namespaced=True)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeApiServer, ResourceType]]:
    # A token: the writes must carry the ApiClient's credentials, as the watch does.
    async with FakeApiServer(token=TOKEN) as server:
        rtype = server.register_crd(
            group="example.com",
            version="v1",
            plural="widgets",
            kind="Widget",
            status_subresource=True,
        )
        yield server, rtype


@pytest.fixture
async def client(
    server: tuple[FakeApiServer, ResourceType], tmp_path: Path
) -> AsyncIterator[crwatch.Client]:
    async with crwatch.Client.from_kubeconfig(server[0].kubeconfig(tmp_path / "kc")) as client:
        yield client


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": dict(spec)}


async def test_create_then_get_by_name_and_by_object(client: crwatch.Client) -> None:
    """Create fills apiVersion/kind and returns the stored object; get reads it by name or object.

    The caller's dict is not modified.
    """
    mine = widget("a", size=1)
    created = await client.create(WIDGETS, mine)
    assert mine == widget("a", size=1)
    assert created["apiVersion"] == "example.com/v1"
    assert created["kind"] == "Widget"
    assert created["metadata"]["uid"]
    assert created["spec"] == {"size": 1}
    by_name = await client.get(WIDGETS, "a", namespace="default")
    by_object = await client.get(WIDGETS, created)
    assert by_name == by_object == created


async def test_create_of_an_existing_name_is_a_conflict(client: crwatch.Client) -> None:
    """A second create of one name raises ConflictError with reason AlreadyExists."""
    await client.create(WIDGETS, widget("a"))
    with pytest.raises(crwatch.ConflictError) as info:
        await client.create(WIDGETS, widget("a"))
    assert info.value.reason == "AlreadyExists"
    assert info.value.verb == "create"
    assert info.value.resource == "widgets.v1.example.com"


async def test_invalid_object_raises_invalid_error_with_causes(client: crwatch.Client) -> None:
    """A name the server refuses gives InvalidError whose details carry the causes."""
    with pytest.raises(crwatch.InvalidError) as info:
        await client.create(WIDGETS, widget("Not_A_Name"))
    causes = info.value.details["causes"]
    assert causes[0]["field"] == "metadata.name"


async def test_get_of_a_missing_object_is_not_found(client: crwatch.Client) -> None:
    """A get of a name that does not exist raises NotFoundError (a LookupError)."""
    with pytest.raises(crwatch.NotFoundError) as info:
        await client.get(WIDGETS, "nope", namespace="default")
    assert isinstance(info.value, LookupError)
    assert info.value.reason == "NotFound"


async def test_replace_checks_the_resource_version(client: crwatch.Client) -> None:
    """Replace succeeds with the stored resourceVersion; a stale one raises ConflictError."""
    created = await client.create(WIDGETS, widget("a", size=1))
    updated = await client.replace(WIDGETS, {**created, "spec": {"size": 2}})
    assert updated["spec"] == {"size": 2}
    assert updated["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    with pytest.raises(crwatch.ConflictError):
        await client.replace(WIDGETS, {**created, "spec": {"size": 3}})
    assert (await client.get(WIDGETS, created))["spec"] == {"size": 2}


async def test_merge_patch_is_the_default_and_works_on_a_custom_resource(
    client: crwatch.Client,
) -> None:
    """A mapping patch is a JSON merge patch (a custom resource refuses strategic merge)."""
    await client.create(WIDGETS, widget("a", size=1, color="red"))
    patched = await client.patch(
        WIDGETS, "a", {"spec": {"size": 5, "color": None}}, namespace="default"
    )
    assert patched["spec"] == {"size": 5}


async def test_json_patch_from_a_list_of_operations(client: crwatch.Client) -> None:
    """A list patch is a JSON patch; a failing ``test`` operation raises InvalidError (422)."""
    created = await client.create(WIDGETS, widget("a", items=["x"]))
    patched = await client.patch(
        WIDGETS,
        created,
        [
            {"op": "test", "path": "/spec/items", "value": ["x"]},
            {"op": "add", "path": "/spec/items/-", "value": "y"},
        ],
    )
    assert patched["spec"]["items"] == ["x", "y"]
    with pytest.raises(crwatch.InvalidError):
        await client.patch(WIDGETS, created, [{"op": "test", "path": "/spec/items", "value": []}])


async def test_strategic_patch_is_for_built_in_types(client: crwatch.Client) -> None:
    """patch_type="strategic" patches a configmap, and a custom resource refuses it (415)."""
    await client.create(
        CONFIGMAPS, {"metadata": {"name": "c"}, "data": {"a": "1"}}, namespace="default"
    )
    patched = await client.patch(
        CONFIGMAPS, "c", {"data": {"b": "2"}}, namespace="default", patch_type="strategic"
    )
    assert patched["data"] == {"a": "1", "b": "2"}
    await client.create(WIDGETS, widget("a"))
    with pytest.raises(crwatch.ApiError) as info:
        await client.patch(WIDGETS, "a", {"spec": {}}, namespace="default", patch_type="strategic")
    assert info.value.code == 415


@pytest.mark.parametrize(
    "patch", [{"spec": {"size": 9}}, [{"op": "add", "path": "/spec/size", "value": 9}]]
)
async def test_patch_resource_version_precondition(client: crwatch.Client, patch: Any) -> None:
    """A merge or JSON patch with a stale resource_version raises ConflictError.

    It changes nothing then; with the current resourceVersion it applies.
    """
    created = await client.create(WIDGETS, widget("a", size=1))
    rv = created["metadata"]["resourceVersion"]
    await client.patch(WIDGETS, created, {"spec": {"size": 2}})
    with pytest.raises(crwatch.ConflictError):
        await client.patch(WIDGETS, created, patch, resource_version=rv)
    current = await client.get(WIDGETS, created)
    assert current["spec"] == {"size": 2}
    done = await client.patch(
        WIDGETS, created, patch, resource_version=current["metadata"]["resourceVersion"]
    )
    assert done["spec"] == {"size": 9}


async def test_patch_status_touches_only_the_status(client: crwatch.Client) -> None:
    """Patch_status merges into .status through the subresource; spec stays.

    A list is a JSON patch; a stale resource_version is a conflict.
    """
    created = await client.create(WIDGETS, widget("a", size=1))
    out = await client.patch_status(WIDGETS, created, {"phase": "Ready", "seen": 1})
    assert out["status"] == {"phase": "Ready", "seen": 1}
    assert out["spec"] == {"size": 1}
    out = await client.patch_status(
        WIDGETS, created, [{"op": "replace", "path": "/status/seen", "value": 2}]
    )
    assert out["status"] == {"phase": "Ready", "seen": 2}
    with pytest.raises(crwatch.ConflictError):
        await client.patch_status(
            WIDGETS,
            created,
            {"phase": "Old"},
            resource_version=created["metadata"]["resourceVersion"],
        )
    # The main resource ignores status when the subresource is on: only patch_status sets it.
    out = await client.patch(WIDGETS, created, {"status": {"phase": "Ignored"}})
    assert out["status"]["phase"] == "Ready"


async def test_replace_status_puts_the_status_subresource(client: crwatch.Client) -> None:
    """Replace_status replaces status only (a spec change in the body is ignored)."""
    created = await client.create(WIDGETS, widget("a", size=1))
    out = await client.replace_status(
        WIDGETS, {**created, "spec": {"size": 100}, "status": {"phase": "Done"}}
    )
    assert out["status"] == {"phase": "Done"}
    assert out["spec"] == {"size": 1}
    with pytest.raises(crwatch.ConflictError):
        await client.replace_status(WIDGETS, {**created, "status": {"phase": "Stale"}})


async def test_delete_with_preconditions(client: crwatch.Client) -> None:
    """A delete with a wrong uid or resourceVersion raises ConflictError and keeps the object.

    With the right ones it deletes; deleting again is NotFoundError.
    """
    created = await client.create(WIDGETS, widget("a"))
    meta = created["metadata"]
    with pytest.raises(crwatch.ConflictError):
        await client.delete(WIDGETS, created, uid="not-the-uid")
    with pytest.raises(crwatch.ConflictError):
        await client.delete(WIDGETS, created, resource_version="1")
    await client.get(WIDGETS, created)
    await client.delete(
        WIDGETS,
        "a",
        namespace="default",
        uid=meta["uid"],
        resource_version=meta["resourceVersion"],
        propagation_policy="Foreground",
        grace_period_seconds=0,
    )
    with pytest.raises(crwatch.NotFoundError):
        await client.get(WIDGETS, created)
    with pytest.raises(crwatch.NotFoundError):
        await client.delete(WIDGETS, created)


async def test_delete_of_an_object_with_finalizers_marks_it(client: crwatch.Client) -> None:
    """An object with finalizers is only marked: the answer carries deletionTimestamp."""
    await client.create(
        WIDGETS,
        {**widget("a"), "metadata": {"name": "a", "finalizers": ["example.com/x"]}},
        namespace="default",
    )
    out = await client.delete(WIDGETS, "a", namespace="default")
    assert out["metadata"]["deletionTimestamp"]
    assert (await client.get(WIDGETS, out))["metadata"]["deletionTimestamp"]


async def test_forbidden_write_raises_forbidden_error(
    client: crwatch.Client, server: tuple[FakeApiServer, ResourceType]
) -> None:
    """A write the server forbids raises ForbiddenError (a PermissionError) naming the verb."""
    await client.create(WIDGETS, widget("a"))
    server[0].deny(verb="patch", resource="widgets")
    with pytest.raises(crwatch.ForbiddenError) as info:
        await client.patch(WIDGETS, "a", {"spec": {"x": 1}}, namespace="default")
    assert isinstance(info.value, PermissionError)
    assert info.value.verb == "patch"


async def test_server_errors_and_faults_are_typed(
    client: crwatch.Client, server: tuple[FakeApiServer, ResourceType]
) -> None:
    """A 429 with Retry-After on a write raises TooManyRequestsError carrying retry_after."""
    from crwatch.testing import Fault

    server[0].faults.add(Fault.status(429, retry_after=3), verb="create", times=1)
    with pytest.raises(crwatch.TooManyRequestsError) as info:
        await client.create(WIDGETS, widget("a"))
    assert info.value.retry_after == 3
    # The fault fired once: the same write now succeeds.
    await client.create(WIDGETS, widget("a"))


async def test_bad_arguments_raise_before_any_request(
    client: crwatch.Client, server: tuple[FakeApiServer, ResourceType]
) -> None:
    """Bad input is an InvalidOptionError at call time, and no request reaches the server."""
    before = server[0].statistics().requests
    bad_calls = [
        client.get(WIDGETS, "a"),  # namespaced, no namespace
        client.get(WIDGETS, "a/b", namespace="default"),
        client.get(WIDGETS, "..", namespace="default"),
        client.get(WIDGETS, "a", namespace="Bad_NS"),
        client.get(WIDGETS, {"metadata": {}}, namespace="default"),
        client.get(WIDGETS, widget("a"), namespace="other"),  # contradicts the object
        client.get("widgets", "a", namespace="default"),  # type: ignore[arg-type]
        client.patch(WIDGETS, "a", [{"op": "add"}], namespace="default"),
        client.patch(WIDGETS, "a", ["x"], namespace="default", patch_type="merge"),
        client.patch(WIDGETS, "a", {}, namespace="default", patch_type="bogus"),  # type: ignore[arg-type]
        client.patch(WIDGETS, "a", {}, namespace="default", resource_version=""),
        client.patch_status(WIDGETS, "a", "Ready", namespace="default"),
        client.create(
            WIDGETS,
            {**widget("a"), "metadata": {"name": "a", "resourceVersion": "3"}},
            namespace="default",
        ),
        client.apply(WIDGETS, widget("a"), field_manager=""),
        client.apply(WIDGETS, widget("a"), field_manager="x" * 129),
        client.apply(
            crwatch.Resource("example.com", "v1", "widgets"), widget("a"), field_manager="m"
        ),
        client.delete(WIDGETS, "a", namespace="default", propagation_policy="Never"),  # type: ignore[arg-type]
        client.delete(WIDGETS, "a", namespace="default", grace_period_seconds=-1),
        client.create(WIDGETS, widget("a"), dry_run="yes"),  # type: ignore[arg-type]
        client.get(
            crwatch.Resource("", "v1", "namespaces", namespaced=False), "x", namespace="default"
        ),
    ]
    for call in bad_calls:
        with pytest.raises(crwatch.InvalidOptionError):
            await call
    with pytest.raises(crwatch.InvalidOptionError, match="not JSON"):
        await client.create(WIDGETS, widget("a", when=datetime.datetime.now()))
    assert server[0].statistics().requests == before


async def test_a_client_that_is_not_connected_refuses_writes(tmp_path: Path) -> None:
    """Writes on a client before ``async with`` raise InvalidOptionError, not AttributeError."""
    async with FakeApiServer() as server:
        client = crwatch.Client.from_kubeconfig(server.kubeconfig(tmp_path / "kc"))
        with pytest.raises(crwatch.InvalidOptionError, match="not connected"):
            await client.get(WIDGETS, "a", namespace="default")


def test_request_builders_carry_every_option() -> None:
    """The DELETE body holds DeleteOptions; dryRun=All goes in the query.

    DeleteOptions carry preconditions, propagation and grace period; the patch content type
    follows the patch type.
    """
    request = delete_request(
        WIDGETS,
        "a",
        namespace="ns",
        uid="u",
        resource_version="7",
        propagation_policy="Orphan",
        grace_period_seconds=5,
        dry_run=True,
    )
    assert request.path == "/apis/example.com/v1/namespaces/ns/widgets/a"
    assert request.body == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": "u", "resourceVersion": "7"},
        "propagationPolicy": "Orphan",
        "gracePeriodSeconds": 5,
    }
    assert request.query == (("dryRun", "All"),)
    kinds = {
        "merge": ({"a": 1}, "application/merge-patch+json"),
        "json": ([{"op": "remove", "path": "/a"}], "application/json-patch+json"),
        "strategic": ({"a": 1}, "application/strategic-merge-patch+json"),
    }
    for kind, (body, content_type) in kinds.items():
        request = patch_request(
            CONFIGMAPS,
            "c",
            body,
            namespace="ns",
            patch_type=kind,
            resource_version=None,
            dry_run=False,
            field_manager="me",
        )
        assert request.content_type == content_type
        assert request.query == (("fieldManager", "me"),)


# --- server-side apply and dryRun: how they behave against a real API server ----------------


async def test_apply_creates_updates_and_reports_conflicts(client: crwatch.Client) -> None:
    """Apply creates a missing object, and reports a field owned by another manager.

    Another manager setting the same field to another value gets ConflictError naming the
    field; force=True takes the field over.
    """
    out = await client.apply(WIDGETS, widget("a", size=1), field_manager="alpha")
    assert out["spec"] == {"size": 1}
    out = await client.apply(WIDGETS, widget("a", size=1, color="red"), field_manager="alpha")
    assert out["spec"] == {"size": 1, "color": "red"}
    with pytest.raises(crwatch.ConflictError) as info:
        await client.apply(WIDGETS, widget("a", size=2), field_manager="beta")
    assert any("spec.size" in str(c.get("field")) for c in info.value.details.get("causes", []))
    out = await client.apply(WIDGETS, widget("a", size=2), field_manager="beta", force=True)
    assert out["spec"]["size"] == 2


async def test_apply_status_sets_the_status(client: crwatch.Client) -> None:
    """Apply_status applies through the status subresource: status changes, spec does not."""
    await client.create(WIDGETS, widget("a", size=1))
    out = await client.apply_status(
        WIDGETS,
        {"metadata": {"name": "a", "namespace": "default"}, "status": {"phase": "Ready"}},
        field_manager="alpha",
    )
    assert out["status"] == {"phase": "Ready"}
    assert out["spec"] == {"size": 1}


async def test_dry_run_stores_nothing(client: crwatch.Client) -> None:
    """A dry-run create answers the object but stores nothing; a dry-run delete keeps it."""
    out = await client.create(WIDGETS, widget("a"), dry_run=True)
    assert out["metadata"]["name"] == "a"
    with pytest.raises(crwatch.NotFoundError):
        await client.get(WIDGETS, "a", namespace="default")
    await client.create(WIDGETS, widget("b"))
    await client.delete(WIDGETS, "b", namespace="default", dry_run=True)
    await client.get(WIDGETS, "b", namespace="default")


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    patch=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "metadata"), _VALUES, max_size=4
    ),
    rv=st.text(min_size=1, max_size=6),
)
def test_merge_patch_precondition_keeps_the_patch_and_the_input(
    patch: dict[str, Any], rv: str
) -> None:
    """A resource_version lands in the patch's metadata; nothing else of the patch changes.

    The caller's patch is never modified.
    """
    before = copy.deepcopy(patch)
    request = patch_request(
        WIDGETS,
        "a",
        patch,
        namespace="ns",
        patch_type=None,
        resource_version=rv,
        dry_run=False,
        field_manager=None,
    )
    assert patch == before
    body = request.body
    assert body["metadata"]["resourceVersion"] == rv
    assert {k: v for k, v in body.items() if k != "metadata"} == {
        k: v for k, v in patch.items() if k != "metadata"
    }
