"""The public surface of crwatch.testing: exports, docstrings, CLI and pytest plugin."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import crwatch.testing
from crwatch.testing import FakeApiServer, pytest_plugin

pytestmark = pytest.mark.anyio


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, lists every public name, and each has crwatch.testing as module."""
    exported = crwatch.testing.__all__
    assert list(exported) == sorted(exported)
    public = {n for n in vars(crwatch.testing) if not n.startswith("_")}
    public -= {"annotations", "pytest_plugin"}
    assert public == set(exported)
    for name in exported:
        assert getattr(crwatch.testing, name).__module__ == "crwatch.testing"


def test_every_public_name_has_a_docstring() -> None:
    """Every exported class, its public methods and properties, and every fixture are documented."""
    assert crwatch.testing.__doc__
    for name in crwatch.testing.__all__:
        obj = getattr(crwatch.testing, name)
        assert inspect.getdoc(obj), name
        for attr, raw in vars(obj).items():
            member = getattr(obj, attr)
            if attr.startswith("_") or not (callable(member) or isinstance(raw, property)):
                continue
            assert inspect.getdoc(member), f"{name}.{attr}"
    for name in pytest_plugin.__all__:
        assert getattr(pytest_plugin, name).__doc__, name


async def test_fixtures_give_connected_server(
    fake_apiserver: FakeApiServer, fake_kubeconfig: Path, k8s_api_client: Any
) -> None:
    """The plugin's fixtures: a started server, its kubeconfig, and a connected ApiClient."""
    from kubernetes_asyncio import client

    assert fake_kubeconfig.name == "kubeconfig"
    assert fake_apiserver.url in repr(fake_apiserver)
    version = await client.VersionApi(k8s_api_client).get_code()
    assert version.major == "1"


async def test_cli_serves_and_prints_kubeconfig(tmp_path: Path) -> None:
    """`python -m crwatch.testing` prints the URL and KUBECONFIG export, serves until stopped.

    Stopped with SIGTERM, which it handles itself: SIGINT is ignored in a child of a
    background job (a shell's ``pytest &``), and this test must pass there too.
    """
    probe = FakeApiServer()
    await probe.start()
    port = probe.port
    await probe.stop()
    kubeconfig = tmp_path / "kc"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crwatch.testing",
        "--port",
        str(port),
        "--kubeconfig",
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout is not None
        lines = [await asyncio.wait_for(proc.stdout.readline(), 20) for _ in range(3)]
        text = b"".join(lines).decode()
        assert f"http://127.0.0.1:{port}" in text
        assert f"export KUBECONFIG={kubeconfig}" in text
        assert kubeconfig.exists()
        import aiohttp

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/version") as response,
        ):
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)  # stops it cleanly, whatever SIGINT's disposition
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_plugin_works_from_a_root_conftest(tmp_path: Path) -> None:
    """`pytest_plugins = ["crwatch.testing.pytest_plugin"]` gives users all the fixtures."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n"
        'pytest_plugins = ["crwatch.testing.pytest_plugin"]\n\n'
        "@pytest.fixture\n"
        "def anyio_backend():\n"
        '    return "asyncio"\n\n'
        "@pytest.fixture\n"
        "def fake_apiserver_options():\n"
        '    return {"bookmark_interval": 0.01, "history_size": 5}\n'
    )
    (tmp_path / "test_user.py").write_text(
        "import pytest\n"
        "from kubernetes_asyncio import client\n\n"
        "@pytest.mark.anyio\n"
        "async def test_it(fake_apiserver, fake_kubeconfig, k8s_api_client):\n"
        "    assert fake_apiserver.bookmark_interval == 0.01\n"
        "    namespaces = await client.CoreV1Api(k8s_api_client).list_namespace()\n"
        '    assert "default" in [n.metadata.name for n in namespaces.items]\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        str(tmp_path),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    assert b"1 passed" in out
