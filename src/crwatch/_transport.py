"""The transport: the one module that talks to kubernetes-asyncio and aiohttp.

It builds ``ApiClient`` values (kubeconfig, in-cluster), sends LIST and WATCH requests
through the ``ApiClient``'s own REST client (so its TLS settings, proxy and client
certificates apply) with its own auth (``update_params_for_auth``: bearer tokens, refreshed
by the configuration's ``refresh_api_key_hook``), reads raw responses, and maps every
failure to the crwatch error tree. No aiohttp or kubernetes-asyncio exception escapes it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from attrs import frozen

from ._exceptions import ApiError, InvalidOptionError, TransportError
from ._kubeconfig import default_paths
from ._kubeconfig import load as load_kubeconfig
from ._resource import Resource
from ._wire import RawItem, loads, parse_retry_after, split_list, status_to_error


class _LazyModule:
    """A module imported on its first attribute access.

    kubernetes-asyncio's generated client is ~970 modules and ~38 MiB: ``import crwatch``
    must not pay for it until a ``Client`` is made from a kubeconfig or in-cluster (a
    borrowed ``ApiClient`` means the user has imported it already).
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio.config import kube_config as _k8s_kube_config
else:
    k8s_client = _LazyModule("kubernetes_asyncio.client")
    k8s_config = _LazyModule("kubernetes_asyncio.config")
    _k8s_kube_config = _LazyModule("kubernetes_asyncio.config.kube_config")

__all__ = [
    "ListResult",
    "Transport",
    "WatchStream",
    "api_client_from_incluster",
    "api_client_from_kubeconfig",
    "send_request",
]

log = logging.getLogger("crwatch")

#: Seconds allowed to connect (TCP + TLS) before a request counts as failed.
CONNECT_TIMEOUT: Final = 30.0

#: ``Accept`` of metadata-only requests: the server answers PartialObjectMetadata(List)
#: (https://kubernetes.io/docs/reference/using-api/api-concepts/#alternate-representations-of-resources);
#: the trailing plain JSON clause lets a server that cannot send that view answer full
#: objects instead of 406, as client-go's metadata client asks
#: (https://github.com/kubernetes/client-go/blob/master/metadata/metadata.go).
_ACCEPT_METADATA_LIST: Final = (
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
)
_ACCEPT_METADATA: Final = (
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)

#: Errors of the HTTP stack that mean "no usable answer" (refused, reset, TLS, DNS, timeout).
_NETWORK_ERRORS: Final = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


# --- building ApiClient values ------------------------------------------------------------


