"""Tests of ``Informer(namespaces={...})``: one list/watch per namespace over one cache.

Against ``FakeApiServer`` over real HTTP, with faults aimed at one namespace's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch
import crwatch.metrics
from _support import seeded, until, widget_cluster
from crwatch import Backoff, Event, EventType
from crwatch._informer import _lowest_version
from crwatch._multinamespace import NamespacesStore
from crwatch._store import Cache
from crwatch.testing import FakeApiServer, Fault, ResourceType

WIDGETS = crwatch.Resource("example.com", "v1", "widgets", namespaced=True)
FAST = Backoff(initial=0.01, maximum=0.05, max_retry_after=60)
NAMESPACES = ("alpha", "beta", "gamma")

anyio_mark = pytest.mark.anyio


class Env:
    """A fake server with widgets in three namespaces (alpha, beta, gamma), and a client."""

    def __init__(self, server: FakeApiServer, rtype: ResourceType, client: crwatch.Client):
        self.server = server
        self.rtype = rtype
        self.client = client

    def create(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}}
        return self.server.create(self.rtype, {**body, "spec": spec}, namespace=namespace)

    def patch(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        return self.server.patch(self.rtype, name, {"spec": spec}, namespace=namespace)

    def delete(self, namespace: str, name: str) -> dict[str, Any]:
        return self.server.delete(self.rtype, name, namespace=namespace)

    def state(self, *namespaces: str) -> dict[str, str]:
        """Return the server's objects in ``namespaces``: key -> resourceVersion."""
        return {
            f"{ns}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for ns in namespaces
            for o in self.server.list(self.rtype, namespace=ns)
        }

    def informer(self, **options: Any) -> crwatch.Informer:
        options.setdefault("backoff", FAST)
        options.setdefault("namespaces", {"alpha", "beta"})
        return crwatch.Informer(self.client, WIDGETS, **options)


@contextlib.asynccontextmanager
async def _env(tmp_path: Path, **server_options: Any) -> AsyncIterator[Env]:
    async with widget_cluster(tmp_path, **server_options) as (server, rtype, client):
        for ns in NAMESPACES:
            server.create(server.resource("", "v1", "namespaces"), {"metadata": {"name": ns}})
        yield Env(server, rtype, client)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with _env(tmp_path) as value:
        yield value


