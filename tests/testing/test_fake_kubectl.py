"""kubectl (a real, independent client) against FakeApiServer: get, watch, apply, patch, delete."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from fakeserver_helpers import register_widgets, widget

from crwatch.testing import FakeApiServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.kubectl,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH"),
]

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"plural": "widgets", "kind": "Widget", "singular": "widget"},
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


class Kubectl:
    """Runs kubectl against one server with a private discovery cache."""

    def __init__(self, server: FakeApiServer, tmp_path: Path) -> None:
        self.kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        self.cache = tmp_path / "kube-cache"
        self.tmp_path = tmp_path

    def argv(self, *args: str) -> list[str]:
        """Full command line."""
        return [
            "kubectl",
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache}",
            "--request-timeout=20s",
            *args,
        ]

    async def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run kubectl without blocking the event loop that serves it."""
        result = await anyio.run_process(self.argv(*args), check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.decode()}{result.stdout.decode()}"
            )
        return result

    def manifest(self, name: str, body: dict[str, Any]) -> str:
        """Write a JSON manifest file; return its path."""
        path = self.tmp_path / name
        path.write_bytes(orjson.dumps(body))
        return str(path)


@pytest.fixture
def kubectl(fake_apiserver: FakeApiServer, tmp_path: Path) -> Kubectl:
    """Kubectl bound to the fake server."""
    return Kubectl(fake_apiserver, tmp_path)