async def api_client_from_kubeconfig(
    path: str | os.PathLike[str] | None, context: str | None
) -> Any:
    """Build an ``ApiClient`` from a kubeconfig (default: ``$KUBECONFIG``, read now, or ~/.kube).

    The files are merged and checked by :mod:`crwatch._kubeconfig` first, so a broken file
    is an :class:`InvalidOptionError` naming file, context and field. Exec credential
    plugins that report an ``expirationTimestamp`` are re-run before a request once their
    token is about to expire (kubernetes-asyncio caches the token until then); other auth
    modes are whatever kubernetes-asyncio's loader supports.

    kubernetes-asyncio writes certificate and key data to temporary files for the TLS
    context and removes them only at interpreter exit: they are written to a private
    directory here and removed as soon as the ``ApiClient`` (and its TLS context, which
    holds them in memory) is built.
    """
    explicit = path is not None
    paths = [Path(os.fspath(path))] if path is not None else default_paths()
    config = load_kubeconfig(paths, context, explicit=explicit)
    where = (
        f"kubeconfig {', '.join(repr(str(p)) for p in config.files)}, context {config.context!r}"
    )
    configuration = k8s_client.Configuration()
    scratch = tempfile.mkdtemp(prefix="crwatch-kubeconfig-")
    try:
        try:
            loader = await k8s_config.load_kube_config_from_dict(
                config.document,
                context=config.context,
                client_configuration=configuration,
                temp_file_path=scratch,
            )
        except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidOptionError(f"cannot load {where}: {exc}") from None
        except AssertionError:  # pragma: no cover - _kubeconfig checks what the loader asserts
            raise InvalidOptionError(f"cannot load {where}: incomplete") from None
        _install_exec_refresh(loader, configuration)
        try:
            # The TLS context is built (and reads the files) here.
            return k8s_client.ApiClient(configuration)
        except ssl.SSLError as exc:
            # No detail from OpenSSL beyond its reason: never key material.
            raise InvalidOptionError(
                f"{where}: the certificate authority or the client certificate and key "
                f"cannot be used ({exc.reason or 'SSL error'})"
            ) from None
    finally:
        _forget_temp_files(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _forget_temp_files(directory: str) -> None:
    # kubernetes-asyncio caches content -> temp file name in a module dict and would hand a
    # later load the name of a file removed here; drop those entries.
    cache = getattr(_k8s_kube_config, "_temp_files", None)
    if not isinstance(cache, dict):  # pragma: no cover - another kubernetes-asyncio
        return
    root = Path(directory)
    for key in [k for k, name in cache.items() if Path(str(name)).parent == root]:
        del cache[key]


def _install_exec_refresh(loader: Any, configuration: Any) -> None:
    user = getattr(loader, "_user", None)
    try:
        has_exec = user is not None and "exec" in user
    except TypeError:  # pragma: no cover - an unexpected loader shape
        has_exec = False
    if not has_exec or configuration.refresh_api_key_hook is not None:
        return

    async def refresh(conf: Any) -> None:
        # Only plugins that told us when their token expires are re-run; without an expiry
        # the loader would run the plugin on every request.
        if not hasattr(loader, "exec_plugin_expiry"):
            return
        if await loader.load_from_exec_plugin() and getattr(loader, "token", None):
            conf.api_key["BearerToken"] = loader.token

    configuration.refresh_api_key_hook = refresh


def api_client_from_incluster() -> Any:
    """Build an ``ApiClient`` from the pod's service account (token file re-read on change)."""
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as exc:
        raise InvalidOptionError(f"cannot load the in-cluster configuration: {exc}") from None
    return k8s_client.ApiClient(configuration)


async def close_api_client(api_client: Any) -> None:
    """Close an ``ApiClient`` we created."""
    await api_client.close()


def api_client_host(api_client: Any) -> str:
    """Return the server URL an ``ApiClient`` talks to."""
    return str(getattr(api_client.configuration, "host", "") or "")


def is_api_client(value: object) -> bool:
    """Tell whether ``value`` looks like a kubernetes-asyncio ``ApiClient``."""
    return hasattr(value, "rest_client") and hasattr(value, "configuration")


# --- requests -----------------------------------------------------------------------------


@frozen
class ListResult:
    """One list page: its items, the list's resourceVersion, the next continue token."""

    items: Sequence[dict[str, Any]] | Sequence[RawItem]
    resource_version: str
    continue_token: str | None


class WatchStream:
    """An open watch response: read raw chunks until ``b""`` (end of stream), then close."""

    __slots__ = ("_closed", "_describe", "_response")

    def __init__(self, response: Any, describe: str) -> None:
        self._response = response
        self._describe = describe
        self._closed = False

    async def read(self) -> bytes:
        """Return the next chunk of bytes as it arrives; ``b""`` at a clean end of stream.

        Raises:
            TransportError: the connection broke mid-stream.
        """
        try:
            chunk: bytes = await self._response.content.readany()
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"{self._describe}: stream broken: {_explain(exc)}") from exc
        return chunk

    def read_nowait(self) -> bytes:
        """Return the bytes already received, without waiting; ``b""`` if there are none.

        ``b""`` does not mean the end of the stream: :meth:`read` tells that.

        Raises:
            TransportError: the connection broke mid-stream.
        """
        try:
            chunk: bytes = self._response.content.read_nowait()
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"{self._describe}: stream broken: {_explain(exc)}") from exc
        return chunk

    def close(self) -> None:
        """Drop the connection (idempotent); an unfinished stream cannot be reused."""
        if not self._closed:
            self._closed = True
            self._response.close()


