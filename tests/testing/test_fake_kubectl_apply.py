"""kubectl server-side apply, --dry-run=server and diff against FakeApiServer.

kubectl runs with its default validation: it reads the server's /openapi/v3 documents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fakeserver_helpers import register_widgets, widget
from test_fake_kubectl import CRD, Kubectl

from crwatch.testing import FakeApiServer, ResourceType

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.kubectl,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH"),
]


@pytest.fixture
def kubectl(fake_apiserver: FakeApiServer, tmp_path: Path) -> Kubectl:
    """Kubectl bound to the fake server."""
    return Kubectl(fake_apiserver, tmp_path)


def manifest(kubectl: Kubectl, name: str = "w1", **spec: object) -> str:
    """Write a namespaced Widget manifest; return its path."""
    body = widget(name, **spec)
    body["metadata"]["namespace"] = "default"
    return kubectl.manifest(f"{name}-{len(spec)}-{abs(hash(str(spec)))}.json", body)


def managers(server: FakeApiServer, widgets: ResourceType, name: str = "w1") -> set[str]:
    """Return the manager/operation pairs of an object's managedFields."""
    entries = server.get(widgets, name)["metadata"]["managedFields"]
    return {f"{e['manager']}/{e['operation']}" for e in entries}


async def test_kubectl_server_side_apply_and_conflicts(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl apply --server-side creates (the CRD too), updates, conflicts, then forces.

    The conflict between two field managers fails with kube's message; --force-conflicts
    moves the field to the second manager.
    """
    out = await kubectl.run("apply", "--server-side", "-f", kubectl.manifest("crd.json", CRD))
    assert (
        b"customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied"
        in out.stdout
    )
    widgets = fake_apiserver.resource("example.com", "v1", "widgets")
    out = await kubectl.run("apply", "--server-side", "-f", manifest(kubectl, size=3))
    assert b"widget.example.com/w1 serverside-applied" in out.stdout
    assert fake_apiserver.get(widgets, "w1")["spec"] == {"size": 3}
    assert managers(fake_apiserver, widgets) == {"kubectl/Apply"}
    await kubectl.run("apply", "--server-side", "-f", manifest(kubectl, size=4))
    assert fake_apiserver.get(widgets, "w1")["spec"] == {"size": 4}
    other = manifest(kubectl, size=5)
    failed = await kubectl.run(
        "apply", "--server-side", "--field-manager=other", "-f", other, check=False
    )
    assert failed.returncode == 1
    assert b'Apply failed with 1 conflict: conflict with "kubectl": .spec.size' in failed.stderr
    assert fake_apiserver.get(widgets, "w1")["spec"] == {"size": 4}
    await kubectl.run(
        "apply", "--server-side", "--field-manager=other", "--force-conflicts",
        "-f", other,
    )  # fmt: skip
    assert fake_apiserver.get(widgets, "w1")["spec"] == {"size": 5}
    fields = {
        e["manager"]: e["fieldsV1"]
        for e in fake_apiserver.get(widgets, "w1")["metadata"]["managedFields"]
    }
    # kubectl keeps .spec itself (an untyped field it applied), not .spec.size.
    assert fields == {
        "kubectl": {"f:spec": {}},
        "other": {"f:spec": {".": {}, "f:size": {}}},
    }


async def test_kubectl_server_dry_runs_change_nothing(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl create, apply (client- and server-side) and delete with --dry-run=server.

    Each reports success "(server dry run)" and leaves the stored objects and the
    resourceVersion counter as they were.
    """
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("w1", size=1))
    before = (fake_apiserver.resource_version, fake_apiserver.list(widgets))
    out = await kubectl.run("create", "--dry-run=server", "-f", manifest(kubectl, "w2", size=2))
    assert b"widget.example.com/w2 created (server dry run)" in out.stdout
    changed = manifest(kubectl, size=9)
    out = await kubectl.run("apply", "--dry-run=server", "-f", changed)
    assert b"(server dry run)" in out.stdout
    out = await kubectl.run(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server",
        "-f", changed, "-o", "jsonpath={.spec.size}",
    )  # fmt: skip
    assert out.stdout == b"9"  # the answer is the would-be object
    out = await kubectl.run("delete", "--dry-run=server", "widget", "w1")
    assert b'widget.example.com "w1" deleted (server dry run)' in out.stdout
    assert (fake_apiserver.resource_version, fake_apiserver.list(widgets)) == before


async def test_kubectl_diff_shows_the_change_and_changes_nothing(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl diff prints the change the manifest would make (a dry-run patch), exit 1."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("w1", size=1))
    before = (fake_apiserver.resource_version, fake_apiserver.list(widgets))
    out = await kubectl.run("diff", "-f", manifest(kubectl, size=2), check=False)
    assert out.returncode == 1, out.stderr  # 1: differences found
    assert b"-  size: 1" in out.stdout
    assert b"+  size: 2" in out.stdout
    assert (fake_apiserver.resource_version, fake_apiserver.list(widgets)) == before
    same = await kubectl.run("diff", "-f", manifest(kubectl, size=1), check=False)
    assert b"size" not in same.stdout


async def test_kubectl_upgrade_from_client_side_apply(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl apply --server-side after a client-side apply takes the fields over.

    As kube-apiserver does for the kubectl manager while the object matches its
    last-applied-configuration: no conflict with kubectl-client-side-apply.
    """
    widgets = register_widgets(fake_apiserver)
    await kubectl.run("apply", "-f", manifest(kubectl, color="red"))
    assert managers(fake_apiserver, widgets) == {"kubectl-client-side-apply/Update"}
    out = await kubectl.run("apply", "--server-side", "-f", manifest(kubectl, color="blue"))
    assert b"serverside-applied" in out.stdout
    assert fake_apiserver.get(widgets, "w1")["spec"] == {"color": "blue"}
    assert "kubectl/Apply" in managers(fake_apiserver, widgets)
