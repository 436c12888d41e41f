"""The command line: ``crwatch demo`` and ``crwatch watch`` (run as real subprocesses)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from crwatch._cli import main
from crwatch.testing import FakeApiServer


def test_demo_converges_through_disconnects_and_a_relist() -> None:
    """The demo's watcher ends with the server's state, having seen a synthetic DELETED."""
    out = io.StringIO()
    assert main(["demo"], out=out) == 0
    text = out.getvalue()
    assert "(synthetic)" in text
    assert "relisting" in text  # the 410 was really hit, not simulated by the writer
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("demo: ")
    assert "matches the server's" in summary


def test_demo_json_output_is_one_document_per_line() -> None:
    """``-o json`` prints only JSON watch events, ending with the deletion of edge-c."""
    out = io.StringIO()
    assert main(["demo", "-o", "json"], out=out) == 0
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {doc["type"] for doc in docs} == {"ADDED", "MODIFIED", "DELETED"}
    assert [doc for doc in docs if doc.get("synthetic")]
    assert docs[-1]["type"] == "DELETED"
    assert docs[-1]["object"]["metadata"]["name"] == "edge-c"


def test_watch_rejects_an_unparsable_resource(capsys: pytest.CaptureFixture[str]) -> None:
    """A resource without a version is a clear error and exit code 1, not a traceback."""
    assert main(["watch", "widgets.example.com", "--kubeconfig", __file__]) == 1
    assert "widgets.v1.example.com" in capsys.readouterr().err


async def _run_watch(kubeconfig: Path, *extra: str) -> anyio.abc.Process:
    return await anyio.open_process(
        [
            sys.executable,
            "-m",
            "crwatch",
            "watch",
            "widgets.v1.example.com",
            "--kubeconfig",
            str(kubeconfig),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.anyio
async def test_watch_prints_the_state_then_changes(tmp_path: Path) -> None:
    """``crwatch watch`` prints existing objects as ADDED, then live changes, as JSON lines."""
    async with FakeApiServer() as server:
        widgets = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        server.create(widgets, {"metadata": {"name": "a", "namespace": "default"}})
        server.create(widgets, {"metadata": {"name": "elsewhere", "namespace": "other"}})
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        process = await _run_watch(kubeconfig, "-n", "default", "-o", "json")
        try:
            assert process.stdout is not None
            lines: list[dict[str, object]] = []
            buffer = b""
            with anyio.fail_after(20):
                async for chunk in process.stdout:
                    buffer += chunk
                    *complete, buffer = buffer.split(b"\n")
                    lines.extend(json.loads(line) for line in complete)
                    if len(lines) == 1:
                        server.patch(widgets, "a", {"spec": {"x": 1}}, namespace="default")
                    if len(lines) >= 2:
                        break
        finally:
            process.terminate()
            await process.wait()
            await process.aclose()
    assert [doc["type"] for doc in lines] == ["ADDED", "MODIFIED"]
    assert [doc["object"]["metadata"]["name"] for doc in lines] == ["a", "a"]  # type: ignore[index]


@pytest.mark.anyio
async def test_watch_forbidden_names_verb_and_resource(tmp_path: Path) -> None:
    """A 403 ends ``crwatch watch`` with exit code 1 and a message naming what was denied."""
    async with FakeApiServer() as server:
        server.register_crd(group="example.com", version="v1", plural="widgets", kind="Widget")
        server.deny(resource="widgets")
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        process = await _run_watch(kubeconfig, "-A")
        with anyio.fail_after(20):
            code = await process.wait()
        assert process.stderr is not None
        err = (await process.stderr.receive()).decode()
        await process.aclose()
    assert code == 1
    assert "widgets.v1.example.com" in err
    assert "403" in err


@pytest.mark.anyio
async def test_plugin_fixtures_give_a_connected_crwatch_client(
    fake_apiserver: FakeApiServer, crwatch_client: object
) -> None:
    """The opt-in plugin's ``crwatch_client`` fixture watches the ``fake_apiserver`` fixture."""
    import crwatch

    assert isinstance(crwatch_client, crwatch.Client)
    widgets = fake_apiserver.register_crd(
        group="example.com", version="v1", plural="widgets", kind="Widget"
    )
    fake_apiserver.create(widgets, {"metadata": {"name": "a", "namespace": "default"}})
    async with crwatch.watch(crwatch_client, "widgets.v1.example.com") as events:
        event = await events.__anext__()
    assert (event.type, event.key) == ("ADDED", "default/a")
