"""kubectl against FakeApiServer: namespaces (create, delete with content) and events."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fakeserver_helpers import register_widgets, widget
from test_fake_kubectl import Kubectl

from crwatch.testing import FakeApiServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.kubectl,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH"),
]


@pytest.fixture
def kubectl(fake_apiserver: FakeApiServer, tmp_path: Path) -> Kubectl:
    """Kubectl bound to the fake server."""
    return Kubectl(fake_apiserver, tmp_path)


async def test_kubectl_create_and_delete_namespace_with_content(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl create namespace, objects in it, delete namespace: all of them are gone.

    kubectl writes the Namespace and ConfigMap as protobuf; its delete waits until the
    namespace is gone, which happens once its content is.
    """
    widgets = register_widgets(fake_apiserver)
    out = await kubectl.run("create", "namespace", "team")
    assert b"namespace/team created" in out.stdout
    await kubectl.run("create", "configmap", "settings", "-n", "team", "--from-literal=a=b")
    fake_apiserver.create(widgets, widget("w1"), namespace="team")
    fake_apiserver.create(widgets, widget("w2"), namespace="default")
    refused = await kubectl.run("create", "configmap", "x", "-n", "nope", check=False)
    assert refused.returncode == 1
    assert b'namespaces "nope" not found' in refused.stderr
    out = await kubectl.run("delete", "namespace", "team", "--timeout=20s")
    assert b'namespace "team" deleted' in out.stdout
    assert [w["metadata"]["name"] for w in fake_apiserver.list(widgets)] == ["w2"]
    configmaps = fake_apiserver.resource("", "v1", "configmaps")
    assert fake_apiserver.list(configmaps, namespace="team") == []
    gone = await kubectl.run("get", "namespace", "team", check=False)
    assert b'namespaces "team" not found' in gone.stderr


async def test_kubectl_sees_a_namespace_held_by_a_finalizer(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """A finalizer in a deleted namespace keeps it Terminating, refusing new objects (403).

    Once the finalizer is removed, the object and the namespace go.
    """
    widgets = register_widgets(fake_apiserver)
    await kubectl.run("create", "namespace", "team")
    held = widget("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    fake_apiserver.create(widgets, held, namespace="team")
    out = await kubectl.run("delete", "namespace", "team", "--wait=false")
    assert b'namespace "team" deleted' in out.stdout
    out = await kubectl.run("get", "namespace", "team", "-o", "jsonpath={.status.phase}")
    assert out.stdout == b"Terminating"
    late = await kubectl.run("create", "configmap", "late", "-n", "team", check=False)
    assert late.returncode == 1
    assert (
        b'configmaps "late" is forbidden: unable to create new content in namespace team '
        b"because it is being terminated"
    ) in late.stderr
    fake_apiserver.patch(widgets, "held", {"metadata": {"finalizers": None}}, namespace="team")
    gone = await kubectl.run("get", "namespace", "team", check=False)
    assert b'namespaces "team" not found' in gone.stderr
    assert fake_apiserver.list(widgets) == []


async def test_kubectl_get_events(fake_apiserver: FakeApiServer, kubectl: Kubectl) -> None:
    """Kubectl get events lists recorded Events (both APIs' writes) in the namespace."""
    events = fake_apiserver.resource("", "v1", "events")
    fake_apiserver.create(
        events,
        {
            "metadata": {"name": "w1.1"},
            "involvedObject": {"kind": "Widget", "name": "w1", "namespace": "default"},
            "reason": "Scaled",
            "message": "scaled to 3",
            "type": "Normal",
        },
    )
    fake_apiserver.create(
        fake_apiserver.resource("events.k8s.io", "v1", "events"),
        {
            "metadata": {"name": "w1.2"},
            "regarding": {"kind": "Widget", "name": "w1", "namespace": "default"},
            "reason": "Slow",
            "note": "took too long",
            "type": "Warning",
            "eventTime": "2026-01-02T03:04:05.000000Z",
            "action": "Reconcile",
            "reportingController": "example.com/widgets",
            "reportingInstance": "pod-1",
        },
    )
    out = await kubectl.run("get", "events", "-o", "name")
    assert out.stdout.split() == [b"event/w1.1", b"event/w1.2"]
    out = await kubectl.run("get", "events", "-o", "jsonpath={.items[*].message}")
    assert out.stdout == b"scaled to 3 took too long"


async def test_kubectl_describe_shows_the_objects_events(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl describe finds an object's Events by their involvedObject field selectors."""
    widgets = register_widgets(fake_apiserver)
    obj = fake_apiserver.create(widgets, widget("w1", size=1))
    fake_apiserver.create(widgets, widget("w2", size=1))
    for name, target in (("w1.1", obj), ("w2.1", fake_apiserver.get(widgets, "w2"))):
        fake_apiserver.create(
            ("", "v1", "events"),
            {
                "metadata": {"name": name},
                "involvedObject": {
                    "apiVersion": "example.com/v1",
                    "kind": "Widget",
                    "name": target["metadata"]["name"],
                    "namespace": "default",
                    "uid": target["metadata"]["uid"],
                },
                "reason": "Scaled",
                "message": f"{name} scaled",
                "type": "Normal",
                "source": {"component": "widget-controller"},
                "count": 2,
            },
        )
    out = await kubectl.run("describe", "widget", "w1")
    assert b"w1.1 scaled" in out.stdout
    assert b"widget-controller" in out.stdout
    assert b"w2.1 scaled" not in out.stdout
