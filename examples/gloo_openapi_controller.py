r"""Route each ``OpenAPISpec`` through Gloo: an ``Upstream`` each, routes in one VirtualService.

For each ``openapispecs.gateway.example.com/v1`` object (an OpenAPI document, the upstream
service's ``host`` and ``port``, a route ``prefix``) the controller keeps:

- a ``gloo.solo.io/v1`` ``Upstream`` named ``openapi-<name>`` in the spec's namespace, with
  ``spec.static.hosts: [{addr: host, port: port}]``, owned by the spec (an ownerReference
  with ``controller: true``), so deleting the spec garbage-collects it;
- one route in **one shared** ``gateway.solo.io/v1`` ``VirtualService`` (``--virtual-service``
  in ``--virtual-service-namespace``), named ``<namespace>.<name>``, sending ``prefix`` to
  that Upstream;
- status on the spec: a ``Ready`` condition (reason, message, observedGeneration) and
  ``observedGeneration``; and Events on it when something changed.

Every write is a server-side apply. The shared VirtualService is written by one field
manager per spec (``gloo-openapi-controller/<namespace>.<name>``), each applying only its own
route; ``routes`` is a list-map keyed by ``name`` (see ``gloo_crds.py``), so the API server
merges the routes of all specs and no spec's apply can remove another's route
(https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy). The
shared object cannot be owned by any one spec, so a finalizer removes a spec's route before
the spec goes: its manager applies an empty configuration, which gives up (and so deletes)
exactly the fields it owned (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management).

Replicas run under leader election on a Lease in ``--lease-namespace``: only the leader
reconciles. Run it against a cluster that has the three CRDs (``gloo_crds.py``)::

    python examples/gloo_openapi_controller.py [--kubeconfig PATH] [--namespace NS] \
        [--lease-namespace default] [--virtual-service openapi-routes] \
        [--virtual-service-namespace gloo-system] [-v]

or try it on crwatch's fake API server, with the CRDs and one example spec::

    python examples/gloo_openapi_controller.py --demo
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
from attrs import frozen

import crwatch

sys.path.insert(0, str(Path(__file__).parent))
import gloo_crds

log = logging.getLogger("gloo-openapi-controller")

SPECS = crwatch.Resource("gateway.example.com", "v1", "openapispecs", kind="OpenAPISpec")
UPSTREAMS = crwatch.Resource("gloo.solo.io", "v1", "upstreams", kind="Upstream")
VIRTUALSERVICES = crwatch.Resource(
    "gateway.solo.io", "v1", "virtualservices", kind="VirtualService"
)

FINALIZER = "gateway.example.com/gloo-routes"
MANAGER = "gloo-openapi-controller"

Reconcile = Callable[[crwatch.Context[dict[str, Any]]], Awaitable[crwatch.Action | None]]


class InvalidDocument(ValueError):
    """The spec's ``document`` is not an OpenAPI document."""


@frozen(kw_only=True)
class Settings:
    """Where the shared VirtualService lives, and who the controller is to the API server."""

    virtual_service: str = "openapi-routes"
    virtual_service_namespace: str = "gloo-system"
    domains: tuple[str, ...] = ("*",)
    field_manager: str = MANAGER


# -- pure parts: names, desired objects, conditions ---------------------------------------


def upstream_name(spec: Mapping[str, Any]) -> str:
    """Return the name of a spec's Upstream (in the spec's namespace)."""
    return f"openapi-{spec['metadata']['name']}"


def route_name(spec: Mapping[str, Any]) -> str:
    """Return the name of a spec's route in the shared VirtualService."""
    meta = spec["metadata"]
    return f"{meta['namespace']}.{meta['name']}"


def route_manager(settings: Settings, spec: Mapping[str, Any]) -> str:
    """Return the field manager that owns a spec's route (at most 128 characters)."""
    name = f"{settings.field_manager}/{route_name(spec)}"
    if len(name) <= 128:
        return name
    digest = hashlib.sha256(route_name(spec).encode()).hexdigest()[:20]
    return f"{settings.field_manager[:100]}/{digest}"


