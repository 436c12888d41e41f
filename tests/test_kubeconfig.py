"""Kubeconfig loading: ``$KUBECONFIG`` read at connect time, merging, broken files, key files."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import crwatch
from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

WIDGETS = crwatch.Resource("example.com", "v1", "widgets")


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[FakeApiServer, FakeApiServer]]:
    async with FakeApiServer() as a, FakeApiServer() as b:
        yield a, b


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


def _rename(doc: dict[str, Any], name: str) -> None:
    """Rename the kubeconfig's cluster, user and context (all "fake") to ``name``."""
    for section in ("clusters", "users", "contexts"):
        for entry in doc[section]:
            entry["name"] = name
    for entry in doc["contexts"]:
        entry["context"].update(cluster=name, user=name)
    doc["current-context"] = name


async def _host(monkeypatch: pytest.MonkeyPatch, value: str) -> str:
    monkeypatch.setenv("KUBECONFIG", value)
    async with crwatch.Client.from_kubeconfig() as client:
        return client.host


async def test_kubeconfig_variable_set_after_import_is_used(
    two_servers: tuple[FakeApiServer, FakeApiServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: $KUBECONFIG is read when the client is entered, not at import time.

    crwatch (and kubernetes-asyncio) are imported long before this test sets the variable;
    changing it between two clients switches clusters instead of reusing the first value.
    """
    a, b = two_servers
    path_a = a.kubeconfig(tmp_path / "a")
    path_b = b.kubeconfig(tmp_path / "b")
    assert await _host(monkeypatch, str(path_a)) == a.url
    assert await _host(monkeypatch, str(path_b)) == b.url
    monkeypatch.setenv("KUBECONFIG", str(path_a))
    client = crwatch.Client.from_kubeconfig()
    monkeypatch.setenv("KUBECONFIG", str(path_b))  # after the call, before entering
    async with client:
        assert client.host == b.url


async def test_kubeconfig_list_merges_first_file_wins(
    two_servers: tuple[FakeApiServer, FakeApiServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The list form of $KUBECONFIG merges like kubectl: empty and missing entries skipped.

    The first file to set ``current-context`` or to define a name wins; a later file adds
    the names the earlier ones lack.
    """
    a, b = two_servers
    first = a.kubeconfig(tmp_path / "first")  # "fake" -> a, current-context "fake"
    second = _edit(b.kubeconfig(tmp_path / "second"), lambda d: None)  # "fake" -> b
    other = _edit(b.kubeconfig(tmp_path / "other"), lambda d: _rename(d, "other"))
    missing = tmp_path / "missing"
    joined = os.pathsep.join(["", str(missing), str(first), str(second), str(other)])
    assert await _host(monkeypatch, joined) == a.url
    # A later file's current-context does not override the first one's, its names add up.
    joined = os.pathsep.join([str(other), str(first)])
    assert await _host(monkeypatch, joined) == b.url
    monkeypatch.setenv("KUBECONFIG", joined)
    async with crwatch.Client.from_kubeconfig(context="fake") as client:
        assert client.host == a.url


async def test_kubeconfig_list_without_any_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A $KUBECONFIG naming only missing files is an InvalidOptionError naming them."""
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "x"), str(tmp_path / "y")]))
    with pytest.raises(crwatch.InvalidOptionError, match="no kubeconfig file found") as info:
        async with crwatch.Client.from_kubeconfig():
            pass
    assert str(tmp_path / "x") in str(info.value)


SECRET_DATA = base64.b64encode(b"not a PEM at all, and secret").decode()


def _no_server(doc: dict[str, Any]) -> None:
    del doc["clusters"][0]["cluster"]["server"]


def _https(doc: dict[str, Any]) -> None:
    doc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"


def _bad_cert(doc: dict[str, Any]) -> None:
    _https(doc)
    doc["users"][0]["user"] = {
        "client-certificate-data": SECRET_DATA,
        "client-key-data": SECRET_DATA,
    }


def _bad_key(doc: dict[str, Any]) -> None:
    _https(doc)
    cert = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    doc["users"][0]["user"] = {
        "client-certificate-data": cert.decode(),
        "client-key-data": SECRET_DATA,
    }


def _bad_ca(doc: dict[str, Any]) -> None:
    _https(doc)
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = SECRET_DATA


def _no_context(doc: dict[str, Any]) -> None:
    doc["current-context"] = "elsewhere"


def _no_user(doc: dict[str, Any]) -> None:
    doc["users"] = []


def _no_cluster(doc: dict[str, Any]) -> None:
    doc["clusters"][0]["name"] = "renamed"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_no_server, ["context 'fake'", "cluster 'fake'", "'server' is missing"]),
        (_bad_cert, ["user 'fake'", "'client-certificate-data'", "PEM"]),
        (_bad_key, ["user 'fake'", "'client-key-data'", "PEM"]),
        (_bad_ca, ["cluster 'fake'", "'certificate-authority-data'", "PEM"]),
        (_no_context, ["context 'elsewhere' does not exist"]),
        (_no_user, ["context 'fake'", "user 'fake' does not exist"]),
        (_no_cluster, ["context 'fake'", "cluster 'fake' does not exist"]),
    ],
)
async def test_malformed_kubeconfig_is_an_invalid_option_error(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], words: list[str]
) -> None:
    """Regression: a broken kubeconfig is an InvalidOptionError naming file, context, field.

    It used to escape as AssertionError (no ``server``) or ssl.SSLError (certificate data
    that is not PEM). The message never carries the data itself.
    """
    async with FakeApiServer() as server:
        path = _edit(server.kubeconfig(tmp_path / "kc"), change)
    with pytest.raises(crwatch.InvalidOptionError) as info:
        async with crwatch.Client.from_kubeconfig(path):
            pass
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert SECRET_DATA not in message


async def test_pem_that_openssl_rejects_is_an_invalid_option_error(tmp_path: Path) -> None:
    """Certificate data that looks like PEM but does not load is still an InvalidOptionError."""
    async with FakeApiServer() as server:
        path = _edit(server.kubeconfig(tmp_path / "kc"), _https)

    def garbage(label: str) -> str:
        pem = f"-----BEGIN {label}-----\nQUJD\n-----END {label}-----\n"
        return base64.b64encode(pem.encode()).decode()

    def change(doc: dict[str, Any]) -> None:
        doc["users"][0]["user"] = {
            "client-certificate-data": garbage("CERTIFICATE"),
            "client-key-data": garbage("PRIVATE KEY"),
        }

    _edit(path, change)
    with pytest.raises(crwatch.InvalidOptionError, match="context 'fake'") as info:
        async with crwatch.Client.from_kubeconfig(path):
            pass
    assert "QUJD" not in str(info.value)


async def test_unreadable_or_non_yaml_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubeconfig that cannot be read or parsed is an InvalidOptionError naming the file."""
    (tmp_path / "dir").mkdir()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "dir"))
    with pytest.raises(crwatch.InvalidOptionError, match="cannot be read") as info:
        async with crwatch.Client.from_kubeconfig():
            pass
    assert str(tmp_path / "dir") in str(info.value)
    (tmp_path / "bad").write_text("clusters: [unclosed\n")
    with pytest.raises(crwatch.InvalidOptionError, match="is not YAML") as info:
        async with crwatch.Client.from_kubeconfig(tmp_path / "bad"):
            pass
    (tmp_path / "list").write_text("- 1\n- 2\n")
    with pytest.raises(crwatch.InvalidOptionError, match="not a mapping"):
        async with crwatch.Client.from_kubeconfig(tmp_path / "list"):
            pass


