"""``metadata_only=True``: watch() and Informer over PartialObjectMetadata, against FakeApiServer.

The server answers lists as ``PartialObjectMetadataList`` and watch events with
``PartialObjectMetadata`` objects (https://kubernetes.io/docs/reference/using-api/api-concepts/#alternate-representations-of-resources);
events and the cache hold those objects: metadata, no spec or status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import crwatch
from _support import WidgetEnv, widget_cluster
from crwatch import Backoff, Event, EventType
from crwatch.testing import Fault

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")
FAST = Backoff(initial=0.01, maximum=0.05, max_retry_after=60)
PARTIAL = {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata"}


class Env(WidgetEnv):
    """A fake server with the widgets CRD, and a crwatch client for it."""

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": name, "labels": {"tier": "edge"}},
            "spec": spec,
        }
        return self.server.create(self.rtype, body, namespace="default")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with widget_cluster(tmp_path) as (server, rtype, client):
        yield Env(server, rtype, client)


def is_partial(obj: dict[str, Any], server_obj: dict[str, Any] | None = None) -> bool:
    """Only apiVersion, kind and metadata, of that kind (and the server's metadata)."""
    meta = obj.get("metadata")
    if set(obj) != {"apiVersion", "kind", "metadata"} or not isinstance(meta, dict):
        return False
    if {k: obj[k] for k in ("apiVersion", "kind")} != PARTIAL:
        return False
    return server_obj is None or meta == server_obj["metadata"]


async def take(events: crwatch.EventStream, n: int) -> list[Event]:
    got: list[Event] = []
    with anyio.fail_after(5):
        async for event in events:
            got.append(event)
            if len(got) == n:
                break
    return got


LISTS = [
    pytest.param({"streaming_list": False, "page_size": 2}, id="paginated"),
    pytest.param({"streaming_list": True}, id="streaming"),
]


@pytest.mark.parametrize("how", LISTS)
async def test_watch_lists_and_watches_metadata_only(env: Env, how: dict[str, Any]) -> None:
    """The initial list (3 pages of 2, or a streaming list) and live events are metadata only.

    Every object equals the server's metadata with the PartialObjectMetadata kind; a spec
    change still arrives as MODIFIED (its resourceVersion and generation changed).
    """
    created = {name: env.create(name, size=1) for name in "abcde"}
    async with crwatch.watch(
        env.client, WIDGETS, namespace="default", backoff=FAST, metadata_only=True, **how
    ) as events:
        initial = await take(events, 5)
        assert sorted(e.key for e in initial) == [f"default/{n}" for n in "abcde"]
        for event in initial:
            assert event.type is EventType.ADDED
            assert is_partial(event.object, created[event.key.split("/")[1]])
        changed = env.patch("c", size=2)
        (live,) = await take(events, 1)
        assert (live.type, live.key) == (EventType.MODIFIED, "default/c")
        assert is_partial(live.object, changed)
        assert is_partial(live.old or {}, created["c"])
        env.delete("a")
        (gone,) = await take(events, 1)
        assert (gone.type, gone.key) == (EventType.DELETED, "default/a")
        assert is_partial(gone.object)
        stats = events.statistics()
        assert (stats.lists, stats.malformed_lines) == (1, 0)


async def test_watch_without_the_option_gets_full_objects(env: Env) -> None:
    """The default asks for the objects themselves: spec included, the resource's kind."""
    env.create("a", size=1)
    async with crwatch.watch(env.client, WIDGETS, namespace="default", backoff=FAST) as events:
        (event,) = await take(events, 1)
        assert event.object["kind"] == "Widget"
        assert event.object["spec"] == {"size": 1}


@pytest.mark.parametrize("how", LISTS)
async def test_informer_caches_metadata_only_and_relists_after_410(
    env: Env, how: dict[str, Any]
) -> None:
    """The Informer's cache and events hold PartialObjectMetadata, through a 410 relist.

    After the relist the cache matches the server's metadata again: the changed object's
    new metadata, the deleted one gone (a synthetic DELETED), the new one added.
    """
    for name in ("keep", "change", "gone"):
        env.create(name, size=0)
    seen: list[Event] = []
    deleted = anyio.Event()

    def record(event: Event) -> None:
        seen.append(event)
        if event.type is EventType.DELETED:
            deleted.set()

    # The first watch ends after its first live event; the resume then gets 410.
    env.server.faults.add(Fault.end_after(1 if "page_size" in how else 5), verb="watch")
    expired = env.server.faults.add(Fault.expired(), verb="watch")
    informer = crwatch.Informer(
        env.client, WIDGETS, namespace="default", backoff=FAST, metadata_only=True, **how
    )
    informer.subscribe(record)
    async with informer:
        with anyio.fail_after(5):
            await informer.wait_synced()
        store = informer.store
        assert sorted(store.keys()) == ["default/change", "default/gone", "default/keep"]
        assert all(is_partial(store.get(key) or {}) for key in store)
        env.patch("keep", size=1)  # the first watch's live event
        with anyio.fail_after(5):
            await informer.wait_for(env.state()["default/keep"])
        # The stream ended: these reach the informer only by the relist after the 410.
        changed = env.patch("change", size=2)
        env.delete("gone")
        new = env.create("new")
        with anyio.fail_after(5):
            await expired.wait_fired()
            await informer.wait_for(new["metadata"]["resourceVersion"])
        assert sorted(store.keys()) == ["default/change", "default/keep", "default/new"]
        assert is_partial(store.get("default/change") or {}, changed)
        assert is_partial(store.get("default/new") or {}, new)
        with anyio.fail_after(5):
            await deleted.wait()
    assert all(is_partial(e.object) for e in seen)
    gone = next(e for e in seen if e.type is EventType.DELETED)
    assert (gone.type, gone.synthetic) == (EventType.DELETED, True)
    assert is_partial(gone.object)


async def test_metadata_only_must_be_a_bool(env: Env) -> None:
    """A non-bool ``metadata_only`` is an InvalidOptionError at the call."""
    with pytest.raises(crwatch.InvalidOptionError, match="metadata_only"):
        crwatch.watch(env.client, WIDGETS, metadata_only="yes")  # type: ignore[arg-type]
    with pytest.raises(crwatch.InvalidOptionError, match="metadata_only"):
        crwatch.Informer(env.client, WIDGETS, metadata_only=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", LISTS)
async def test_whole_objects_from_a_server_without_the_view_are_used(
    env: Env, how: dict[str, Any]
) -> None:
    """A server that cannot send PartialObjectMetadata answers whole objects: used as they come.

    The request's Accept falls back to plain JSON, so such a server answers (no 406), and
    the informer's cache and events hold the objects as the server sent them.
    """
    env.server.serve_views = False
    created = env.create("a", size=1)
    seen: list[Event] = []
    modified = anyio.Event()

    def record(event: Event) -> None:
        seen.append(event)
        if event.type is EventType.MODIFIED:
            modified.set()

    informer = crwatch.Informer(
        env.client, WIDGETS, namespace="default", backoff=FAST, metadata_only=True, **how
    )
    informer.subscribe(record)
    async with informer:
        with anyio.fail_after(5):
            await informer.wait_synced()
        assert informer.store.get("default/a") == created
        changed = env.patch("a", size=2)
        with anyio.fail_after(5):
            await modified.wait()
        assert informer.store.get("default/a") == changed
    assert [e.object["spec"] for e in seen] == [{"size": 1}, {"size": 2}]
    assert informer.statistics().errors == 0
