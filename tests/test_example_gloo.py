"""``examples/gloo_openapi_controller.py`` against FakeApiServer, as the real program runs.

The server has the example's three CRDs (``examples/gloo_crds.py``) with their structural
schemas; the controller talks to it over HTTP through crwatch's ``Client``. The tests change
the cluster through the server's Python API (as another client would) and wait for the
server's state to reach what they expect, polling it; they never sleep to synchronise.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

import crwatch
from crwatch.testing import FakeApiServer, Fault

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).parent.parent / "examples"
GUARD = 10.0  # seconds: a real-time guard against hangs, never waited out when tests pass
POLL = 0.01
LEASE, RENEW, RETRY = 2.0, 1.2, 0.2  # small leader-election timings (seconds); a hand-over
# after a release takes one retry (plus the drain), so nothing waits the lease out
DOCUMENT = '{"openapi": "3.0.3", "info": {"title": "Pets"}, "paths": {"/pets": {}}}'


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


crds = load("gloo_crds")
example = load("gloo_openapi_controller")
SETTINGS = example.Settings(virtual_service="routes", virtual_service_namespace="gloo-system")


async def until(condition: Callable[[], Any], *, timeout: float = GUARD) -> Any:
    """Poll ``condition`` every 10 ms until it is truthy; return its value.

    Polling, not an event: the conditions span several resources of the server's state
    (the example's own informers are private to it).
    """
    with anyio.fail_after(timeout):
        while not (value := condition()):  # noqa: ASYNC110  (see the docstring)
            await anyio.sleep(POLL)
        return value


class Cluster:
    def __init__(self, server: FakeApiServer, kubeconfig: Path) -> None:
        self.server = server
        self.kubeconfig = kubeconfig
        self.specs = server.resource("gateway.example.com", "v1", "openapispecs")
        self.upstreams = server.resource("gloo.solo.io", "v1", "upstreams")
        self.vs = server.resource("gateway.solo.io", "v1", "virtualservices")
        self.events = server.resource("", "v1", "events")
        self.leases = server.resource("coordination.k8s.io", "v1", "leases")

    def create(self, name: str, *, port: int = 80, prefix: str | None = None, **extra: Any) -> Any:
        spec = {
            "document": DOCUMENT,
            "upstream": {"host": f"{name}.default.svc", "port": port},
            "prefix": prefix or f"/{name}",
            **extra,
        }
        return self.server.create(
            self.specs,
            {"apiVersion": "gateway.example.com/v1", "kind": "OpenAPISpec"}
            | {"metadata": {"name": name}, "spec": spec},
            namespace="default",
        )

    def spec(self, name: str) -> dict[str, Any] | None:
        return self.find(self.specs, name, "default")

    def upstream(self, name: str) -> dict[str, Any] | None:
        return self.find(self.upstreams, f"openapi-{name}", "default")

    def find(self, rtype: Any, name: str, namespace: str) -> dict[str, Any] | None:
        for obj in self.server.list(rtype, namespace=namespace):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def routes(self) -> dict[str, tuple[str, str]]:
        """Return the shared VirtualService's routes: name -> (prefix, upstream name)."""
        vs = self.find(self.vs, "routes", "gloo-system")
        routes = ((vs or {}).get("spec") or {}).get("virtualHost", {}).get("routes") or []
        return {
            r["name"]: (r["matchers"][0]["prefix"], r["routeAction"]["single"]["upstream"]["name"])
            for r in routes
        }

    def ready(self, name: str) -> dict[str, Any] | None:
        """Return the spec's Ready condition when it describes the current generation."""
        spec = self.spec(name)
        if spec is None:
            return None
        status = spec.get("status") or {}
        if status.get("observedGeneration") != spec["metadata"]["generation"]:
            return None
        return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)

    def event_reasons(self, name: str) -> list[tuple[str, str]]:
        """Return the (type, reason) of the core/v1 Events about the spec ``name``."""
        return [
            (e["type"], e["reason"])
            for e in self.server.list(self.events, namespace="default")
            if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "OpenAPISpec"
        ]

    def holder(self) -> str:
        lease = self.find(self.leases, example.MANAGER, "default")
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with FakeApiServer(bookmark_interval=60.0) as server:
        for crd in crds.CRDS:
            server.register_crd(**crd)
        server.create(
            server.resource("", "v1", "namespaces"), {"metadata": {"name": "gloo-system"}}
        )
        yield Cluster(server, server.kubeconfig(tmp_path / "kubeconfig"))


def fast_informers() -> crwatch.SharedInformers:
    return crwatch.SharedInformers(backoff=crwatch.Backoff(initial=0.01, maximum=0.05))


