"""Discovery: from the name a user types to the :class:`Resource` the server serves.

``"widgets"``, ``"widget"``, ``"Widget"``, a short name (``"wd"``), ``"widgets.example.com"``,
``"widgets.v1.example.com"`` and ``"example.com/v1/widgets"`` all resolve through the API
server's discovery, read once per ``ApiClient`` and read again when a name is not found (a
CRD created since is then seen). A server that offers aggregated discovery
(https://kubernetes.io/docs/concepts/overview/kubernetes-api/#aggregated-discovery; on by
default since 1.27) describes every group's resources in the answers to ``/api`` and ``/apis``:
two requests in all. Older servers, and servers with it turned off, answer the same requests
with the legacy documents, and the resources are then read per group/version
(``/api/v1``, ``/apis/<group>/<version>``;
https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api).

The matching rules are kubectl's, with one decision of ours:

- names compare case-insensitively against the plural, the singular and the kind; short
  names come second, so an exact resource name beats another type's short name
  (https://github.com/kubernetes/kubernetes/pull/58861);
- a group's preferred version is chosen, unless the resource is served only in others;
- the core group wins over every other (``events`` is core ``v1``, not ``events.k8s.io``);
- when several other groups match, kubectl takes the first one in the server's group order;
  crwatch raises :class:`AmbiguousResourceError` listing them instead, because watching the
  wrong resource quietly is worse than asking for ``plural.group``.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import anyio
from attrs import frozen

from ._exceptions import (
    AmbiguousResourceError,
    ApiError,
    ForbiddenError,
    InvalidOptionError,
    NotFoundError,
    UnauthorizedError,
    UnknownResourceError,
)
from ._resource import Resource
from ._transport import Transport

__all__ = ["ApiResource", "Discovery", "DiscoveryStatistics", "parse_name"]

log = logging.getLogger("crwatch.discovery")

# A Kubernetes API version: v1, v2beta3, v1alpha1 (apimachinery's version priority format).
_VERSION: Final = re.compile(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")

#: Group/version documents fetched at once when the whole catalogue is read.
_PARALLEL: Final = 8

#: ``Accept`` of ``/api`` and ``/apis``: aggregated discovery (v2, then v2beta1 for 1.27-1.29
#: servers), else the legacy documents, as kubectl asks. The types:
#: https://github.com/kubernetes/api/blob/master/apidiscovery/v2/types.go
_ACCEPT_DISCOVERY: Final = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


@frozen
class ApiResource:
    """One resource type as discovery describes it.

    Attributes:
        resource: the :class:`Resource`, with ``kind`` and ``namespaced`` filled in.
        singular: the singular name (``"widget"``); the lowercase kind when the server
            gives none.
        short_names: the short names (``("wd",)``), possibly empty.
        verbs: the verbs the server allows on it (``"list"``, ``"watch"``, ``"patch"``...).
        categories: the categories it belongs to (``("all",)``), possibly empty.
        preferred: whether its version is its group's preferred version.
    """

    resource: Resource
    singular: str
    short_names: tuple[str, ...] = ()
    verbs: frozenset[str] = frozenset()
    categories: tuple[str, ...] = ()
    preferred: bool = True

    @property
    def kind(self) -> str:
        """The kind of its objects (``"Widget"``)."""
        return self.resource.kind or ""

    @property
    def namespaced(self) -> bool:
        """Whether its objects live in namespaces (``False``: cluster-scoped)."""
        return bool(self.resource.namespaced)

    @property
    def watchable(self) -> bool:
        """Whether it can be listed and watched: what :func:`crwatch.watch` needs."""
        return {"list", "watch"} <= self.verbs

    def __str__(self) -> str:
        return str(self.resource)


@frozen
class DiscoveryStatistics:
    """Counters of one client's discovery cache.

    Attributes:
        lookups: lookups of parsable names so far, resolved or refused.
        refreshes: times the cache was dropped and read again (after a miss, or
            :meth:`Discovery.invalidate`).
        requests: discovery documents fetched.
        groups: API groups known, the core group included (0 before the first read).
        resources: resource types cached (every served version counts).
        unavailable: group/versions that could not be read at the last attempt (an
            aggregated API that is down answers 503, or is marked ``Stale`` in aggregated
            discovery); they are asked again on the next miss.
        aggregated: whether the last read used aggregated discovery (every group's
            resources in the answers to ``/api`` and ``/apis``) rather than one request
            per group/version.
    """

    lookups: int
    refreshes: int
    requests: int
    groups: int
    resources: int
    unavailable: tuple[str, ...]
    aggregated: bool = False


@frozen
class _Query:
    """One reading of a name: ``name`` in ``group`` (``None``: any) at ``version``."""

    name: str
    group: str | None = None
    version: str | None = None


def parse_name(text: str) -> tuple[_Query, ...]:
    """Return the readings of ``text`` to try, most specific first (kubectl's order).

    ``a.b.c`` is first ``a`` at version ``b`` of group ``c`` when ``b`` looks like a
    version, then ``a`` of group ``b.c``; ``a.v1`` is also core ``v1``. ``g/v/p`` and
    ``v/p`` (core) are exact.
    """
    if not isinstance(text, str):
        raise InvalidOptionError(f"a resource name must be a str, got {text!r}")
    clean = text.strip()
    if not clean or any(c.isspace() for c in clean):
        raise InvalidOptionError(f"cannot parse resource {text!r}")
    if "/" in clean:
        parts = clean.split("/")
        if len(parts) == 3 and all(parts) and _VERSION.match(parts[1]):
            return (_Query(parts[2].lower(), parts[0].lower(), parts[1]),)
        if len(parts) == 2 and all(parts) and _VERSION.match(parts[0]):
            return (_Query(parts[1].lower(), "", parts[0]),)
        raise InvalidOptionError(
            f"cannot parse resource {text!r}: expected group/version/plural "
            "(example.com/v1/widgets) or version/plural for the core group (v1/configmaps)"
        )
    parts = clean.lower().split(".")
    if not all(parts):
        raise InvalidOptionError(f"cannot parse resource {text!r}")
    if len(parts) == 1:
        return (_Query(parts[0]),)
    readings: list[_Query] = []
    if len(parts) >= 3 and _VERSION.match(parts[1]):
        readings.append(_Query(parts[0], ".".join(parts[2:]), parts[1]))
    readings.append(_Query(parts[0], ".".join(parts[1:])))
    if len(parts) == 2 and _VERSION.match(parts[1]):
        readings.append(_Query(parts[0], "", parts[1]))
    return tuple(readings)


class _Cache:
    """What one ``ApiClient``'s server serves, as far as it was read."""

    def __init__(self) -> None:
        # group -> its versions, preferred first; None until /api and /apis were read.
        self.groups: dict[str, tuple[str, ...]] | None = None
        self.documents: dict[tuple[str, str], tuple[ApiResource, ...]] = {}
        self.unavailable: dict[tuple[str, str], str] = {}
        self.lock = anyio.Lock()
        self.aggregated = False
        self.lookups = 0
        self.refreshes = 0
        self.requests = 0

    def clear(self) -> None:
        self.groups = None
        self.documents.clear()
        self.unavailable.clear()


# One cache per ApiClient, so every crwatch.Client over it shares what was read. The key is
# weak: the cache holds no reference back to the ApiClient, which stays collectable.
_CACHES: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()


def _cache_of(api_client: Any) -> _Cache:
    try:
        return _CACHES[api_client]
    except KeyError:
        cache = _CACHES[api_client] = _Cache()
        return cache
    except TypeError:  # not weakly referenceable: a private cache, alive as long as used
        return _Cache()


class Discovery:
    """Resolve resource names through the API server's discovery, for one client.

    Get it from :attr:`crwatch.Client.discovery`; ``await client.resource(name)`` is the
    shortcut for ``(await client.discovery.lookup(name)).resource``. What is read is cached
    per ``ApiClient`` and read again when a name is not found, so a CRD created after the
    first lookup is found by the next one.
    """

    __slots__ = ("_cache", "_transport")

    def __init__(self, transport: Transport, api_client: Any) -> None:
        self._transport = transport
        self._cache = _cache_of(api_client)

    async def lookup(self, name: str) -> ApiResource:
        """Resolve ``name`` to the resource type the server serves.

        Args:
            name: ``"widgets"``, ``"widget"``, ``"Widget"`` (any case), a short name,
                ``"widgets.example.com"``, ``"widgets.v1.example.com"``,
                ``"example.com/v1/widgets"``; core types as ``"configmaps"``,
                ``"configmaps.v1"`` or ``"v1/configmaps"``.

        Returns:
            The :class:`ApiResource`, in its group's preferred version unless a version
            was named.

        Raises:
            InvalidOptionError: ``name`` cannot be parsed.
            UnknownResourceError: the server has no such resource type, even after
                discovery was read again.
            AmbiguousResourceError: several groups other than core serve it; give
                ``plural.group``.
            ApiError: discovery itself was refused (401, 403...).
            TransportError: the server could not be reached.
        """
        readings = parse_name(name)
        cache = self._cache
        cache.lookups += 1
        async with cache.lock:
            fresh = cache.groups is None
            found = await self._resolve(name, readings)
            if found is None and not fresh:
                # A miss against a cache read earlier: the type may be new (a CRD created
                # since). kubectl does the same: invalidate, read again, retry once.
                cache.refreshes += 1
                cache.clear()
                found = await self._resolve(name, readings)
        if found is None:
            raise UnknownResourceError(
                f'the server doesn\'t have a resource type "{name}"', name=name
            )
        return found

    async def resources(self) -> tuple[ApiResource, ...]:
        """Return every resource type the server serves, every served version of each.

        Core types come first, then groups in the server's order; subresources
        (``widgets/status``) are left out.
        """
        async with self._cache.lock:
            groups = await self._groups()
            await self._read(groups)
            documents = self._cache.documents
            return tuple(
                r
                for g, versions in groups.items()
                for v in versions
                for r in documents.get((g, v), ())
            )

    def invalidate(self) -> None:
        """Forget what was read: the next lookup reads discovery again."""
        self._cache.refreshes += 1
        self._cache.clear()

    def statistics(self) -> DiscoveryStatistics:
        """Return the cache's counters."""
        cache = self._cache
        return DiscoveryStatistics(
            lookups=cache.lookups,
            refreshes=cache.refreshes,
            requests=cache.requests,
            groups=len(cache.groups or ()),
            resources=sum(len(doc) for doc in cache.documents.values()),
            unavailable=tuple(sorted(_gv(g, v) for g, v in cache.unavailable)),
            aggregated=cache.aggregated,
        )

    # -- resolving ---------------------------------------------------------------------------

    async def _resolve(self, text: str, readings: Sequence[_Query]) -> ApiResource | None:
        groups = await self._groups()
        for query in readings:
            if query.group is None:
                wanted = list(groups)
            elif query.group in groups:
                wanted = [query.group]
            else:
                continue
            await self._read({g: groups[g] for g in wanted})
            found = self._match(text, query, groups, wanted)
            if found is not None:
                return found
        return None

    def _match(
        self,
        text: str,
        query: _Query,
        groups: Mapping[str, tuple[str, ...]],
        wanted: Iterable[str],
    ) -> ApiResource | None:
        documents = self._cache.documents
        exact: dict[str, ApiResource] = {}
        short: dict[str, ApiResource] = {}
        for group in wanted:
            versions = groups[group] if query.version is None else (query.version,)
            for version in versions:  # preferred first: the first version that has it wins
                for candidate in documents.get((group, version), ()):
                    if group not in exact and query.name in _names(candidate):
                        exact[group] = candidate
                    if group not in short and query.name in candidate.short_names:
                        short[group] = candidate
        for tier in (exact, short):
            if "" in tier:
                return tier[""]
            if len(tier) == 1:
                return next(iter(tier.values()))
            if tier:
                candidates = tuple(str(r) for r in tier.values())
                raise AmbiguousResourceError(
                    f'resource type "{text}" is served by several API groups: '
                    f"{', '.join(candidates)}; name one in full",
                    name=text,
                    candidates=candidates,
                )
        return None

    # -- reading -----------------------------------------------------------------------------

    async def _groups(self) -> dict[str, tuple[str, ...]]:
        cache = self._cache
        if cache.groups is not None:
            return cache.groups
        groups: dict[str, tuple[str, ...]] = {}
        try:
            core_type, core = await self._negotiate("/api")
        except NotFoundError:
            core_type, core = "", {}  # kubectl tolerates a server without the legacy core group
        apis_type, apis = await self._negotiate("/apis")
        # Each answer says its form in Content-Type alone: an aggregated body read as a
        # legacy one has no "versions"/"groups" and would look like an empty server.
        cache.aggregated = _is_aggregated(core_type) and _is_aggregated(apis_type)
        if _is_aggregated(core_type):
            self._take_aggregated(core, groups)
        else:
            versions = tuple(str(v) for v in _list(core, "versions") if isinstance(v, str))
            if versions:
                groups[""] = versions
        if _is_aggregated(apis_type):
            self._take_aggregated(apis, groups)
        else:
            groups.update(_legacy_groups(apis))
        cache.groups = groups
        return groups

    def _take_aggregated(self, doc: Any, groups: dict[str, tuple[str, ...]]) -> None:
        """Cache every resource of an ``APIGroupDiscoveryList``; add its groups to ``groups``."""
        cache = self._cache
        for item in _list(doc, "items"):
            metadata = item.get("metadata") if isinstance(item, Mapping) else None
            name = metadata.get("name", "") if isinstance(metadata, Mapping) else ""
            if not isinstance(name, str):
                continue
            versions: list[str] = []
            # Versions come in preference order: the first is the group's preferred one.
            for entry in _list(item, "versions"):
                version = entry.get("version") if isinstance(entry, Mapping) else None
                if not isinstance(version, str) or not version or version in versions:
                    continue
                versions.append(version)
                if entry.get("freshness") == "Stale":
                    # The aggregated API behind it did not answer the server; client-go
                    # counts such a group/version as failed rather than trusting the list.
                    cache.unavailable[(name, version)] = "discovery information is stale"
                    log.warning("discovery: %s is stale", _gv(name, version))
                    continue
                cache.documents[(name, version)] = _aggregated_resources(
                    entry, name, version, preferred=len(versions) == 1
                )
            if versions:
                groups[name] = tuple(versions)

    async def _read(self, groups: Mapping[str, tuple[str, ...]]) -> None:
        """Fetch the resource lists of ``groups`` that are not cached yet, a few at once."""
        cache = self._cache
        missing = [
            (g, v, i == 0)
            for g, versions in groups.items()
            for i, v in enumerate(versions)
            # A group/version that just failed is asked again only after a refresh.
            if (g, v) not in cache.documents and (g, v) not in cache.unavailable
        ]
        if not missing:
            return
        limit = anyio.Semaphore(_PARALLEL)

        async def read_one(group: str, version: str, preferred: bool) -> None:
            async with limit:
                path = f"/apis/{group}/{version}" if group else f"/api/{version}"
                try:
                    doc = await self._get(path)
                except (UnauthorizedError, ForbiddenError):
                    raise
                except ApiError as exc:
                    # One group that cannot answer (an aggregated API whose backend is
                    # down answers 503) must not hide the others: kubectl goes on too.
                    cache.unavailable[(group, version)] = str(exc)
                    log.warning("discovery: %s is unavailable: %s", _gv(group, version), exc)
                    return
                cache.unavailable.pop((group, version), None)
                cache.documents[(group, version)] = _resources(doc, group, version, preferred)

        async with anyio.create_task_group() as tasks:
            for group, version, preferred in missing:
                tasks.start_soon(read_one, group, version, preferred)

    async def _get(self, path: str) -> Any:
        self._cache.requests += 1
        return await self._transport.get_json(path)

    async def _negotiate(self, path: str) -> tuple[str, Any]:
        self._cache.requests += 1
        return await self._transport.get_negotiated(path, accept=_ACCEPT_DISCOVERY)


def _is_aggregated(content_type: str) -> bool:
    """Whether ``content_type`` is an ``APIGroupDiscoveryList`` (apidiscovery v2 or v2beta1)."""
    media, *raw = content_type.split(";")
    params = {}
    for item in raw:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip()
    return (
        media.strip().lower() == "application/json"
        and params.get("g") == "apidiscovery.k8s.io"
        and params.get("as") == "APIGroupDiscoveryList"
        and params.get("v") in ("v2", "v2beta1")
    )


def _legacy_groups(doc: Any) -> dict[str, tuple[str, ...]]:
    """Return the groups of an ``APIGroupList``, each with its versions, preferred first."""
    groups: dict[str, tuple[str, ...]] = {}
    for group in _list(doc, "groups"):
        if not isinstance(group, Mapping) or not isinstance(group.get("name"), str):
            continue
        versions = [
            str(v["version"])
            for v in _list(group, "versions")
            if isinstance(v, Mapping) and isinstance(v.get("version"), str)
        ]
        preferred = group.get("preferredVersion")
        first = preferred.get("version") if isinstance(preferred, Mapping) else None
        if first in versions:
            versions.remove(first)
            versions.insert(0, first)
        if versions:
            groups[group["name"]] = tuple(versions)
    return groups


def _names(candidate: ApiResource) -> tuple[str, ...]:
    return (candidate.resource.plural, candidate.singular, candidate.kind.lower())


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _list(doc: Any, key: str) -> list[Any]:
    value = doc.get(key) if isinstance(doc, Mapping) else None
    return value if isinstance(value, list) else []


def _resources(doc: Any, group: str, version: str, preferred: bool) -> tuple[ApiResource, ...]:
    """Return the resource types of one ``APIResourceList``, subresources left out."""
    found: list[ApiResource] = []
    for entry in _list(doc, "resources"):
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            continue  # "widgets/status" is a subresource, not a type of its own
        kind = str(entry.get("kind") or "")
        try:
            resource = Resource(
                group, version, name, kind=kind or None, namespaced=entry.get("namespaced") is True
            )
        except InvalidOptionError:
            continue  # not a name crwatch could request anyway
        found.append(
            ApiResource(
                resource,
                # kubectl falls back to the lowercase kind when singularName is empty.
                singular=str(entry.get("singularName") or kind.lower()),
                short_names=tuple(str(s).lower() for s in _list(entry, "shortNames")),
                verbs=frozenset(str(v) for v in _list(entry, "verbs")),
                categories=tuple(str(c) for c in _list(entry, "categories")),
                preferred=preferred,
            )
        )
    return tuple(found)


def _aggregated_resources(
    doc: Any, group: str, version: str, *, preferred: bool
) -> tuple[ApiResource, ...]:
    """Return the resource types of one ``APIVersionDiscovery``.

    Subresources are nested under their resource there, so every entry is a type.
    """
    found: list[ApiResource] = []
    for entry in _list(doc, "resources"):
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("resource")
        if not isinstance(name, str) or not name:
            continue
        response_kind = entry.get("responseKind")
        kind = str(response_kind.get("kind") or "") if isinstance(response_kind, Mapping) else ""
        try:
            resource = Resource(
                group,
                version,
                name,
                kind=kind or None,
                namespaced=entry.get("scope") == "Namespaced",
            )
        except InvalidOptionError:
            continue
        found.append(
            ApiResource(
                resource,
                singular=str(entry.get("singularResource") or kind.lower()),
                short_names=tuple(str(s).lower() for s in _list(entry, "shortNames")),
                verbs=frozenset(str(v) for v in _list(entry, "verbs")),
                categories=tuple(str(c) for c in _list(entry, "categories")),
                preferred=preferred,
            )
        )
    return tuple(found)
