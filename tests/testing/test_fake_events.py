"""core/v1 and events.k8s.io/v1 Events in FakeApiServer: one store, two APIs, real clients."""

from __future__ import annotations

from typing import Any

import pytest
from fakeserver_helpers import request, watch
from kubernetes_asyncio import client

from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T03:05:00Z"
REF = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w1", "namespace": "default"}


def core_event(name: str, **extra: Any) -> dict[str, Any]:
    """Build a core/v1 Event as an event recorder writes it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {**REF, "uid": "u-1"},
        "reason": "Scaled",
        "message": "scaled to 3",
        "type": "Normal",
        "source": {"component": "widget-controller"},
        "count": 1,
        "firstTimestamp": NOW,
        "lastTimestamp": NOW,
        # The generated events.k8s.io/v1 model refuses an Event without eventTime.
        "eventTime": "2026-01-02T03:04:05.000000Z",
        "reportingComponent": "widget-controller",
        "reportingInstance": "widget-controller-0",
        **extra,
    }


async def test_events_are_in_discovery(k8s_api_client: Any) -> None:
    """/api/v1 lists core events; /apis lists events.k8s.io with v1 and its events."""
    core = await client.CoreV1Api(k8s_api_client).get_api_resources()
    events = next(r for r in core.resources if r.name == "events")
    assert (events.kind, events.namespaced, events.short_names) == ("Event", True, ["ev"])
    groups = await client.ApisApi(k8s_api_client).get_api_versions()
    group = next(g for g in groups.groups if g.name == "events.k8s.io")
    assert group.preferred_version.group_version == "events.k8s.io/v1"
    v1 = await client.EventsV1Api(k8s_api_client).get_api_resources()
    assert [(r.name, r.kind, r.namespaced) for r in v1.resources] == [("events", "Event", True)]


async def test_core_event_is_read_through_events_k8s_io(k8s_api_client: Any) -> None:
    """An Event POSTed to core/v1 reads back through events.k8s.io/v1 with its fields mapped."""
    core = client.CoreV1Api(k8s_api_client)
    created = await core.create_namespaced_event("default", core_event("e1"))
    assert created.count == 1
    assert created.involved_object.name == "w1"
    view = await client.EventsV1Api(k8s_api_client).read_namespaced_event("e1", "default")
    assert view.regarding.name == "w1"
    assert view.regarding.uid == "u-1"
    assert view.note == "scaled to 3"
    assert view.deprecated_count == 1
    assert view.deprecated_source.component == "widget-controller"
    assert view.reporting_controller == "widget-controller"
    assert view.reporting_instance == "widget-controller-0"
    assert view.reason == "Scaled"
    assert view.metadata.uid == created.metadata.uid
    assert view.metadata.resource_version == created.metadata.resource_version


async def test_events_k8s_io_event_is_read_through_core(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """An Event created through events.k8s.io/v1 is a core/v1 Event too (and in lists)."""
    v1 = client.EventsV1Api(k8s_api_client)
    await v1.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e2"},
            "regarding": REF,
            "note": "took too long",
            "reason": "Slow",
            "type": "Warning",
            "action": "Reconcile",
            "eventTime": "2026-01-02T03:04:05.123456Z",
            "reportingController": "example.com/widgets",
            "reportingInstance": "pod-1",
            "series": {"count": 2, "lastObservedTime": "2026-01-02T03:05:00.000000Z"},
        },
    )
    core = client.CoreV1Api(k8s_api_client)
    event = await core.read_namespaced_event("e2", "default")
    assert event.involved_object.name == "w1"
    assert event.message == "took too long"
    assert event.reporting_component == "example.com/widgets"
    assert event.series.count == 2
    assert event.action == "Reconcile"
    listed = await v1.list_event_for_all_namespaces()
    assert [(e.metadata.name, e.note) for e in listed.items] == [("e2", "took too long")]
    core_list = await core.list_namespaced_event("default")
    assert [e.message for e in core_list.items] == ["took too long"]
    # The Python API serves both forms of the one store, too.
    stored = fake_apiserver.get(fake_apiserver.resource("", "v1", "events"), "e2")
    assert stored["message"] == "took too long"
    assert "note" not in stored
    v1_type = fake_apiserver.resource("events.k8s.io", "v1", "events")
    fake_apiserver.create(v1_type, {"metadata": {"name": "e3"}, "note": "from python"})
    assert fake_apiserver.get(v1_type, "e3")["note"] == "from python"
    assert [e["message"] for e in fake_apiserver.list(("", "v1", "events"))] == [
        "took too long",
        "from python",
    ]


async def test_recorder_patch_of_count_is_seen_by_both_watches(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """An event recorder PATCHes count/lastTimestamp; both APIs' watches see the change."""
    core = client.CoreV1Api(k8s_api_client)
    await core.create_namespaced_event("default", core_event("e1"))
    start = fake_apiserver.resource_version
    patched = await core.patch_namespaced_event(
        "e1", "default", {"count": 2, "lastTimestamp": LATER}
    )
    assert (patched.count, patched.message) == (2, "scaled to 3")
    async with (
        watch(fake_apiserver, "/api/v1/namespaces/default/events",
              resourceVersion=str(start)) as core_stream,
        watch(fake_apiserver, "/apis/events.k8s.io/v1/namespaces/default/events",
              resourceVersion=str(start)) as v1_stream,
    ):  # fmt: skip
        core_event_seen = await core_stream.event()
        v1_event_seen = await v1_stream.event()
    assert core_event_seen["type"] == v1_event_seen["type"] == "MODIFIED"
    assert core_event_seen["object"]["count"] == 2
    assert core_event_seen["object"]["apiVersion"] == "v1"
    assert v1_event_seen["object"]["apiVersion"] == "events.k8s.io/v1"
    assert v1_event_seen["object"]["deprecatedCount"] == 2
    assert v1_event_seen["object"]["deprecatedLastTimestamp"] == LATER
    assert "count" not in v1_event_seen["object"]


