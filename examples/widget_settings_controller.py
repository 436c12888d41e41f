"""Keep a ``<widget>-settings`` ConfigMap for every ``Widget``, with the widget's spec in it.

A level-triggered controller, as in docs/controller.md: for each ``widgets.example.com``
object it makes sure a ConfigMap of the same namespace, named after it, holds the widget's
spec as data and is owned by the widget (so Kubernetes' garbage collector deletes it with
the widget). Editing a widget rewrites its ConfigMap; editing or deleting the ConfigMap by
hand is repaired at once, because the controller ``owns`` config maps.

Writes are server-side applies through the controller's client (``ctx.client.apply``) with
the field manager ``widget-settings``: the API server creates the ConfigMap when it is
missing and sets exactly the fields the controller applies, taking them back (``force``)
from anyone who edited them by hand
(https://kubernetes.io/docs/reference/using-api/server-side-apply/). A failed write is
logged with the key and retried with backoff.

Run it against any cluster (or ``python -m crwatch.testing``) that has the CRD::

    python examples/widget_settings_controller.py [--namespace default]
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import anyio

import crwatch

WIDGETS = crwatch.Resource("example.com", "v1", "widgets", kind="Widget")
CONFIGMAPS = crwatch.Resource("", "v1", "configmaps", kind="ConfigMap")

log = logging.getLogger("widget-settings")

FIELD_MANAGER = "widget-settings"


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
    desired = desired_configmap(widget)
    current = ctx.store(CONFIGMAPS).get(f"{namespace}/{settings_name(name)}")
    if (
        current is not None
        and current.get("data") == desired["data"]
        and current["metadata"].get("ownerReferences") == desired["metadata"]["ownerReferences"]
    ):
        return None  # as it should be: no write, no event
    # One apply creates or repairs it (the API server stores nothing for a no-op apply).
    await ctx.client.apply(CONFIGMAPS, desired, field_manager=FIELD_MANAGER, force=True)
    verb = "created" if current is None else "rewrote"
    ctx.record(
        widget,
        "Created" if current is None else "Updated",
        f"{verb} ConfigMap {settings_name(name)}",
    )
    log.info("%s: %s its ConfigMap", ctx.key, verb)
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
