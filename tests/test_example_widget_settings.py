"""``examples/widget_settings_controller.py`` against FakeApiServer, as a real program runs.

The controller writes ConfigMaps by server-side apply over HTTP; the test changes
the cluster through the server's Python API (as another client would) and waits for the
config maps' events, never for time.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

import crwatch
from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parent.parent / "examples" / "widget_settings_controller.py"
GUARD = 20  # seconds: a real-time guard against hangs, never waited out when tests pass


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("widget_settings_controller", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("widget_settings_controller", module)
    spec.loader.exec_module(module)
    return module


example = load_example()


class Env:
    def __init__(self, server: FakeApiServer, controller: crwatch.Controller[Any]) -> None:
        self.server = server
        self.controller = controller
        self.widgets = server.resource("example.com", "v1", "widgets")
        self.configmaps = server.resource("", "v1", "configmaps")

    def settings(self) -> dict[str, dict[str, str]]:
        """Return the settings config maps on the server: name -> data."""
        return {
            cm["metadata"]["name"]: cm.get("data") or {}
            for cm in self.server.list(self.configmaps, namespace="default")
            if cm["metadata"]["name"].endswith("-settings")
        }

    async def until(self, condition: Callable[[dict[str, dict[str, str]]], bool]) -> None:
        """Wait for config map events until the server's settings satisfy ``condition``."""
        with anyio.fail_after(GUARD):
            if condition(self.settings()):
                return
            async with self.controller.informer(example.CONFIGMAPS).stream() as events:
                async for _ in events:
                    if condition(self.settings()):
                        return


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with FakeApiServer() as server:
        server.register_crd(group="example.com", version="v1", plural="widgets", kind="Widget")
        async with crwatch.Client.from_kubeconfig(server.kubeconfig(tmp_path / "kc")) as client:
            informers = crwatch.SharedInformers(backoff=crwatch.Backoff(initial=0.01, maximum=0.05))
            controller = example.make_controller(client, namespace="default", informers=informers)
            async with controller:
                yield Env(server, controller)


def create_widget(env: Env, name: str, **spec: Any) -> dict[str, Any]:
    return env.server.create(
        env.widgets,
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        },
        namespace="default",
    )


async def test_every_widget_gets_an_owned_configmap_with_its_spec(env: Env) -> None:
    """Each widget gets ``<name>-settings`` with its spec as data, applied, owned by it."""
    a = create_widget(env, "a", size=3, color="blue")
    create_widget(env, "b", size=1)
    await env.until(lambda s: set(s) == {"a-settings", "b-settings"})
    assert env.settings()["a-settings"] == {"color": '"blue"', "size": "3"}
    cm = env.server.get(env.configmaps, "a-settings", namespace="default")
    # Written by server-side apply: the controller's field manager owns the fields.
    assert {(m["manager"], m["operation"]) for m in cm["metadata"]["managedFields"]} == {
        (example.FIELD_MANAGER, "Apply")
    }
    (owner,) = cm["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Widget",
        "a",
        a["metadata"]["uid"],
        True,
    )


async def test_spec_edits_and_hand_edits_are_reconciled(env: Env) -> None:
    """A spec change rewrites the config map; a hand edit or deletion of it is repaired."""
    create_widget(env, "a", size=1)
    await env.until(lambda s: s.get("a-settings") == {"size": "1"})
    env.server.patch(env.widgets, "a", {"spec": {"size": 2}}, namespace="default")
    await env.until(lambda s: s.get("a-settings") == {"size": "2"})
    env.server.patch(env.configmaps, "a-settings", {"data": {"size": "99"}}, namespace="default")
    await env.until(lambda s: s.get("a-settings") == {"size": "2"})
    env.server.delete(env.configmaps, "a-settings", namespace="default")
    await env.until(lambda s: s.get("a-settings") == {"size": "2"})
    stats = env.controller.statistics()
    assert stats.errors == 0
    assert stats.foreign_owners == 0


async def test_changes_across_a_disconnect_and_a_410_converge(env: Env) -> None:
    """Changes made while the watches are down and history is compacted still converge."""
    create_widget(env, "a", size=1)
    await env.until(lambda s: s.get("a-settings") == {"size": "1"})
    env.server.close_watches()
    env.server.patch(env.widgets, "a", {"spec": {"size": 5}}, namespace="default")
    create_widget(env, "late", size=7)
    env.server.compact()
    await env.until(
        lambda s: s.get("a-settings") == {"size": "5"} and s.get("late-settings") == {"size": "7"}
    )
    assert json.loads(env.settings()["late-settings"]["size"]) == 7