class View:
    """A subscriber's view: applies events, checking per key that each change is seen once."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[Event] = []

    def apply(self, event: Event) -> None:
        self.events.append(event)
        previous = self.objects.get(event.key)
        if event.type is EventType.ADDED:
            assert previous is None, f"ADDED for a key already seen: {event.key}"
        else:
            assert previous is not None, f"{event.type} for an unseen key: {event.key}"
            assert event.old is not None
            assert (
                event.old["metadata"]["resourceVersion"]
                == (previous["metadata"]["resourceVersion"])
            ), "old is not the state this subscriber last saw"
        if event.type is EventType.DELETED:
            del self.objects[event.key]
        else:
            self.objects[event.key] = event.object

    def state(self) -> dict[str, str]:
        return {k: o["metadata"]["resourceVersion"] for k, o in self.objects.items()}


def cache_state(informer: crwatch.Informer) -> dict[str, str]:
    store = informer.store
    return {
        k: o["metadata"]["resourceVersion"] for k, o in zip(store.keys(), store.list(), strict=True)
    }


@anyio_mark
async def test_watches_only_the_namespaces_given(env: Env) -> None:
    """Objects in three namespaces, two watched: the third never reaches the cache or a subscriber.

    One watch per namespace is open; changes in both watched namespaces arrive live, once
    each, with ``old`` from the cache; the store answers for both namespaces as one.
    """
    for ns in NAMESPACES:
        env.create(ns, "a", size=1)
        env.create(ns, "b", size=2)
    informer = env.informer(indexes={"size": lambda o: [str(o["spec"]["size"])]})
    view = View()
    informer.subscribe(view.apply)
    async with informer, informer.stream() as events:
        await informer.wait_synced(timeout=5)
        assert informer.statistics().synced
        await env.server.wait_for_watchers(2, resource=env.rtype, timeout=5)
        assert cache_state(informer) == env.state("alpha", "beta")
        env.patch("alpha", "a", size=3)
        env.patch("gamma", "a", size=3)  # never seen
        env.delete("beta", "b")
        env.create("beta", "c", size=3)
        env.create("gamma", "c", size=3)  # never seen
        streamed = View()
        with anyio.fail_after(5):
            async for event in events:
                streamed.apply(event)
                if streamed.state() == env.state("alpha", "beta"):
                    break
        await until(lambda: view.state() == env.state("alpha", "beta"))
        store = informer.store
        assert isinstance(store, crwatch.Store)
        assert sorted(store.keys()) == ["alpha/a", "alpha/b", "beta/a", "beta/c"]
        assert len(store) == 4
        assert "alpha/a" in store
        assert "gamma/a" not in store
        assert "nowhere" not in store
        assert store.get("gamma/a") is None
        assert store.get("beta/b") is None
        assert store.get("alpha/a")["spec"]["size"] == 3  # type: ignore[index]
        sized = [
            o["metadata"]["namespace"] + "/" + o["metadata"]["name"]
            for o in store.by_index("size", "3")
        ]
        assert sized == ["alpha/a", "beta/c"]  # key order across namespaces
        assert "2 namespaces" in repr(store)
        assert "['alpha', 'beta']" in repr(informer)
    # Order holds per namespace (each has its own watch), not across them.
    changes = [(str(e.type), e.key) for e in view.events]
    assert [c for c in changes if c[1].startswith("alpha/")] == [
        ("ADDED", "alpha/a"),
        ("ADDED", "alpha/b"),
        ("MODIFIED", "alpha/a"),
    ]
    assert [c for c in changes if c[1].startswith("beta/")] == [
        ("ADDED", "beta/a"),
        ("ADDED", "beta/b"),
        ("DELETED", "beta/b"),
        ("ADDED", "beta/c"),
    ]
    assert len(changes) == 7  # nothing from gamma
    assert not any(e.key.startswith("gamma/") for e in streamed.events)
    assert informer.namespaces == frozenset({"alpha", "beta"})
    stats = informer.statistics()
    assert [r.namespace for r in stats.namespaces] == ["alpha", "beta"]
    assert [r.objects for r in stats.namespaces] == [2, 2]
    assert stats.objects == 4
    assert (stats.lists, stats.relists) == (2, 0)
    assert stats.events == sum(r.events for r in stats.namespaces) == 7
    # Exported under the one resource label: namespaces do not multiply the series.
    registry = crwatch.metrics.Registry()
    registry.register(informer, name="widgets")
    values = {m.info.name: [(s.labels, s.value) for s in m.samples] for m in registry.collect()}
    assert values["crwatch_informer_objects"] == [((("resource", "widgets"),), 4)]
    assert values["crwatch_watch_lists"] == [((("resource", "widgets"),), 2)]
    assert values["crwatch_watch_synced"] == [((("resource", "widgets"),), 1.0)]


@anyio_mark
async def test_expired_watch_relists_only_its_namespace(env: Env) -> None:
    """A 410 in one namespace's watch, with a deletion while it was down, relists that one.

    The subscriber gets exactly one synthetic DELETED (for the vanished object); the other
    namespace is neither relisted nor touched, and its watch keeps delivering meanwhile.
    """
    for ns in ("alpha", "beta"):
        env.create(ns, "keep")
        env.create(ns, "gone")
    informer = env.informer()
    view = View()
    informer.subscribe(view.apply)
    async with informer:
        await informer.wait_synced(timeout=5)
        await env.server.wait_for_watchers(2, resource=env.rtype, timeout=5)
        # alpha's watch goes down and stays down; beta's comes straight back.
        down = env.server.faults.add(Fault.status(500), verb="watch", namespace="alpha", times=None)
        env.server.close_watches(env.rtype)
        await env.server.wait_for_watchers(1, resource=env.rtype, timeout=5)
        await down.wait_fired()
        env.delete("alpha", "gone")  # missed: alpha has no watch
        env.create("beta", "live")  # beta's watch delivers it at once
        await until(lambda: "beta/live" in view.objects)
        env.server.compact()  # alpha's resume point is gone: its next watch gets 410
        before = len(view.events)
        env.server.faults.remove(down)
        await until(lambda: informer.statistics().relists == 1)
        await until(lambda: view.state() == env.state("alpha", "beta"))
        assert cache_state(informer) == env.state("alpha", "beta")
        alpha, beta = informer.statistics().namespaces
    changes = view.events[before:]
    assert [(str(e.type), e.key, e.synthetic) for e in changes] == [("DELETED", "alpha/gone", True)]
    assert (alpha.lists, alpha.relists) == (2, 1)
    assert (beta.lists, beta.relists) == (1, 0)
    assert beta.errors == 0
    assert alpha.errors >= 2  # the 500s, then the 410


@anyio_mark
async def test_synced_only_once_every_namespace_has_listed(env: Env) -> None:
    """wait_synced returns only when both namespaces' lists are in; one's objects come first.

    beta's lists are refused (retried) while alpha syncs: the informer is not synced,
    wait_synced times out naming beta, alpha's objects are already in the cache and with
    the subscriber; once beta lists, it syncs and beta's objects arrive once.
    """
    env.create("alpha", "a")
    env.create("beta", "b")
    block = env.server.faults.add(Fault.status(503), namespace="beta", times=None)
    informer = env.informer()
    view = View()
    informer.subscribe(view.apply)
    async with informer:
        await until(lambda: informer.statistics().namespaces[0].synced)
        stats = informer.statistics()
        assert not stats.synced
        assert stats.resource_version == ""
        assert [r.synced for r in stats.namespaces] == [True, False]
        with pytest.raises(crwatch.SyncTimeout, match="beta") as info:
            await informer.wait_synced(timeout=0.1)
        assert isinstance(info.value.last_error, crwatch.ApiError)
        await until(lambda: "alpha/a" in view.objects)
        assert informer.store.keys() == ["alpha/a"]
        env.server.faults.remove(block)
        await informer.wait_synced(timeout=5)
        stats = informer.statistics()
        assert stats.synced
        assert stats.resource_version == min(
            (r.resource_version for r in stats.namespaces), key=int
        )
        await until(lambda: view.state() == env.state("alpha", "beta"))
    assert sorted(e.key for e in view.events) == ["alpha/a", "beta/b"]


@anyio_mark
async def test_forbidden_namespace_is_the_typed_error(env: Env) -> None:
    """A 403 in one namespace stops the informer with ForbiddenError (on_auth_error="raise").

    With on_auth_error="retry" it is retried instead: the other namespace syncs and runs,
    and wait_synced's SyncTimeout carries the ForbiddenError.
    """
    env.create("alpha", "a")
    env.server.deny(namespace="beta")
    informer = env.informer()
    with pytest.raises(crwatch.ForbiddenError), anyio.fail_after(5):
        async with informer:
            await informer.wait_synced()
    assert not any(t.get_name().startswith("crwatch") for t in asyncio.all_tasks())

    retrying = env.informer(on_auth_error="retry")
    async with retrying:
        await until(lambda: "alpha/a" in retrying.store)
        with pytest.raises(crwatch.SyncTimeout) as info:
            await retrying.wait_synced(timeout=0.2)
        assert isinstance(info.value.last_error, crwatch.ForbiddenError)
        assert isinstance(retrying.statistics().last_error, crwatch.ForbiddenError)


@anyio_mark
async def test_exit_leaves_no_task_and_no_watch(env: Env) -> None:
    """Leaving ``async with`` ends every namespace's task and watch; streams end cleanly."""
    env.create("alpha", "a")
    informer = env.informer()
    async with informer:
        await informer.wait_synced(timeout=5)
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert {
            "crwatch.informer widgets.v1.example.com alpha",
            "crwatch.informer widgets.v1.example.com beta",
        } <= names
        async with informer.stream() as events:
            first = await events.__anext__()
            assert first.key == "alpha/a"
    assert not any(t.get_name().startswith("crwatch") for t in asyncio.all_tasks())
    await env.server.wait_for_watchers(0, resource=env.rtype, timeout=5)


