"""The command line: ``crwatch demo`` and ``crwatch watch`` (run as real subprocesses)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from crwatch._cli import main
from crwatch._format import use_color
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


def test_watch_with_an_unloadable_kubeconfig_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kubeconfig without any context is exit code 1 and one line on stderr."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    assert main(["watch", "widgets", "--kubeconfig", str(kubeconfig)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"crwatch: error: kubeconfig '{kubeconfig}'")
    assert "context" in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("clusters: [unclosed\n", "is not YAML (line 2)"),
        ("- a list\n- not a mapping\n", "is not a mapping"),
        ("just a string\n", "is not a mapping"),
    ],
    ids=["not-yaml", "a-list", "a-string"],
)
def test_watch_with_a_kubeconfig_that_is_not_a_kubeconfig_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    """A kubeconfig that is not YAML, or not a mapping, is exit code 1 and one line naming it.

    The same holds when the file comes from ``$KUBECONFIG`` rather than ``--kubeconfig``.
    """
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text)
    for argv, env in (
        (["watch", "widgets", "--kubeconfig", str(kubeconfig)], None),
        (["watch", "widgets"], str(kubeconfig)),
    ):
        with pytest.MonkeyPatch.context() as patch:
            if env is not None:
                patch.setenv("KUBECONFIG", env)
            assert main(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == f"crwatch: error: kubeconfig '{kubeconfig}' {problem}\n"


async def _run_watch(kubeconfig: Path, *extra: str, resource: str = "widgets") -> Process:
    return await anyio.open_process(
        [
            sys.executable,
            "-m",
            "crwatch",
            "watch",
            resource,
            "--kubeconfig",
            str(kubeconfig),
            *list(extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.anyio
async def test_watch_prints_the_state_then_changes(tmp_path: Path) -> None:
    """``crwatch watch widgets`` finds the type by discovery and prints JSON lines.

    Existing objects come as ADDED, then live changes; stderr (not a terminal) stays empty:
    no progress line.
    """
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
            assert process.stderr is not None
            err = b"".join([chunk async for chunk in process.stderr])
            await process.aclose()
    assert err == b""
    assert [doc["type"] for doc in lines] == ["ADDED", "MODIFIED"]
    assert [doc["object"]["metadata"]["name"] for doc in lines] == ["a", "a"]  # type: ignore[index]


@pytest.mark.anyio
async def test_watch_defaults_to_the_contexts_namespace(tmp_path: Path) -> None:
    """Without ``-n``, ``crwatch watch`` watches the kubeconfig context's namespace.

    The context names "team-a": its widget comes first, and a change in "default" made
    before a change in "team-a" is never printed. ``-A`` still watches every namespace.
    """
    async with FakeApiServer() as server:
        widgets = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        server.create(widgets, {"metadata": {"name": "home", "namespace": "default"}})
        server.create(widgets, {"metadata": {"name": "mine", "namespace": "team-a"}})
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig", namespace="team-a")
        lines = await _watch_lines(
            kubeconfig,
            2,
            "-o",
            "json",
            then=lambda: (
                server.patch(widgets, "home", {"spec": {"x": 1}}, namespace="default"),
                server.patch(widgets, "mine", {"spec": {"x": 1}}, namespace="team-a"),
            ),
        )
        assert [(doc["type"], doc["object"]["metadata"]["namespace"]) for doc in lines] == [
            ("ADDED", "team-a"),
            ("MODIFIED", "team-a"),
        ]
        everything = await _watch_lines(kubeconfig, 2, "-A", "-o", "json")
        assert {doc["object"]["metadata"]["namespace"] for doc in everything} == {
            "default",
            "team-a",
        }


async def _watch_lines(
    kubeconfig: Path, count: int, *extra: str, then: Callable[[], object] | None = None
) -> list[dict[str, Any]]:
    """Run ``crwatch watch widgets`` until it printed ``count`` JSON lines; return them.

    ``then`` runs once, after the first line.
    """
    process = await _run_watch(kubeconfig, *extra)
    lines: list[dict[str, Any]] = []
    try:
        assert process.stdout is not None
        buffer = b""
        with anyio.fail_after(20):
            async for chunk in process.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    lines.append(json.loads(line))
                    if len(lines) == 1 and then is not None:
                        then()
                if len(lines) >= count:
                    break
    finally:
        process.terminate()
        await process.wait()
        await process.aclose()
    return lines


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


@pytest.mark.anyio
async def test_watch_errors_are_one_line_and_exit_code_1(tmp_path: Path) -> None:
    """An unknown type, refused credentials and an unreachable server: rc 1, one line each."""
    async with FakeApiServer(token="right-token") as server:
        good = server.kubeconfig(tmp_path / "good")
        config = json.loads(good.read_text())
        config["users"][0]["user"]["token"] = "wrong-token"
        (tmp_path / "refused").write_text(json.dumps(config))
        config = json.loads(good.read_text())
        # Port 9 (discard) on loopback: nothing listens there in a test environment.
        config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
        (tmp_path / "down").write_text(json.dumps(config))
        results: dict[str, tuple[int | None, str]] = {}

        async def run(name: str, resource: str) -> None:
            process = await _run_watch(tmp_path / name, resource=resource)
            with anyio.fail_after(30):
                code = await process.wait()
            assert process.stderr is not None
            err = b"".join([chunk async for chunk in process.stderr]).decode()
            await process.aclose()
            results[name] = (code, err)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run, "good", "nothings")
            tasks.start_soon(run, "refused", "widgets")
            tasks.start_soon(run, "down", "widgets")
    for code, err in results.values():
        assert code == 1
        assert err.startswith("crwatch: error: ")
        assert err.count("\n") == 1, err
    assert 'doesn\'t have a resource type "nothings"' in results["good"][1]
    assert "401" in results["refused"][1]
    assert "credentials" in results["refused"][1]
    assert "cannot reach the API server" in results["down"][1]
    assert "127.0.0.1:9" in results["down"][1]


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX-only")
async def test_watch_shows_progress_on_a_terminal_until_synced(tmp_path: Path) -> None:
    """With stderr on a terminal, a self-erasing "listing ..." line runs until the sync.

    It is drawn before the first object arrives and erased, for good, by the time a later
    change (MODIFIED) is printed.
    """
    import os
    import pty

    async with FakeApiServer() as server:
        widgets = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        for i in range(30):
            server.create(widgets, {"metadata": {"name": f"w{i}", "namespace": "default"}})
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        leader, follower = pty.openpty()
        try:
            process = await anyio.open_process(
                [
                    sys.executable,
                    "-m",
                    "crwatch",
                    "watch",
                    "widgets.example.com",
                    "--kubeconfig",
                    str(kubeconfig),
                    "-o",
                    "json",
                ],
                stdout=subprocess.PIPE,
                stderr=follower,
            )
            os.close(follower)
            assert process.stdout is not None
            types: list[str] = []
            buffer = b""
            with anyio.fail_after(20):
                async for chunk in process.stdout:
                    buffer += chunk
                    *complete, buffer = buffer.split(b"\n")
                    types.extend(json.loads(line)["type"] for line in complete)
                    if len(types) == 30 and "MODIFIED" not in types:
                        server.patch(widgets, "w0", {"spec": {"x": 1}}, namespace="default")
                    if "MODIFIED" in types:
                        break
            process.terminate()
            await process.wait()
            await process.aclose()
            shown = b""
            while True:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's other end is closed and drained
                    break
                if not data:
                    break
                shown += data
        finally:
            os.close(leader)
    text = shown.decode()
    assert "listing widgets.v1.example.com: 0 objects" in text
    erase = "\r\x1b[K"
    assert text.endswith(erase)  # nothing drawn again once the state was in


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_demo_colours_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, ``-o wide`` rows have coloured event types and the wide columns."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = _Terminal()
    assert main(["demo", "-o", "wide"], out=out) == 0
    text = out.getvalue()
    assert "\x1b[32mADDED" in text
    assert "\x1b[31mDELETED" in text
    rows = [line for line in text.splitlines() if line.startswith("\x1b[32mADDED")]
    assert rows
    assert all(" gen=" in row and "labels=tier=edge" in row for row in rows)


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipes and files get plain text; so does a terminal when ``NO_COLOR`` is set."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(_Terminal())
    assert not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_Terminal())


def test_demo_yaml_output_is_a_stream_of_documents() -> None:
    """``-o yaml`` prints one YAML document per event, the same as ``-o json``'s."""
    import yaml

    out = io.StringIO()
    assert main(["demo", "-o", "yaml"], out=out) == 0
    docs = list(yaml.safe_load_all(out.getvalue()))
    assert {doc["type"] for doc in docs} == {"ADDED", "MODIFIED", "DELETED"}
    assert docs[-1]["object"]["metadata"]["name"] == "edge-c"


def test_yaml_without_pyyaml_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without PyYAML, ``-o yaml`` fails at once with one line naming the package."""
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    out = io.StringIO()
    assert main(["demo", "-o", "yaml"], out=out) == 1
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install pyyaml" in err
