from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

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
            path: the kubeconfig file. Default ``None``: ``$KUBECONFIG``, else
                ``~/.kube/config``.
            context: the context to use. Default ``None``: the file's current context.

        Returns:
            A client that loads the configuration and creates its ``ApiClient`` when the
            ``async with`` block is entered, and closes it on exit.

        Raises:
            InvalidOptionError: ``path`` does not exist or an argument has the wrong type
                (now); the kubeconfig cannot be loaded (on entering ``async with``).
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