@pytest.fixture
async def running(cluster: Cluster) -> AsyncIterator[Cluster]:
    """Run one controller (no leader election) on the cluster."""
    async with (
        crwatch.Client.from_kubeconfig(cluster.kubeconfig) as client,
        example.make_controller(client, SETTINGS, informers=fast_informers()),
    ):
        yield cluster


async def test_create_edit_delete(running: Cluster) -> None:
    """Specs are routed through Gloo; an edit is reflected; a deletion cleans up.

    A spec gets an owned Upstream, its route in the shared VirtualService, Ready and an
    Event; an edit is reflected; a deletion removes its route (finalizer), its Upstream
    (garbage collection) and the spec, leaving the other spec's route alone.
    """
    c = running
    a = c.create("a", port=8080)
    c.create("b", port=9090)
    await until(
        lambda: c.routes() == {"default.a": ("/a", "openapi-a"), "default.b": ("/b", "openapi-b")}
    )
    upstream = await until(lambda: c.upstream("a"))
    assert upstream["spec"]["static"]["hosts"] == [{"addr": "a.default.svc", "port": 8080}]
    (owner,) = upstream["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "OpenAPISpec",
        a["metadata"]["uid"],
        True,
    )
    ready = await until(lambda: c.ready("a"))
    assert (ready["status"], ready["reason"]) == ("True", "Routed")
    assert ready["message"] == "Pets: /a -> a.default.svc:8080"
    assert c.spec("a")["metadata"]["finalizers"] == [example.FINALIZER]  # type: ignore[index]
    await until(lambda: ("Normal", "Routed") in c.event_reasons("a"))
    # Each spec's route is owned by its own field manager: neither apply clobbers the other.
    vs = c.find(c.vs, "routes", "gloo-system")
    assert vs is not None
    managers = {entry["manager"] for entry in vs["metadata"]["managedFields"]}
    assert {f"{example.MANAGER}/default.a", f"{example.MANAGER}/default.b"} <= managers

    c.server.patch(
        c.specs, "a", {"spec": {"upstream": {"port": 8081}, "prefix": "/v2/a"}}, namespace="default"
    )
    await until(lambda: c.routes().get("default.a") == ("/v2/a", "openapi-a"))
    await until(
        lambda: (
            (c.upstream("a") or {}).get("spec", {}).get("static", {}).get("hosts")
            == [{"addr": "a.default.svc", "port": 8081}]
        )
    )
    ready = await until(lambda: c.ready("a"))
    assert ready["message"] == "Pets: /v2/a -> a.default.svc:8081"
    assert c.routes()["default.b"] == ("/b", "openapi-b")

    c.server.delete(c.specs, "a", namespace="default")
    await until(lambda: c.spec("a") is None)
    assert c.routes() == {"default.b": ("/b", "openapi-b")}  # removed before the spec went
    await until(lambda: c.upstream("a") is None)  # garbage-collected with its owner
    await until(lambda: ("Normal", "RouteRemoved") in c.event_reasons("a"))
    assert c.upstream("b") is not None


async def test_hand_edits_are_repaired_and_bad_documents_are_reported(running: Cluster) -> None:
    """Hand edits are repaired; a bad document is reported and not routed.

    Deleting an Upstream or a route by hand is repaired; a spec whose document is not
    OpenAPI is Ready=False with a Warning and gets no route, until it is fixed.
    """
    c = running
    c.create("a")
    await until(lambda: "default.a" in c.routes() and c.upstream("a"))
    c.server.delete(c.upstreams, "openapi-a", namespace="default")
    c.server.patch(
        c.vs, "routes", {"spec": {"virtualHost": {"routes": []}}}, namespace="gloo-system"
    )
    await until(lambda: "default.a" in c.routes() and c.upstream("a"))

    c.create("bad", document={"not": "openapi"})
    ready = await until(lambda: c.ready("bad"))
    assert (ready["status"], ready["reason"]) == ("False", "InvalidDocument")
    await until(lambda: ("Warning", "InvalidDocument") in c.event_reasons("bad"))
    assert "default.bad" not in c.routes()
    c.server.patch(c.specs, "bad", {"spec": {"document": DOCUMENT}}, namespace="default")
    await until(lambda: "default.bad" in c.routes())


async def test_changes_across_a_disconnect_and_a_410_converge(running: Cluster) -> None:
    """Changes made across a watch disconnect and a 410 converge.

    The watches end, history is compacted and the next spec watch is answered 410; an
    edit, a create and a deletion made meanwhile are all reconciled.
    """
    c = running
    c.create("a")
    c.create("b")
    await until(lambda: set(c.routes()) == {"default.a", "default.b"})
    expired = c.server.faults.add(Fault.expired(), verb="watch", resource="openapispecs")
    c.server.close_watches()
    c.server.patch(c.specs, "a", {"spec": {"prefix": "/moved"}}, namespace="default")
    c.create("late")
    c.server.delete(c.specs, "b", namespace="default")
    c.server.compact()
    await until(
        lambda: (
            c.routes()
            == {"default.a": ("/moved", "openapi-a"), "default.late": ("/late", "openapi-late")}
        )
    )
    await until(lambda: c.spec("b") is None and c.upstream("b") is None)
    assert expired.fired == 1


