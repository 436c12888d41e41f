"""Memory per object cached by ``crwatch.Informer``, against the same objects as plain dicts.

``python bench/informer_memory.py [--objects 100000] [--size 2000]``

A ``FakeApiServer`` in a child process holds the objects (created through its Python API), so
the measuring processes hold only what they cache. Each measurement runs in a fresh process:
RSS (``/proc/self/statm``, after ``gc.collect()``) before and after, divided by the number of
objects:

- ``dicts``: each object's JSON parsed with orjson and kept in a dict by key (the floor: what
  the parsed objects alone cost);
- ``informer``: an ``Informer`` synced (``wait_synced``) over the same objects;
- each with ``managedFields`` (a typical two-manager block, ~0.9 KB of JSON, added to every
  object as parsed JSON because FakeApiServer, without server-side apply, stores none) and
  with ``crwatch.drop_managed_fields`` applied.

It also times one full ``gc.collect()`` with the synced cache, before and after
``gc.freeze()``. Prints a table; nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

MODES = ("dicts", "dicts-drop-mf", "informer", "informer-drop-mf")

# What two field managers (an apply and a controller's status update) typically leave.
MANAGED_FIELDS = orjson.dumps(
    [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": "example.com/v1",
            "time": "2026-11-25T08:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:annotations": {
                        ".": {},
                        "f:kubectl.kubernetes.io/last-applied-configuration": {},
                    },
                    "f:labels": {".": {}, "f:app": {}, "f:tier": {}},
                },
                "f:spec": {
                    ".": {},
                    "f:replicas": {},
                    "f:image": {},
                    "f:ports": {},
                    "f:config": {".": {}, "f:blob": {}, "f:mode": {}},
                },
            },
        },
        {
            "manager": "widget-controller",
            "operation": "Update",
            "apiVersion": "example.com/v1",
            "time": "2026-11-25T08:00:05Z",
            "fieldsType": "FieldsV1",
            "subresource": "status",
            "fieldsV1": {
                "f:status": {
                    ".": {},
                    "f:conditions": {
                        ".": {},
                        'k:{"type":"Ready"}': {
                            ".": {},
                            "f:lastTransitionTime": {},
                            "f:status": {},
                            "f:type": {},
                        },
                    },
                    "f:observedGeneration": {},
                },
            },
        },
    ]
)


def widget(i: int, size: int) -> dict[str, Any]:
    """Return a ~``size``-byte custom resource (as JSON), varied per object like real ones."""
    obj: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {
            "name": f"widget-{i:06}",
            "labels": {"app": f"app-{i % 50}", "tier": "edge"},
            "annotations": {"example.com/owner": f"team-{i % 7}"},
        },
        "spec": {
            "replicas": i % 5,
            "image": f"registry.example.com/widget:{i % 100}",
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            "config": {"mode": "fast", "blob": ""},
        },
    }
    pad = size - len(orjson.dumps(obj)) - 180  # the server adds uid, timestamps, RV...
    obj["spec"]["config"]["blob"] = f"{i:08x}" * max(0, pad // 8)
    return obj


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def with_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["managedFields"] = orjson.loads(MANAGED_FIELDS)
    return obj


# --- the server process --------------------------------------------------------------------


async def serve(count: int, size: int) -> None:
    from crwatch.testing import FakeApiServer

    async with FakeApiServer(bookmark_interval=60.0, history_size=100) as server:
        rtype = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        start = time.perf_counter()
        for i in range(count):
            server.create(rtype, widget(i, size), namespace="default")
        created = time.perf_counter() - start
        tmp = Path(tempfile.mkdtemp(prefix="crwatch-informer-memory-"))
        items = server.list(rtype, namespace="default")
        sample = len(orjson.dumps(items[0]))
        # The same objects as JSON lines, for the dicts floor (read without parsing a list).
        (tmp / "objects.jsonl").write_bytes(b"\n".join(map(orjson.dumps, items)))
        del items
        path = server.kubeconfig(tmp / "kubeconfig")
        print(json.dumps({"kubeconfig": str(path), "bytes": sample, "create_s": created}),
              flush=True)  # fmt: skip
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- the measuring processes ---------------------------------------------------------------


async def measure(mode: str, kubeconfig: str, count: int) -> dict[str, Any]:
    import crwatch

    drop = mode.endswith("drop-mf")
    out: dict[str, Any] = {"mode": mode}
    if mode.startswith("dicts"):
        # One JSON document per object, as a watch stream carries them; their bytes are
        # held before and after, so only the parsed objects are measured.
        blobs = Path(kubeconfig).with_name("objects.jsonl").read_bytes().split(b"\n")
        gc.collect()
        before = rss()
        start = time.perf_counter()
        kept: dict[str, dict[str, Any]] = {}
        for blob in blobs:
            obj = with_managed_fields(orjson.loads(blob))
            if drop:
                obj = crwatch.drop_managed_fields(obj)
            kept[crwatch.object_key(obj)] = obj
        elapsed = time.perf_counter() - start
        gc.collect()
        out.update(objects=len(kept), bytes_per_object=(rss() - before) / len(kept))
    else:

        def transform(obj: dict[str, Any]) -> dict[str, Any]:
            obj = with_managed_fields(obj)
            return crwatch.drop_managed_fields(obj) if drop else obj

        async with crwatch.Client.from_kubeconfig(kubeconfig) as client:
            informer = crwatch.Informer(
                client, "widgets.v1.example.com", namespace="default", transform=transform
            )
            gc.collect()
            before = rss()
            start = time.perf_counter()
            async with informer:
                await informer.wait_synced(timeout=600)
                elapsed = time.perf_counter() - start
                gc.collect()
                objects = len(informer.store)
                out.update(objects=objects, bytes_per_object=(rss() - before) / objects)
                t = time.perf_counter()
                gc.collect()
                out["gc_collect_ms"] = (time.perf_counter() - t) * 1e3
                gc.freeze()
                t = time.perf_counter()
                gc.collect()
                out["gc_collect_frozen_ms"] = (time.perf_counter() - t) * 1e3
                gc.unfreeze()
    assert out["objects"] == count, out
    out["seconds"] = elapsed
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=2000, help="bytes of JSON per object")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.objects, args.size))
        return
    if args.measure:
        result = asyncio.run(measure(args.measure, args.kubeconfig, args.objects))
        print(json.dumps(result), flush=True)
        return
    me = [sys.executable, __file__, "--objects", str(args.objects)]
    server = subprocess.Popen(
        [*me, "--size", str(args.size), "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        print(
            f"{args.objects:,} objects of {info['bytes']:,} bytes of JSON (without "
            f"managedFields; {len(MANAGED_FIELDS):,} more with), created in "
            f"{info['create_s']:.1f} s\n"
        )
        print(f"{'mode':18} {'bytes/object':>12} {'vs dicts':>9} {'seconds':>8} "
              f"{'gc.collect ms':>14} {'frozen ms':>10}")  # fmt: skip
        results: dict[str, dict[str, Any]] = {}
        for mode in MODES:
            line = (
                subprocess.run(
                    [*me, "--measure", mode, "--kubeconfig", info["kubeconfig"]],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = results[mode] = json.loads(line)
            floor = results.get(mode.replace("informer", "dicts"), r)["bytes_per_object"]
            print(
                f"{mode:18} {r['bytes_per_object']:12,.0f} "
                f"{r['bytes_per_object'] / floor:8.2f}x {r['seconds']:8.2f} "
                f"{r.get('gc_collect_ms', float('nan')):14.1f} "
                f"{r.get('gc_collect_frozen_ms', float('nan')):10.1f}"
            )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
