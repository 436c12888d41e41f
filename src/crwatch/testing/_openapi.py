"""OpenAPI documents of FakeApiServer: ``/openapi/v2`` and ``/openapi/v3`` (JSON only).

Shapes follow kube-apiserver (https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-interface-definition):

- ``/openapi/v3`` lists one document per group-version: ``{"paths": {"apis/example.com/v1":
  {"serverRelativeURL": "/openapi/v3/apis/example.com/v1?hash=..."}}}``;
- each group-version document has ``paths`` (every operation tagged with
  ``x-kubernetes-action`` and ``x-kubernetes-group-version-kind``, PATCH carrying the
  ``fieldValidation`` query parameter so kubectl leaves validation to the server) and
  ``components.schemas`` (the CRD's ``openAPIV3Schema`` plus ``apiVersion``, ``kind`` and
  ``metadata``, tagged with ``x-kubernetes-group-version-kind``), which is what
  ``kubectl explain`` walks;
- ``/openapi/v2`` is one Swagger 2.0 document with every kind under ``definitions``.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from ._builtin_schemas import BUILTIN_SCHEMAS, META, SHARED, ref
from ._schema import SchemaRegistry
from ._state import ResourceType

Obj = dict[str, Any]

_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"


def gv_path(group: str, version: str) -> str:
    """``api/v1`` or ``apis/GROUP/VERSION``: the key of a group-version in ``/openapi/v3``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _definition_name(rtype: ResourceType) -> str:
    builtin = BUILTIN_SCHEMAS.get((rtype.group, rtype.version, rtype.kind))
    if builtin is not None:
        return builtin[0]
    # CRD kinds are named by the reversed group, like kube-apiserver does (com.example.v1.Widget).
    reverse = ".".join(reversed(rtype.group.split("."))) if rtype.group else "core"
    return f"{reverse}.{rtype.version}.{rtype.kind}"


def _gvk(rtype: ResourceType) -> Obj:
    return {"group": rtype.group, "kind": rtype.kind, "version": rtype.version}


def _kind_schema(rtype: ResourceType, schemas: SchemaRegistry) -> Obj:
    builtin = BUILTIN_SCHEMAS.get((rtype.group, rtype.version, rtype.kind))
    entry = schemas.get(rtype.group, rtype.version, rtype.plural)
    if entry is not None:
        schema = copy.deepcopy(entry.schema)
    elif builtin is not None:
        schema = copy.deepcopy(builtin[1])
    else:
        schema = {"x-kubernetes-preserve-unknown-fields": True}
    schema["type"] = "object"
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object.",
    }
    props["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object "
        "represents.",
    }
    props["metadata"] = {
        **ref(f"{META}.ObjectMeta"),
        "default": {},
        "description": "Standard object's metadata.",
    }
    schema["x-kubernetes-group-version-kind"] = [_gvk(rtype)]
    return schema


def _list_schema(rtype: ResourceType, item: str) -> Obj:
    return {
        "type": "object",
        "description": f"{rtype.list_kind} is a list of {rtype.kind}",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": _V3_REF + item}},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "x-kubernetes-group-version-kind": [{**_gvk(rtype), "kind": rtype.list_kind}],
    }


_QUERY = ("dryRun", "fieldManager", "fieldValidation", "pretty")


