"""Kubeconfig files: find them, merge them like kubectl, and check them before use.

kubernetes-asyncio reads ``$KUBECONFIG`` once, when it is imported, and reports a broken
file with ``AssertionError`` or ``ssl.SSLError``. This module reads the variable each time a
client is entered, merges the list form, and names the file, the context and the field of
anything it cannot use (as :class:`crwatch.InvalidOptionError`), never a secret's value.

Merging follows kubectl (https://kubernetes.io/docs/concepts/configuration/
organize-cluster-access-kubeconfig/#merging-kubeconfig-files): the files of ``$KUBECONFIG``
are read in order, empty entries and files that do not exist are skipped, and the first file
to set a value (``current-context``, a cluster, context or user of a given name) wins.
Relative paths inside a file are relative to that file's directory.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from attrs import frozen

from ._exceptions import InvalidOptionError

__all__ = ["Kubeconfig", "default_paths", "load"]

#: Fields holding a path, per section; made absolute against the file that defined them.
_PATH_FIELDS: Final = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
}
_SECTIONS: Final = ("clusters", "contexts", "users")


@frozen
class Kubeconfig:
    """A merged kubeconfig and what it was made from (for error messages)."""

    #: The merged document, in the shape of one kubeconfig file.
    document: dict[str, Any]
    #: The files read, in order (the first set each value).
    files: tuple[Path, ...]
    #: For each ``(section, name)`` the file that defined it.
    origins: Mapping[tuple[str, str], Path]
    #: The context to use (the argument, else the merged ``current-context``).
    context: str

    @property
    def namespace(self) -> str:
        """The context's namespace, else ``"default"``: where kubectl works without ``-n``.

        https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/#context
        """
        entry = _find(self, "contexts", self.context)
        body = entry.get("context") if entry is not None else None
        namespace = body.get("namespace") if isinstance(body, dict) else None
        return namespace if isinstance(namespace, str) and namespace else "default"


def default_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Return the files ``from_kubeconfig()`` reads without a path, from the environment *now*.

    ``$KUBECONFIG`` split on ``os.pathsep`` (empty entries dropped), else ``~/.kube/config``.
    """
    env = os.environ if environ is None else environ
    value = env.get("KUBECONFIG", "")
    if value:
        paths = [Path(p).expanduser() for p in value.split(os.pathsep) if p]
        if paths:
            return paths
    return [Path("~/.kube/config").expanduser()]


