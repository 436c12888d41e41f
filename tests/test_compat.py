"""crwatch.compat.stream against FakeApiServer, with both official clients' API objects.

The synchronous client's loop runs in a worker thread (it blocks), changing the fake
cluster through ``anyio.from_thread``; the shim's own event-loop thread is checked to stop
when the iteration is closed.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import kubernetes
import kubernetes_asyncio
import pytest

import crwatch
import crwatch.compat
from crwatch.testing import FakeApiServer, Fault, ResourceType

pytestmark = pytest.mark.anyio

TOKEN = "s3cr3t-token"


class Cluster:
    def __init__(self, server: FakeApiServer, kubeconfig: Path) -> None:
        self.server = server
        self.kubeconfig = kubeconfig
        self.widgets: ResourceType = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        self.configmaps = server.resource("", "v1", "configmaps")

    def widget(self, name: str) -> None:
        self.server.create(
            self.widgets,
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"size": 1},
            },
        )

    def sync_api(self, cls: Any) -> Any:
        """Return an API object of the official sync client, configured from the kubeconfig."""
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=config
        )
        return cls(kubernetes.client.ApiClient(config))


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with FakeApiServer(tls=True, token=TOKEN) as server:
        yield Cluster(server, server.kubeconfig(tmp_path / "kubeconfig"))


def compat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "crwatch.compat"]


async def test_sync_stream_survives_410s_that_the_official_watch_raises_on(
    cluster: Cluster,
) -> None:
    """Two 410s in a row: the shim relists and goes on; the official Watch raises."""
    cluster.widget("a")
    cluster.widget("b")
    api = cluster.sync_api(kubernetes.client.CustomObjectsApi)
    args = (api.list_namespaced_custom_object, "example.com", "v1", "default", "widgets")

    def official() -> int:
        rv = api.list_namespaced_custom_object(*args[1:])["metadata"]["resourceVersion"]
        with pytest.raises(kubernetes.client.ApiException) as caught:
            for _ in kubernetes.watch.Watch().stream(*args, resource_version=rv):
                pass
        return int(caught.value.status)

    cluster.server.faults.add(Fault.expired_event(), verb="watch", times=2)
    assert await anyio.to_thread.run_sync(official) == 410

    # The same two faults, after one event each: the shim relists twice and carries on.
    cluster.server.faults.add(Fault.expired_event(after_events=1), verb="watch", times=2)

    def shim() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        with crwatch.compat.stream(*args) as events:
            assert compat_threads() == []  # started by the first next(), not before
            for event in events:
                seen.append(event)
                assert len(compat_threads()) == 1
                if len(seen) in (2, 3, 4):  # after the list, then after each 410
                    anyio.from_thread.run_sync(cluster.widget, "cdefg"[len(seen) - 2])
                if len(seen) == 5:
                    break
        assert compat_threads() == []
        return seen

    seen = await anyio.to_thread.run_sync(shim)
    names = [e["raw_object"]["metadata"]["name"] for e in seen]
    assert names == ["a", "b", "c", "d", "e"]
    assert {e["type"] for e in seen} == {"ADDED"}
    for event in seen:
        assert set(event) == {"type", "object", "raw_object"}
        assert event["object"] == event["raw_object"]  # custom objects: dicts both
        assert event["object"] is not event["raw_object"]
    assert all(rule.exhausted for rule in cluster.server.faults.rules)  # fired on the shim


async def test_sync_stream_of_a_core_type_yields_models(cluster: Cluster) -> None:
    """A CoreV1Api list method gives V1ConfigMap models in ``object``, dicts in raw_object."""
    cluster.server.create(
        cluster.configmaps,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default"},
            "data": {"k": "v"},
        },
    )
    api = cluster.sync_api(kubernetes.client.CoreV1Api)

    def first() -> dict[str, Any]:
        stream = crwatch.compat.stream(api.list_namespaced_config_map, "default")
        event = next(stream)
        del stream  # garbage collection stops the thread
        return event

    event = await anyio.to_thread.run_sync(first)
    assert event["type"] == "ADDED"
    assert isinstance(event["object"], kubernetes.client.V1ConfigMap)
    assert event["object"].metadata.name == "x"
    assert event["object"].data == {"k": "v"}
    assert event["raw_object"]["data"] == {"k": "v"}
    assert compat_threads() == []  # dropping the stream joined its thread


async def test_async_stream_uses_the_api_objects_client_and_survives_a_410(
    cluster: Cluster,
) -> None:
    """kubernetes-asyncio's cluster-wide list method, with its credentials, across a 410."""
    cluster.widget("a")
    config = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(
        config_file=str(cluster.kubeconfig), client_configuration=config
    )
    async with kubernetes_asyncio.client.ApiClient(config) as api_client:
        api = kubernetes_asyncio.client.CustomObjectsApi(api_client)
        cluster.server.faults.add(Fault.expired_event(after_events=1), verb="watch")
        seen: list[dict[str, Any]] = []
        async with crwatch.compat.stream(
            api.list_cluster_custom_object, "example.com", "v1", "widgets"
        ) as events:
            async for event in events:
                seen.append(event)
                if len(seen) in (1, 2):
                    cluster.widget("bc"[len(seen) - 1])
                if len(seen) == 3:
                    break
        assert [e["raw_object"]["metadata"]["name"] for e in seen] == ["a", "b", "c"]
        assert [e["object"] for e in seen] == [e["raw_object"] for e in seen]
        assert all(rule.exhausted for rule in cluster.server.faults.rules)

        core = kubernetes_asyncio.client.CoreV1Api(api_client)
        cluster.server.create(
            cluster.configmaps,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y", "namespace": "ns"}},
        )
        events = crwatch.compat.stream(core.list_namespaced_config_map, namespace="ns")
        event = await events.__anext__()
        await events.aclose()
        assert isinstance(event["object"], kubernetes_asyncio.client.V1ConfigMap)
        assert event["object"].metadata.name == "y"
        with pytest.raises(StopAsyncIteration):
            await events.__anext__()


