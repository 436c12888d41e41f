"""The benchmark's custom resource: a realistic ~2 KB ``Widget``, built deterministically.

Shared by the stream server (which pre-encodes it) and the memory benchmark (which parses it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

GROUP = "example.com"
VERSION = "v1"
PLURAL = "widgets"
KIND = "Widget"
NAMESPACE = "default"
API_VERSION = f"{GROUP}/{VERSION}"
PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"


def widget(i: int, rv: int) -> dict[str, Any]:
    """Return the i-th widget at resourceVersion ``rv`` (~1.95 KB as JSON)."""
    name = f"widget-{i:07d}"
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"5f0c{i:08x}-7a1e-4c2b-9d3f-{i * 7919 % 16**12:012x}",
            "resourceVersion": str(rv),
            "generation": 1 + i % 5,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "finalizers": ["example.com/cleanup"],
            "labels": {
                "app.kubernetes.io/name": "widget",
                "app.kubernetes.io/instance": name,
                "app.kubernetes.io/part-of": "storefront",
                "tier": ("edge", "core", "batch")[i % 3],
                "team": f"team-{i % 17}",
            },
            "annotations": {
                "example.com/owner": "platform-team@example.com",
                "example.com/revision": str(i % 97),
                "example.com/checksum": "sha256:" + f"{i * 2654435761 % 2**64:016x}" * 4,
                "example.com/description": "A widget used by the crwatch benchmark; "
                "its shape follows a typical operator-managed custom resource.",
            },
            "managedFields": [
                {
                    "manager": "widget-operator",
                    "operation": "Apply",
                    "apiVersion": API_VERSION,
                    "time": "2026-01-02T03:04:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:labels": {
                                "f:app.kubernetes.io/name": {},
                                "f:app.kubernetes.io/instance": {},
                                "f:tier": {},
                                "f:team": {},
                            },
                        },
                        "f:spec": {
                            "f:replicas": {},
                            "f:image": {},
                            "f:ports": {},
                            "f:resources": {"f:cpu": {}, "f:memory": {}},
                        },
                    },
                }
            ],
        },
        "spec": {
            "replicas": 1 + i % 7,
            "image": f"registry.example.com/storefront/widget:v1.{i % 40}.3",
            "imagePullPolicy": "IfNotPresent",
            "size": ("small", "medium", "large")[i % 3],
            "paused": i % 11 == 0,
            "priority": i % 1000,
            "region": ("eu-west-1", "us-east-2", "ap-south-1")[i % 3],
            "serviceAccountName": "widget-runner",
            "schedule": "*/5 * * * *",
            "timeoutSeconds": 30,
            "resources": {"cpu": "250m", "memory": "256Mi"},
            "ports": [
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "protocol": "TCP"},
                {"name": "grpc", "port": 50051, "protocol": "TCP"},
            ],
        },
        "status": {
            "observedGeneration": 1 + i % 5,
            "readyReplicas": 1 + i % 7,
            "phase": "Running",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AllReplicasReady",
                    "message": "All replicas are ready",
                    "lastTransitionTime": "2026-01-02T03:05:00Z",
                },
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "RolloutComplete",
                    "message": "Rollout finished",
                    "lastTransitionTime": "2026-01-02T03:05:00Z",
                },
            ],
        },
    }


def encoded_event(
    kind: str, i: int, rv: int, view: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> bytes:
    """Return one watch line: ``{"type": kind, "object": widget}`` and a newline.

    ``view`` (such as :func:`partial`) turns the widget into what is sent.
    """
    obj = widget(i, rv)
    return orjson.dumps({"type": kind, "object": view(obj) if view else obj}) + b"\n"


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    """Return the object's ``PartialObjectMetadata`` (what a metadata-only request gets)."""
    return {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj["metadata"],
    }


def bookmark(rv: int, *, initial_events_end: bool = False) -> bytes:
    """Return a BOOKMARK line with the right GVK (client-go drops bookmarks without it)."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta}
    return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"
