"""The CustomResourceDefinitions of ``gloo_openapi_controller.py``, with structural schemas.

Three types, each a dict of :meth:`crwatch.testing.FakeApiServer.register_crd` arguments
(``server.register_crd(**UPSTREAM_CRD)``); :func:`manifest` turns one into the
``apiextensions.k8s.io/v1`` object ``kubectl apply`` takes:

- ``openapispecs.gateway.example.com/v1`` ``OpenAPISpec``: this example's own type;
- ``upstreams.gloo.solo.io/v1`` ``Upstream`` and ``virtualservices.gateway.solo.io/v1``
  ``VirtualService``: the fields of Gloo's types the controller writes
  (https://docs.solo.io/gloo-edge/latest/reference/api/github.com/solo-io/gloo/projects/gloo/api/v1/upstream.proto.sk/,
  https://docs.solo.io/gloo-edge/latest/reference/api/github.com/solo-io/gloo/projects/gateway/api/v1/virtual_service.proto.sk/),
  every other field kept as it is (``x-kubernetes-preserve-unknown-fields``). A cluster
  running Gloo has its own, fuller definitions; these stand in for them in tests.

The VirtualService's ``spec.virtualHost.routes`` is a list-map keyed by ``name``
(``x-kubernetes-list-type: map``), so that server-side apply merges the routes of many
field managers item by item instead of replacing the whole list
(https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy).
"""

from __future__ import annotations

from typing import Any

_ANY: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
_OPEN_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

# metav1.Condition's fields (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/).
_CONDITION: dict[str, Any] = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "observedGeneration": {"type": "integer", "format": "int64"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
    },
}

OPENAPISPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["upstream", "prefix"],
            "properties": {
                # An OpenAPI document: inline JSON/YAML text, or the document as an object.
                "document": _ANY,
                "upstream": {
                    "type": "object",
                    "required": ["host", "port"],
                    "properties": {
                        "host": {"type": "string", "minLength": 1},
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    },
                },
                "prefix": {"type": "string", "pattern": "^/"},
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "observedGeneration": {"type": "integer", "format": "int64"},
                "conditions": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": _CONDITION,
                },
                "upstream": {"type": "string"},
                "route": {"type": "string"},
            },
        },
    },
}

UPSTREAM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "static": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "hosts": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["addr"],
                                "properties": {
                                    "addr": {"type": "string"},
                                    "port": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
            },
        },
        "status": _OPEN_OBJECT,
    },
}

_ROUTE: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "matchers": {
            "type": "array",
            "items": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"prefix": {"type": "string"}},
            },
        },
        "routeAction": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "single": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "upstream": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "namespace": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
        "options": _OPEN_OBJECT,
    },
}

VIRTUALSERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "virtualHost": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "domains": {"type": "array", "items": {"type": "string"}},
                        "routes": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": _ROUTE,
                        },
                    },
                },
            },
        },
        "status": _OPEN_OBJECT,
    },
}

OPENAPISPEC_CRD: dict[str, Any] = {
    "group": "gateway.example.com",
    "version": "v1",
    "plural": "openapispecs",
    "kind": "OpenAPISpec",
    "short_names": ["oas"],
    "status_subresource": True,
    "schema": OPENAPISPEC_SCHEMA,
}
UPSTREAM_CRD: dict[str, Any] = {
    "group": "gloo.solo.io",
    "version": "v1",
    "plural": "upstreams",
    "kind": "Upstream",
    "short_names": ["us"],
    "status_subresource": True,
    "schema": UPSTREAM_SCHEMA,
}
VIRTUALSERVICE_CRD: dict[str, Any] = {
    "group": "gateway.solo.io",
    "version": "v1",
    "plural": "virtualservices",
    "kind": "VirtualService",
    "short_names": ["vs"],
    "status_subresource": True,
    "schema": VIRTUALSERVICE_SCHEMA,
}

#: Every definition, in registration order.
CRDS: tuple[dict[str, Any], ...] = (OPENAPISPEC_CRD, UPSTREAM_CRD, VIRTUALSERVICE_CRD)


def manifest(crd: dict[str, Any]) -> dict[str, Any]:
    """Return the ``apiextensions.k8s.io/v1`` CustomResourceDefinition for one definition."""
    version: dict[str, Any] = {
        "name": crd["version"],
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": crd["schema"]},
    }
    if crd.get("status_subresource"):
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{crd['plural']}.{crd['group']}"},
        "spec": {
            "group": crd["group"],
            "scope": "Namespaced",
            "names": {
                "plural": crd["plural"],
                "kind": crd["kind"],
                "shortNames": list(crd.get("short_names", ())),
            },
            "versions": [version],
        },
    }