def _operation(
    rtype: ResourceType, action: str, verb: str, *, body: str | None, answer: str, v2: bool
) -> Obj:
    names = {"get": "read", "list": "list", "post": "create", "put": "replace"}
    scope = "Namespaced" if rtype.namespaced else ""
    gv = _camel(rtype.group) + _camel(rtype.version)
    op_id = f"{names.get(action, action)}{gv}{scope}{rtype.kind}"
    params: list[Obj] = []
    if action in ("post", "put", "patch"):
        for name in _QUERY:
            if v2:
                params.append({"name": name, "in": "query", "type": "string", "uniqueItems": True})
            else:
                params.append(
                    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                )
    op: Obj = {
        "operationId": op_id,
        "description": f"{verb} {rtype.kind}",
        "parameters": params,
        "responses": {"200": _response(answer, v2), "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rtype),
    }
    if body is not None:
        types = (
            [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ]
            if action == "patch"
            else ["application/json"]
        )
        schema = {"$ref": (_V2_REF if v2 else _V3_REF) + body}
        if v2:
            params.append({"name": "body", "in": "body", "required": True, "schema": schema})
            op["consumes"] = types
        else:
            op["requestBody"] = {
                "content": {t: {"schema": schema} for t in types},
                "required": True,
            }
    if v2:
        op["produces"] = ["application/json"]
        op["schemes"] = ["https"]
    return op


def _response(definition: str, v2: bool) -> Obj:
    if v2:
        return {"description": "OK", "schema": {"$ref": _V2_REF + definition}}
    return {
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": _V3_REF + definition}}},
    }


def _camel(text: str) -> str:
    return "".join(
        part[:1].upper() + part[1:] for part in text.replace("-", ".").split(".") if part
    )


def _paths(rtype: ResourceType, v2: bool) -> dict[str, Obj]:
    item = _definition_name(rtype)
    lst = item + "List"
    base = f"/{gv_path(rtype.group, rtype.version)}"
    collection = (
        f"{base}/namespaces/{{namespace}}/{rtype.plural}"
        if rtype.namespaced
        else f"{base}/{rtype.plural}"
    )
    named = f"{collection}/{{name}}"
    status = f"{META}.Status"
    path_params: list[Obj] = []
    for name in ("namespace",) if rtype.namespaced else ():
        path_params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                **({"type": "string"} if v2 else {"schema": {"type": "string"}}),
            }
        )
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        **({"type": "string"} if v2 else {"schema": {"type": "string"}}),
    }

    def op(action: str, verb: str, body: str | None, answer: str) -> Obj:
        return _operation(rtype, action, verb, body=body, answer=answer, v2=v2)

    paths: dict[str, Obj] = {
        collection: {
            "get": op("list", "list or watch objects of kind", None, lst),
            "post": op("post", "create a", item, item),
            "delete": op("deletecollection", "delete collection of", None, status),
            "parameters": list(path_params),
        },
        named: {
            "get": op("get", "read the specified", None, item),
            "put": op("put", "replace the specified", item, item),
            "patch": op("patch", "partially update the specified", f"{META}.Patch", item),
            "delete": op("delete", "delete a", None, status),
            "parameters": [name_param, *path_params],
        },
    }
    if rtype.namespaced:
        paths[f"{base}/{rtype.plural}"] = {
            "get": op("list", "list or watch objects of kind", None, lst)
        }
    if rtype.status_subresource:
        paths[f"{named}/status"] = {
            "get": op("get", "read status of the specified", None, item),
            "put": op("put", "replace status of the specified", item, item),
            "patch": op("patch", "partially update status of the specified", f"{META}.Patch", item),
            "parameters": [name_param, *path_params],
        }
    return paths


def _components(types: Iterable[ResourceType], schemas: SchemaRegistry) -> dict[str, Obj]:
    out: dict[str, Obj] = copy.deepcopy(SHARED)
    out[f"{META}.Status"] = {
        "type": "object",
        "description": "Status is a return value for calls that don't return other objects.",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    out[f"{META}.Patch"] = {
        "type": "object",
        "description": "Patch is provided to give a concrete name and type to the request body.",
    }
    for rtype in types:
        name = _definition_name(rtype)
        out[name] = _kind_schema(rtype, schemas)
        out[name + "List"] = _list_schema(rtype, name)
    return out


def v3_document(
    types: Iterable[ResourceType],
    schemas: SchemaRegistry,
    group: str,
    version: str,
    server_version: str,
) -> Obj:
    """Build the OpenAPI v3 document of one group-version."""
    selected = sorted(
        (t for t in types if t.group == group and t.version == version), key=lambda t: t.plural
    )
    paths: dict[str, Obj] = {}
    for rtype in selected:
        paths.update(_paths(rtype, v2=False))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{server_version}"},
        "paths": paths,
        "components": {"schemas": _components(selected, schemas)},
    }


def v3_index(types: Iterable[ResourceType], schemas: SchemaRegistry, server_version: str) -> Obj:
    """``/openapi/v3``: one entry per served group-version, each URL carrying a content hash."""
    listed = list(types)
    gvs = sorted({(t.group, t.version) for t in listed})
    paths: dict[str, Obj] = {}
    for group, version in gvs:
        doc = v3_document(listed, schemas, group, version, server_version)
        # The hash lets clients cache a document for as long as it does not change.
        digest = hashlib.sha512(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest().upper()
        key = gv_path(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def v2_document(types: Iterable[ResourceType], schemas: SchemaRegistry, server_version: str) -> Obj:
    """Build the Swagger 2.0 document of every served kind (``/openapi/v2``)."""
    listed = sorted(types, key=lambda t: (t.group, t.version, t.plural))
    paths: dict[str, Obj] = {}
    for rtype in listed:
        paths.update(_paths(rtype, v2=True))
    definitions = _components(listed, schemas)
    raw = orjson.dumps(definitions).replace(_V3_REF.encode(), _V2_REF.encode())
    doc: Obj = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": f"v{server_version}"},
        "paths": paths,
        "definitions": orjson.loads(raw),
    }
    return doc