def parse_document(document: Any) -> dict[str, Any]:
    """Return the OpenAPI document of a spec (text is JSON or YAML), or raise InvalidDocument."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            try:
                import yaml  # type: ignore[import-untyped,unused-ignore]  # optional
            except ImportError:
                raise InvalidDocument("document is not JSON (install PyYAML for YAML)") from None
            try:
                document = yaml.safe_load(document)
            except yaml.YAMLError as exc:
                raise InvalidDocument(f"document is neither JSON nor YAML: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidDocument("document is not an object")
    if not isinstance(document.get("openapi") or document.get("swagger"), str):
        raise InvalidDocument("document has no 'openapi' (or 'swagger') version")
    if not isinstance(document.get("paths", {}), dict):
        raise InvalidDocument("document's 'paths' is not an object")
    return document


def desired_upstream(spec: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Return the Upstream a spec should have, owned by it."""
    meta = spec["metadata"]
    upstream = spec["spec"]["upstream"]
    return {
        "apiVersion": UPSTREAMS.api_version,
        "kind": "Upstream",
        "metadata": {
            "name": upstream_name(spec),
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/managed-by": settings.field_manager},
            "ownerReferences": [
                {
                    "apiVersion": SPECS.api_version,
                    "kind": "OpenAPISpec",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"static": {"hosts": [{"addr": upstream["host"], "port": upstream["port"]}]}},
    }


def desired_route(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return a spec's route: its prefix to its Upstream."""
    return {
        "name": route_name(spec),
        "matchers": [{"prefix": spec["spec"]["prefix"]}],
        "routeAction": {
            "single": {
                "upstream": {
                    "name": upstream_name(spec),
                    "namespace": spec["metadata"]["namespace"],
                }
            }
        },
    }


def virtual_service(settings: Settings, spec_fields: dict[str, Any] | None) -> dict[str, Any]:
    """Return an apply configuration of the shared VirtualService with ``spec_fields``."""
    obj: dict[str, Any] = {
        "apiVersion": VIRTUALSERVICES.api_version,
        "kind": "VirtualService",
        "metadata": {
            "name": settings.virtual_service,
            "namespace": settings.virtual_service_namespace,
        },
    }
    if spec_fields is not None:
        obj["spec"] = spec_fields
    return obj


def route_is_current(spec: Mapping[str, Any], routes: Mapping[Any, Any]) -> bool:
    """Return whether ``routes`` (the shared VirtualService's, by name) are right for ``spec``.

    A live spec with a valid document needs exactly its route; a spec being deleted, or
    whose document is invalid, needs none.
    """
    name = route_name(spec)
    if spec["metadata"].get("deletionTimestamp"):
        return name not in routes
    try:
        parse_document((spec.get("spec") or {}).get("document"))
    except InvalidDocument:
        return name not in routes
    return bool(routes.get(name) == desired_route(spec))


def ready_condition(spec: Mapping[str, Any], ok: bool, reason: str, message: str) -> dict[str, Any]:
    """Return the ``Ready`` condition, keeping ``lastTransitionTime`` when status is unchanged."""
    status = "True" if ok else "False"
    generation = spec["metadata"].get("generation", 0)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for old in (spec.get("status") or {}).get("conditions") or []:
        if old.get("type") == "Ready" and old.get("status") == status:
            now = old.get("lastTransitionTime", now)
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }


def status_is_current(spec: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    """Return whether the spec's status already says ``condition`` for its generation."""
    status = spec.get("status") or {}
    if status.get("observedGeneration") != spec["metadata"].get("generation", 0):
        return False
    return any(old == condition for old in status.get("conditions") or [])


# -- the reconcile ------------------------------------------------------------------------


def make_reconcile(settings: Settings) -> Reconcile:
    """Return the reconcile function for ``settings``."""
    # The status this process last wrote, per spec uid: a reconcile that starts from a cache
    # not yet holding our own status write must not write (and record) it a second time.
    # (A hand edit of the status is therefore repaired at the next generation, or by the
    # next leader, which starts with an empty memory.)
    written: dict[str, tuple[Any, ...]] = {}

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
        # Both callbacks return whether the spec is routed now.
        async def ensure(spec: dict[str, Any]) -> bool:
            return await ensure_routed(ctx, settings, spec, written)

        async def cleanup(spec: dict[str, Any]) -> bool:
            written.pop(spec["metadata"]["uid"], None)
            await remove_route(ctx, settings, spec)
            return False

        # Adds the finalizer before the first route is written; on deletion, removes the
        # route first and the finalizer only once that succeeded (else: retried with backoff).
        routed = await crwatch.finalizer(
            ctx.client, SPECS, ctx.object, FINALIZER, apply=ensure, cleanup=cleanup
        )
        log.debug("%s: reconciled (routed: %s)", ctx.key, routed)
        return None  # level-triggered: the next change (ours included) brings it back

    return reconcile


async def ensure_routed(
    ctx: crwatch.Context[dict[str, Any]],
    settings: Settings,
    spec: dict[str, Any],
    written: dict[str, tuple[Any, ...]],
) -> bool:
    """Apply the spec's Upstream and route, then its status; return whether it is routed."""
    try:
        document = parse_document(spec["spec"].get("document"))
    except InvalidDocument as exc:
        # Routing to a service whose API we cannot read would publish an unknown surface.
        await remove_route(ctx, settings, spec, quiet=True)
        await write_status(
            ctx, settings, spec, written, ok=False, reason="InvalidDocument", message=str(exc)
        )
        return False
    client = ctx.client
    # force=True: a controller owns these fields and takes them back from hand edits
    # (https://kubernetes.io/docs/reference/using-api/server-side-apply/#using-server-side-apply-in-a-controller).
    await client.apply(
        UPSTREAMS,
        desired_upstream(spec, settings),
        field_manager=settings.field_manager,
        force=True,
    )
    await client.apply(
        VIRTUALSERVICES,
        virtual_service(settings, {"virtualHost": {"domains": list(settings.domains)}}),
        field_manager=settings.field_manager,
        force=True,
    )
    await client.apply(
        VIRTUALSERVICES,
        virtual_service(settings, {"virtualHost": {"routes": [desired_route(spec)]}}),
        field_manager=route_manager(settings, spec),
        force=True,
    )
    upstream = spec["spec"]["upstream"]
    title = (document.get("info") or {}).get("title") or "untitled API"
    message = f"{title}: {spec['spec']['prefix']} -> {upstream['host']}:{upstream['port']}"
    await write_status(ctx, settings, spec, written, ok=True, reason="Routed", message=message)
    return True


async def write_status(
    ctx: crwatch.Context[dict[str, Any]],
    settings: Settings,
    spec: dict[str, Any],
    written: dict[str, tuple[Any, ...]],
    *,
    ok: bool,
    reason: str,
    message: str,
) -> None:
    """Apply the ``Ready`` condition and observedGeneration when they change; record it."""
    condition = ready_condition(spec, ok, reason, message)
    meta = spec["metadata"]
    summary = (meta.get("generation", 0), ok, reason, message)
    if status_is_current(spec, condition) or written.get(meta["uid"]) == summary:
        return  # nothing new: no write, no event (and no reconcile caused by our own write)
    status = {
        "observedGeneration": spec["metadata"].get("generation", 0),
        "conditions": [condition],
        "upstream": upstream_name(spec) if ok else "",
        "route": route_name(spec) if ok else "",
    }
    await ctx.client.apply_status(
        SPECS,
        {"metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "status": status},
        field_manager=settings.field_manager,
        force=True,
    )
    written[meta["uid"]] = summary
    ctx.record(spec, reason, message, type="Normal" if ok else "Warning")
    log.info("%s: %s (%s)", ctx.key, reason, message)


async def remove_route(
    ctx: crwatch.Context[dict[str, Any]],
    settings: Settings,
    spec: dict[str, Any],
    *,
    quiet: bool = False,
) -> None:
    """Remove the spec's route from the shared VirtualService (nothing when it has none)."""
    name = route_name(spec)
    try:
        current = await ctx.client.get(
            VIRTUALSERVICES, settings.virtual_service, namespace=settings.virtual_service_namespace
        )
    except crwatch.NotFoundError:
        return  # no VirtualService, no route (and an apply would create an empty one)
    routes = ((current.get("spec") or {}).get("virtualHost") or {}).get("routes") or []
    if not any(route.get("name") == name for route in routes):
        return
    # The spec's own manager applies nothing: the API server removes the fields it owned,
    # which are exactly this route (https://kubernetes.io/docs/reference/using-api/server-side-apply/).
    await ctx.client.apply(
        VIRTUALSERVICES,
        virtual_service(settings, None),
        field_manager=route_manager(settings, spec),
    )
    if not quiet:
        ctx.record(spec, "RouteRemoved", f"removed route {name} from {settings.virtual_service}")
    log.info("%s: removed route %s", ctx.key, name)


def make_controller(
    client: crwatch.Client,
    settings: Settings | None = None,
    *,
    reconcile: Reconcile | None = None,
    namespace: str | None = None,
    **options: Any,
) -> crwatch.Controller[dict[str, Any]]:
    """Return the controller (not started).

    It owns Upstreams (a hand edit or deletion of one is repaired) and watches the shared
    VirtualService: a change to it reconciles the specs whose route it no longer has as it
    should be (:func:`route_is_current`), not every spec. ``reconcile`` replaces
    :func:`make_reconcile`'s (tests wrap it).
    """
    settings = settings or Settings()

    def specs_to_repair(vs: dict[str, Any]) -> list[str]:
        meta = vs["metadata"]
        if (meta.get("namespace"), meta["name"]) != (
            settings.virtual_service_namespace,
            settings.virtual_service,
        ):
            return []
        routes = ((vs.get("spec") or {}).get("virtualHost") or {}).get("routes") or []
        by_name = {route.get("name"): route for route in routes if isinstance(route, dict)}
        return [
            crwatch.object_key(spec)
            for spec in controller.store().list()
            if not route_is_current(spec, by_name)
        ]

    controller: crwatch.Controller[dict[str, Any]] = crwatch.Controller(
        client,
        SPECS,
        reconcile or make_reconcile(settings),
        owns=[UPSTREAMS],
        watches=[(VIRTUALSERVICES, specs_to_repair)],
        namespace=namespace,
        name=settings.field_manager,
        **options,
    )
    return controller


async def run_replica(
    client: crwatch.Client,
    settings: Settings | None = None,
    *,
    lease_namespace: str,
    identity: str | None = None,
    lease_duration: float = 15.0,
    renew_deadline: float = 10.0,
    retry_period: float = 2.0,
    **controller_options: Any,
) -> None:
    """Compete for the Lease; while leading, run the controller.

    Returns when leadership is lost (``crwatch.LeadershipLost`` is logged): the process
    should exit and be restarted, as with client-go's elector. Cancelling it lets running
    reconciles finish (``shutdown_timeout``) before the Lease is released.
    """
    # Losing the lease cancels the controller; its running reconciles then get
    # shutdown_timeout, which must end before a successor may take over (lease_duration -
    # renew_deadline after the last renewal), or two replicas would act at once.
    controller_options.setdefault(
        "shutdown_timeout", max(0.0, (lease_duration - renew_deadline) / 2)
    )
    # identity: by default the host name and a random suffix (crwatch's default).
    election = crwatch.LeaderElection(
        client,
        MANAGER,
        namespace=lease_namespace,
        identity=identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
    )
    identity = election.identity
    async with election as leader:
        log.info("%s: waiting to lead (Lease %s/%s)", identity, lease_namespace, MANAGER)
        try:
            async with leader.leading():
                log.info("%s: leading", identity)
                async with make_controller(client, settings, **controller_options):
                    await anyio.sleep_forever()
        except crwatch.LeadershipLost:
            log.warning("%s: lost leadership; exiting", identity)


@contextlib.asynccontextmanager
async def demo_cluster(settings: Settings, lease_namespace: str) -> AsyncIterator[Path]:
    """Run a FakeApiServer with the CRDs, the namespaces and one spec; yield a kubeconfig."""
    from crwatch.testing import FakeApiServer

    async with FakeApiServer() as server:
        for crd in gloo_crds.CRDS:
            server.register_crd(**crd)
        namespaces = server.resource("", "v1", "namespaces")
        existing = {ns["metadata"]["name"] for ns in server.list(namespaces)}
        for name in {settings.virtual_service_namespace, lease_namespace} - existing:
            server.create(namespaces, {"metadata": {"name": name}})
        specs = server.resource(SPECS.group, SPECS.version, SPECS.plural)
        server.create(
            specs,
            {
                "apiVersion": SPECS.api_version,
                "kind": "OpenAPISpec",
                "metadata": {"name": "petstore"},
                "spec": {
                    "document": '{"openapi": "3.0.3", "info": {"title": "Petstore"}, "paths": {}}',
                    "upstream": {"host": "petstore.default.svc", "port": 8080},
                    "prefix": "/petstore",
                },
            },
            namespace="default",
        )
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = server.kubeconfig(Path(tmp) / "kubeconfig")
            log.info("demo API server at %s; KUBECONFIG=%s", server.url, kubeconfig)
            yield kubeconfig


async def stop_on_signals(scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` on SIGTERM (what Kubernetes sends a pod) or SIGINT (Ctrl-C).

    Cancelling lets running reconciles finish and releases the Lease, so that another
    replica takes over at once instead of after the lease duration.
    """
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


async def main(args: argparse.Namespace) -> None:
    """Run one replica until a signal, or until it loses leadership."""
    settings = Settings(
        virtual_service=args.virtual_service,
        virtual_service_namespace=args.virtual_service_namespace or args.namespace or "gloo-system",
    )
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(stop_on_signals, task_group.cancel_scope)
        async with contextlib.AsyncExitStack() as stack:
            kubeconfig = args.kubeconfig
            if args.demo:
                kubeconfig = await stack.enter_async_context(
                    demo_cluster(settings, args.lease_namespace)
                )
            client = await stack.enter_async_context(crwatch.Client.from_kubeconfig(kubeconfig))
            await run_replica(
                client, settings, lease_namespace=args.lease_namespace, namespace=args.namespace
            )
        task_group.cancel_scope.cancel()  # leadership lost: stop watching for signals


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--namespace", default=None, help="watch one namespace (default: all)")
    parser.add_argument("--lease-namespace", default="default", help="the Lease's namespace")
    parser.add_argument("--virtual-service", default="openapi-routes")
    parser.add_argument(
        "--virtual-service-namespace",
        default=None,
        help="default: --namespace if given, else gloo-system",
    )
    parser.add_argument("--demo", action="store_true", help="run against a fake API server")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    anyio.run(main, arguments)