def _client_certificate(directory: Path) -> tuple[bytes, bytes]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a client certificate")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=crwatch-test-client",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    pair = cert.read_bytes(), key.read_bytes()
    key.unlink()
    cert.unlink()
    return pair


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def test_client_key_data_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client key from a kubeconfig is on disk only while the TLS context is built.

    kubernetes-asyncio writes key (and certificate) data to temporary files kept until the
    interpreter exits; crwatch removes them once the ``ApiClient`` exists. The client still
    works over TLS with that key loaded.
    """
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cert, key = _client_certificate(tmp_path)
    marker = key.splitlines()[1]  # a line of the key's base64 body
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    async with FakeApiServer(tls=True) as server:
        rtype = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        server.create(rtype, {"metadata": {"name": "a"}}, namespace="default")

        def add_cert(doc: dict[str, Any]) -> None:
            doc["users"][0]["user"] = {
                "client-certificate-data": base64.b64encode(cert).decode(),
                "client-key-data": base64.b64encode(key).decode(),
            }

        path = _edit(server.kubeconfig(tmp_path / "kc"), add_cert)
        for _ in range(2):  # a second client: no stale cached temp file name
            async with crwatch.Client.from_kubeconfig(path) as client:
                assert _files_holding(scratch, marker) == []
                assert _files_holding(scratch, cert.splitlines()[1]) == []
                async with crwatch.watch(client, WIDGETS, namespace="default") as events:
                    with anyio.fail_after(5):
                        event = await events.__anext__()
                assert event.key == "default/a"
        assert list(scratch.iterdir()) == []