async def test_kubectl_get(fake_apiserver: FakeApiServer, kubectl: Kubectl) -> None:
    """Kubectl get lists widgets and reads one with jsonpath; 404 is reported."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("w1", color="red"))
    listed = await kubectl.run("get", "widgets", "-A")
    assert b"w1" in listed.stdout
    assert b"default" in listed.stdout
    one = await kubectl.run("get", "widget", "w1", "-o", "jsonpath={.spec.color}")
    assert one.stdout == b"red"
    missing = await kubectl.run("get", "widget", "nope", check=False)
    assert missing.returncode == 1
    assert b'widgets.example.com "nope" not found' in missing.stderr
    ns = await kubectl.run("get", "namespaces", "-o", "name")
    assert b"namespace/default" in ns.stdout


@pytest.mark.parametrize(
    "fake_apiserver_options",
    [{"kubernetes_version": minor} for minor in ("1.32", "1.27", "1.33")],
    ids=["kubectl-1.32", "kubectl-1.27", "kubectl-1.33"],
)
async def test_kubectl_apply_patch_delete(fake_apiserver: FakeApiServer, kubectl: Kubectl) -> None:
    """Apply --validate=false creates then patches; patch --type merge; delete waits for 404.

    The /version minor makes the kubectl dispatcher run kubectl 1.32, 1.27 or 1.33.
    """
    crd_file = kubectl.manifest("crd.json", CRD)
    out = await kubectl.run("apply", "--validate=false", "-f", crd_file)
    assert b"created" in out.stdout
    body = widget("w1", size=3)
    w_file = kubectl.manifest("w.json", body)
    out = await kubectl.run("apply", "--validate=false", "-f", w_file)
    assert b"widget.example.com/w1 created" in out.stdout
    out = await kubectl.run("apply", "--validate=false", "-f", w_file)
    assert b"unchanged" in out.stdout
    body["spec"]["size"] = 4
    w_file = kubectl.manifest("w.json", body)
    out = await kubectl.run("apply", "--validate=false", "-f", w_file)
    assert b"configured" in out.stdout
    widgets = fake_apiserver.resource("example.com", "v1", "widgets")
    assert fake_apiserver.get(widgets, "w1")["spec"]["size"] == 4
    out = await kubectl.run(
        "patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"color":"red"}}'
    )
    assert b"widget.example.com/w1 patched" in out.stdout
    assert fake_apiserver.get(widgets, "w1")["spec"] == {"size": 4, "color": "red"}
    out = await kubectl.run(
        "patch", "widget", "w1", "--type", "merge", "-p", '{"spec":{"color":"red"}}'
    )
    assert b"patched (no change)" in out.stdout
    out = await kubectl.run("delete", "widget", "w1")
    assert b'widget.example.com "w1" deleted' in out.stdout
    assert fake_apiserver.list(widgets) == []


async def test_kubectl_delete_waits_for_finalizers(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl delete --wait follows the object with a watch until DELETED arrives."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, {"metadata": {"name": "w1", "finalizers": ["x/y"]}})
    async with anyio.create_task_group() as tg:
        results: list[subprocess.CompletedProcess[bytes]] = []

        async def delete() -> None:
            results.append(await kubectl.run("delete", "widget", "w1", "--timeout=20s"))

        tg.start_soon(delete)
        await fake_apiserver.wait_for_request(verb="delete", resource="widgets", timeout=20)
        assert fake_apiserver.get(widgets, "w1")["metadata"].get("deletionTimestamp")
        # kubectl now follows the object with a watch: finish the deletion under its eyes.
        await fake_apiserver.wait_for_watchers(1, resource=widgets, timeout=20)
        fake_apiserver.patch(widgets, "w1", {"metadata": {"finalizers": None}})
    assert b'"w1" deleted' in results[0].stdout


async def test_kubectl_get_watch(fake_apiserver: FakeApiServer, kubectl: Kubectl) -> None:
    """Kubectl get -w prints the list then live events, and exits when the server closes."""
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("w1"))
    # warm the discovery cache so the watch starts quickly
    await kubectl.run("get", "widgets")
    proc = await asyncio.create_subprocess_exec(
        *kubectl.argv("get", "widgets", "-w", "--output-watch-events"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        header = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert b"EVENT" in header
        first = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert first.split()[:2] == [b"ADDED", b"w1"]
        await fake_apiserver.wait_for_watchers(1, resource=widgets, timeout=15)
        fake_apiserver.create(widgets, widget("w2"))
        second = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert second.split()[:2] == [b"ADDED", b"w2"]
        fake_apiserver.delete(widgets, "w1")
        third = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert third.split()[:2] == [b"DELETED", b"w1"]
        await fake_apiserver.stop()  # kubectl exits when the server closes the stream
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("fake_apiserver_options", [{"token": "kubectl-token", "tls": True}])
async def test_kubectl_with_token_over_tls(fake_apiserver: FakeApiServer, kubectl: Kubectl) -> None:
    """With tls=True the kubeconfig carries the CA and token; kubectl authenticates and watches.

    (kubectl reads credentials from a kubeconfig only for TLS servers.)
    """
    assert "kubectl-token" in kubectl.kubeconfig.read_text()
    assert fake_apiserver.url.startswith("https://")
    out = await kubectl.run("get", "namespaces", "-o", "name")
    assert b"namespace/default" in out.stdout
    widgets = register_widgets(fake_apiserver)
    fake_apiserver.create(widgets, widget("w1"))
    out = await kubectl.run("get", "widgets", "-o", "name")
    assert out.stdout.strip() == b"widget.example.com/w1"


SCHEMA_CRD: dict[str, Any] = {
    **CRD,
    "spec": {
        **CRD["spec"],
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "description": "What the widget should look like.",
                                "properties": {
                                    "size": {
                                        "type": "integer",
                                        "maximum": 10,
                                        "description": "How big the widget is.",
                                    },
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.mark.parametrize(
    "fake_apiserver_options",
    [{"kubernetes_version": minor} for minor in ("1.32", "1.29", "1.27")],
    ids=["kubectl-1.32", "kubectl-1.29", "kubectl-1.27"],
)
async def test_kubectl_apply_with_default_validation(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Apply with default validation works, and the server refuses bad objects.

    The OpenAPI documents tell kubectl the server validates fields, so it sends
    fieldValidation=Strict: schema violations and unknown fields are refused. kubectl 1.27
    reads the OpenAPI v2 document as protobuf first.
    """
    out = await kubectl.run("apply", "-f", kubectl.manifest("crd.json", SCHEMA_CRD))
    assert b"created" in out.stdout
    out = await kubectl.run("apply", "-f", kubectl.manifest("w1.json", widget("w1", size=3)))
    assert b"widget.example.com/w1 created" in out.stdout
    bad = await kubectl.run(
        "apply", "-f", kubectl.manifest("w2.json", widget("w2", size="big")), check=False
    )
    assert bad.returncode == 1
    assert (
        b'spec.size: Invalid value: "string": spec.size in body must be of type integer: '
        b'"string"' in bad.stderr
    )
    unknown = await kubectl.run(
        "apply", "-f", kubectl.manifest("w3.json", widget("w3", size=1, shape="round")), check=False
    )
    assert unknown.returncode == 1
    assert b'unknown field "spec.shape"' in unknown.stderr
    widgets = fake_apiserver.resource("example.com", "v1", "widgets")
    assert [w["metadata"]["name"] for w in fake_apiserver.list(widgets)] == ["w1"]