@anyio_mark
async def test_one_namespace_failing_for_good_ends_the_subscribers_with_its_error(
    env: Env,
) -> None:
    """A 403 on beta's re-watch stops the informer: a stream reader gets that ForbiddenError.

    The reader runs outside the informer's ``async with`` (so it is not cancelled with it):
    it first sees both namespaces' objects, then the error of the namespace that failed,
    not a clean end from the namespace that was merely stopped.
    """
    env.create("alpha", "a")
    env.create("beta", "b")
    informer = env.informer()
    got: list[str] = []
    errors: list[BaseException] = []

    async def read(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with informer.stream() as events:
            task_status.started()
            try:
                async for event in events:
                    got.append(event.key)
            except crwatch.CrwatchError as exc:
                errors.append(exc)

    async def run(tg: anyio.abc.TaskGroup) -> None:
        async with informer:
            await informer.wait_synced()
            await tg.start(read)
            await until(lambda: len(got) == 2)
            env.server.deny(namespace="beta")
            env.server.close_watches(env.rtype)
            await anyio.sleep_forever()  # until the informer stops itself

    async with anyio.create_task_group() as tg:
        with pytest.raises(crwatch.ForbiddenError), anyio.fail_after(5):
            await run(tg)
    assert sorted(got) == ["alpha/a", "beta/b"]
    assert [type(e) for e in errors] == [crwatch.ForbiddenError]


@pytest.mark.parametrize(
    "options",
    [
        {"namespaces": set()},
        {"namespaces": "alpha"},
        {"namespaces": {"alpha"}, "namespace": "beta"},
        {"namespaces": {""}},
        {"namespaces": {"a/b"}},
        {"namespaces": [["alpha"]]},
    ],
)
@anyio_mark
async def test_invalid_namespaces(env: Env, options: dict[str, Any]) -> None:
    """Empty, text, non-names, or with ``namespace=``: InvalidOptionError at the call."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Informer(env.client, WIDGETS, **options)


@anyio_mark
async def test_cluster_scoped_resource_with_namespaces_is_refused(env: Env) -> None:
    """A cluster-scoped resource has no namespaces to pick: InvalidOptionError."""
    nodes = crwatch.Resource("", "v1", "nodes", namespaced=False)
    with pytest.raises(crwatch.InvalidOptionError, match="cluster-scoped"):
        crwatch.Informer(env.client, nodes, namespaces={"alpha"})


@pytest.mark.parametrize(("seed", "streaming"), seeded([(1, True), (2, False), (3, True)]))
@anyio_mark
async def test_random_changes_and_faults_in_each_namespace_converge(
    tmp_path: Path, seed: int, streaming: bool
) -> None:
    """Random changes in three namespaces and faults aimed at one watched namespace converge.

    Every subscriber view stays consistent at each event (View checks ``old`` and that each
    key is added once) and ends equal to the server's two watched namespaces, as does the
    cache; the unwatched namespace never shows.
    """
    rnd = random.Random(seed)
    faults = [
        lambda: Fault.malformed_line(after_events=rnd.randrange(3)),
        lambda: Fault.expired_event(after_events=rnd.randrange(3)),
        lambda: Fault.end_after(rnd.randrange(4)),
        lambda: Fault.status(500),
    ]
    async with _env(tmp_path, bookmark_interval=0.01) as env:
        informer = env.informer(streaming_list=streaming, page_size=2)
        views = [View(), View()]
        informer.subscribe(views[0].apply, buffer_size=1)
        informer.subscribe(views[1].apply, overflow="coalesce", buffer_size=2)
        async with informer:
            await informer.wait_synced(timeout=5)
            await env.server.wait_for_watchers(2, resource=env.rtype, timeout=5)
            # At least one 410 in alpha, whatever the random faults are.
            env.server.faults.add(Fault.expired(), verb="watch", namespace="alpha")
            env.server.close_watches(env.rtype)
            for step in range(150):
                ns = rnd.choice(NAMESPACES)
                name = f"w{rnd.randrange(6)}"
                if f"{ns}/{name}" not in env.state(ns):
                    env.create(ns, name)
                elif rnd.random() < 0.25:
                    env.delete(ns, name)
                else:
                    env.patch(ns, name, size=step)
                if rnd.random() < 0.06:
                    target = rnd.choice(("alpha", "beta"))
                    env.server.faults.add(rnd.choice(faults)(), verb="watch", namespace=target)
                if rnd.random() < 0.04:
                    env.server.close_watches()
                if rnd.random() < 0.3:
                    await anyio.sleep(rnd.random() * 0.005)
            expected = env.state("alpha", "beta")
            await until(lambda: all(v.state() == env.state("alpha", "beta") for v in views), 20)
            assert cache_state(informer) == env.state("alpha", "beta")
            assert expected.keys() <= set(env.state(*NAMESPACES))
            stats = informer.statistics()
            assert stats.objects == len(env.state("alpha", "beta"))
            assert stats.watches > 2
            # The 410 was met, not dodged (it may come after the last change).
            await until(lambda: informer.statistics().namespaces[0].relists > 0)
            await until(lambda: all(v.state() == env.state("alpha", "beta") for v in views))


@anyio_mark
async def test_wait_for_needs_every_namespace_to_have_seen_the_version(tmp_path: Path) -> None:
    """wait_for(rv) returns once both namespaces have seen rv: the quiet one by a bookmark."""
    async with _env(tmp_path, bookmark_interval=0.05) as env:
        informer = env.informer()
        async with informer:
            await informer.wait_synced(timeout=5)
            rv = env.create("alpha", "a")["metadata"]["resourceVersion"]
            await informer.wait_for(rv, timeout=5)
            assert "alpha/a" in informer.store
            beta = informer.statistics().namespaces[1]
            assert int(beta.resource_version) >= int(rv)  # beta had no event: a bookmark
            with pytest.raises(crwatch.SyncTimeout):
                await informer.wait_for(int(rv) + 1000, timeout=0.2)


CONFIGMAPS = crwatch.Resource("", "v1", "configmaps", kind="ConfigMap", namespaced=True)


@anyio_mark
async def test_controller_and_shared_informers_take_namespaces(env: Env) -> None:
    """A Controller with namespaces reconciles only their objects, and its owned ones' owners.

    The owned resource is watched in the same namespaces; SharedInformers keys informers
    by the set (any order shares one informer, another set does not), and refuses
    ``namespaces`` among the options of every informer.
    """
    owners = {ns: env.create(ns, "w") for ns in NAMESPACES}
    keys: list[str] = []

    async def reconcile(ctx: crwatch.Context[dict[str, Any]]) -> None:
        keys.append(ctx.key)

    def configmap(ns: str) -> None:
        owner = owners[ns]["metadata"]
        ref = {"apiVersion": "example.com/v1", "kind": "Widget", "controller": True}
        meta = {"name": "cm", "ownerReferences": [{**ref, "name": "w", "uid": owner["uid"]}]}
        env.server.create(
            env.server.resource("", "v1", "configmaps"),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta},
            namespace=ns,
        )

    async with crwatch.SharedInformers(backoff=FAST) as informers:
        controller = crwatch.Controller(
            env.client,
            WIDGETS,
            reconcile,
            owns=[CONFIGMAPS],
            namespaces=["beta", "alpha"],
            informers=informers,
        )
        async with controller:
            await controller.wait_synced(5)
            await until(lambda: sorted(keys) == ["alpha/w", "beta/w"])
            configmap("gamma")  # unwatched: enqueues nothing
            configmap("beta")
            await until(lambda: len(keys) == 3)
            assert keys[-1] == "beta/w"
            primary = controller.informer()
            assert primary.namespaces == frozenset({"alpha", "beta"})
            same = await informers.acquire(env.client, WIDGETS, namespaces={"alpha", "beta"})
            other = await informers.acquire(env.client, WIDGETS, namespaces={"alpha"})
            assert same is primary
            assert other is not primary
            informers.release(same)
            informers.release(other)
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.SharedInformers(namespaces={"alpha"})
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Controller(env.client, WIDGETS, reconcile, namespace="a", namespaces={"b"})
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Controller(env.client, WIDGETS, reconcile, namespaces="alpha")


_NAMES = st.sampled_from(["a", "a-b", "ab", "a0", "b", "kube-system", "z"])


@given(
    objects=st.lists(
        st.tuples(_NAMES, st.sampled_from(["x", "y", "x-1"]), st.integers(0, 3)),
        unique_by=lambda t: (t[0], t[1]),
    ),
    extra=st.sets(_NAMES, max_size=3),
)
def test_namespaces_store_reads_as_one_cache(
    objects: list[tuple[str, str, int]], extra: set[str]
) -> None:
    """The store over per-namespace caches answers as one cache holding every object.

    Namespaces that prefix one another or sort around "/" ("a", "a-b", "ab") included:
    ``by_index`` comes out in key order as a single cache's does.
    """
    index = {"v": lambda o: [str(o["spec"]["v"])]}
    namespaces = {ns for ns, _, _ in objects} | extra
    caches = {ns: Cache(index) for ns in namespaces}
    whole = Cache(index)
    for ns, name, value in objects:
        obj = {"metadata": {"namespace": ns, "name": name, "resourceVersion": "1"}}
        obj["spec"] = {"v": value}
        caches[ns].apply("ADDED", obj)
        whole.apply("ADDED", obj)
    if not namespaces:
        return
    store = NamespacesStore(list(caches.items()))
    assert len(store) == len(whole)
    assert sorted(store.keys()) == sorted(whole)
    assert sorted(store) == sorted(whole)
    assert len(store.list()) == len(whole)
    for key in [*whole, "a/none", "none/x", "nowhere"]:
        assert (key in store) is (key in whole)
        assert store.get(key) is whole.get(key)
    for value in range(4):
        assert store.by_index("v", str(value)) == whole.by_index("v", str(value))
    with pytest.raises(KeyError):
        store.by_index("missing", "1")


@given(st.lists(st.integers(0, 10**12).map(str), min_size=1))
def test_lowest_resource_version_compares_as_integers(versions: list[str]) -> None:
    """The informer's resourceVersion over namespaces is the lowest as an integer."""
    assert _lowest_version(versions) == str(min(map(int, versions)))
    assert _lowest_version([*versions, ""]) == ""


@anyio_mark
async def test_a_stalled_namespace_is_detected_alone(tmp_path: Path) -> None:
    """A silent watch in beta is dropped after stall_timeout and resumed; alpha goes on.

    While beta's watch sends nothing, alpha's watch (kept busy by bookmarks, as a real
    cluster's is) still delivers; the stall is counted for beta only, and beta's change
    made during the stall arrives after the reconnect.
    """
    async with _env(tmp_path, bookmark_interval=0.02) as env:
        informer = env.informer(stall_timeout=0.5)
        view = View()
        informer.subscribe(view.apply)

        async def traffic() -> None:
            # The cluster's resourceVersion moves (leases, events...), so bookmarks flow.
            while True:
                env.server.advance_resource_version()
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg, informer:
            tg.start_soon(traffic)
            await informer.wait_synced(timeout=5)
            await env.server.wait_for_watchers(2, resource=env.rtype, timeout=5)
            stall = env.server.faults.add(Fault.stall(30), verb="watch", namespace="beta")
            env.server.close_watches(env.rtype)
            await stall.wait_fired()
            env.create("alpha", "during")
            await until(lambda: "alpha/during" in view.objects)
            env.create("beta", "during")
            await until(lambda: "beta/during" in view.objects)
            alpha, beta = informer.statistics().namespaces
            tg.cancel_scope.cancel()
    assert (alpha.stalls, beta.stalls) == (0, 1)
    assert isinstance(beta.last_error, crwatch.StallTimeout)
    assert informer.statistics().stalls == 1


def test_members_end_the_lanes_with_the_last_core_or_a_fatal_error() -> None:
    """One core ending leaves the lanes open; the last one ends them; an error ends them at once."""
    from crwatch._lanes import FanOut, Lane
    from crwatch._multinamespace import Members

    def lanes_of(members_count: int) -> tuple[Lane, list[Any]]:
        fanout = FanOut()
        lane = Lane("view", 8, "wait")
        fanout.attach(lane)
        members = Members(fanout)
        return lane, [members.member() for _ in range(members_count)]

    lane, (a, b) = lanes_of(2)
    a.close(None)
    a.close(None)  # a second close of the same core counts once
    assert not lane.closed
    b.close(None)
    assert lane.closed

    lane, (a, b) = lanes_of(2)
    a.close(None)
    error = crwatch.CrwatchError("forbidden")
    b.close(error)
    assert lane.closed
    assert lane.error is error

    lane, (_, b, _) = lanes_of(3)
    b.close(error)  # the informer is stopping: the others' clean ends change nothing
    assert lane.closed
    assert lane.error is error
