"""LIST semantics of FakeApiServer (docs/protocol.md), over raw HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from fakeserver_helpers import ALL_WIDGETS, WIDGETS, get_json, register_widgets, widget
from kubernetes_asyncio import client

from crwatch.testing import FakeApiServer, ResourceType

pytestmark = pytest.mark.anyio

CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


def _fill(server: FakeApiServer, names: list[str], namespace: str = "default") -> ResourceType:
    try:
        widgets = server.resource("example.com", "v1", "widgets")
    except KeyError:
        widgets = register_widgets(server)
    for name in names:
        server.create(widgets, widget(name), namespace=namespace)
    return widgets


def _names(body: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


async def test_list_shape(fake_apiserver: FakeApiServer) -> None:
    """A CR list has apiVersion, listKind, continue "" and the current RV; items have GVK."""
    _fill(fake_apiserver, ["b", "a"])
    status, body, headers = await get_json(fake_apiserver, WIDGETS)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body["apiVersion"] == "example.com/v1"
    assert body["kind"] == "WidgetList"
    assert body["metadata"] == {
        "continue": "",
        "resourceVersion": str(fake_apiserver.resource_version),
    }
    assert _names(body) == ["a", "b"]
    assert all(i["apiVersion"] == "example.com/v1" and i["kind"] == "Widget" for i in body["items"])


async def test_list_empty_and_unknown_namespace(fake_apiserver: FakeApiServer) -> None:
    """An empty list has items [] (never null); an unknown namespace lists empty."""
    register_widgets(fake_apiserver)
    _, body, _ = await get_json(fake_apiserver, "/apis/example.com/v1/namespaces/nosuch/widgets")
    assert body["items"] == []


async def test_list_all_namespaces_in_key_order(fake_apiserver: FakeApiServer) -> None:
    """Listing across namespaces returns namespace/name key order."""
    _fill(fake_apiserver, ["z"], "b-ns")
    _fill(fake_apiserver, ["y", "a"], "a-ns")
    _, body, _ = await get_json(fake_apiserver, ALL_WIDGETS)
    keys = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]]
    assert keys == [("a-ns", "a"), ("a-ns", "y"), ("b-ns", "z")]


async def test_list_rv_zero_ignores_limit(fake_apiserver: FakeApiServer) -> None:
    """RV "0" is served from the "cache": limit is ignored, no continue token."""
    _fill(fake_apiserver, ["a", "b", "c"])
    _, body, _ = await get_json(fake_apiserver, WIDGETS, {"resourceVersion": "0", "limit": 1})
    assert _names(body) == ["a", "b", "c"]
    assert body["metadata"]["continue"] == ""


async def test_list_exact_serves_old_state(fake_apiserver: FakeApiServer) -> None:
    """resourceVersionMatch=Exact returns the state at exactly that RV."""
    widgets = _fill(fake_apiserver, ["a", "b"])
    rv = fake_apiserver.resource_version
    fake_apiserver.delete(widgets, "a")
    fake_apiserver.patch(widgets, "b", {"spec": {"size": 5}})
    fake_apiserver.create(widgets, widget("c"))
    _, body, _ = await get_json(
        fake_apiserver, WIDGETS, {"resourceVersion": rv, "resourceVersionMatch": "Exact"}
    )
    assert body["metadata"]["resourceVersion"] == str(rv)
    assert _names(body) == ["a", "b"]
    assert body["items"][1]["spec"] == {}
    _, paged, _ = await get_json(fake_apiserver, WIDGETS, {"resourceVersion": rv, "limit": 10})
    assert paged["metadata"]["resourceVersion"] == str(rv)  # RV=N with limit means Exact
    _, newer, _ = await get_json(
        fake_apiserver, WIDGETS, {"resourceVersion": rv, "resourceVersionMatch": "NotOlderThan"}
    )
    assert newer["metadata"]["resourceVersion"] == str(fake_apiserver.resource_version)
    assert _names(newer) == ["b", "c"]


async def test_list_exact_compacted_is_410(fake_apiserver: FakeApiServer) -> None:
    """An Exact list at a compacted RV is HTTP 410 Expired."""
    widgets = _fill(fake_apiserver, ["a"])
    rv = fake_apiserver.resource_version
    fake_apiserver.patch(widgets, "a", {"spec": {"x": 1}})
    fake_apiserver.compact()
    status, body, _ = await get_json(
        fake_apiserver, WIDGETS, {"resourceVersion": rv, "resourceVersionMatch": "Exact"}
    )
    assert status == 410
    assert body["reason"] == "Expired"
    assert body["message"] == "The resourceVersion for the provided list is too old."


async def test_list_future_rv_is_504_after_wait(fake_apiserver: FakeApiServer) -> None:
    """A list at a future RV waits (knob) and then answers 504 Too large resource version."""
    register_widgets(fake_apiserver)
    future = fake_apiserver.resource_version + 100
    for params in (
        {"resourceVersion": future},
        {"resourceVersion": future, "resourceVersionMatch": "Exact"},
        {"resourceVersion": future, "resourceVersionMatch": "NotOlderThan"},
    ):
        status, body, headers = await get_json(fake_apiserver, WIDGETS, params)
        assert status == 504
        assert body["reason"] == "Timeout"
        assert body["message"] == (
            f"Timeout: Too large resource version: {future}, "
            f"current: {fake_apiserver.resource_version}"
        )
        assert body["details"]["causes"] == [
            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
        ]
        assert body["details"]["retryAfterSeconds"] == 1
        assert headers["Retry-After"] == "1"


async def test_list_future_rv_served_once_reached() -> None:
    """A list at a future RV is served when the RV is reached during the wait."""
    import anyio

    async with FakeApiServer(too_large_rv_wait=5) as server:
        widgets = register_widgets(server)
        target = server.resource_version + 1
        async with anyio.create_task_group() as tg:

            async def write_soon() -> None:
                # Once the list has arrived it is waiting for the RV: this write is what it
                # waits for (not a write that happened to land before the GET).
                await server.wait_for_request(verb="list", resource="widgets")
                server.create(widgets, widget("late"))

            tg.start_soon(write_soon)
            status, body, _ = await get_json(server, WIDGETS, {"resourceVersion": target})
        assert status == 200
        assert _names(body) == ["late"]


@pytest.mark.parametrize(
    ("params", "field_name"),
    [
        ({"resourceVersionMatch": "Exact"}, "resourceVersionMatch"),
        ({"resourceVersionMatch": "NotOlderThan", "continue": "x"}, "resourceVersionMatch"),
        ({"resourceVersion": "5", "resourceVersionMatch": "Newest"}, "resourceVersionMatch"),
        ({"resourceVersion": "0", "resourceVersionMatch": "Exact"}, "resourceVersionMatch"),
        ({"sendInitialEvents": "true"}, "sendInitialEvents"),
    ],
)
async def test_list_option_validation_is_422(
    fake_apiserver: FakeApiServer, params: dict[str, str], field_name: str
) -> None:
    """Bad list parameter combinations are 422 Invalid on ListOptions.meta.k8s.io (§1.4)."""
    register_widgets(fake_apiserver)
    status, body, _ = await get_json(fake_apiserver, WIDGETS, params)
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "ListOptions"
    assert body["details"]["group"] == "meta.k8s.io"
    assert field_name in [c["field"] for c in body["details"]["causes"]]


@pytest.mark.parametrize(
    "params",
    [
        {"resourceVersion": "abc"},
        {"continue": "not-a-token!"},
        {
            "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiJhIn0",
            "resourceVersion": "3",
        },
        {"labelSelector": "a in (b"},
        {"fieldSelector": "spec.size=1"},
        {"fieldSelector": "nonsense"},
    ],
)
async def test_list_bad_parameters_are_400(
    fake_apiserver: FakeApiServer, params: dict[str, str]
) -> None:
    """Unparsable RVs, tokens and selectors, and unsupported fields, are 400 BadRequest."""
    register_widgets(fake_apiserver)
    status, body, _ = await get_json(fake_apiserver, WIDGETS, params)
    assert status == 400, body
    assert body["reason"] == "BadRequest"


async def test_unsupported_field_message(fake_apiserver: FakeApiServer) -> None:
    """An unknown field in a field selector names the field."""
    register_widgets(fake_apiserver)
    _, body, _ = await get_json(fake_apiserver, WIDGETS, {"fieldSelector": "spec.size=1"})
    assert body["message"] == "field label not supported: spec.size"


async def test_pagination_consistent_snapshot(fake_apiserver: FakeApiServer) -> None:
    """Pages share one RV, ignore later writes, count remaining items, end with continue ""."""
    widgets = _fill(fake_apiserver, ["a", "b", "c", "d", "e"])
    rv = str(fake_apiserver.resource_version)
    _, first, _ = await get_json(fake_apiserver, WIDGETS, {"limit": 2})
    assert _names(first) == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3
    fake_apiserver.delete(widgets, "c")
    fake_apiserver.create(widgets, widget("bb"))
    seen = _names(first)
    token = first["metadata"]["continue"]
    while token:
        _, page, _ = await get_json(fake_apiserver, WIDGETS, {"limit": 2, "continue": token})
        assert page["metadata"]["resourceVersion"] == rv
        seen += _names(page)
        token = page["metadata"]["continue"]
        assert "remainingItemCount" not in page["metadata"] or token
    assert seen == ["a", "b", "c", "d", "e"]


async def test_pagination_through_kubernetes_asyncio(k8s_api_client: Any) -> None:
    """kubernetes-asyncio can page through a list with limit/_continue."""
    api = client.CustomObjectsApi(k8s_api_client)
    await client.ApiextensionsV1Api(k8s_api_client).create_custom_resource_definition(
        {
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    for i in range(5):
        await api.create_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", widget(f"w{i}")
        )
    names: list[str] = []
    token = None
    while True:
        page = await api.list_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", limit=2, _continue=token
        )
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert names == [f"w{i}" for i in range(5)]


async def test_pagination_with_selector_has_no_remaining_count(
    fake_apiserver: FakeApiServer,
) -> None:
    """RemainingItemCount is set only when no selector is used."""
    widgets = register_widgets(fake_apiserver)
    for name in "abcd":
        fake_apiserver.create(widgets, {"metadata": {"name": name, "labels": {"x": "1"}}})
    _, page, _ = await get_json(fake_apiserver, WIDGETS, {"limit": 1, "labelSelector": "x=1"})
    assert page["metadata"]["continue"]
    assert "remainingItemCount" not in page["metadata"]


async def test_expired_continue_token(fake_apiserver: FakeApiServer) -> None:
    """After compaction a continue token is 410 Expired with a fresh token at latest RV."""
    widgets = _fill(fake_apiserver, ["a", "b", "c"])
    _, first, _ = await get_json(fake_apiserver, WIDGETS, {"limit": 1})
    fake_apiserver.create(widgets, widget("bb"))
    fake_apiserver.compact()
    status, body, _ = await get_json(
        fake_apiserver, WIDGETS, {"limit": 1, "continue": first["metadata"]["continue"]}
    )
    assert status == 410
    assert body["reason"] == "Expired"
    assert body["message"] == CONTINUE_EXPIRED
    fresh = body["metadata"]["continue"]
    _, rest, _ = await get_json(fake_apiserver, WIDGETS, {"continue": fresh})
    assert _names(rest) == ["b", "bb", "c"]
    assert rest["metadata"]["resourceVersion"] == str(fake_apiserver.resource_version)


async def test_label_selectors_on_list(fake_apiserver: FakeApiServer) -> None:
    """Label selectors filter lists with set-based and equality requirements."""
    widgets = register_widgets(fake_apiserver)
    for name, labels in (("a", {"tier": "edge"}), ("b", {"tier": "core"}), ("c", {})):
        fake_apiserver.create(widgets, {"metadata": {"name": name, "labels": labels}})
    cases = {
        "tier=edge": ["a"],
        "tier!=edge": ["b", "c"],
        "tier in (edge,core)": ["a", "b"],
        "tier notin (edge)": ["b", "c"],
        "tier": ["a", "b"],
        "!tier": ["c"],
    }
    for selector, expected in cases.items():
        _, body, _ = await get_json(fake_apiserver, WIDGETS, {"labelSelector": selector})
        assert _names(body) == expected, selector


async def test_field_selectors_on_list(fake_apiserver: FakeApiServer) -> None:
    """metadata.name, metadata.namespace and CRD selectableFields filter lists."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("a", color="red"))
    fake_apiserver.create(widgets, widget("b", color="blue"))
    fake_apiserver.create(widgets, widget("c"), namespace="other")
    cases = {
        "spec.color=red": ["a"],
        "spec.color!=red": ["b", "c"],
        "metadata.name=b": ["b"],
        "metadata.namespace=other": ["c"],
        "metadata.namespace!=other,spec.color==blue": ["b"],
    }
    for selector, expected in cases.items():
        _, body, _ = await get_json(fake_apiserver, ALL_WIDGETS, {"fieldSelector": selector})
        assert _names(body) == expected, selector