class Transport:
    """LIST pages and WATCH streams for one ``ApiClient``."""

    __slots__ = ("_api",)

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    @property
    def host(self) -> str:
        """The server URL."""
        return api_client_host(self._api)

    async def list_page(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        resource_version: str,
        continue_token: str | None,
        limit: int | None,
        read_timeout: float | None,
        metadata_only: bool = False,
        raw_items: bool = False,
    ) -> ListResult:
        """GET one page of the collection (``metadata_only``: as PartialObjectMetadataList).

        With ``raw_items`` the items are :class:`~crwatch._wire.RawItem` (their own bytes
        and metadata, for a compact cache) instead of parsed dicts.

        Raises:
            ApiError: the server answered an error (typed by status, naming verb and resource).
            TransportError: no usable answer.
        """
        query = _selectors(label_selector, field_selector)
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if continue_token:
            query.append(("continue", continue_token))
        if limit:
            query.append(("limit", str(limit)))
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=CONNECT_TIMEOUT,
            connect=CONNECT_TIMEOUT,
            sock_read=read_timeout,
        )
        accept = _ACCEPT_METADATA_LIST if metadata_only else "application/json"
        response = await self._request("list", resource, namespace, query, timeout, accept)
        try:
            body = await response.read()
        except _NETWORK_ERRORS as exc:
            raise TransportError(f"list {resource}: body not read: {_explain(exc)}") from exc
        finally:
            response.release()
        if raw_items:
            try:
                meta, raws = split_list(body)
            except ValueError:
                raise TransportError(f"list {resource}: response is not a list") from None
            return ListResult(
                raws,
                str(meta.get("resourceVersion") or ""),
                str(meta.get("continue") or "") or None,
            )
        try:
            data = loads(body)
        except ValueError:
            raise TransportError(f"list {resource}: response is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("items", []), list):
            raise TransportError(f"list {resource}: response is not a list")
        meta = data.get("metadata") or {}
        items = data.get("items") or []
        return ListResult(
            items,
            str(meta.get("resourceVersion") or ""),
            str(meta.get("continue") or "") or None,
        )

    async def open_watch(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        resource_version: str,
        timeout_seconds: int,
        send_initial_events: bool = False,
        metadata_only: bool = False,
    ) -> WatchStream:
        """Open a WATCH with bookmarks; return once the response headers arrived.

        ``metadata_only=True`` asks for events carrying PartialObjectMetadata objects.

        ``send_initial_events=True`` makes it a streaming list
        (``sendInitialEvents=true&resourceVersionMatch=NotOlderThan``; docs/protocol.md, "Streaming
        lists").

        Raises:
            ApiError: the server answered an error status before the stream.
            TransportError: no usable answer.
        """
        query = [("watch", "true"), ("allowWatchBookmarks", "true")]
        query += _selectors(label_selector, field_selector)
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if send_initial_events:
            query += [("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan")]
        query.append(("timeoutSeconds", str(timeout_seconds)))
        # No read timeout here: the watcher detects stalls itself, between chunks.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, connect=CONNECT_TIMEOUT, sock_read=None
        )
        accept = _ACCEPT_METADATA if metadata_only else "application/json"
        response = await self._request("watch", resource, namespace, query, timeout, accept)
        return WatchStream(response, f"watch {resource}")

    async def _request(
        self,
        verb: str,
        resource: Resource,
        namespace: str | None,
        query: list[tuple[str, str]],
        timeout: Any,
        accept: str,
    ) -> Any:
        api = self._api
        url = api_client_host(api) + resource.path(namespace)
        return await _open(
            api,
            "GET",
            url,
            query=query,
            accept=accept,
            timeout=timeout,
            verb=verb,
            what=str(resource),
        )

    async def get_json(self, path: str, *, read_timeout: float = 32.0) -> Any:
        """GET a JSON document by its path (discovery: ``/api``, ``/apis/example.com/v1``).

        Raises:
            ApiError: the server answered an error status.
            TransportError: no usable answer, or a body that is not JSON.
        """
        _, body = await self.get_negotiated(
            path, accept="application/json", read_timeout=read_timeout
        )
        return body

    async def get_negotiated(
        self, path: str, *, accept: str, read_timeout: float = 32.0
    ) -> tuple[str, Any]:
        """GET a JSON document with ``accept``; return its ``Content-Type`` and body.

        For documents whose form is negotiated: ``/api`` and ``/apis`` answer aggregated
        discovery only to a client that asks for it, and say which form they chose in
        ``Content-Type`` alone.

        Raises:
            ApiError: the server answered an error status.
            TransportError: no usable answer, or a body that is not JSON.
        """
        api = self._api
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=CONNECT_TIMEOUT,
            connect=CONNECT_TIMEOUT,
            sock_read=read_timeout,
        )
        response = await _open(
            api,
            "GET",
            api_client_host(api) + path,
            query=[],
            accept=accept,
            timeout=timeout,
            verb="get",
            what=path,
        )
        content_type = str(response.headers.get("Content-Type", ""))
        return content_type, await _read_json(response, "get", path)