async def test_timeout_seconds_ends_the_iteration(cluster: Cluster) -> None:
    """As with the official Watch, ``timeout_seconds`` ends the loop, without an error."""
    cluster.widget("a")
    config = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(
        config_file=str(cluster.kubeconfig), client_configuration=config
    )
    async with kubernetes_asyncio.client.ApiClient(config) as api_client:
        api = kubernetes_asyncio.client.CustomObjectsApi(api_client)
        with anyio.fail_after(10):
            seen = [
                e
                async for e in crwatch.compat.stream(
                    api.list_namespaced_custom_object,
                    "example.com",
                    "v1",
                    "default",
                    "widgets",
                    timeout_seconds=0.3,
                )
            ]
    assert all(e["type"] == "ADDED" for e in seen)


async def test_bad_input_gets_typed_errors(cluster: Cluster) -> None:
    """Non-list methods, foreign callables, missing arguments and moot options are refused."""
    api = cluster.sync_api(kubernetes.client.CustomObjectsApi)
    with pytest.raises(crwatch.InvalidOptionError, match="bound list method"):
        crwatch.compat.stream(print)
    with pytest.raises(crwatch.InvalidOptionError, match="needs a list method"):
        crwatch.compat.stream(api.get_namespaced_custom_object, "g", "v1", "ns", "p", "n")
    with pytest.raises(crwatch.InvalidOptionError, match="'plural'"):
        crwatch.compat.stream(api.list_namespaced_custom_object, "g", "v1", "ns")
    with pytest.raises(crwatch.InvalidOptionError, match="resource_version"):
        crwatch.compat.stream(api.list_cluster_custom_object, "g", "v1", "p", resource_version="42")
    with pytest.raises(crwatch.InvalidOptionError, match="_continue"):
        crwatch.compat.stream(api.list_cluster_custom_object, "g", "v1", "p", _continue="x")
    stream = crwatch.compat.stream(api.list_cluster_custom_object, "g", "v1", "p", watch=True)
    assert repr(stream) == "<crwatch.compat.Stream p.v1.g sync>"
    with pytest.raises(TypeError, match="use `for`"):
        await stream.__anext__()
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert TOKEN not in repr(stream)


async def test_sync_stream_raises_crwatch_errors_and_stops_its_thread(cluster: Cluster) -> None:
    """A 403 on the list comes out of the for loop as ForbiddenError; the thread is gone."""
    cluster.server.deny(resource="widgets")
    api = cluster.sync_api(kubernetes.client.CustomObjectsApi)

    def consume() -> None:
        events = crwatch.compat.stream(
            api.list_namespaced_custom_object, "example.com", "v1", "default", "widgets"
        )
        with pytest.raises(crwatch.ForbiddenError), events:
            for _ in events:
                pass
        assert compat_threads() == []

    await anyio.to_thread.run_sync(consume)


async def test_sync_stream_stop_ends_the_loop_like_the_official_watch(cluster: Cluster) -> None:
    """stop() inside the loop ends it before the next event, and the thread stops."""
    for name in "abc":
        cluster.widget(name)
    api = cluster.sync_api(kubernetes.client.CustomObjectsApi)

    def consume() -> list[str]:
        seen = []
        events = crwatch.compat.stream(
            api.list_cluster_custom_object, "example.com", "v1", "widgets"
        )
        for event in events:
            seen.append(event["object"]["metadata"]["name"])
            events.stop()
        assert compat_threads() == []
        return seen

    assert await anyio.to_thread.run_sync(consume) == ["a"]
