"""Aggregated discovery (``apidiscovery.k8s.io``): every group's resources in one document.

Since Kubernetes 1.26 (beta, on by default from 1.27, GA in 1.30) ``GET /api`` and
``GET /apis`` answer with an ``APIGroupDiscoveryList`` instead of the legacy
``APIVersions``/``APIGroupList`` when the client asks for it in ``Accept``
(https://kubernetes.io/docs/concepts/overview/kubernetes-api/#aggregated-discovery). The
types are those of https://github.com/kubernetes/api/blob/master/apidiscovery/v2/types.go
(v2beta1 has the same shape). A client learns which form it got from ``Content-Type`` only:
kubectl decodes an aggregated body sent as plain ``application/json`` as a legacy document and
then finds no resources, so the answer must carry the negotiated media type exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Final

import orjson

from ._state import Obj, ResourceType, sort_versions

__all__ = ["LEGACY", "content_type", "document", "etag", "negotiate"]

#: The negotiation's answer for the legacy documents.
LEGACY: Final = "legacy"
#: Aggregated discovery versions, most preferred first.
_VERSIONS: Final = ("v2", "v2beta1")
_GROUP: Final = "apidiscovery.k8s.io"
_KIND: Final = "APIGroupDiscoveryList"
_JSON_TYPES: Final = ("application/json", "application/*", "*/*")


def content_type(version: str) -> str:
    """Return the ``Content-Type`` of an aggregated answer in ``version`` (v2 or v2beta1)."""
    return f"application/json;g={_GROUP};v={version};as={_KIND}"


def negotiate(accept: str, *, aggregated: bool) -> str:
    """Pick what ``/api`` or ``/apis`` answers for ``accept``.

    Returns ``"v2"`` or ``"v2beta1"`` (aggregated) or `LEGACY`. Clauses are tried by their
    ``q`` (highest first), in the client's order among equals. With ``aggregated`` off the
    server behaves like one without the feature: the aggregated clauses are skipped. What
    matches nothing gets the legacy JSON, as this server always answered (kube-apiserver
    would also offer YAML and protobuf, which it does not serve).
    """
    if not accept.strip():
        return LEGACY
    clauses: list[tuple[float, int, str, dict[str, str]]] = []
    for index, clause in enumerate(accept.split(",")):
        media, *raw_params = clause.split(";")
        params: dict[str, str] = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip()
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        clauses.append((-quality, index, media.strip().lower(), params))
    for negative_q, _, media, params in sorted(clauses):
        if negative_q >= 0 or media not in _JSON_TYPES:
            continue  # q=0 means "not acceptable"
        if not params:
            return LEGACY
        if (
            aggregated
            and media == "application/json"
            and params.get("g") == _GROUP
            and params.get("as") == _KIND
            and params.get("v") in _VERSIONS
        ):
            return params["v"]
    return LEGACY


def document(
    version: str, types: Iterable[ResourceType], *, core: bool, verbs: Iterable[str]
) -> Obj:
    """Build the ``APIGroupDiscoveryList`` of ``/api`` (``core``) or ``/apis`` in ``version``.

    Groups are in the legacy ``/apis`` order; each group's versions are in preference order
    (the first is the preferred version); a resource's ``status`` subresource is listed under
    it rather than as a resource of its own (``widgets/status`` in the legacy list).
    """
    all_verbs = list(verbs)
    by_group: dict[str, dict[str, list[ResourceType]]] = {}
    for rtype in types:
        if (rtype.group == "") == core:
            by_group.setdefault(rtype.group, {}).setdefault(rtype.version, []).append(rtype)
    items: list[Obj] = []
    for group in sorted(by_group):
        versions = by_group[group]
        metadata: Obj = {"name": group} if group else {}
        items.append(
            {
                "metadata": metadata,
                "versions": [
                    {
                        "version": v,
                        "resources": [
                            _resource(t, all_verbs)
                            for t in sorted(versions[v], key=lambda t: t.plural)
                        ],
                        # "Stale" is for an aggregated API server that could not be reached.
                        "freshness": "Current",
                    }
                    for v in sort_versions(versions)
                ],
            }
        )
    return {"kind": _KIND, "apiVersion": f"{_GROUP}/{version}", "metadata": {}, "items": items}


def _resource(rtype: ResourceType, verbs: list[str]) -> Obj:
    kind = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
    entry: Obj = {
        "resource": rtype.plural,
        "responseKind": kind,
        "scope": "Namespaced" if rtype.namespaced else "Cluster",
        "singularResource": rtype.singular,
        "verbs": verbs,
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    if rtype.status_subresource:
        entry["subresources"] = [
            {
                "subresource": "status",
                "responseKind": kind,
                "acceptedTypes": [kind],
                "verbs": ["get", "patch", "update"],
            }
        ]
    return entry


def etag(body: Mapping[str, object]) -> str:
    """Return a strong entity tag of ``body``.

    kube-apiserver tags aggregated discovery with a hash of the document and answers 304 to a
    matching ``If-None-Match``.
    """
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'