async def _open(
    api: Any,
    method: str,
    url: str,
    *,
    query: list[tuple[str, str]],
    accept: str,
    timeout: Any,
    verb: str,
    what: str,
    body: Any = None,
    content_type: str | None = None,
) -> Any:
    """Send one request through the ApiClient; return the response of a 2xx answer.

    The ApiClient's auth applies: a bearer token (with its refresh hook: exec plugins,
    in-cluster token rotation); client certificates live in its SSL context. Every other
    status is raised as the matching `ApiError`, and no answer as `TransportError`.
    """
    headers: dict[str, str] = dict(api.default_headers)
    headers["Accept"] = accept
    if content_type is not None:
        headers["Content-Type"] = content_type
    if getattr(api, "cookie", None):
        headers["Cookie"] = api.cookie
    try:
        await api.update_params_for_auth(headers, query, ["BearerToken"])
        response = await api.rest_client.request(
            method,
            url,
            query_params=query,
            headers=headers,
            body=body,
            _preload_content=False,
            _request_timeout=timeout,
        )
    except _NETWORK_ERRORS as exc:
        raise TransportError(f"{verb} {what}: {_explain(exc)}") from exc
    except (TypeError, ValueError) as exc:
        if body is None:
            raise
        # json.dumps in the REST client: a value that JSON cannot carry (a datetime, bytes).
        raise InvalidOptionError(f"{verb} {what}: the body is not JSON: {exc}") from None
    except k8s_config.ConfigException as exc:  # a credential plugin failed
        raise TransportError(f"{verb} {what}: credentials: {exc}") from exc
    if 200 <= response.status < 300:
        return response
    try:
        raise await _error_from(response, verb, what)
    finally:
        response.release()


async def _read_json(response: Any, verb: str, what: str) -> Any:
    """Read a 2xx response's body and parse it as JSON, releasing the response."""
    try:
        data = await response.read()
    except _NETWORK_ERRORS as exc:
        raise TransportError(f"{verb} {what}: body not read: {_explain(exc)}") from exc
    finally:
        response.release()
    try:
        return loads(data)
    except ValueError:
        raise TransportError(f"{verb} {what}: response is not JSON") from None


def _selectors(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


async def _error_from(response: Any, verb: str, resource: str) -> ApiError:
    try:
        body: bytes = await response.read()
    except _NETWORK_ERRORS:
        body = b""
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    status: Any = None
    if body[:1] == b"{":
        try:
            status = loads(body)
        except ValueError:
            status = None
    # A plain-text 404 is what kube-apiserver sends for an unknown resource (docs/protocol.md,
    # "Errors and retries").
    return status_to_error(
        status,
        code=response.status,
        body=body or str(response.reason or ""),
        verb=verb,
        resource=resource,
        retry_after=retry_after,
    )


def _explain(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- single-object requests (writes and GET) ----------------------------------------------

#: Seconds a single-object request may wait for its answer. kube-apiserver ends a
#: non-long-running request after 60 s itself (``--request-timeout``), so waiting longer
#: only hides a dead connection.
REQUEST_TIMEOUT: Final = 70.0


async def send_request(
    api_client: Any,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,
    content_type: str = "application/json",
    verb: str,
    resource: str,
) -> Any:
    """Send one request about one object and return its parsed JSON answer.

    ``body`` is a JSON-serializable value (kubernetes-asyncio's REST client encodes it for
    any JSON content type and for ``application/apply-patch+yaml``: JSON is YAML).

    Raises:
        ApiError: the server answered an error status (typed by status code).
        TransportError: no usable answer (network failure, a body that is not JSON).
        InvalidOptionError: ``body`` cannot be encoded as JSON.
    """
    timeout = aiohttp.ClientTimeout(
        total=REQUEST_TIMEOUT, sock_connect=CONNECT_TIMEOUT, connect=CONNECT_TIMEOUT
    )
    response = await _open(
        api_client,
        method,
        api_client_host(api_client) + path,
        query=list(query),
        accept="application/json",
        timeout=timeout,
        verb=verb,
        what=resource,
        body=body,
        content_type=content_type,
    )
    return await _read_json(response, verb, resource)
