"""Tests of ``crwatch.Client``: construction, auth modes, ownership, secrets."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client as k8s_client

import crwatch
from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")
TOKEN = "s3cret-t0ken-value"


async def _first_sync(client: crwatch.Client) -> crwatch.WatchStatistics:
    """Watch until the initial state is in; return the statistics."""
    async with crwatch.watch(client, WIDGETS, namespace="default") as events:
        with anyio.fail_after(5):
            async for _ in events:
                break
        return events.statistics()


@pytest.fixture
async def server() -> Any:
    async with FakeApiServer(token=TOKEN) as server:
        rtype = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        server.create(rtype, {"metadata": {"name": "a"}, "spec": {}}, namespace="default")
        yield server


def test_missing_kubeconfig_raises_at_call_time(tmp_path: Path) -> None:
    """A kubeconfig path that does not exist is reported when from_kubeconfig is called."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Client.from_kubeconfig(tmp_path / "nope")
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Client.from_kubeconfig(None, context="")
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Client(object())


async def test_kubeconfig_with_token_owns_and_closes_its_api_client(
    server: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """from_kubeconfig connects on enter with the file's token and closes on exit.

    The token shows in neither repr nor logs.
    """
    path = server.kubeconfig(tmp_path / "kc")
    client = crwatch.Client.from_kubeconfig(path)
    assert "not connected" in repr(client)
    with caplog.at_level(logging.DEBUG):
        async with client:
            assert client.host == server.url
            assert "owned" in repr(client)
            assert TOKEN not in repr(client)
            # TLS verification stays as the configuration says (on by default).
            assert client.api_client.configuration.verify_ssl is True
            stats = await _first_sync(client)
            assert stats.synced
            api = client.api_client
    assert TOKEN not in caplog.text
    assert api.rest_client.pool_manager.closed
    assert client.api_client is None


async def test_context_argument_selects_the_cluster(server: FakeApiServer, tmp_path: Path) -> None:
    """The context argument picks a context other than the file's current one."""
    path = server.kubeconfig(tmp_path / "kc")
    config = json.loads(path.read_text())
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}})
    config["contexts"].append({"name": "broken", "context": {"cluster": "nowhere", "user": "fake"}})
    config["current-context"] = "broken"
    path.write_text(json.dumps(config))
    async with crwatch.Client.from_kubeconfig(path, context="fake") as client:
        assert client.host == server.url
        assert (await _first_sync(client)).synced
    async with crwatch.Client.from_kubeconfig(path) as client:
        assert client.host == "http://127.0.0.1:9"


async def test_unknown_context_fails_on_enter(server: FakeApiServer, tmp_path: Path) -> None:
    """A context the file does not have is reported as InvalidOptionError on enter."""
    path = server.kubeconfig(tmp_path / "kc")
    with pytest.raises(crwatch.InvalidOptionError):
        async with crwatch.Client.from_kubeconfig(path, context="missing"):
            pass


async def test_incluster_outside_a_pod_fails_on_enter(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_incluster outside Kubernetes raises InvalidOptionError when entered."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    client = crwatch.Client.from_incluster()
    assert "in-cluster" in repr(client)
    with pytest.raises(crwatch.InvalidOptionError):
        async with client:
            pass


async def test_borrowed_api_client_uses_its_auth_and_stays_open(server: FakeApiServer) -> None:
    """Client(api_client) uses the ApiClient's token and never closes it."""
    configuration = k8s_client.Configuration(host=server.url)
    configuration.api_key["BearerToken"] = TOKEN
    configuration.api_key_prefix["BearerToken"] = "Bearer"
    async with k8s_client.ApiClient(configuration) as api:
        async with crwatch.Client(api) as client:
            assert "borrowed" in repr(client)
            assert (await _first_sync(client)).synced
        assert not api.rest_client.pool_manager.closed


def _exec_plugin(tmp_path: Path, expiry: str | None) -> Path:
    counter = tmp_path / "runs"
    script = tmp_path / "plugin.py"
    status: dict[str, Any] = {"token": TOKEN}
    if expiry:
        status["expirationTimestamp"] = expiry
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    }
    script.write_text(
        "import json, pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')\n"
        f"print(json.dumps({credential!r}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return counter


def _exec_kubeconfig(server: FakeApiServer, tmp_path: Path, expiry: str | None) -> Path:
    path = server.kubeconfig(tmp_path / "kc")
    config = json.loads(path.read_text())
    _exec_plugin(tmp_path, expiry)
    config["users"] = [
        {
            "name": "fake",
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(tmp_path / "plugin.py")],
                    "interactiveMode": "Never",
                }
            },
        }
    ]
    path.write_text(json.dumps(config))
    return path


@pytest.mark.skipif(os.name != "posix", reason="exec plugin script")
async def test_exec_plugin_token_is_used(server: FakeApiServer, tmp_path: Path) -> None:
    """A kubeconfig whose user is an exec credential plugin authenticates with its token."""
    path = _exec_kubeconfig(server, tmp_path, expiry=None)
    async with crwatch.Client.from_kubeconfig(path) as client:
        assert (await _first_sync(client)).synced
    assert (tmp_path / "runs").read_text() == "1"  # no expiry: the token is kept


@pytest.mark.skipif(os.name != "posix", reason="exec plugin script")
async def test_exec_plugin_is_rerun_when_its_token_expires(
    server: FakeApiServer, tmp_path: Path
) -> None:
    """An exec token reported as expiring is refreshed by re-running the plugin."""
    # Already expired: kubernetes-asyncio treats it as stale, so each request refreshes.
    path = _exec_kubeconfig(server, tmp_path, expiry="2000-01-01T00:00:00Z")
    async with crwatch.Client.from_kubeconfig(path) as client:
        assert (await _first_sync(client)).synced
    assert int((tmp_path / "runs").read_text()) >= 2
