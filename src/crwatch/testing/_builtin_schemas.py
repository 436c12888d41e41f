"""OpenAPI schemas of the built-in kinds FakeApiServer serves, one table entry per kind.

Compact versions of the upstream definitions (https://kubernetes.io/docs/reference/kubernetes-api/):
the fields clients read and write, with their types, enough for ``kubectl explain`` and
client-side validation. A served built-in kind missing from `BUILTIN_SCHEMAS` is published
with an open object schema; adding a kind is one entry here.

References are written as ``#/components/schemas/NAME`` (OpenAPI v3); the v2 document
rewrites them to ``#/definitions/NAME``.
"""

from __future__ import annotations

from typing import Any, Final

Obj = dict[str, Any]

META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1"


def ref(name: str) -> Obj:
    """Refer to a component schema, wrapped in allOf like kube-apiserver's v3 documents."""
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}]}


def _s(description: str, **more: Any) -> Obj:
    return {"type": "string", "description": description, **more}


def _i(description: str, fmt: str = "int32") -> Obj:
    return {"type": "integer", "format": fmt, "description": description}


_TIME: Final = {"type": "string", "format": "date-time"}
_STRING_MAP: Final = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}

# Shared definitions every document carries (the ones the kinds below refer to).
SHARED: Final[dict[str, Obj]] = {
    f"{META}.ObjectMeta": {
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": _s("Name must be unique within a namespace."),
            "generateName": _s("Optional prefix used to generate a unique name."),
            "namespace": _s("Namespace defines the space within which the name must be unique."),
            "uid": _s("UID is the unique in time and space value for this object."),
            "resourceVersion": _s("An opaque value that represents the internal version."),
            "generation": _i("A sequence number representing a specific generation.", "int64"),
            "creationTimestamp": {**_TIME, "description": "When this object was created."},
            "deletionTimestamp": {**_TIME, "description": "When this object will be deleted."},
            "deletionGracePeriodSeconds": _i("Seconds allowed for graceful termination.", "int64"),
            "labels": {**_STRING_MAP, "description": "Map of string keys and values."},
            "annotations": {**_STRING_MAP, "description": "Unstructured key value map."},
            "finalizers": {
                "type": "array",
                "items": {"type": "string", "default": ""},
                "description": "Must be empty before the object is deleted from the registry.",
                "x-kubernetes-list-type": "set",
            },
            "ownerReferences": {
                "type": "array",
                "items": {"default": {}, **ref(f"{META}.OwnerReference")},
                "description": "List of objects depended by this object.",
                "x-kubernetes-list-map-keys": ["uid"],
                "x-kubernetes-list-type": "map",
                "x-kubernetes-patch-merge-key": "uid",
                "x-kubernetes-patch-strategy": "merge",
            },
            "managedFields": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "description": "Which fields are managed by which workflow (server-side apply).",
            },
        },
    },
    f"{META}.OwnerReference": {
        "type": "object",
        "description": "Information to let you identify an owning object.",
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {
            "apiVersion": _s("API version of the referent.", default=""),
            "kind": _s("Kind of the referent.", default=""),
            "name": _s("Name of the referent.", default=""),
            "uid": _s("UID of the referent.", default=""),
            "controller": {"type": "boolean", "description": "If true, this is the controller."},
            "blockOwnerDeletion": {
                "type": "boolean",
                "description": "If true, the owner cannot be deleted before this object.",
            },
        },
        "x-kubernetes-map-type": "atomic",
    },
    "io.k8s.api.core.v1.ObjectReference": {
        "type": "object",
        "description": "ObjectReference contains enough information to inspect the referent.",
        "properties": {
            "apiVersion": _s("API version of the referent."),
            "kind": _s("Kind of the referent."),
            "name": _s("Name of the referent."),
            "namespace": _s("Namespace of the referent."),
            "uid": _s("UID of the referent."),
            "resourceVersion": _s("Specific resourceVersion to which this reference is made."),
            "fieldPath": _s("A piece of an object instead of an entire object."),
        },
        "x-kubernetes-map-type": "atomic",
    },
}

_SERIES: Final = {
    "type": "object",
    "description": "Data about the Event series this event represents.",
    "properties": {
        "count": _i("Number of occurrences in this series up to the last heartbeat time."),
        "lastObservedTime": {**_TIME, "description": "Time of the last occurrence observed."},
    },
}

