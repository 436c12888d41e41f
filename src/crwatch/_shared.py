"""``SharedInformers``: one running :class:`crwatch.Informer` per watched selection, shared.

Controllers in one process that watch the same resource with the same selection should
share one list/watch and one cache, as client-go's ``SharedInformerFactory`` and
controller-runtime's manager cache do: each informer costs a connection to the API server
and memory for every object. The registry keys informers by client, resource (group,
version, plural), namespace (or set of namespaces) and selectors; the first user starts the
informer in the registry's task group, later users subscribe to the same one, and the last
one to release it stops it.

The registry is an async context manager: it owns the informers' tasks. A controller given
a registry that is not running enters it itself (and closes it on exit); to share informers
between controllers, enter the registry around them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._client import Client
from ._exceptions import CrwatchError, InvalidOptionError
from ._informer import Informer
from ._options import namespace_set
from ._resource import Resource

__all__ = ["SharedInformers"]

log = logging.getLogger("crwatch")

_Key = tuple[Client, str, str, str, str | None, frozenset[str] | None, str | None, str | None]


class _Entry:
    """One shared informer: its users, its task's cancel scope, how it ended."""

    __slots__ = ("error", "informer", "key", "scope", "stopped", "users")

    def __init__(self, key: _Key, informer: Informer) -> None:
        self.key = key
        self.informer = informer
        self.users = 0
        self.scope = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.error: BaseException | None = None


class SharedInformers:
    """Running informers, one per (client, resource, namespace(s), selectors), shared by users.

    ::

        async with crwatch.SharedInformers(transform=crwatch.drop_managed_fields) as informers:
            a = crwatch.Controller(client, widgets, reconcile_a, informers=informers)
            b = crwatch.Controller(client, widgets, reconcile_b, informers=informers)
            async with a, b:               # one list/watch of widgets, one cache
                ...

    Args:
        **informer_options: keyword options for every :class:`crwatch.Informer` it creates
            (``transform``, ``indexes``, ``stall_timeout``, ``backoff``, ``page_size``...);
            not ``namespace``, ``namespaces`` or the selectors, which are part of the key.

    Raises:
        InvalidOptionError: an option is one :class:`crwatch.Informer` does not take, or
            part of the key.
    """

    __slots__ = ("_entries", "_options", "_owner", "_task_group")

    def __init__(self, **informer_options: Any) -> None:
        for reserved in ("namespace", "namespaces", "label_selector", "field_selector"):
            if reserved in informer_options:
                raise InvalidOptionError(
                    f"{reserved} is part of what an informer is shared by: pass it to "
                    "acquire() (or to the Controller), not to SharedInformers"
                )
        self._options = informer_options
        self._entries: dict[_Key, _Entry] = {}
        self._task_group: TaskGroup | None = None
        self._owner: object | None = None

    def __repr__(self) -> str:
        state = "running" if self._task_group is not None else "not running"
        return f"<crwatch.SharedInformers {len(self._entries)} informers, {state}>"

    @property
    def running(self) -> bool:
        """Whether the registry is entered (``async with``) and can start informers."""
        return self._task_group is not None

    def informers(self) -> tuple[Informer, ...]:
        """Return the informers running now."""
        return tuple(entry.informer for entry in self._entries.values())

    async def __aenter__(self) -> SharedInformers:
        if self._task_group is not None:
            raise CrwatchError("SharedInformers can be entered only once at a time")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        task_group.cancel_scope.cancel()
        try:
            # The hosts record their errors and never raise: the body's exception, if any,
            # propagates as itself.
            await task_group.__aexit__(None, None, None)
        finally:
            self._task_group = None
            self._entries.clear()
            self._owner = None
        return None

    async def acquire(
        self,
        client: Client,
        resource: Resource,
        *,
        namespace: str | None = None,
        namespaces: Iterable[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Informer:
        """Return the shared informer of this selection, starting it if it is new.

        ``namespaces`` (a set of names, see :class:`crwatch.Informer`) is part of the
        selection as a set: ``{"a", "b"}`` and ``["b", "a"]`` share one informer, which
        ``{"a"}`` or ``namespace="a"`` do not.

        Returns once the informer runs (it may not have synced yet). Each ``acquire``
        must be paired with a :meth:`release` of the same informer.

        Raises:
            CrwatchError: the registry is not running.
            InvalidOptionError: an option is invalid (from :class:`crwatch.Informer`).
        """
        task_group = self._task_group
        if task_group is None:
            raise CrwatchError("SharedInformers is not running: use it as `async with` first")
        scope = namespace_set(namespaces)
        key: _Key = (
            client,
            resource.group,
            resource.version,
            resource.plural,
            namespace,
            scope,
            label_selector,
            field_selector,
        )
        entry = self._entries.get(key)
        if entry is None or entry.stopped.is_set():
            informer = Informer(
                client,
                resource,
                namespace=namespace,
                namespaces=scope,
                label_selector=label_selector,
                field_selector=field_selector,
                **self._options,
            )
            entry = _Entry(key, informer)
            self._entries[key] = entry
            entry.users += 1
            await task_group.start(self._host, entry, name=f"crwatch.shared {resource}")
        else:
            entry.users += 1
        return entry.informer

    def release(self, informer: Informer) -> None:
        """Give back an informer from :meth:`acquire`; the last user's release stops it."""
        for key, entry in list(self._entries.items()):
            if entry.informer is informer:
                entry.users -= 1
                if entry.users <= 0:
                    del self._entries[key]
                    entry.scope.cancel()
                return

    def error(self, informer: Informer) -> BaseException | None:
        """Return the error that stopped a shared informer, or ``None``."""
        for entry in self._entries.values():
            if entry.informer is informer:
                return entry.error
        return None

    async def wait_stopped(self, informer: Informer) -> BaseException | None:
        """Wait until a shared informer stops (an error, or its last release); return its error."""
        for entry in list(self._entries.values()):
            if entry.informer is informer:
                await entry.stopped.wait()
                return entry.error
        return None

    async def _host(
        self, entry: _Entry, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        try:
            with entry.scope:
                async with entry.informer:
                    task_status.started()
                    started = True
                    await anyio.sleep_forever()
        except Exception as exc:
            if not started:
                task_status.started()
            # The informer failed for good (a 403 with on_auth_error="raise"...): its users
            # see the error through wait_synced() and wait_stopped().
            entry.error = exc
            log.error("shared informer %r stopped: %r", entry.informer, exc)
        finally:
            entry.stopped.set()
            if self._entries.get(entry.key) is entry and entry.error is not None:
                del self._entries[entry.key]
