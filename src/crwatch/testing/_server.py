"""`FakeApiServer`: an aiohttp.web app serving `ClusterState` like kube-apiserver.

Routing follows the request-info parsing of kube-apiserver (docs/protocol.md, "Requests"); list and
watch follow §2-§8; errors §9. The handlers are thin: every decision about objects lives
in ``_state``, so the HTTP API and the Python API share one code path.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import copy
import hmac
import os
import shutil
import ssl
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web
from attrs import define, field, frozen

from . import _aggregated
from ._faults import Fault, FaultPlan
from ._openapi import v2_document, v3_document, v3_index
from ._openapi_proto import MEDIA_TYPE as PROTOBUF_V2
from ._openapi_proto import document as protobuf_document
from ._protobuf import ProtobufError
from ._protobuf import decode as decode_protobuf
from ._schema import FIELD_VALIDATION, PERMISSIVE_SCHEMA, WARNINGS, not_supported_cause
from ._selectors import SelectorError, parse_field_selector, parse_label_selector
from ._state import (
    ALL_VERBS,
    CRD_TYPE,
    ApiError,
    ClusterState,
    ListOptions,
    Obj,
    ResourceType,
    encode_event,
    invalid,
    parse_list_rv,
    query_bool,
    sort_versions,
    status_body,
    too_large_rv,
    validate_list_options,
)
from ._table import (
    INCLUDE_OBJECT,
    PARTIAL,
    PARTIAL_LIST,
    PLAIN,
    TABLE,
    Column,
    View,
    builtin_columns,
    crd_columns,
    negotiate,
    partial,
    partial_list,
    table,
)
from ._writes import (
    APPLY_PATCH,
    WriteOptions,
    decode_apply_body,
    delete_answer,
    delete_body,
    write_options,
)

__all__ = ["DenyRule", "FakeApiServer", "ServerSnapshot", "ServerStatistics"]

ResourceRef = ResourceType | tuple[str, str, str]

_JSON: Final = "application/json"
_PYTHON_MANAGER: Final = "crwatch-testing"
_PLAIN_404: Final = b"404 page not found\n"
_BINARY_MEDIA_TYPES: Final = frozenset({"application/vnd.kubernetes.protobuf", "application/cbor"})
_NAMESPACE_SUBRESOURCES: Final = frozenset({"status", "finalize"})
_UNSUPPORTED_PATCH: Final = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)


@define(eq=False)
class DenyRule:
    """An installed authorization deny rule; `remove` lifts it."""

    verb: str | None = None
    resource: str | None = None
    group: str | None = None
    namespace: str | None = None
    _rules: list[DenyRule] | None = field(default=None, repr=False)

    def matches(self, verb: str, resource: str, group: str, namespace: str) -> bool:
        """Tell whether the rule denies this request."""
        return (
            (self.verb is None or self.verb == verb)
            and (self.resource is None or self.resource == resource)
            and (self.group is None or self.group == group)
            and (self.namespace is None or self.namespace == namespace)
        )

    def remove(self) -> None:
        """Lift the rule."""
        if self._rules is not None and self in self._rules:
            self._rules.remove(self)


@frozen
class ServerStatistics:
    """Counters of a `FakeApiServer`, from `FakeApiServer.statistics`."""

    resource_version: int
    """The current global resourceVersion."""
    objects: int
    """Stored objects of all resources (including namespaces and CRDs)."""
    open_watches: int
    """Watch streams currently open."""
    retained_events: int
    """Events kept in the bounded histories."""
    requests: int
    """HTTP requests received."""


class ServerSnapshot:
    """The objects and resourceVersion of a `FakeApiServer` at one moment (`snapshot()`).

    Opaque: hand it to `FakeApiServer.restore` to bring the server back to that state, as
    when a cluster is restored from an etcd backup. It can be restored more than once.
    """

    __slots__ = ("_state",)

    def __init__(self, state: ClusterState) -> None:
        self._state = state

    @property
    def resource_version(self) -> int:
        """The global resourceVersion when the snapshot was taken."""
        return self._state.rv

    def __repr__(self) -> str:
        return f"<ServerSnapshot at resourceVersion {self._state.rv}>"


@define
class _RequestInfo:
    resource_request: bool = False
    api_prefix: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    verb: str = ""
    parts: list[str] = field(factory=list)


def _request_info(method: str, path: str, query: Mapping[str, str]) -> _RequestInfo:
    # Mirrors apiserver requestinfo.go [S11].
    info = _RequestInfo()
    parts = [p for p in path.strip("/").split("/") if p != ""]
    info.parts = parts
    if not parts or parts[0] not in ("api", "apis"):
        return info
    info.api_prefix = parts[0]
    rest = parts[1:]
    if info.api_prefix == "apis":
        if len(rest) < 2:
            return info
        info.group, info.version, rest = rest[0], rest[1], rest[2:]
    else:
        if len(rest) < 1:
            return info
        info.version, rest = rest[0], rest[1:]
    if not rest:
        return info
    info.resource_request = True
    watch_prefix = False
    if rest[0] == "watch":
        watch_prefix, rest = True, rest[1:]
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if rest:
        info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
    if len(rest) > 3:
        info.subresource = "/".join(rest[2:])
    if info.resource == "namespaces":
        # /api/v1/namespaces/NAME[/status] is the Namespace object itself (cluster-scoped)
        info.namespace = ""
    watch = watch_prefix or query_bool(query.get("watch"))
    info.verb = {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if info.name else "deletecollection",
    }.get(method, "")
    if method in ("GET", "HEAD"):
        info.verb = "watch" if watch else ("get" if info.name else "list")
    return info


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers = {"Cache-Control": "no-cache, private", **(headers or {})}
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=_JSON, headers=all_headers
    )


def _accepts_json(accept: str) -> bool:
    if not accept.strip():
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*", "application/yaml"):
            return True
    return False


_FIELD_VALIDATION_OPTIONS: Final = {
    "POST": "CreateOptions",
    "PUT": "UpdateOptions",
    "PATCH": "PatchOptions",
}


def _field_validation(request: web.Request) -> str:
    # Unset means Warn since server-side field validation went GA (1.27):
    # https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation
    directive = request.query.get("fieldValidation", "") or "Warn"
    options = _FIELD_VALIDATION_OPTIONS.get(request.method)
    if options is None:
        return "Ignore"
    if directive not in ("Ignore", "Strict", "Warn"):
        cause = not_supported_cause("fieldValidation", directive, ("Ignore", "Strict", "Warn"))
        raise invalid(options, "meta.k8s.io", "", [cause])
    return directive


_NOT_ACCEPTABLE: Final = (
    "the server was unable to respond with a content type that the client supports"
)


def _not_acceptable() -> web.Response:
    return _json(status_body(406, "NotAcceptable", _NOT_ACCEPTABLE), 406)


def _error_response(exc: ApiError) -> web.Response:
    headers = dict(exc.headers)
    if exc.code == 403:
        headers["X-Content-Type-Options"] = "nosniff"
    return _json(exc.status, exc.code, headers)


def _not_found_plain() -> web.Response:
    return web.Response(
        body=_PLAIN_404, status=404, headers={"Content-Type": "text/plain; charset=utf-8"}
    )


def _method_not_allowed() -> web.Response:
    return _json(
        status_body(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
        405,
    )


class FakeApiServer:
    """An in-process fake Kubernetes API server for tests (docs/protocol.md is its contract).

    Use it as ``async with FakeApiServer() as server:`` (or ``await server.start()`` and
    ``await server.stop()``). It listens on ``127.0.0.1`` and serves discovery, CRDs,
    namespaces, configmaps, events (core/v1 and events.k8s.io/v1), leases and any
    registered custom resource with list/watch semantics of a real server, plus scripted
    faults (`faults`) and deny rules (`deny`). The namespace controller and the garbage
    collector run in-process, synchronously after the write that concerns them.

    The Python API (`create`, `get`, `list`, `update`, `patch`, `apply`, `delete`) runs the
    same code as HTTP requests, so open watches see its changes. Call it from the event loop
    thread. Writes record ``metadata.managedFields`` and take ``dry_run=True``; over HTTP,
    ``dryRun=All`` and server-side apply (``application/apply-patch+yaml``) work as on
    kube-apiserver.

    Keyword-only knobs:

    - ``port``: TCP port, 0 (default) picks a free one.
    - ``token``: require ``Authorization: Bearer <token>`` (401 otherwise); never shown in
      reprs or logs.
    - ``bookmark_interval``: seconds between periodic BOOKMARKs to watchers that asked
      for them (real servers: about 60).
    - ``history_size``: events kept per resource; watches from older RVs get 410.
    - ``watch_list``: serve streaming lists (``sendInitialEvents``); ``False`` behaves
      like a server with the ``WatchList`` gate off (422 Forbidden).
    - ``too_large_rv_wait``: how long a list (or streaming list) waits for a future RV
      before answering 504 "Too large resource version" (real servers: 3 s).
    - ``max_request_bytes``: largest request body (real servers: 3 MiB); larger gets 413.
    - ``now``: clock for ``creationTimestamp`` and ``deletionTimestamp``.
    - ``user``: user name reported in 403 messages.
    - ``tls``: serve HTTPS with a throw-away self-signed certificate (made with the
      ``openssl`` command); the kubeconfig carries it. kubectl sends credentials only over
      TLS, so use it together with ``token`` for kubectl.
    - ``kubernetes_version``: what ``/version`` reports (``"1.32"``); the kubectl dispatcher
      picks its ``kubectl.1.<minor>`` binary from it.
    - ``auto_create_namespaces``: a create over HTTP in a namespace that does not exist
      creates the namespace first, instead of the real server's 404 (the Python API
      always does this).
    - ``garbage_collector``: run the garbage collector (dependents go with their owners);
      ``False`` behaves like a control plane without kube-controller-manager (envtest).
    - ``aggregated_discovery``: serve aggregated discovery (``apidiscovery.k8s.io`` v2 and
      v2beta1) on ``/api`` and ``/apis`` to clients that ask for it in ``Accept``;
      ``False`` serves only the legacy per-group/version documents.

    Not implemented: server-side defaulting of legacy watches into streaming lists
    (behaves like a server where that defaulting is off), protobuf/CBOR responses, CEL
    validation rules of CRD schemas.

    Custom resources are pruned, defaulted and validated by their CRD's structural schema
    (422 Invalid like kube-apiserver); ``/openapi/v2`` and ``/openapi/v3`` describe every
    served kind; ``Table`` and ``PartialObjectMetadata`` views are served on request;
    server-side apply tracks ``managedFields`` per manager; ``dryRun=All`` checks every
    write without storing it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        bookmark_interval: float = 60.0,
        history_size: int = 10_000,
        watch_list: bool = True,
        too_large_rv_wait: float = 3.0,
        max_request_bytes: int = 3 * 1024 * 1024,
        now: Callable[[], datetime] | None = None,
        user: str | None = None,
        kubernetes_version: str = "1.32",
        tls: bool = False,
        auto_create_namespaces: bool = False,
        garbage_collector: bool = True,
        aggregated_discovery: bool = True,
    ) -> None:
        major, _, minor = kubernetes_version.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise ValueError(
                f"kubernetes_version must look like '1.32', not {kubernetes_version!r}"
            )
        self.kubernetes_version = kubernetes_version
        self._tls = tls
        self._ssl_context: ssl.SSLContext | None = None
        self._ca_pem: bytes | None = None
        self._host = host
        self._port = port
        self._token = token
        self.bookmark_interval = bookmark_interval
        self.watch_list = watch_list
        self.too_large_rv_wait = too_large_rv_wait
        self.max_request_bytes = max_request_bytes
        self.user: str = user or ("system:anonymous" if token is None else "crwatch-test-user")
        self._state = ClusterState(
            history_size=history_size, now=now, garbage_collector=garbage_collector
        )
        self.auto_create_namespaces = auto_create_namespaces
        self._now = now or (lambda: datetime.now(timezone.utc))  # ages in Table cells
        self.faults: FaultPlan = FaultPlan()
        """The fault plan: ``server.faults.add(Fault.status(429), verb="watch")``."""
        self._deny: list[DenyRule] = []
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._requests = 0
        self.aggregated_discovery = aggregated_discovery
        """Answer ``/api`` and ``/apis`` with aggregated discovery (``APIGroupDiscoveryList``,
        apidiscovery.k8s.io v2 and v2beta1) when ``Accept`` asks for it, as servers since
        1.27 do; ``False`` behaves like an older server: only the legacy documents, one
        request per group/version."""
        self.serve_views = True
        """Serve the meta.k8s.io views a request asks for in ``Accept`` (``Table``,
        ``PartialObjectMetadata``). ``False`` answers as an API server without them would:
        the clauses asking for a view are skipped, so a client that also accepts plain JSON
        (as metadata-only clients do) gets the objects themselves, and one that accepts only
        a view gets 406."""
        self.reject_future_watches: bool = False
        """Answer a plain watch from a resourceVersion the server has not reached, after
        ``too_large_rv_wait``, with an ERROR 504 "Too large resource version", as
        kube-apiserver does for a streaming list. Off by default: such a watch then stays
        silent until that version comes, as kube-apiserver's watch cache keeps it.
        `restore` turns it on; turn it off again to test the silent case."""
        # (verb, resource, namespace) of the last requests, for wait_for_request.
        self._request_log: deque[tuple[str, str, str]] = deque(maxlen=10_000)
        self._changed = asyncio.Event()
        self._writing = 0

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "not started"
        auth = ", token=<hidden>" if self._token is not None else ""
        return f"<FakeApiServer {where}{auth}>"

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (returns once the socket is bound)."""
        if self._runner is not None:
            raise RuntimeError("FakeApiServer is already started")
        self._closing = False
        app = web.Application(client_max_size=self.max_request_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        if self._tls and self._ssl_context is None:
            self._ssl_context, self._ca_pem = await _self_signed_context(self._host)
        site = web.TCPSite(
            runner, self._host, self._port, ssl_context=self._ssl_context, reuse_address=True
        )
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        """Close every open watch (clean EOF) and stop listening."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        for rtype in self._state.types():
            for watcher in list(self._state.collection(rtype).watchers):
                watcher.wake.set()
        await runner.cleanup()

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (``https`` with ``tls=True``)."""
        return f"{'https' if self._tls else 'http'}://{self._host}:{self._port}"

    @property
    def ca_certificate(self) -> bytes | None:
        """PEM of the self-signed certificate clients must trust (``tls=True``, once started)."""
        return self._ca_pem

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return a client SSL context trusting this server, or ``None`` without TLS."""
        if self._ca_pem is None:
            return None
        return ssl.create_default_context(cadata=self._ca_pem.decode())

    @property
    def port(self) -> int:
        """The bound TCP port (after `start`)."""
        return self._port

    @property
    def token(self) -> str | None:
        """The bearer token clients must send, or ``None`` when auth is off."""
        return self._token

    def kubeconfig(self, path: str | os.PathLike[str], *, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (with the token if auth is on); return its path.

        Works for kubernetes-asyncio, the official client and kubectl.
        """
        if self._port == 0 or (self._tls and self._ca_pem is None):
            raise RuntimeError("start the server before writing its kubeconfig")
        user: dict[str, str] = {} if self._token is None else {"token": self._token}
        cluster: dict[str, str] = {"server": self.url}
        if self._ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self._ca_pem).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }
        target = Path(path)
        target.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
        target.chmod(0o600)
        return target

    # -- registry, access ------------------------------------------------------------------

    def register_crd(
        self,
        *,
        group: str,
        version: str | Sequence[str],
        plural: str,
        kind: str,
        namespaced: bool = True,
        singular: str | None = None,
        list_kind: str | None = None,
        short_names: Iterable[str] = (),
        status_subresource: bool = False,
        selectable_fields: Iterable[str] = (),
        schema: Mapping[str, Any] | None = None,
        printer_columns: Iterable[Mapping[str, Any]] = (),
    ) -> ResourceType:
        """Create a CustomResourceDefinition (as if POSTed) and return the type's handle.

        ``version`` may list several served versions; the first is the storage version and
        the one whose handle is returned. ``selectable_fields`` are paths like
        ``"spec.color"`` (the CRD stores them as jsonPath ``.spec.color``).

        ``schema`` is every version's ``openAPIV3Schema``; it must be structural, and it
        prunes, defaults and validates writes. Without it the schema is
        ``{"type": "object", "x-kubernetes-preserve-unknown-fields": true}``: every field
        is kept and nothing is checked. ``printer_columns`` are the versions'
        ``additionalPrinterColumns`` (``{"name", "type", "jsonPath"}``), shown by
        ``kubectl get``. Raises `ApiError` 422 for an invalid CRD.
        """
        versions = [version] if isinstance(version, str) else list(version)
        names: Obj = {"plural": plural, "kind": kind}
        if singular:
            names["singular"] = singular
        if list_kind:
            names["listKind"] = list_kind
        if short_names:
            names["shortNames"] = list(short_names)
        fields = [{"jsonPath": "." + f.lstrip(".")} for f in selectable_fields]
        open_schema = _copy(dict(schema)) if schema is not None else dict(PERMISSIVE_SCHEMA)
        columns = [_copy(dict(c)) for c in printer_columns]
        crd: Obj = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "names": names,
                "scope": "Namespaced" if namespaced else "Cluster",
                "versions": [
                    {
                        "name": v,
                        "served": True,
                        "storage": i == 0,
                        "schema": {"openAPIV3Schema": open_schema},
                        **({"subresources": {"status": {}}} if status_subresource else {}),
                        **({"additionalPrinterColumns": columns} if columns else {}),
                        **({"selectableFields": fields} if fields else {}),
                    }
                    for i, v in enumerate(versions)
                ],
            },
        }
        self._state.create(CRD_TYPE, crd)
        return self.resource(group, versions[0], plural)

    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        """Return the handle of a served resource (``""`` is the core group), else KeyError."""
        rtype = self._state.lookup(group, version, plural)
        if rtype is None:
            raise KeyError(f"no served resource {plural}.{version}.{group or 'core'}")
        return rtype

    def deny(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        group: str | None = None,
        namespace: str | None = None,
    ) -> DenyRule:
        """Answer 403 Forbidden to matching requests until the returned rule is removed.

        ``resource`` is a plural, or ``"plural/subresource"``; unset filters match all.
        """
        rule = DenyRule(verb, resource, group, namespace, rules=self._deny)
        self._deny.append(rule)
        return rule

    # -- waiting (tests synchronise on these instead of sleeping) ---------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(
        self, ready: Callable[[], bool], timeout: float, what: Callable[[], str]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"FakeApiServer: {what()} within {timeout} s")
            # Wake at least every 20 ms: a change through the Python API (an event appended
            # to a history, a watch noticing it) does not notify by itself.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.02))

    def open_watches(self, resource: ResourceRef | None = None) -> int:
        """Return how many watches are open (on ``resource``, if given)."""
        if resource is None:
            return self.statistics().open_watches
        return len(self._state.collection(self._rtype(resource)).watchers)

    async def wait_for_watchers(
        self, n: int = 1, *, resource: ResourceRef | None = None, timeout: float = 10.0
    ) -> None:
        """Wait until exactly ``n`` watches are open (on ``resource``, if given).

        A watch counts from the moment the server registered it: a change made after this
        returns is sent on it. ``n=0`` waits until every watch has gone.

        Raises:
            TimeoutError: not so within ``timeout`` seconds.
        """
        await self._wait(
            lambda: self.open_watches(resource) == n,
            timeout,
            lambda: f"{self.open_watches(resource)} open watches, not {n},",
        )

    async def wait_for_request(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        n: int = 1,
        timeout: float = 10.0,
    ) -> None:
        """Wait until the server has received ``n`` matching resource requests in all.

        ``verb`` is a Kubernetes verb (``"list"``, ``"watch"``, ``"get"``, ``"create"``,
        ...), ``resource`` a plural; unset filters match all. Requests are counted when
        they arrive, before faults, deny rules or any waiting (a list waiting for a future
        resourceVersion is already counted). Only the last 10,000 requests are kept.

        Raises:
            TimeoutError: fewer within ``timeout`` seconds.
        """

        def count() -> int:
            return sum(
                1
                for v, r, ns in self._request_log
                if (verb is None or v == verb)
                and (resource is None or r == resource)
                and (namespace is None or ns == namespace)
            )

        await self._wait(
            lambda: count() >= n, timeout, lambda: f"{count()} matching requests, not {n},"
        )

    def _flushed(self) -> bool:
        if self._writing:
            return False
        for rtype in self._state.types():
            coll = self._state.collection(rtype)
            if any(not w.terminated and w.seq < coll.end_seq for w in coll.watchers):
                return False
        return True

    async def wait_flushed(self, *, timeout: float = 10.0) -> None:
        """Wait until every open watch has written every change made so far to its socket.

        What the client has read is up to the client; this says the server has nothing
        left to send.

        Raises:
            TimeoutError: not so within ``timeout`` seconds.
        """
        await self._wait(self._flushed, timeout, lambda: "watches not flushed")

    # -- restarts and backups --------------------------------------------------------------

    def snapshot(self) -> ServerSnapshot:
        """Return a copy of every object and the resourceVersion, for `restore`."""
        return ServerSnapshot(self._copy_state(self._state))

    @staticmethod
    def _copy_state(state: ClusterState) -> ClusterState:
        # Open watches and waiters belong to the running server, not to the data.
        collections = list(state._collections.values())
        watchers = [c.watchers for c in collections]
        rv_changed = state._rv_changed
        try:
            for c in collections:
                c.watchers = set()
            state._rv_changed = asyncio.Event()
            copied: ClusterState = copy.deepcopy(state)
        finally:
            for c, w in zip(collections, watchers, strict=True):
                c.watchers = w
            state._rv_changed = rv_changed
        return copied

    async def restart(self, *, downtime: float = 0.0, keep_history: bool = False) -> None:
        """Restart the server with its objects: what clients see of an API server restart.

        Every open watch ends, connections are refused for ``downtime`` seconds (the
        port is closed), then the server listens on the same port again. The watch cache
        of a restarted kube-apiserver starts empty, so a watch resuming from a
        resourceVersion older than the current one gets 410 Expired and the client must
        relist (https://kubernetes.io/docs/reference/using-api/api-concepts/
        #efficient-detection-of-changes); ``keep_history=True`` keeps the history instead.
        Returns once the server listens again.
        """
        await self.stop()
        if not keep_history:
            self._state.compact()
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self.start()

    async def restore(self, snapshot: ServerSnapshot, *, downtime: float = 0.0) -> None:
        """Restart the server with the objects and resourceVersion of an older `snapshot`.

        What clients see when a cluster is restored from an etcd backup: the
        resourceVersion goes back below what they have seen. As after `restart`, every
        watch ends and connections are refused for ``downtime`` seconds; the history is
        empty, and `reject_future_watches` is turned on, so a client resuming from its
        (now future) resourceVersion gets "Too large resource version" and must relist.
        Resource types (CRDs are objects too) come back as they were in the snapshot.
        Returns once the server listens again.
        """
        await self.stop()
        state = self._copy_state(snapshot._state)
        state.compact()
        self._state = state
        self.reject_future_watches = True
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self.start()

    # -- Python API -------------------------------------------------------------------------

    def _rtype(self, resource: ResourceRef) -> ResourceType:
        if isinstance(resource, ResourceType):
            return resource
        return self.resource(*resource)

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self._state.rv

    def close_watches(self, resource: ResourceRef | None = None) -> int:
        """End open watches with a clean EOF once they have sent what is stored.

        A real server does this when its watch cache re-initialises or a CRD changes
        (docs/protocol.md, "How watches end, and how to resume"); clients must re-watch from their
        last resourceVersion. Only the
        watches of ``resource`` are ended when it is given. Returns how many were ended.
        """
        if resource is not None:
            collections = [self._state.collection(self._rtype(resource))]
        else:
            collections = [coll for _, coll in self._state.collections()]
        ended = 0
        for coll in collections:
            for watcher in list(coll.watchers):
                watcher.finish()
                ended += 1
        return ended

    def compact(self) -> None:
        """Drop all event history up to the current RV (older watches and tokens get 410).

        Watches that are caught up carry on; a watch that had not yet sent some of the
        dropped events ends cleanly, so its client resumes and meets the 410.
        """
        self._state.compact()

    def advance_resource_version(self, by: int = 1) -> int:
        """Move the global RV forward without changing any object; return the new RV.

        In a real cluster the RV moves all the time (leases, events), so periodic bookmarks
        carry newer RVs; an idle fake cluster sends no bookmark, because a watcher never gets
        one at an RV it already has (docs/protocol.md, "Bookmarks"). Call this to simulate that
        traffic.
        """
        if by < 1:
            raise ValueError("by must be at least 1")
        for _ in range(by):
            self._state.next_rv()
        return self._state.rv

    def statistics(self) -> ServerStatistics:
        """Return a snapshot of the server's counters."""
        collections = {id(c): c for c in map(self._state.collection, self._state.types())}
        return ServerStatistics(
            resource_version=self._state.rv,
            objects=sum(len(c.objects) for c in collections.values()),
            open_watches=sum(len(c.watchers) for c in collections.values()),
            retained_events=sum(c.end_seq - c.start_seq for c in collections.values()),
            requests=self._requests,
        )

    @staticmethod
    def _ns(rtype: ResourceType, namespace: str | None, obj: Any = None) -> str | None:
        if not rtype.namespaced:
            return None
        if namespace:
            return namespace
        if isinstance(obj, dict):
            meta = obj.get("metadata")
            if isinstance(meta, dict) and meta.get("namespace"):
                return str(meta["namespace"])
        return "default"

    def create(
        self,
        resource: ResourceRef,
        obj: Obj,
        *,
        namespace: str | None = None,
        field_manager: str = _PYTHON_MANAGER,
        dry_run: bool = False,
    ) -> Obj:
        """Create an object and return a copy of what was stored.

        For namespaced resources the namespace comes from ``namespace``, else from the
        object, else ``"default"``; a namespace that does not exist is created first (a
        test-setup convenience: over HTTP that create answers 404 like a real server).
        Raises `ApiError` where the HTTP API would answer an error (409 AlreadyExists,
        422, 403 in a terminating namespace, ...).
        ``field_manager`` owns the fields in ``managedFields`` (an ``Update`` entry);
        ``dry_run=True`` checks everything and returns the object without storing it.
        """
        rtype = self._rtype(resource)
        ns = self._ns(rtype, namespace, obj)
        if not dry_run:
            self._ensure_namespace(ns)
        return _copy(
            self._state.create(
                rtype,
                obj,
                ns,
                op=WriteOptions(field_manager=field_manager).operation(),
                dry_run=dry_run,
            )
        )

    def _ensure_namespace(self, namespace: str | None) -> None:
        namespaces = self.resource("", "v1", "namespaces")
        if namespace and namespace not in self._state.collection(namespaces).objects:
            self._state.create(namespaces, {"metadata": {"name": namespace}})

    def get(self, resource: ResourceRef, name: str, *, namespace: str | None = None) -> Obj:
        """Return a copy of one object; `ApiError` 404 when missing."""
        rtype = self._rtype(resource)
        return _copy(self._state.get(rtype, name, self._ns(rtype, namespace)))

    def list(
        self,
        resource: ResourceRef,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]:
        """Return copies of the current objects in key order (all namespaces by default)."""
        rtype = self._rtype(resource)
        opts = self._list_options(
            rtype, {"labelSelector": label_selector, "fieldSelector": field_selector}, watch=False
        )
        body = self._state.list_objects(rtype, namespace, opts)
        return [_copy(item) for item in body["items"]]

    def update(
        self,
        resource: ResourceRef,
        obj: Obj,
        *,
        namespace: str | None = None,
        status: bool = False,
        field_manager: str = _PYTHON_MANAGER,
        dry_run: bool = False,
    ) -> Obj:
        """Replace an object like PUT (``status=True``: PUT on ``/status``).

        A stale ``metadata.resourceVersion`` raises `ApiError` 409 Conflict; leave it out for
        an unconditional update.
        """
        rtype = self._rtype(resource)
        name = str((obj.get("metadata") or {}).get("name", ""))
        sub = "status" if status else ""
        return _copy(
            self._state.update(
                rtype,
                obj,
                name,
                self._ns(rtype, namespace, obj),
                subresource=sub,
                op=WriteOptions(field_manager=field_manager).operation(subresource=sub),
                dry_run=dry_run,
            )
        )

    def patch(
        self,
        resource: ResourceRef,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: str = "merge",
        status: bool = False,
        field_manager: str = _PYTHON_MANAGER,
        dry_run: bool = False,
    ) -> Obj:
        """Patch an object: ``patch_type`` ``"merge"`` (RFC 7386) or ``"json"`` (RFC 6902)."""
        rtype = self._rtype(resource)
        sub = "status" if status else ""
        return _copy(
            self._state.patch(
                rtype,
                name,
                patch,
                self._ns(rtype, namespace),
                patch_type=patch_type,
                subresource=sub,
                op=WriteOptions(field_manager=field_manager).operation(subresource=sub),
                dry_run=dry_run,
            )
        )

    def apply(
        self,
        resource: ResourceRef,
        obj: Obj,
        *,
        field_manager: str,
        force: bool = False,
        namespace: str | None = None,
        status: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply ``obj`` (an apply configuration) as ``field_manager``.

        Creates the object when it does not exist. Raises `ApiError` 409 Conflict when the
        configuration changes fields another manager owns, unless ``force=True`` (then
        this manager takes them over).
        """
        rtype = self._rtype(resource)
        if not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        name = str((obj.get("metadata") or {}).get("name", ""))
        sub = "status" if status else ""
        opts = WriteOptions(field_manager=field_manager, force=force)
        ns = self._ns(rtype, namespace, obj)
        if not dry_run:
            self._ensure_namespace(ns)
        applied, _ = self._state.apply(
            rtype,
            name,
            obj,
            ns,
            op=opts.operation(apply=True, subresource=sub),
            subresource=sub,
            dry_run=dry_run,
        )
        return _copy(applied)

    def delete(
        self,
        resource: ResourceRef,
        name: str,
        *,
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Delete an object (only marks it when it has finalizers); return its last state."""
        rtype = self._rtype(resource)
        return _copy(self._state.delete(rtype, name, self._ns(rtype, namespace), dry_run=dry_run))

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._requests += 1
        warnings: builtins.list[str] = []
        WARNINGS.set(warnings)  # each request runs in its own task, so its own context
        try:
            FIELD_VALIDATION.set(_field_validation(request))
            response = await self._dispatch(request)
        except ApiError as exc:
            response = _error_response(exc)
        if warnings and not response.prepared:
            # Warning headers (https://kubernetes.io/blog/2020/09/03/warnings/): kubectl
            # prints them as "Warning: ..." lines.
            for text in dict.fromkeys(warnings):
                escaped = text.replace("\\", "\\\\").replace('"', '\\"')
                response.headers.add("Warning", f'299 - "{escaped}"')
        return response

    def _authorized(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode(), self._token.encode()
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _json(
                status_body(401, "Unauthorized", "Unauthorized"),
                401,
            )
        info = _request_info(request.method, request.path, request.query)
        if info.resource_request:
            self._request_log.append((info.verb, info.resource, info.namespace))
            self._notify()
            resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
            for rule in self._deny:
                if rule.matches(info.verb, resource, info.group, info.namespace):
                    raise self._forbidden(info, resource)
            fault = self.faults.take(
                verb=info.verb,
                method=request.method,
                resource=info.resource,
                group=info.group,
                namespace=info.namespace,
                path=request.path,
                query=request.query_string,
            )
            if fault is not None:
                early = await self._early_fault(request, fault)
                if early is not None:
                    return early
                if not fault.stream_only:
                    fault = None
            return await self._resource(request, info, fault)
        if info.parts[:1] == ["openapi"] or info.parts == ["swagger-2.0.0.pb-v1"]:
            return self._openapi(request, info.parts)
        return self._discovery(request, info.parts)

    def _openapi(self, request: web.Request, parts: builtins.list[str]) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        types = self._state.types()
        schemas = self._state.schemas
        if (
            parts in (["openapi", "v2"], ["swagger-2.0.0.pb-v1"])
            and "proto-openapi.spec.v2" in (accept.split(",")[0])
        ):
            # kubectl 1.27/1.28 read the v2 document only as gnostic protobuf.
            body = protobuf_document(v2_document(types, schemas, self.kubernetes_version))
            return web.Response(
                body=body,
                headers={"Content-Type": PROTOBUF_V2, "Cache-Control": "no-cache, private"},
            )
        if not _accepts_json(accept) or parts == ["swagger-2.0.0.pb-v1"]:
            return _not_found_plain()
        if parts == ["openapi", "v2"]:
            return _json(v2_document(types, schemas, self.kubernetes_version))
        if parts == ["openapi", "v3"]:
            return _json(v3_index(types, schemas, self.kubernetes_version))
        if len(parts) in (4, 5) and parts[1] == "v3":
            group, version = (parts[3], parts[4]) if parts[2] == "apis" else ("", parts[3])
            if (parts[2] == "apis") == (len(parts) == 5) and any(
                t.group == group and t.version == version for t in types
            ):
                return _json(v3_document(types, schemas, group, version, self.kubernetes_version))
        return _not_found_plain()

    def _forbidden(self, info: _RequestInfo, resource: str) -> ApiError:
        qualified = f"{info.resource}.{info.group}" if info.group else info.resource
        where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
        reason = (
            f'User "{self.user}" cannot {info.verb} resource "{resource}" in API group '
            f'"{info.group}" {where}'
        )
        subject = f'{qualified} "{info.name}"' if info.name else qualified
        details: Obj = {}
        if info.name:
            details["name"] = info.name
        if info.group:
            details["group"] = info.group
        details["kind"] = info.resource
        return ApiError(status_body(403, "Forbidden", f"{subject} is forbidden: {reason}", details))

    async def _early_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse | None:
        if fault.action == "status":
            details: Obj = {}
            headers: dict[str, str] = {}
            if fault.retry_after is not None:
                details["retryAfterSeconds"] = fault.retry_after
                headers["Retry-After"] = str(fault.retry_after)
            return _json(
                status_body(fault.code, fault.reason, fault.message, details or None),
                fault.code,
                headers,
            )
        if fault.action == "reset":
            _abort(request)
            raise asyncio.CancelledError  # aiohttp drops the handler quietly
        if fault.action == "stall" and fault.after_events == 0:
            await asyncio.sleep(fault.seconds)
            if fault.then == "close":
                _abort(request)
                raise asyncio.CancelledError
        return None

    async def _read_body(self, request: web.Request) -> Any:
        binary = request.content_type in _BINARY_MEDIA_TYPES
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(
                status_body(
                    413,
                    "RequestEntityTooLarge",
                    f"Request entity too large: limit is {self.max_request_bytes}",
                )
            ) from None
        if not raw:
            return None
        if binary:
            # kubectl writes built-in kinds as protobuf and does not fall back to JSON.
            try:
                return decode_protobuf(raw)
            except ProtobufError as exc:
                raise ApiError(
                    status_body(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - accepted media "
                        f"types include: application/json, application/yaml ({exc})",
                    )
                ) from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(
                status_body(
                    400, "BadRequest", f"couldn't get version/kind; json parse error: {exc}"
                )
            ) from None

    def _list_options(
        self, rtype: ResourceType, query: Mapping[str, str], *, watch: bool, name: str = ""
    ) -> ListOptions:
        try:
            labels = parse_label_selector(query.get("labelSelector", ""))
            field_text = query.get("fieldSelector", "")
            if name:
                field_text = f"metadata.name={name}" + (f",{field_text}" if field_text else "")
            fields = parse_field_selector(field_text)
        except SelectorError as exc:
            raise ApiError(status_body(400, "BadRequest", str(exc))) from None
        for path in fields.fields:
            if path not in rtype.field_labels:
                raise ApiError(status_body(400, "BadRequest", f"field label not supported: {path}"))
        try:
            limit = int(query.get("limit") or 0)
            timeout = query.get("timeoutSeconds")
            timeout_seconds = int(timeout) if timeout else None
        except ValueError as exc:
            raise ApiError(status_body(400, "BadRequest", str(exc))) from None
        sie = query.get("sendInitialEvents")
        return ListOptions(
            watch=watch,
            resource_version=query.get("resourceVersion", ""),
            resource_version_match=query.get("resourceVersionMatch", ""),
            send_initial_events=None if sie is None else query_bool(sie),
            allow_watch_bookmarks=query_bool(query.get("allowWatchBookmarks")),
            limit=max(limit, 0),
            continue_token=query.get("continue", ""),
            timeout_seconds=timeout_seconds,
            label_selector=labels,
            field_selector=fields,
        )

    async def _resource(
        self, request: web.Request, info: _RequestInfo, fault: Fault | None
    ) -> web.StreamResponse:
        state = self._state
        rtype = state.lookup(info.group, info.version, info.resource)
        if rtype is None or (info.api_prefix == "api") != (rtype.group == ""):
            return _not_found_plain()
        # Scope rules of the CR handler [E1 crdHandler.ServeHTTP].
        if info.namespace and not rtype.namespaced:
            return _not_found_plain()
        if rtype.namespaced and not info.namespace and info.verb not in ("list", "watch"):
            return _not_found_plain()
        if info.subresource == "finalize" and rtype == state.lookup("", "v1", "namespaces"):
            if request.method != "PUT":
                return _method_not_allowed()
            body = await self._read_body(request)
            return _json(state.controllers.namespaces.finalize(info.name, body))
        if info.subresource and (info.subresource != "status" or not rtype.status_subresource):
            return _not_found_plain()
        accept = request.headers.get("Accept", "")
        if not self.serve_views:
            accept = ",".join(c for c in accept.split(",") if "as=" not in c) or "none/none"
        view = negotiate(accept)
        if view is None:
            # Custom resources are served as JSON only (no protobuf) [D1].
            return _not_acceptable()
        ns = info.namespace or None
        method = request.method
        if info.subresource and method not in ("GET", "PUT", "PATCH"):
            return _method_not_allowed()
        if not info.name:
            if method == "GET":
                opts = self._list_options(rtype, request.query, watch=info.verb == "watch")
                validate_list_options(opts, watch_list=self.watch_list)
                if opts.watch:
                    return await self._watch(request, rtype, ns, opts, fault, view)
                return self._render_list(request, rtype, await self._list(rtype, ns, opts), view)
            if method == "POST":
                wopts = self._write_options(request, "create")
                body = await self._read_body(request)
                if self.auto_create_namespaces:
                    self._ensure_namespace(ns)
                created = state.create(rtype, body, ns, op=wopts.operation(), dry_run=wopts.dry_run)
                return self._render(request, rtype, created, view, 201)
            if method == "DELETE":
                return await self._delete_collection(request, rtype, ns)
            return _method_not_allowed()
        if method == "GET":
            if info.verb == "watch":
                opts = self._list_options(rtype, request.query, watch=True, name=info.name)
                validate_list_options(opts, watch_list=self.watch_list)
                return await self._watch(request, rtype, ns, opts, fault, view)
            return self._render(request, rtype, state.get(rtype, info.name, ns), view)
        if method == "PUT":
            wopts = self._write_options(request, "update")
            body = await self._read_body(request)
            return self._render(
                request,
                rtype,
                state.update(
                    rtype,
                    body,
                    info.name,
                    ns,
                    subresource=info.subresource,
                    op=wopts.operation(subresource=info.subresource),
                    dry_run=wopts.dry_run,
                ),
                view,
            )
        if method == "PATCH":
            ctype = request.content_type
            if ctype == APPLY_PATCH:
                return await self._apply(request, rtype, info, ns)
            kinds = {
                "application/merge-patch+json": "merge",
                "application/json-patch+json": "json",
            }
            if ctype == "application/strategic-merge-patch+json" and rtype.builtin:
                kinds[ctype] = "merge"  # approximation: no patch strategies for built-ins
            patch_type = kinds.get(ctype)
            if patch_type is None:
                # CRs do not support strategic merge patch [E1]; SSA is not implemented.
                return _json(status_body(415, "UnsupportedMediaType", _UNSUPPORTED_PATCH), 415)
            wopts = self._write_options(request, "patch")
            body = await self._read_body(request)
            return self._render(
                request,
                rtype,
                state.patch(
                    rtype,
                    info.name,
                    body,
                    ns,
                    patch_type=patch_type,
                    subresource=info.subresource,
                    op=wopts.operation(subresource=info.subresource),
                    dry_run=wopts.dry_run,
                ),
                view,
            )
        if method == "DELETE":
            options = delete_body(await self._read_body(request))
            wopts = self._write_options(request, "delete", body_dry_run=options.get("dryRun"))
            policy, orphan = delete_options(options, request.query)
            deleted = state.delete(
                rtype,
                info.name,
                ns,
                preconditions=options.get("preconditions"),
                propagation=policy,
                orphan_dependents=orphan,
                dry_run=wopts.dry_run,
            )
            answer, code = delete_answer(rtype, deleted, orphan_dependents=orphan)
            return _json(answer, code)
        return _method_not_allowed()

    def _write_options(
        self, request: web.Request, verb: str, *, apply: bool = False, body_dry_run: Any = None
    ) -> WriteOptions:
        return write_options(
            verb,
            request.query,
            user_agent=request.headers.get("User-Agent", ""),
            apply=apply,
            body_dry_run=body_dry_run,
        )

    async def _apply(
        self, request: web.Request, rtype: ResourceType, info: _RequestInfo, ns: str | None
    ) -> web.StreamResponse:
        # Server-side apply (PATCH, application/apply-patch+yaml):
        # https://kubernetes.io/docs/reference/using-api/server-side-apply/
        opts = self._write_options(request, "patch", apply=True)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(
                status_body(
                    413,
                    "RequestEntityTooLarge",
                    f"Request entity too large: limit is {self.max_request_bytes}",
                )
            ) from None
        body = decode_apply_body(raw)
        if self.auto_create_namespaces and not opts.dry_run:
            self._ensure_namespace(ns)
        obj, created = self._state.apply(
            rtype,
            info.name,
            body,
            ns,
            op=opts.operation(apply=True, subresource=info.subresource),
            subresource=info.subresource,
            dry_run=opts.dry_run,
        )
        return _json(obj, 201 if created else 200)

    async def _delete_collection(
        self, request: web.Request, rtype: ResourceType, ns: str | None
    ) -> web.StreamResponse:
        # Answers the list of deleted (or deletion-marked) objects, like the generic registry.
        options = delete_body(await self._read_body(request))
        write = self._write_options(request, "deletecollection", body_dry_run=options.get("dryRun"))
        opts = self._list_options(rtype, request.query, watch=False)
        body = self._state.list_objects(rtype, ns, opts)
        policy, orphan = delete_options(options, request.query)
        deleted = []
        with self._state.controllers.hold():  # collect garbage once, after every delete
            for item in body["items"]:
                meta = item["metadata"]
                try:
                    deleted.append(
                        self._state.delete(
                            rtype,
                            meta["name"],
                            meta.get("namespace"),
                            preconditions={"uid": meta.get("uid")},
                            propagation=policy,
                            orphan_dependents=orphan,
                            dry_run=write.dry_run,
                        )
                    )
                except ApiError as exc:
                    if exc.code not in (404, 409):  # gone or replaced meanwhile: skipped
                        raise
        body["items"] = deleted
        body["metadata"] = {"continue": "", "resourceVersion": str(self._state.rv)}
        return _json(body)

    def _columns(self, rtype: ResourceType) -> tuple[Column, ...]:
        entry = self._state.schemas.get(rtype.group, rtype.version, rtype.plural)
        if entry is not None:
            return crd_columns(entry.columns)
        return builtin_columns(rtype.group, rtype.kind)

    def _include_object(self, request: web.Request) -> str:
        include = request.query.get("includeObject", "") or "Metadata"
        if include not in INCLUDE_OBJECT:
            cause = not_supported_cause("includeObject", include, INCLUDE_OBJECT)
            raise invalid("TableOptions", "meta.k8s.io", "", [cause])
        return include

    def _render(
        self, request: web.Request, rtype: ResourceType, obj: Obj, view: View, code: int = 200
    ) -> web.StreamResponse:
        """Answer one object in the negotiated view (Table, PartialObjectMetadata, plain)."""
        if view.as_kind == "":
            return _json(obj, code)
        if view.as_kind == PARTIAL:
            return _json(partial(obj, view), code)
        if view.as_kind == TABLE:
            meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
            return _json(
                table(
                    [obj],
                    self._columns(rtype),
                    view,
                    include_object=self._include_object(request),
                    metadata=meta,
                    now=self._now(),
                ),
                code,
            )
        return _not_acceptable()

    def _render_list(
        self, request: web.Request, rtype: ResourceType, body: Obj, view: View
    ) -> web.StreamResponse:
        """Answer a list in the negotiated view."""
        if view.as_kind == "":
            return _json(body)
        if view.as_kind == PARTIAL_LIST:
            return _json(partial_list(body, view))
        if view.as_kind == TABLE:
            return _json(
                table(
                    body["items"],
                    self._columns(rtype),
                    view,
                    include_object=self._include_object(request),
                    metadata=body["metadata"],
                    now=self._now(),
                    type_meta={"apiVersion": rtype.api_version, "kind": rtype.kind},
                )
            )
        return _not_acceptable()

    def _event_transform(
        self, request: web.Request, rtype: ResourceType, view: View
    ) -> Callable[[bytes], bytes] | None:
        """Rewrite each watch event's object into a Table row (None: no rewriting)."""
        if view.as_kind in ("", PARTIAL):
            return None  # PartialObjectMetadata: the watcher encodes it (Watcher.view)
        if view.as_kind == PARTIAL_LIST:
            raise ApiError(status_body(406, "NotAcceptable", _NOT_ACCEPTABLE))
        columns = self._columns(rtype) if view.as_kind == TABLE else ()
        include = self._include_object(request) if view.as_kind == TABLE else ""
        first = [True]

        def transform(line: bytes) -> bytes:
            event = orjson.loads(line)
            obj = event.get("object")
            if event.get("type") == "ERROR" or not isinstance(obj, dict):
                return line
            bookmark = event.get("type") == "BOOKMARK"
            event["object"] = table(
                [] if bookmark else [obj],
                columns,
                view,
                include_object=include,
                metadata={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                now=self._now(),
                headers=first[0] and not bookmark,
            )
            # Column definitions go with the first row only, as kube-apiserver sends them.
            first[0] = first[0] and bookmark
            return orjson.dumps(event) + b"\n"

        return transform

    async def _list(self, rtype: ResourceType, ns: str | None, opts: ListOptions) -> Obj:
        state = self._state
        if not opts.continue_token and opts.resource_version not in ("", "0"):
            requested = parse_list_rv(opts.resource_version)
            # "Not older than" and "Exact" wait for a future RV, then 504 [S6].
            if requested > state.rv and not await state.wait_for_rv(
                requested, self.too_large_rv_wait
            ):
                raise too_large_rv(requested, state.rv)
        return state.list_objects(rtype, ns, opts)

    async def _watch(
        self,
        request: web.Request,
        rtype: ResourceType,
        ns: str | None,
        opts: ListOptions,
        fault: Fault | None,
        view: View = PLAIN,
    ) -> web.StreamResponse:
        rv_text = opts.resource_version
        if rv_text not in ("", "0") and not rv_text.isdigit():
            # The storage InvalidError is not converted on the watch path [§1.4].
            body = status_body(
                500,
                "",
                f'resourceVersion: Invalid value: "{rv_text}": strconv.ParseUint: '
                f'parsing "{rv_text}": invalid syntax',
            )
            del body["reason"]
            return _json(body, 500)
        transform = self._event_transform(request, rtype, view)
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": _JSON, "Cache-Control": "no-cache, private"},
        )
        response.enable_chunked_encoding()
        await response.prepare(request)  # headers go out now, before any event [S2]
        writer = _StreamWriter(response, fault, transform)
        with contextlib.suppress(ConnectionResetError, _StreamEnded):
            await self._stream(writer, rtype, ns, opts, view)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _stream(
        self,
        writer: _StreamWriter,
        rtype: ResourceType,
        ns: str | None,
        opts: ListOptions,
        view: View = PLAIN,
    ) -> None:
        state = self._state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.timeout_seconds if opts.timeout_seconds else None
        await writer.start()
        if (
            opts.send_initial_events is not None or self.reject_future_watches
        ) and opts.resource_version not in ("", "0"):
            requested = int(opts.resource_version)
            if requested > state.rv and not await state.wait_for_rv(
                requested, self.too_large_rv_wait
            ):
                await writer.error(too_large_rv(requested, state.rv).status)
                return
        try:
            watcher, initial, end_rv = state.open_watch(rtype, ns, opts)
        except ApiError as exc:
            await writer.error(exc.status)  # 410 inside a 200 stream [S4]
            return
        if view.as_kind == PARTIAL:
            watcher.view = view.api_version  # stored events are encoded once per view
            initial = [partial(obj, view) for obj in initial]
        self._notify()  # a watcher is registered: wait_for_watchers
        try:
            api_version = rtype.api_version if view.as_kind != PARTIAL else view.api_version
            for start in range(0, len(initial), 1024):
                # Encode synthetic ADDED events in chunks: never block the loop for long.
                chunk = initial[start : start + 1024]
                await writer.write([encode_event(b"ADDED", obj, api_version) for obj in chunk])
                await asyncio.sleep(0)
            if end_rv is not None:
                mark = watcher.bookmark(end_rv, initial_events_end=True)
                assert mark is not None
                await writer.write([mark])
            interval = self.bookmark_interval
            bookmarks = opts.allow_watch_bookmarks
            next_bookmark = loop.time() + interval if bookmarks else None
            # One more bookmark about 2 s before the deadline [S5 nextBookmarkTime].
            last_call = deadline - 2.0 if bookmarks and deadline is not None else None
            while True:
                now = loop.time()
                if self._closing or (deadline is not None and now >= deadline):
                    return
                lines = watcher.pending(1024)  # bounded batches keep memory flat
                if lines is None:
                    return
                if lines:
                    self._writing += 1
                    try:
                        await writer.write(lines)
                    finally:
                        self._writing -= 1
                        self._notify()  # wait_flushed
                    continue
                due = [t for t in (next_bookmark, last_call) if t is not None and now >= t]
                if due:
                    final = last_call is not None and now >= last_call
                    if next_bookmark is not None and now >= next_bookmark:
                        next_bookmark = now + interval
                    if final:
                        last_call = None
                    mark = watcher.bookmark(state.rv, last_call=final)
                    if mark is not None:
                        await writer.write([mark])
                    continue
                wake_at = min(
                    (t for t in (deadline, next_bookmark, last_call) if t is not None),
                    default=None,
                )
                if wake_at is None:
                    await watcher.wake.wait()
                else:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(watcher.wake.wait(), wake_at - now)
        finally:
            watcher.close()
            self._notify()

    # -- discovery --------------------------------------------------------------------------

    def _discovery(self, request: web.Request, parts: builtins.list[str]) -> web.StreamResponse:
        types = self._state.types()
        if parts in (["api"], ["apis"]):
            # /api and /apis negotiate between the legacy documents and aggregated
            # discovery on Accept (https://kubernetes.io/docs/concepts/overview/
            # kubernetes-api/#aggregated-discovery).
            form = _aggregated.negotiate(
                request.headers.get("Accept", ""), aggregated=self.aggregated_discovery
            )
            if form != _aggregated.LEGACY:
                return self._aggregated(request, form, types, core=parts == ["api"])
        if parts == ["version"]:
            return _json(
                {
                    "major": self.kubernetes_version.partition(".")[0],
                    "minor": self.kubernetes_version.partition(".")[2],
                    "gitVersion": f"v{self.kubernetes_version}.0-crwatch-fake",
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.23.0",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
            )
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return web.Response(text="ok")
        if parts == ["api"]:
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self._host}:{self._port}"}
                    ],
                }
            )
        if parts == ["api", "v1"]:
            return _json(self._resource_list("", "v1", types))
        groups: dict[str, set[str]] = {}
        for rtype in types:
            if rtype.group:
                groups.setdefault(rtype.group, set()).add(rtype.version)
        if parts == ["apis"]:
            return _json(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [_group_doc(g, groups[g]) for g in sorted(groups)],
                }
            )
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
            return _json(
                {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(parts[1], groups[parts[1]])}
            )
        if len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], ()):
            return _json(self._resource_list(parts[1], parts[2], types))
        return _not_found_plain()

    def _aggregated(
        self,
        request: web.Request,
        version: str,
        types: builtins.list[ResourceType],
        *,
        core: bool,
    ) -> web.StreamResponse:
        body = _aggregated.document(version, types, core=core, verbs=ALL_VERBS)
        tag = _aggregated.etag(body)
        # The answer depends on Accept, so shared caches must key on it; the entity tag
        # lets a client (kubectl's HTTP cache) revalidate without the body.
        headers = {"Vary": "Accept", "ETag": tag, "Cache-Control": "no-cache, private"}
        if tag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=orjson.dumps(body),
            headers={**headers, "Content-Type": _aggregated.content_type(version)},
        )

    @staticmethod
    def _resource_list(group: str, version: str, types: builtins.list[ResourceType]) -> Obj:
        resources: builtins.list[Obj] = []
        for rtype in sorted(types, key=lambda t: t.plural):
            if rtype.group != group or rtype.version != version:
                continue
            entry: Obj = {
                "name": rtype.plural,
                "singularName": rtype.singular,
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": list(ALL_VERBS),
            }
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            resources.append(entry)
            if rtype.status_subresource:
                resources.append(
                    {
                        "name": f"{rtype.plural}/status",
                        "singularName": "",
                        "namespaced": rtype.namespaced,
                        "kind": rtype.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }


def delete_options(body: Any, query: Mapping[str, str]) -> tuple[str | None, bool | None]:
    """``(propagationPolicy, orphanDependents)`` of a DELETE, from its query or its body.

    Like the DELETE handler, options in the body replace those in the query.
    """
    policy = query.get("propagationPolicy") or None
    raw_orphan = query.get("orphanDependents")
    orphan = None if raw_orphan is None else query_bool(raw_orphan)
    if isinstance(body, dict):
        if isinstance(body.get("propagationPolicy"), str):
            policy = body["propagationPolicy"]
        if isinstance(body.get("orphanDependents"), bool):
            orphan = body["orphanDependents"]
    return policy, orphan


def _group_doc(group: str, versions: set[str]) -> Obj:
    ordered = sort_versions(versions)
    docs = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
    return {"name": group, "versions": docs, "preferredVersion": docs[0]}


async def _self_signed_context(host: str) -> tuple[ssl.SSLContext, bytes]:
    """Make a one-day self-signed certificate for ``host`` with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("FakeApiServer(tls=True) needs the openssl command on PATH")
    with tempfile.TemporaryDirectory(prefix="crwatch-fake-tls-") as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        san = f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}"
        proc = await asyncio.create_subprocess_exec(
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=crwatch-fake-apiserver",
            "-addext",
            f"subjectAltName={san},DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"openssl failed: {err.decode(errors='replace')}")
        return _load_certificate(cert, key)


def _load_certificate(cert: Path, key: Path) -> tuple[ssl.SSLContext, bytes]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert.read_bytes()


def _copy(obj: Obj) -> Obj:
    copied: Obj = orjson.loads(orjson.dumps(obj))
    return copied


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


class _StreamEnded(Exception):
    """Internal: a stream fault ended the watch."""


class _StreamWriter:
    """Writes watch lines, batching them, and applies an optional stream fault."""

    def __init__(
        self,
        response: web.StreamResponse,
        fault: Fault | None,
        transform: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._response = response
        self._fault = fault
        self._fault_done = fault is None
        self._transform = transform  # Table / PartialObjectMetadata watches
        self.sent = 0

    async def start(self) -> None:
        """Fire faults due before the first event (``after_events=0``)."""
        fault = self._fault
        if (
            fault is not None
            and fault.after_events == 0
            and fault.action in ("end_after", "expired_event", "malformed_line")
        ):
            await self._fire(None)

    async def error(self, status: Obj) -> None:
        """Write one ERROR event; the stream then ends (§3.4)."""
        await self._response.write(encode_event(b"ERROR", status))

    async def write(self, lines: list[bytes]) -> None:
        """Write events; one write call for the whole batch when no fault is pending."""
        if self._transform is not None:
            lines = [self._transform(line) for line in lines]
        if self._fault_done:
            await self._response.write(b"".join(lines) if len(lines) > 1 else lines[0])
            self.sent += len(lines)
            return
        fault = self._fault
        assert fault is not None
        for line in lines:
            if fault.action == "slow":
                await asyncio.sleep(fault.seconds)
            elif not self._fault_done and self.sent == fault.after_events:
                await self._fire(line)
            await self._response.write(line)
            self.sent += 1

    async def _fire(self, line: bytes | None) -> None:
        fault = self._fault
        assert fault is not None
        self._fault_done = True
        if fault.action == "end_after":
            raise _StreamEnded
        if fault.action == "expired_event":
            await self.error(status_body(410, "Expired", fault.message))
            raise _StreamEnded
        if fault.action == "malformed_line":
            if fault.line:
                await self._response.write(fault.line + b"\n")
            else:
                await self._response.write(b'{"type":"MODIFIED","object":{"this is not json\n')
        elif fault.action == "truncated_line":
            assert line is not None
            await self._response.write(line[: max(1, len(line) // 2)])
            raise _StreamEnded
        elif fault.action == "stall":
            await asyncio.sleep(fault.seconds)
            if fault.then == "close":
                raise _StreamEnded