# (group, version, kind) -> (component name, schema without apiVersion/kind/metadata)
BUILTIN_SCHEMAS: Final[dict[tuple[str, str, str], tuple[str, Obj]]] = {
    ("", "v1", "Namespace"): (
        "io.k8s.api.core.v1.Namespace",
        {
            "description": "Namespace provides a scope for Names.",
            "properties": {
                "spec": {
                    "type": "object",
                    "description": "Spec defines the behavior of the Namespace.",
                    "properties": {
                        "finalizers": {
                            "type": "array",
                            "items": {"type": "string", "default": ""},
                            "description": "Finalizers is an opaque list of values that must be "
                            "empty to permanently remove object from storage.",
                        }
                    },
                },
                "status": {
                    "type": "object",
                    "description": "Status describes the current status of a Namespace.",
                    "properties": {
                        "phase": _s(
                            "Phase is the current lifecycle phase of the namespace.",
                            enum=["Active", "Terminating"],
                        ),
                        "conditions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "description": "The latest available observations of the state.",
                        },
                    },
                },
            },
        },
    ),
    ("", "v1", "ConfigMap"): (
        "io.k8s.api.core.v1.ConfigMap",
        {
            "description": "ConfigMap holds configuration data for pods to consume.",
            "properties": {
                "data": {**_STRING_MAP, "description": "Data contains the configuration data."},
                "binaryData": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "format": "byte"},
                    "description": "BinaryData contains the binary data.",
                },
                "immutable": {
                    "type": "boolean",
                    "description": "If set to true, the data stored cannot be updated.",
                },
            },
        },
    ),
    ("coordination.k8s.io", "v1", "Lease"): (
        "io.k8s.api.coordination.v1.Lease",
        {
            "description": "Lease defines a lease concept.",
            "properties": {
                "spec": {
                    "type": "object",
                    "description": "Spec contains the specification of the Lease.",
                    "properties": {
                        "holderIdentity": _s("The identity of the holder of a current lease."),
                        "leaseDurationSeconds": _i("Duration candidates wait to force acquire."),
                        "acquireTime": {**_TIME, "description": "When the lease was acquired."},
                        "renewTime": {**_TIME, "description": "When the holder last renewed."},
                        "leaseTransitions": _i("Number of transitions between holders."),
                        "preferredHolder": _s("Signals to a lease holder that it should yield."),
                        "strategy": _s("The strategy for picking the leader."),
                    },
                }
            },
        },
    ),
    ("", "v1", "Event"): (
        "io.k8s.api.core.v1.Event",
        {
            "description": "Event is a report of an event somewhere in the cluster.",
            "required": ["metadata", "involvedObject"],
            "properties": {
                "involvedObject": {
                    "default": {},
                    **ref("io.k8s.api.core.v1.ObjectReference"),
                    "description": "The object that this event is about.",
                },
                "reason": _s("Short, machine understandable reason for the transition."),
                "message": _s("A human-readable description of the status of this operation."),
                "type": _s("Type of this event (Normal, Warning)."),
                "count": _i("The number of times this event has occurred."),
                "firstTimestamp": {**_TIME, "description": "When this event was first recorded."},
                "lastTimestamp": {**_TIME, "description": "When this event last occurred."},
                "eventTime": {**_TIME, "description": "Time when this Event was first observed."},
                "source": {
                    "type": "object",
                    "description": "The component reporting this event.",
                    "properties": {
                        "component": _s("Component from which the event is generated."),
                        "host": _s("Node name on which the event is generated."),
                    },
                },
                "series": _SERIES,
                "action": _s("What action was taken/failed regarding to the Regarding object."),
                "related": {
                    **ref("io.k8s.api.core.v1.ObjectReference"),
                    "description": "Optional secondary object for more complex actions.",
                },
                "reportingComponent": _s("Name of the controller that emitted this Event."),
                "reportingInstance": _s("ID of the controller instance."),
            },
        },
    ),
    ("events.k8s.io", "v1", "Event"): (
        "io.k8s.api.events.v1.Event",
        {
            "description": "Event is a report of an event somewhere in the cluster.",
            "required": ["eventTime"],
            "properties": {
                "eventTime": {**_TIME, "description": "Time when this Event was first observed."},
                "series": _SERIES,
                "reportingController": _s("Name of the controller that emitted this Event."),
                "reportingInstance": _s("ID of the controller instance."),
                "action": _s("What action was taken/failed regarding to the regarding object."),
                "reason": _s("Why the action was taken."),
                "regarding": {
                    "default": {},
                    **ref("io.k8s.api.core.v1.ObjectReference"),
                    "description": "The object this Event is about.",
                },
                "related": {
                    **ref("io.k8s.api.core.v1.ObjectReference"),
                    "description": "Optional secondary object for more complex actions.",
                },
                "note": _s("A human-readable description of the status of this operation."),
                "type": _s("Type of this event (Normal, Warning)."),
                "deprecatedSource": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "deprecatedFirstTimestamp": _TIME,
                "deprecatedLastTimestamp": _TIME,
                "deprecatedCount": _i("Deprecated field assuring backward compatibility."),
            },
        },
    ),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"): (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        {
            "description": "CustomResourceDefinition represents a resource that should be "
            "exposed on the API server.",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "description": "Spec describes how the user wants the resources to appear.",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "status": {
                    "type": "object",
                    "description": "Status indicates the actual state of the definition.",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
    ),
}