@pytest.mark.parametrize(
    ("lease_duration", "renew_deadline", "released"),
    [
        pytest.param(LEASE, RENEW, True, id="released"),
        pytest.param(1.0, 0.6, False, id="release-lost"),
    ],
)
async def test_two_replicas_fail_over_without_overlapping_reconciles(
    cluster: Cluster, lease_duration: float, renew_deadline: float, released: bool
) -> None:
    """Two replicas: the leader is killed mid-reconcile, the other takes over, no overlap.

    Two replicas under leader election: only the leader reconciles; when it is killed
    (its task cancelled, as SIGTERM ends the program) in the middle of a reconcile, the other
    takes over within the lease duration and carries on; no key is ever reconciled twice at
    once, and no replica starts a reconcile while the other still runs one.

    What makes that hold, and why the kill is a cancellation: cancelling the leader's task
    lets its running reconcile finish (``shutdown_timeout``) *before* the Lease is released,
    and the follower cannot lead before the release (or before the lease expires). A
    leader that is paused instead (a frozen process, a partition) gets no such ordering:
    there is no fencing, so its in-flight reconcile could overlap with the successor's, a
    window the leader-election docs describe; the example keeps ``shutdown_timeout`` below
    ``lease_duration - renew_deadline`` to narrow it, but no test can make it vanish.

    ``release-lost``: the killed leader's release of the Lease fails (a 500, as when it dies
    before sending it), so the follower takes over only once the lease expired on its own
    clock: within the lease duration of the last renewal, plus one jittered retry.
    """
    c = cluster
    per_key: dict[str, int] = {}  # reconciles of a key running now, both replicas together
    per_replica = {"a": 0, "b": 0}  # reconciles running now, per replica
    max_per_key = 0
    overlaps = 0  # reconciles started while the other replica had one running
    by: dict[str, list[str]] = {"a": [], "b": []}
    hold = anyio.Event()
    holding = anyio.Event()

    def instrumented(replica: str) -> Any:
        inner = example.make_reconcile(SETTINGS)

        async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
            nonlocal max_per_key, overlaps
            other = "b" if replica == "a" else "a"
            overlaps += per_replica[other] > 0
            per_replica[replica] += 1
            per_key[ctx.key] = per_key.get(ctx.key, 0) + 1
            max_per_key = max(max_per_key, per_key[ctx.key])
            try:
                by[replica].append(ctx.key)
                if ctx.key == "default/slow" and not hold.is_set():
                    holding.set()
                    await hold.wait()
                result: crwatch.Action | None = await inner(ctx)
                return result
            finally:
                per_replica[replica] -= 1
                per_key[ctx.key] -= 1

        return reconcile

    async def replica(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with crwatch.Client.from_kubeconfig(c.kubeconfig) as client:
                await example.run_replica(
                    client,
                    SETTINGS,
                    lease_namespace="default",
                    identity=name,
                    lease_duration=lease_duration,
                    renew_deadline=renew_deadline,
                    retry_period=RETRY,
                    reconcile=instrumented(name),
                    informers=fast_informers(),
                    workers=4,
                )

    scopes = {"a": anyio.CancelScope(), "b": anyio.CancelScope()}
    async with anyio.create_task_group() as tg:
        tg.start_soon(replica, "a", scopes["a"])
        await until(lambda: c.holder() == "a")
        tg.start_soon(replica, "b", scopes["b"])
        c.create("one")
        c.create("two")
        await until(lambda: set(c.routes()) == {"default.one", "default.two"})
        c.create("slow")
        with anyio.fail_after(GUARD):
            await holding.wait()  # the leader is inside the reconcile of default/slow

        killed = time.monotonic()
        scopes["a"].cancel()
        if not released:
            # The next Lease write is the release: a follower only reads until it may take over.
            c.server.faults.add(Fault.status(500), verb="update", resource="leases")
        hold.set()
        await until(lambda: c.holder() == "b")
        takeover = time.monotonic() - killed
        if released:
            assert takeover < lease_duration
        else:
            # Not before the lease expired (the last renewal was at most a retry before the
            # kill), and not much after.
            assert lease_duration - 2 * RETRY < takeover < lease_duration + 2.2 * RETRY

        c.server.patch(c.specs, "one", {"spec": {"prefix": "/uno"}}, namespace="default")
        c.server.delete(c.specs, "two", namespace="default")
        c.create("three")
        await until(
            lambda: (
                c.routes()
                == {
                    "default.one": ("/uno", "openapi-one"),
                    "default.slow": ("/slow", "openapi-slow"),
                    "default.three": ("/three", "openapi-three"),
                }
            )
        )
        await until(lambda: c.spec("two") is None)
        scopes["b"].cancel()

    assert by["a"], "the first leader reconciled"
    assert "default/three" in by["b"]
    assert "default/three" not in by["a"]
    assert max_per_key == 1
    assert overlaps == 0


async def test_crd_manifests_serve_and_validate(tmp_path: Path) -> None:
    """The manifests of ``gloo_crds.manifest()`` are valid CRDs whose schemas refuse bad specs.

    Created over HTTP like ``kubectl apply`` would; a port out of range or a prefix without
    a leading slash is a 422 (``crwatch.InvalidError``), and nothing is stored.
    """
    crd_resource = crwatch.Resource(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False
    )
    async with (
        FakeApiServer() as server,
        crwatch.Client.from_kubeconfig(server.kubeconfig(tmp_path / "kc")) as client,
    ):
        for crd in crds.CRDS:
            await client.create(crd_resource, crds.manifest(crd))
        good = {
            "metadata": {"name": "ok", "namespace": "default"},
            "spec": {"upstream": {"host": "h", "port": 80}, "prefix": "/ok"},
        }
        await client.create(example.SPECS, good)
        for bad_spec in (
            {"upstream": {"host": "h", "port": 70000}, "prefix": "/p"},
            {"upstream": {"host": "h", "port": 80}, "prefix": "no-slash"},
            {"upstream": {"host": "h"}, "prefix": "/p"},
        ):
            with pytest.raises(crwatch.InvalidError):
                await client.create(
                    example.SPECS,
                    {"metadata": {"name": "bad", "namespace": "default"}} | {"spec": bad_spec},
                )
        names = [
            o["metadata"]["name"]
            for o in server.list(("gateway.example.com", "v1", "openapispecs"))
        ]
        assert names == ["ok"]


def test_documents_are_parsed_as_json_or_yaml_and_must_be_openapi() -> None:
    """JSON text, YAML text and objects are accepted; anything else is InvalidDocument."""
    assert example.parse_document(DOCUMENT)["info"]["title"] == "Pets"
    yaml_text = "openapi: 3.1.0\ninfo:\n  title: Shop\npaths: {}\n"
    assert example.parse_document(yaml_text)["info"]["title"] == "Shop"
    assert example.parse_document({"swagger": "2.0"}) == {"swagger": "2.0"}
    for bad in (None, 42, "[1, 2]", "{not: [valid", {"info": {}}, {"openapi": "3", "paths": []}):
        with pytest.raises(example.InvalidDocument):
            example.parse_document(bad)


def test_field_managers_fit_the_api_servers_limit() -> None:
    """A spec's field manager is unique per spec and at most 128 characters long."""
    long = {"metadata": {"namespace": "n" * 63, "name": "x" * 253}}
    other = {"metadata": {"namespace": "n" * 63, "name": "x" * 252 + "y"}}
    assert len(example.route_manager(SETTINGS, long)) <= 128
    assert example.route_manager(SETTINGS, long) != example.route_manager(SETTINGS, other)
    short = {"metadata": {"namespace": "default", "name": "a"}}
    assert example.route_manager(SETTINGS, short) == f"{example.MANAGER}/default.a"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM handling is POSIX")
async def test_the_program_runs_its_demo_and_releases_the_lease_on_sigterm() -> None:
    """``python examples/gloo_openapi_controller.py --demo`` is a working program.

    It starts the fake API server with the CRDs and a sample spec, leads, routes the spec,
    and on SIGTERM (what Kubernetes sends a pod) shuts down cleanly: it releases the Lease
    and exits with status 0.
    """
    env = {**os.environ, "PYTHONPATH": str(Path(crwatch.__file__).parent.parent)}
    script = str(EXAMPLES / "gloo_openapi_controller.py")
    lines: list[str] = []
    async with await anyio.open_process(
        [sys.executable, script, "--demo"], env=env, stdout=None, stderr=subprocess.PIPE
    ) as process:
        assert process.stderr is not None
        with anyio.fail_after(GUARD):
            async for chunk in TextReceiveStream(process.stderr):
                lines.extend(chunk.splitlines())
                if any("default/petstore: Routed" in line for line in lines):
                    break
            process.send_signal(signal.SIGTERM)
            async for chunk in TextReceiveStream(process.stderr):
                lines.extend(chunk.splitlines())
            assert await process.wait() == 0
    assert any("SIGTERM: shutting down" in line for line in lines)
    assert any("released the Lease" in line for line in lines)