def load(paths: Sequence[Path], context: str | None, *, explicit: bool) -> Kubeconfig:
    """Read and merge kubeconfig files, pick the context, and check what it needs.

    Args:
        paths: the files, first wins. With ``explicit`` (a path the user passed) the file
            must exist; otherwise files that do not exist are skipped, as kubectl does.
        context: the context to use, or ``None`` for the merged ``current-context``.

    Raises:
        InvalidOptionError: no file could be read, a file is not a kubeconfig, or the
            context, its cluster or its user is missing or unusable.
    """
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": []}
    origins: dict[tuple[str, str], Path] = {}
    read: list[Path] = []
    current: str | None = None
    for path in paths:
        if not explicit and not path.exists():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidOptionError(
                f"kubeconfig {str(path)!r} cannot be read: {type(exc).__name__}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise InvalidOptionError(f"kubeconfig {str(path)!r} is not YAML{where}") from None
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise InvalidOptionError(f"kubeconfig {str(path)!r} is not a mapping")
        read.append(path)
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
        base = path.resolve().parent
        for section in _SECTIONS:
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise InvalidOptionError(f"kubeconfig {str(path)!r}: {section} is not a list")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise InvalidOptionError(
                        f"kubeconfig {str(path)!r}: an entry of {section} has no name"
                    )
                name = entry["name"]
                if (section, name) in origins:
                    continue  # the first file to define a name wins
                origins[(section, name)] = path
                merged[section].append(_absolute(section, entry, base))
    if not read:
        tried = ", ".join(repr(str(p)) for p in paths)
        raise InvalidOptionError(f"no kubeconfig file found (looked for {tried})")
    chosen = context or current
    files = tuple(read)
    where = _describe(files)
    if not chosen:
        raise InvalidOptionError(f"kubeconfig {where}: no current-context and no context given")
    merged["current-context"] = chosen
    config = Kubeconfig(merged, files, origins, chosen)
    _check(config)
    return config


def _absolute(section: str, entry: dict[str, Any], base: Path) -> dict[str, Any]:
    key = "cluster" if section == "clusters" else "user" if section == "users" else ""
    body = entry.get(key) if key else None
    if not isinstance(body, dict):
        return entry
    fields = [f for f in _PATH_FIELDS.get(section, ()) if isinstance(body.get(f), str)]
    if not fields:
        return entry
    body = dict(body)
    for f in fields:
        body[f] = str(base / Path(body[f]).expanduser())
    return {**entry, key: body}


def _describe(files: Sequence[Path]) -> str:
    return repr(str(files[0])) if len(files) == 1 else repr(os.pathsep.join(map(str, files)))


def _find(config: Kubeconfig, section: str, name: str) -> dict[str, Any] | None:
    for entry in config.document[section]:
        if entry.get("name") == name:
            return entry  # type: ignore[no-any-return]
    return None


def _check(config: Kubeconfig) -> None:
    """Check the chosen context, its cluster and its user; name the file and the field."""
    ctx_name = config.context
    entry = _find(config, "contexts", ctx_name)
    if entry is None:
        raise InvalidOptionError(
            f"kubeconfig {_describe(config.files)}: context {ctx_name!r} does not exist"
        )
    origin = config.origins[("contexts", ctx_name)]
    ctx = entry.get("context")
    if not isinstance(ctx, dict):
        raise InvalidOptionError(
            f"kubeconfig {str(origin)!r}, context {ctx_name!r}: field 'context' is missing"
        )
    cluster_name = ctx.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise InvalidOptionError(
            f"kubeconfig {str(origin)!r}, context {ctx_name!r}: field 'cluster' is missing"
        )
    cluster_entry = _find(config, "clusters", cluster_name)
    if cluster_entry is None:
        raise InvalidOptionError(
            f"kubeconfig {_describe(config.files)}, context {ctx_name!r}: "
            f"cluster {cluster_name!r} does not exist"
        )
    cluster_file = config.origins[("clusters", cluster_name)]
    where = f"kubeconfig {str(cluster_file)!r}, context {ctx_name!r}, cluster {cluster_name!r}"
    cluster = cluster_entry.get("cluster")
    if not isinstance(cluster, dict):
        raise InvalidOptionError(f"{where}: field 'cluster' is missing")
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise InvalidOptionError(f"{where}: field 'server' is missing")
    if not server.startswith(("https://", "http://")):
        raise InvalidOptionError(f"{where}: field 'server' is not an http(s) URL: {server!r}")
    if server.startswith("https://"):
        _check_pem(cluster, "certificate-authority", where, "CERTIFICATE")
    user_name = ctx.get("user")
    if user_name in (None, ""):
        return  # no credentials: anonymous, as kubectl allows
    if not isinstance(user_name, str):
        raise InvalidOptionError(
            f"kubeconfig {str(origin)!r}, context {ctx_name!r}: field 'user' is not a string"
        )
    user_entry = _find(config, "users", user_name)
    if user_entry is None:
        raise InvalidOptionError(
            f"kubeconfig {_describe(config.files)}, context {ctx_name!r}: "
            f"user {user_name!r} does not exist"
        )
    user_file = config.origins[("users", user_name)]
    uwhere = f"kubeconfig {str(user_file)!r}, context {ctx_name!r}, user {user_name!r}"
    user = user_entry.get("user")
    if user is None:
        return
    if not isinstance(user, dict):
        raise InvalidOptionError(f"{uwhere}: field 'user' is not a mapping")
    if server.startswith("https://"):
        has_cert = _check_pem(user, "client-certificate", uwhere, "CERTIFICATE")
        has_key = _check_pem(user, "client-key", uwhere, "PRIVATE KEY")
        if has_cert != has_key:
            missing = "client-key" if has_cert else "client-certificate"
            raise InvalidOptionError(f"{uwhere}: field {missing!r} (or its -data) is missing")


def _check_pem(body: Mapping[str, Any], field: str, where: str, label: str) -> bool:
    """Check ``field-data`` (base64 of PEM) or ``field`` (a PEM file); return whether set.

    Only the field's name reaches the message: its value may be a private key.
    """
    data = body.get(f"{field}-data")
    if data:
        try:
            pem = base64.b64decode(str(data), validate=False)
        except (binascii.Error, ValueError):
            raise InvalidOptionError(f"{where}: field '{field}-data' is not base64") from None
        if not _looks_like_pem(pem, label):
            raise InvalidOptionError(
                f"{where}: field '{field}-data' is not a base64-encoded PEM {label.lower()}"
            )
        return True
    path = body.get(field)
    if path:
        try:
            pem = Path(str(path)).read_bytes()
        except OSError as exc:
            raise InvalidOptionError(
                f"{where}: field {field!r}: file {str(path)!r} cannot be read "
                f"({exc.strerror or type(exc).__name__})"
            ) from None
        if not _looks_like_pem(pem, label):
            raise InvalidOptionError(
                f"{where}: field {field!r}: file {str(path)!r} is not a PEM {label.lower()}"
            )
        return True
    return False


def _looks_like_pem(data: bytes, label: str) -> bool:
    # "PRIVATE KEY" matches "RSA PRIVATE KEY", "EC PRIVATE KEY" and PKCS#8 alike.
    return b"-----BEGIN " in data and label.encode() + b"-----" in data