async def test_patch_and_delete_through_events_k8s_io(k8s_api_client: Any) -> None:
    """A merge patch through events.k8s.io/v1 applies to its field names; DELETE removes."""
    core = client.CoreV1Api(k8s_api_client)
    v1 = client.EventsV1Api(k8s_api_client)
    await core.create_namespaced_event("default", core_event("e1"))
    patched = await v1.patch_namespaced_event(
        "e1",
        "default",
        {"note": "scaled to 4", "deprecatedCount": 3},
        _content_type="application/merge-patch+json",
    )
    assert (patched.note, patched.deprecated_count) == ("scaled to 4", 3)
    event = await core.read_namespaced_event("e1", "default")
    assert (event.message, event.count) == ("scaled to 4", 3)
    await v1.delete_namespaced_event("e1", "default")
    assert (await core.list_namespaced_event("default")).items == []


async def test_kopf_style_post_with_generate_name(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """Posting the way kopf does: generateName, in the involved object's namespace; listable."""
    body = {
        "metadata": {"namespace": "default", "generateName": "kopf-event-"},
        "action": "Action",
        "type": "Normal",
        "reason": "Logging",
        "message": "Handler 'create_fn' succeeded.",
        "reportingComponent": "kopf",
        "reportingInstance": "dev",
        "source": {"component": "kopf"},
        "involvedObject": {**REF, "uid": "u-1"},
        "firstTimestamp": "2026-01-02T03:04:05.123456Z",
        "lastTimestamp": "2026-01-02T03:04:05.123456Z",
        "eventTime": "2026-01-02T03:04:05.123456Z",
    }
    status, created = await request(
        fake_apiserver, "POST", "/api/v1/namespaces/default/events", body
    )
    assert status == 201, created
    assert created["metadata"]["name"].startswith("kopf-event-")
    listed = await client.CoreV1Api(k8s_api_client).list_namespaced_event("default")
    assert [e.reason for e in listed.items] == ["Logging"]


async def test_involved_object_field_selectors(k8s_api_client: Any) -> None:
    """Core events answer kubectl describe's involvedObject.* field selectors."""
    core = client.CoreV1Api(k8s_api_client)
    await core.create_namespaced_event("default", core_event("e1"))
    other = core_event("e2", involvedObject={**REF, "name": "w2", "uid": "u-2"})
    await core.create_namespaced_event("default", other)
    listed = await core.list_namespaced_event(
        "default", field_selector="involvedObject.name=w1,involvedObject.kind=Widget"
    )
    assert [e.metadata.name for e in listed.items] == ["e1"]
    listed = await core.list_namespaced_event("default", field_selector="involvedObject.uid=u-2")
    assert [e.metadata.name for e in listed.items] == ["e2"]
