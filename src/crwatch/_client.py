from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from . import _writes
from ._discovery import Discovery
from ._exceptions import CrwatchError, InvalidOptionError
from ._resource import Resource
from ._transport import (
    Transport,
    api_client_from_incluster,
    api_client_from_kubeconfig,
    api_client_host,
    close_api_client,
    is_api_client,
)

__all__ = ["Client"]

#: A name, or an object whose ``metadata`` names it (and its namespace).
Target = str | Mapping[str, Any]


class Client:
    """A connection to one Kubernetes API server, for :func:`crwatch.watch` and friends.

    Three ways to get one::

        async with crwatch.Client.from_kubeconfig() as client: ...   # ~/.kube/config
        async with crwatch.Client.from_incluster() as client: ...    # a pod's service account
        client = crwatch.Client(api_client)                          # borrow your own ApiClient

    A client made by ``from_kubeconfig`` or ``from_incluster`` owns the kubernetes-asyncio
    ``ApiClient`` it creates when the ``async with`` block is entered, and closes it when the
    block exits. A client wrapping an ``ApiClient`` you pass borrows it: it is usable at once,
    and never closed by crwatch.

    Besides watching, it reads and writes single objects (raw dicts in and out):
    :meth:`get`, :meth:`create`, :meth:`replace`, :meth:`replace_status`, :meth:`patch`,
    :meth:`patch_status`, :meth:`apply`, :meth:`apply_status`, :meth:`delete`.

    Requests go through the ``ApiClient``: its TLS settings (verification stays on unless
    your configuration turns it off), proxy, client certificates and bearer token (including
    exec plugins and token refresh, as kubernetes-asyncio supports them). Secrets never
    appear in ``repr()`` or logs.

    Args:
        api_client: a ``kubernetes_asyncio.client.ApiClient`` to borrow.

    Raises:
        InvalidOptionError: ``api_client`` is not an ``ApiClient``.
    """

    __slots__ = ("_api", "_describe", "_factory", "_owned", "_transport")

    def __init__(self, api_client: Any) -> None:
        if not is_api_client(api_client):
            raise InvalidOptionError(
                f"expected a kubernetes_asyncio ApiClient, got {type(api_client).__name__}"
            )
        self._api: Any = api_client
        self._owned = False
        self._factory: Callable[[], Awaitable[Any]] | None = None
        self._describe = ""
        self._transport: Transport | None = Transport(api_client)

    @classmethod
    def _owning(cls, factory: Callable[[], Awaitable[Any]], describe: str) -> Client:
        client = cls.__new__(cls)
        client._api = None
        client._owned = True
        client._factory = factory
        client._describe = describe
        client._transport = None
        return client

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str] | None = None, *, context: str | None = None
    ) -> Client:
        """Make a client from a kubeconfig file; it connects on ``async with``.

        Args:
            path: the kubeconfig file. Default ``None``: ``$KUBECONFIG`` as it is when the
                ``async with`` block is entered (a list of files separated by ``os.pathsep``
                is merged as kubectl does: the first file to set a value wins), else
                ``~/.kube/config``.
            context: the context to use. Default ``None``: the file's current context.

        Returns:
            A client that loads the configuration and creates its ``ApiClient`` when the
            ``async with`` block is entered, and closes it on exit.

        Raises:
            InvalidOptionError: ``path`` does not exist or an argument has the wrong type
                (now); the kubeconfig cannot be read or is incomplete, for example a
                cluster without ``server``, a context or user that does not exist,
                certificate data that is not PEM (on entering ``async with``; the message
                names the file, the context and the field, never a secret).
        """
        if path is not None:
            if not isinstance(path, (str, os.PathLike)):
                raise InvalidOptionError(f"path must be a str or a path, got {path!r}")
            if not Path(path).is_file():
                raise InvalidOptionError(f"kubeconfig file {os.fspath(path)!r} does not exist")
        if context is not None and (not isinstance(context, str) or not context):
            raise InvalidOptionError(f"context must be a non-empty string, got {context!r}")

        async def factory() -> Any:
            return await api_client_from_kubeconfig(path, context)

        where = "kubeconfig" if path is None else f"kubeconfig {os.fspath(path)!r}"
        if context:
            where += f", context {context!r}"
        return cls._owning(factory, where)

    @classmethod
    def from_incluster(cls) -> Client:
        """Make a client from the pod's service account; it connects on ``async with``.

        Returns:
            A client that reads the service account token and CA when the ``async with``
            block is entered (the token file is re-read when it rotates).

        Raises:
            InvalidOptionError: on entering ``async with``, when not running in a pod.
        """

        async def factory() -> Any:
            return api_client_from_incluster()

        return cls._owning(factory, "in-cluster")

    @property
    def api_client(self) -> Any:
        """The kubernetes-asyncio ``ApiClient`` in use (``None`` before ``async with``)."""
        return self._api

    @property
    def host(self) -> str:
        """The API server URL (``""`` before the configuration is loaded)."""
        return api_client_host(self._api) if self._api is not None else ""

    def _require_transport(self) -> Transport:
        if self._transport is None:
            raise InvalidOptionError(
                "this Client is not connected: use it as `async with client:` first"
            )
        return self._transport

    async def __aenter__(self) -> Client:
        if self._factory is not None:
            if self._api is not None:
                raise CrwatchError("this Client is already open")
            self._api = await self._factory()
            self._transport = Transport(self._api)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the ``ApiClient`` if this client created it (a borrowed one stays open)."""
        if self._owned and self._api is not None:
            api, self._api, self._transport = self._api, None, None
            await close_api_client(api)

    @property
    def discovery(self) -> Discovery:
        """Resource name resolution through the server's discovery, cached per ``ApiClient``.

        Raises:
            InvalidOptionError: the client is not connected (use ``async with`` first).
        """
        return Discovery(self._require_transport(), self._api)

    async def resource(self, name: str) -> Resource:
        """Resolve a resource name through discovery, as kubectl does.

        ``await client.resource("widgets")`` (or ``"widget"``, ``"Widget"``, a short name,
        ``"widgets.example.com"``, ``"widgets.v1.example.com"``,
        ``"example.com/v1/widgets"``) returns the served :class:`crwatch.Resource`, with its
        ``kind`` and ``namespaced`` filled in. See :meth:`crwatch.Discovery.lookup`.

        Raises:
            UnknownResourceError: the server has no such resource type.
            AmbiguousResourceError: several API groups serve it; name the group.
        """
        return (await self.discovery.lookup(name)).resource

    def __repr__(self) -> str:
        # Only the host: never tokens, certificates or the kubeconfig's contents.
        if self._api is None:
            return f"<crwatch.Client {self._describe} (not connected)>"
        kind = "owned" if self._owned else "borrowed"
        return f"<crwatch.Client {self.host!r} ({kind})>"

    # -- single-object requests (the HTTP mapping lives in crwatch._writes) -----------------

    def _require_api(self) -> Any:
        self._require_transport()
        return self._api

    async def get(
        self, resource: Resource, target: Target, *, namespace: str | None = None
    ) -> dict[str, Any]:
        """Read one object from the server (not from a cache).

        Args:
            resource: the object's resource type.
            target: its name, or an object whose ``metadata`` names it.
            namespace: its namespace (default: the object's ``metadata.namespace``).

        Raises:
            NotFoundError: no such object (or no such resource type).
            ApiError: any other error status; TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.get_request(resource, target, namespace=namespace)
        return await _writes.send(self._require_api(), request, resource)

    async def create(
        self,
        resource: Resource,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Create an object (POST) and return it as stored.

        ``apiVersion`` (and ``kind``, when ``resource.kind`` is known) are filled in when
        missing; ``obj`` itself is not modified.

        Args:
            resource: the object's resource type.
            obj: the object; ``metadata.name`` or ``metadata.generateName`` names it.
            namespace: where to create it (default: the object's ``metadata.namespace``).
            dry_run: validate and admit without storing (``dryRun=All``).
            field_manager: the manager recorded for the fields set.

        Raises:
            ConflictError: an object of that name exists (reason ``AlreadyExists``).
            InvalidError: the object is not valid (``details["causes"]`` says why).
            ApiError: any other error status; TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.create_request(
            resource, obj, namespace=namespace, dry_run=dry_run, field_manager=field_manager
        )
        return await _writes.send(self._require_api(), request, resource)

    async def replace(
        self,
        resource: Resource,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object (PUT) and return it as stored.

        The object's ``metadata.resourceVersion`` is the precondition: when it is not the
        stored one the server refuses with 409. For a custom resource with a status
        subresource, ``status`` is ignored here: use :meth:`replace_status`.

        Raises:
            ConflictError: ``metadata.resourceVersion`` is stale.
            NotFoundError: no such object.
            InvalidError: the object is not valid.
            ApiError: any other error status; TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.replace_request(
            resource, obj, namespace=namespace, dry_run=dry_run, field_manager=field_manager
        )
        return await _writes.send(self._require_api(), request, resource)

    async def replace_status(
        self,
        resource: Resource,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object's status through the ``status`` subresource (PUT).

        Only ``status`` changes; ``metadata.resourceVersion`` is the precondition.

        Raises:
            ConflictError: ``metadata.resourceVersion`` is stale.
            NotFoundError: no such object, or the resource has no status subresource.
            ApiError: any other error status; TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.replace_request(
            resource,
            obj,
            namespace=namespace,
            dry_run=dry_run,
            field_manager=field_manager,
            subresource="status",
        )
        return await _writes.send(self._require_api(), request, resource)

    async def patch(
        self,
        resource: Resource,
        target: Target,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: Literal["merge", "json", "strategic"] | None = None,
        resource_version: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object and return it as stored.

        A mapping is sent as a JSON merge patch (RFC 7386: ``None`` deletes a key, lists
        are replaced whole), a list of operations as a JSON patch (RFC 6902). Custom
        resources accept only these two; ``patch_type="strategic"`` is for built-in types.

        Args:
            resource: the object's resource type.
            target: its name, or an object whose ``metadata`` names it.
            patch: the patch document.
            namespace: its namespace (default: the object's ``metadata.namespace``).
            patch_type: ``"merge"``, ``"json"`` or ``"strategic"``; default from ``patch``.
            resource_version: a precondition: the patch fails with 409 unless the stored
                object still has this ``resourceVersion``.
            dry_run: validate and admit without storing (``dryRun=All``).
            field_manager: the manager recorded for the fields set.

        Raises:
            ConflictError: ``resource_version`` is stale.
            NotFoundError: no such object.
            InvalidError: the result is not valid, or a JSON patch ``test`` failed.
            BadRequestError: the patch cannot be parsed or applied.
            ApiError: any other error status (415 for a strategic patch of a custom
                resource); TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.patch_request(
            resource,
            target,
            patch,
            namespace=namespace,
            patch_type=patch_type,
            resource_version=resource_version,
            dry_run=dry_run,
            field_manager=field_manager,
        )
        return await _writes.send(self._require_api(), request, resource)

    async def patch_status(
        self,
        resource: Resource,
        target: Target,
        status: Any,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object's status through the ``status`` subresource.

        ``status`` as a mapping is merged into the object's ``status`` (a JSON merge patch
        ``{"status": status}``); as a list it is a JSON patch of the whole object (paths
        like ``/status/phase``). Only ``status`` changes.

        Raises:
            ConflictError: ``resource_version`` is stale.
            NotFoundError: no such object, or the resource has no status subresource.
            ApiError: any other error status; TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.patch_status_request(
            resource,
            target,
            status,
            namespace=namespace,
            resource_version=resource_version,
            dry_run=dry_run,
            field_manager=field_manager,
        )
        return await _writes.send(self._require_api(), request, resource)

    async def apply(
        self,
        resource: Resource,
        obj: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = False,
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply: make ``field_manager`` own exactly the fields of ``obj``.

        The object is created when missing. Send only the fields you have an opinion
        about (a full object read from the server would claim every field); fields this
        manager set before and leaves out now are removed. ``obj`` needs ``metadata.name``
        and a ``kind`` (from the object or from ``resource.kind``).

        Args:
            resource: the object's resource type.
            obj: the applied configuration.
            field_manager: who owns the fields (required, at most 128 characters).
            force: take over fields another manager owns instead of failing.
            namespace: its namespace (default: the object's ``metadata.namespace``).
            dry_run: validate and admit without storing (``dryRun=All``).

        Raises:
            ConflictError: another manager owns a field set to a different value
                (``details["causes"]`` names the fields and managers), or the object's
                ``metadata.resourceVersion`` is stale.
            InvalidError: the result is not valid.
            ApiError: any other error status; TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.apply_request(
            resource,
            obj,
            field_manager=field_manager,
            force=force,
            namespace=namespace,
            dry_run=dry_run,
        )
        return await _writes.send(self._require_api(), request, resource)

    async def apply_status(
        self,
        resource: Resource,
        obj: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = False,
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply through the ``status`` subresource (see :meth:`apply`)."""
        request = _writes.apply_request(
            resource,
            obj,
            field_manager=field_manager,
            force=force,
            namespace=namespace,
            dry_run=dry_run,
            subresource="status",
        )
        return await _writes.send(self._require_api(), request, resource)

    async def delete(
        self,
        resource: Resource,
        target: Target,
        *,
        namespace: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: Literal["Orphan", "Background", "Foreground"] | None = None,
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete an object; return the server's answer.

        An object with finalizers is only marked (``metadata.deletionTimestamp``) and the
        answer is that object; otherwise the answer is the deleted object or a ``Status``,
        depending on the resource.

        Args:
            resource: the object's resource type.
            target: its name, or an object whose ``metadata`` names it.
            namespace: its namespace (default: the object's ``metadata.namespace``).
            uid: a precondition: delete only the object with this UID (not a namesake
                created since).
            resource_version: a precondition: delete only this version of it.
            propagation_policy: what happens to dependents: ``"Background"``,
                ``"Foreground"`` or ``"Orphan"`` (default: the resource's own policy).
            grace_period_seconds: for pods and the like; 0 deletes at once.
            dry_run: check without deleting (``dryRun=All``).

        Raises:
            NotFoundError: no such object.
            ConflictError: a precondition failed.
            ApiError: any other error status; TransportError: no answer.
            InvalidOptionError: a bad argument (raised before any request).
        """
        request = _writes.delete_request(
            resource,
            target,
            namespace=namespace,
            uid=uid,
            resource_version=resource_version,
            propagation_policy=propagation_policy,
            grace_period_seconds=grace_period_seconds,
            dry_run=dry_run,
        )
        return await _writes.send(self._require_api(), request, resource)
