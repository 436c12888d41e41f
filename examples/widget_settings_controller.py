"""Keep a ``<widget>-settings`` ConfigMap for every ``Widget``, with the widget's spec in it.

A level-triggered controller, as in docs/controller.md: for each ``widgets.example.com``
object it makes sure a ConfigMap of the same namespace, named after it, holds the widget's
spec as data and is owned by the widget (so Kubernetes' garbage collector deletes it with
the widget). Editing a widget rewrites its ConfigMap; editing or deleting the ConfigMap by
hand is repaired at once, because the controller ``owns`` config maps.

Writes go through kubernetes-asyncio's ``CoreV1Api`` on the crwatch client's ``ApiClient``,
with the cached ``resourceVersion`` as precondition: a stale cache gives a 409, which the
controller logs with the key and retries with backoff.

Run it against any cluster (or ``python -m crwatch.testing``) that has the CRD::

    python examples/widget_settings_controller.py [--namespace default]
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import anyio
from kubernetes_asyncio import client as k8s

import crwatch

WIDGETS = crwatch.Resource("example.com", "v1", "widgets", kind="Widget")
CONFIGMAPS = crwatch.Resource("", "v1", "configmaps", kind="ConfigMap")

log = logging.getLogger("widget-settings")


def settings_name(widget_name: str) -> str:
    """Return the name of a widget's ConfigMap."""
    return f"{widget_name}-settings"


def desired_configmap(widget: dict[str, Any]) -> dict[str, Any]:
    """Return the ConfigMap a widget should have: its spec as data, owned by it."""
    meta = widget["metadata"]
    spec = widget.get("spec") or {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": settings_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "widget-settings"},
            "ownerReferences": [
                {
                    "apiVersion": WIDGETS.api_version,
                    "kind": "Widget",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {key: json.dumps(value, sort_keys=True) for key, value in spec.items()},
    }


async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> crwatch.Action | None:
    """Create or repair the widget's ConfigMap; nothing to do once the widget is gone."""
    widget = ctx.object
    if widget is None:
        return None  # the garbage collector removes the owned ConfigMap
    namespace, name = widget["metadata"]["namespace"], widget["metadata"]["name"]
    # kubernetes-asyncio serialises plain dicts as they are (its stubs ask for V1ConfigMap).
    desired: Any = desired_configmap(widget)
    current = ctx.store(CONFIGMAPS).get(f"{namespace}/{settings_name(name)}")
    api = k8s.CoreV1Api(ctx.client.api_client)
    if current is None:
        await api.create_namespaced_config_map(namespace, desired)
        ctx.record(widget, "Created", f"created ConfigMap {settings_name(name)}")
        log.info("%s: created its ConfigMap", ctx.key)
    elif (
        current.get("data") != desired["data"]
        or current["metadata"].get("ownerReferences") != desired["metadata"]["ownerReferences"]
    ):
        # Replace with the cached resourceVersion: if someone wrote it since, 409.
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await api.replace_namespaced_config_map(settings_name(name), namespace, desired)
        ctx.record(widget, "Updated", f"rewrote ConfigMap {settings_name(name)}")
        log.info("%s: rewrote its ConfigMap", ctx.key)
    return None


def make_controller(
    client: crwatch.Client, *, namespace: str | None = None, **options: Any
) -> crwatch.Controller[dict[str, Any]]:
    """Return the controller (not started): widgets, owning config maps."""
    return crwatch.Controller(
        client,
        WIDGETS,
        reconcile,
        owns=[CONFIGMAPS],
        namespace=namespace,
        name="widget-settings",
        **options,
    )


async def main(namespace: str | None) -> None:
    """Run the controller until interrupted."""
    async with crwatch.Client.from_kubeconfig() as client:
        await make_controller(client, namespace=namespace).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default=None, help="one namespace (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    anyio.run(main, args.namespace)
