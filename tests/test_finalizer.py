"""Tests of ``crwatch.finalizer``: add before apply, cleanup on deletion, remove after it.

Over HTTP against FakeApiServer, which keeps an object with finalizers until the last one
is removed, as kube-apiserver does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import crwatch
from crwatch.testing import FakeApiServer, ResourceType

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets", kind="Widget", namespaced=True)
FIN = "example.com/cleanup"


class Env:
    def __init__(self, server: FakeApiServer, rtype: ResourceType, client: crwatch.Client):
        self.server = server
        self.rtype = rtype
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create(self, name: str = "a", finalizers: list[str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": "default"}
        if finalizers:
            meta["finalizers"] = finalizers
        return self.server.create(self.rtype, {"metadata": meta, "spec": {}})

    def read(self, name: str = "a") -> dict[str, Any]:
        return self.server.get(self.rtype, name, namespace="default")

    async def apply(self, obj: dict[str, Any]) -> str:
        self.calls.append(("apply", obj))
        return "applied"

    def cleanup(self, obj: dict[str, Any]) -> str:  # sync callbacks work too
        self.calls.append(("cleanup", obj))
        return "cleaned"

    async def run(self, obj: dict[str, Any] | None) -> str | None:
        return await crwatch.finalizer(
            self.client, WIDGETS, obj, FIN, apply=self.apply, cleanup=self.cleanup
        )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with FakeApiServer() as server:
        rtype = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        async with crwatch.Client.from_kubeconfig(server.kubeconfig(tmp_path / "kc")) as client:
            yield Env(server, rtype, client)


async def test_adds_the_finalizer_before_the_first_apply(env: Env) -> None:
    """A live object without the finalizer gets it on the server before apply runs.

    apply sees the patched object; the helper returns apply's result.
    """
    obj = env.create()
    assert await env.run(obj) == "applied"
    assert env.read()["metadata"]["finalizers"] == [FIN]
    [(what, seen)] = env.calls
    assert what == "apply"
    assert seen["metadata"]["finalizers"] == [FIN]


async def test_appends_to_other_finalizers(env: Env) -> None:
    """An object with another controller's finalizer keeps it; ours is appended."""
    obj = env.create(finalizers=["other.io/keep"])
    await env.run(obj)
    assert env.read()["metadata"]["finalizers"] == ["other.io/keep", FIN]


async def test_with_the_finalizer_apply_runs_without_a_write(env: Env) -> None:
    """When the finalizer is already there, apply runs and nothing is written."""
    obj = env.create(finalizers=[FIN])
    rv = env.server.resource_version
    assert await env.run(obj) == "applied"
    assert env.server.resource_version == rv


async def test_deletion_runs_cleanup_then_removes_the_finalizer(env: Env) -> None:
    """A deleted object runs cleanup; removing the finalizer then lets the object go."""
    env.create(finalizers=[FIN])
    deleting = env.server.delete(env.rtype, "a", namespace="default")
    assert deleting["metadata"]["deletionTimestamp"]
    assert await env.run(deleting) == "cleaned"
    assert [what for what, _ in env.calls] == ["cleanup"]
    with pytest.raises(crwatch.testing.ApiError):
        env.read()


async def test_failing_cleanup_keeps_the_finalizer(env: Env) -> None:
    """A cleanup that raises propagates and the finalizer stays; a later success removes it."""
    env.create(finalizers=[FIN, "other.io/keep"])
    deleting = env.server.delete(env.rtype, "a", namespace="default")

    async def broken(obj: dict[str, Any]) -> str:
        raise RuntimeError("upstream is down")

    with pytest.raises(RuntimeError, match="upstream is down"):
        await crwatch.finalizer(env.client, WIDGETS, deleting, FIN, apply=env.apply, cleanup=broken)
    assert env.read()["metadata"]["finalizers"] == [FIN, "other.io/keep"]
    assert await env.run(deleting) == "cleaned"
    assert env.read()["metadata"]["finalizers"] == ["other.io/keep"]


async def test_deletion_without_our_finalizer_does_nothing(env: Env) -> None:
    """An object being deleted that does not carry our finalizer runs neither callback."""
    env.create(finalizers=["other.io/keep"])
    deleting = env.server.delete(env.rtype, "a", namespace="default")
    rv = env.server.resource_version
    assert await env.run(deleting) is None
    assert await env.run(None) is None
    assert env.calls == []
    assert env.server.resource_version == rv


async def test_two_replicas_cannot_both_add(env: Env) -> None:
    """Two replicas holding the same copy: the second add raises ConflictError.

    This holds with and without an existing finalizer list; the list holds ours once.
    """
    for name, existing in (("a", None), ("b", ["other.io/keep"])):
        stale = env.create(name, finalizers=existing)
        await env.run(stale)
        with pytest.raises(crwatch.ConflictError):
            await env.run(stale)
        assert env.read(name)["metadata"]["finalizers"].count(FIN) == 1
    assert [what for what, _ in env.calls] == ["apply", "apply"]


async def test_two_replicas_cannot_both_remove(env: Env) -> None:
    """After one replica removed the finalizer, the other's stale removal fails.

    Another controller's finalizer, now where ours was, is left alone.
    """
    env.create(finalizers=[FIN, "other.io/keep"])
    stale = env.server.delete(env.rtype, "a", namespace="default")
    await env.run(stale)
    with pytest.raises(crwatch.ConflictError):
        await env.run(stale)
    assert env.read()["metadata"]["finalizers"] == ["other.io/keep"]


async def test_a_stale_copy_never_touches_a_namesake(env: Env) -> None:
    """A copy of a deleted object does not remove the finalizer of a new object of that name."""
    env.create(finalizers=[FIN])
    stale = env.server.delete(env.rtype, "a", namespace="default")
    # Another replica finishes the deletion; the object is then created again and adopted.
    await env.run(stale)
    await env.run(env.create())
    with pytest.raises(crwatch.ConflictError):
        await env.run(stale)
    assert env.read()["metadata"]["finalizers"] == [FIN]


async def test_removal_of_an_object_already_gone_is_done(env: Env) -> None:
    """When another replica already removed it and the object is gone, cleanup's result stands."""
    env.create(finalizers=[FIN])
    stale = env.server.delete(env.rtype, "a", namespace="default")
    await env.run(stale)
    assert await env.run(stale) == "cleaned"


async def test_bad_arguments(env: Env) -> None:
    """A finalizer name that is not qualified, or an object without metadata, is refused."""
    obj = env.create()
    for bad in ("", "has space", "Example.com/x", "/x", "a/b/c"):
        with pytest.raises(crwatch.InvalidOptionError):
            await crwatch.finalizer(
                env.client, WIDGETS, obj, bad, apply=env.apply, cleanup=env.cleanup
            )
    with pytest.raises(crwatch.InvalidOptionError):
        await crwatch.finalizer(
            env.client, WIDGETS, {"spec": {}}, FIN, apply=env.apply, cleanup=env.cleanup
        )
    no_rv = {"metadata": {"name": "a", "namespace": "default"}}
    with pytest.raises(crwatch.InvalidOptionError):
        await crwatch.finalizer(
            env.client, WIDGETS, no_rv, FIN, apply=env.apply, cleanup=env.cleanup
        )
    assert env.calls == []
