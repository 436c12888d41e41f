"""Typed models: ``store.typed(Model)`` and ``event.typed(Model)``, against FakeApiServer.

A msgspec ``Struct`` is decoded straight from a compact cache's bytes (both a listed
object's and a watch line's), an attrs class is built from the top-level fields, any other
callable gets the dict; an object that does not fit is a ``ModelError`` naming it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio
import attrs
import msgspec
import pytest

import crwatch
from _support import WidgetEnv, widget_cluster
from crwatch import Event

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")


class Meta(msgspec.Struct):
    name: str
    namespace: str
    resourceVersion: str


class Spec(msgspec.Struct):
    size: int


class Widget(msgspec.Struct):
    apiVersion: str
    kind: str
    metadata: Meta
    spec: Spec


class StringSized(msgspec.Struct):
    size: str


class BadWidget(msgspec.Struct):
    metadata: Meta
    spec: StringSized


@attrs.frozen
class AttrsWidget:
    api_version: str
    kind: str
    metadata: dict[str, Any]
    spec: dict[str, Any]


class Env(WidgetEnv):
    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}}
        return self.server.create(self.rtype, {**body, "spec": spec}, namespace="default")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with widget_cluster(tmp_path) as (server, rtype, client):
        yield Env(server, rtype, client)


@pytest.mark.parametrize("cache", ["compact", "objects"])
async def test_typed_reads_of_listed_and_watched_objects(
    env: Env, cache: Literal["compact", "objects"]
) -> None:
    """Listed and watched objects read as Structs, equal to the server's state.

    With the compact cache the listed object is kept as its own JSON and the changed one as
    its watch line: both decode into the model.
    """
    env.create("a", size=1)
    env.create("b", size=2)
    seen: list[Event] = []
    changed = anyio.Event()

    def record(event: Event) -> None:
        seen.append(event)
        if event.type is crwatch.EventType.MODIFIED:
            changed.set()

    informer = crwatch.Informer(env.client, WIDGETS, namespace="default", cache=cache)
    informer.subscribe(record)
    async with informer:
        await informer.wait_synced(timeout=5)
        env.patch("b", size=3)
        with anyio.fail_after(5):
            await changed.wait()
        widgets = informer.store.typed(Widget)
        a, b = widgets.get("default/a"), widgets.get("default/b")
        assert widgets.get("default/missing") is None
        assert sorted(w.metadata.name for w in widgets.list()) == ["a", "b"]
        assert len(widgets) == 2
        assert "default/a" in widgets
    assert isinstance(a, Widget)
    assert isinstance(b, Widget)
    assert (a.spec.size, b.spec.size) == (1, 3)
    assert b.metadata.resourceVersion == env.state()["default/b"]
    modified = next(e for e in seen if e.type is crwatch.EventType.MODIFIED)
    assert modified.typed(Widget).spec.size == 3
    old = modified.old
    assert old is not None
    assert Event.from_object("ADDED", old).typed(Widget).spec.size == 2


@pytest.mark.parametrize("streaming", [False, True], ids=["paginated", "streaming"])
async def test_an_object_that_does_not_fit_names_itself(env: Env, streaming: bool) -> None:
    """A type mismatch is a ModelError naming the object, the model and the field path.

    The path is within the object whether the cache keeps its own JSON (a list page) or
    the watch line it came in (a streaming list).
    """
    env.create("a", size=1)
    informer = crwatch.Informer(env.client, WIDGETS, namespace="default", streaming_list=streaming)
    async with informer:
        await informer.wait_synced(timeout=5)
        with pytest.raises(crwatch.ModelError) as caught:
            informer.store.typed(BadWidget).get("default/a")
    assert caught.value.key == "default/a"
    assert caught.value.model == "BadWidget"
    assert "default/a" in str(caught.value)
    assert "`$.spec.size`" in str(caught.value)


async def test_attrs_classes_and_callables_are_models(env: Env) -> None:
    """An attrs class is built from the top-level fields; a callable gets the dict."""
    env.create("a", size=1)
    informer = crwatch.Informer(env.client, WIDGETS, namespace="default")
    async with informer:
        await informer.wait_synced(timeout=5)
        built = informer.store.typed(AttrsWidget).get("default/a")
        size = informer.store.typed(lambda obj: obj["spec"]["size"] * 10).get("default/a")
        with pytest.raises(crwatch.ModelError, match="default/a"):
            informer.store.typed(lambda obj: obj["status"]["ready"]).get("default/a")
    assert built is not None
    assert (built.api_version, built.kind, built.spec) == ("example.com/v1", "Widget", {"size": 1})
    assert size == 10