async def test_kubectl_explain_and_printer_columns(
    fake_apiserver: FakeApiServer, kubectl: Kubectl
) -> None:
    """Kubectl explain shows the CRD schema and get prints the CRD's printer columns.

    explain reads /openapi/v3, or the protobuf /openapi/v2 with --output=plaintext-openapiv2.
    """
    await kubectl.run("apply", "-f", kubectl.manifest("crd.json", SCHEMA_CRD))
    widgets = fake_apiserver.resource("example.com", "v1", "widgets")
    fake_apiserver.create(widgets, widget("w1", size=3, color="red"))
    fake_apiserver.create(widgets, widget("w2", size=7))
    out = await kubectl.run("explain", "widgets.spec")
    text = out.stdout.decode()
    assert "KIND:       Widget" in text
    assert "What the widget should look like." in text
    assert "size\t<integer>" in text
    assert "How big the widget is." in text
    out = await kubectl.run("explain", "widgets.spec", "--output=plaintext-openapiv2")
    text = out.stdout.decode()
    assert "RESOURCE: spec <Object>" in text
    assert "size\t<integer>" in text
    assert "How big the widget is." in text
    out = await kubectl.run("get", "widgets")
    lines = [line.split() for line in out.stdout.decode().splitlines()]
    assert lines == [["NAME", "SIZE", "COLOR"], ["w1", "3", "red"], ["w2", "7"]]  # null cell: blank
    out = await kubectl.run("get", "widgets", "-A")
    assert out.stdout.decode().splitlines()[0].split() == ["NAMESPACE", "NAME", "SIZE", "COLOR"]


@pytest.mark.parametrize(
    "fake_apiserver_options",
    [
        {"kubernetes_version": "1.32", "aggregated_discovery": True},
        {"kubernetes_version": "1.27", "aggregated_discovery": True},
        {"kubernetes_version": "1.32", "aggregated_discovery": False},
    ],
    ids=["aggregated-v2", "aggregated-v2beta1", "legacy"],
)
async def test_kubectl_api_resources(fake_apiserver: FakeApiServer, kubectl: Kubectl) -> None:
    """``kubectl api-resources`` lists core, built-in and custom types with their short names.

    kubectl 1.32 asks for aggregated discovery v2, 1.27 for v2beta1: served, only ``/api``
    and ``/apis`` are fetched (kubectl logs its requests at ``-v=6``). With aggregated
    discovery off, kubectl falls back to one request per group/version.
    """
    register_widgets(fake_apiserver, short_names=["wd"])
    result = await kubectl.run("api-resources", "-v=6")
    rows = {line.split()[0]: line.split() for line in result.stdout.decode().splitlines()[1:]}
    assert rows["widgets"][1:] == ["wd", "example.com/v1", "true", "Widget"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    assert rows["leases"][1:] == ["coordination.k8s.io/v1", "true", "Lease"]
    fetched = {
        line.split(fake_apiserver.url, 1)[1].split("?", 1)[0]
        for line in result.stderr.decode().splitlines()
        if f"GET {fake_apiserver.url}" in line
    }
    if fake_apiserver.aggregated_discovery:
        assert fetched == {"/api", "/apis"}
    else:
        assert {"/api", "/apis", "/api/v1", "/apis/example.com/v1"} <= fetched
