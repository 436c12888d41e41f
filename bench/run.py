"""crwatch benchmarks: throughput, initial sync and memory, next to the floor and the peers.

``python bench/run.py [--quick] [--runs N] [--only NAME[,NAME]]`` (or ``nox -s bench -- ...``)

Each client runs in its own process (``bench/_child.py``) against a stream server in another
process (``bench/_stream_server.py``) that serves pre-encoded ~2 KB custom resources on
127.0.0.1. Runs are interleaved round-robin across the clients of a group, and every figure is
the median of the runs. Prints one table and writes it as JSON to ``bench/results/<stamp>.json``
and ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PY = sys.executable
CHILD_TIMEOUT = 600.0
REPO = HERE.parent

# Where the children import crwatch from: "" = the installed (editable) working tree, else a
# directory holding a ``git archive`` of one commit's src/ (see crwatch_snapshot).
CRWATCH_PATH = ""

# Reference points for the ratio columns: the floor of each group, then each peer.
PEERS = {"k8s-asyncio": "kubernetes-asyncio", "lightkube": "lightkube"}


@dataclass(frozen=True)
class Group:
    name: str
    title: str
    unit: str  # "events" or "objects"
    server: tuple[str, ...]  # _stream_server.py flags, {N} = events, {M} = objects
    size: str  # "N" (events), "M" (objects), "R" (recovery), "C" (controller objects)
    ref: str = "floor"  # what the ×floor column compares against, in the table's header
    min_runs: int = 0  # at least this many runs (a jittered figure needs more than five)

    def count(self, n: int, m: int, r: int, c: int = 10_000) -> int:
        return {"N": n, "M": m, "R": r, "C": c}[self.size]


@dataclass(frozen=True)
class Row:
    group: str
    name: str  # unique, used by --only
    label: str
    target: str | None  # "module:function" in bench/clients, None = placeholder
    role: str = "other"  # ceiling | floor | crwatch | k8s-asyncio | lightkube | other
    note: str = ""
    # The figure, when it is not the rate: a key of the client's extra figures, in ms.
    figure_ms: str = ""
    # Appended to the note, formatted with the row's medians (str.format).
    detail: str = ""
    # Another row of the group (by name) this one is also compared with, in the note.
    vs: str = ""


GROUPS = [
    Group("throughput", "1. Throughput: one watch stream", "events", ("--events", "{N}"), "N"),
    Group("sync-paged", "2a. Initial sync: paginated list (500/page)", "objects",
          ("--objects", "{M}"), "M"),
    Group("sync-stream", "2b. Initial sync: streaming list (sendInitialEvents)", "objects",
          ("--objects", "{M}", "--watchlist"), "M"),
    Group("memory", "3. Memory: RSS per object kept (after gc.collect())", "objects",
          ("--objects", "{M}"), "M"),
    Group("fanout", "4. Fan-out: one informer, many no-op callback subscribers", "events",
          ("--events", "{N}"), "N", ref="1 subscriber"),
    # Recovery: M objects cached, 2 x 1,000 events around the fault (clients/informer_client.py)
    Group("recovery", "5. Recovery: one informer, a fault after 1,000 watch events", "objects",
          ("--objects", "{R}", "--events", "2000"), "R", min_runs=9),
    # Writes: the client runs crwatch.testing.FakeApiServer itself (no stream server);
    # R writes of the ~2 KB Widget (clients/fake_writes.py)
    Group("writes", "6. Writes: FakeApiServer creates and server-side applies", "writes",
          (), "R", ref="Python-API creates"),
    # The queue rows need no server traffic (bench/clients/controller_client.py).
    Group("queue", "7. Work queue: N keys added in bursts of 100, 4 workers, no-op reconcile",
          "keys", ("--events", "1"), "N"),
    Group("controller", "8. Controller: first reconcile of every object (4 workers, no-op)",
          "objects", ("--objects", "{C}"), "C"),
]  # fmt: skip

#: The sync rows' untimed full collection after wait_synced() (see informer_client.sync).
COLLECT_AFTER = "then a full gc.collect() {collect_after_ms:.0f} ms"


def _informer_sync_rows(kind: str) -> list[Row]:
    """Return the Informer rows of group ``sync-{kind}``, one per ``gc_freeze`` policy."""
    group = f"sync-{kind}"
    name = f"crwatch-informer-{kind}"
    return [
        Row(group, name, "crwatch.Informer: wait_synced()", "informer_client:sync", "crwatch",
            "compact cache, no gc.freeze; target <= 1.2x floor (time)", detail=COLLECT_AFTER),
        Row(group, f"{name}-freeze", 'crwatch.Informer(gc_freeze="list")',
            "informer_client:sync_compact_gc_list", "crwatch", "compact cache",
            detail=COLLECT_AFTER),
        Row(group, f"{name}-objects", 'crwatch.Informer(cache="objects", gc_freeze="list")',
            "informer_client:sync_objects", "crwatch", vs=f"floor-{kind}-kept-nogc",
            detail=COLLECT_AFTER),
        Row(group, f"{name}-keep", 'crwatch.Informer(cache="objects", gc_freeze="keep")',
            "informer_client:sync_gc_keep", "crwatch", detail=COLLECT_AFTER),
        Row(group, f"{name}-off", 'crwatch.Informer(cache="objects", gc_freeze="off")',
            "informer_client:sync_gc_off", "crwatch", vs=f"floor-{kind}-kept",
            detail=COLLECT_AFTER),
    ]  # fmt: skip


ROWS = [
    # 1. throughput
    Row("throughput", "ceiling", "server ceiling: raw socket, discard bytes", "floor:raw_socket",
        "ceiling", "shows the server is not the bottleneck"),
    Row("throughput", "floor", "floor: aiohttp readline + orjson", "floor:readline_orjson",
        "floor"),
    Row("throughput", "floor-kept", "the floor, newest object per key kept in a dict",
        "floor:readline_orjson_kept", "other", "what keeping a cache costs"),
    Row("throughput", "floor-iter-any", "aiohttp iter_any + split + orjson",
        "floor:iter_any_orjson", "other", "no line-length limit"),
    Row("throughput", "floor-stdlib-json", "aiohttp readline + stdlib json",
        "floor:readline_json", "other"),
    Row("throughput", "crwatch-wire", "crwatch wire only: iter_any + LineSplitter + parse_event",
        "crwatch_client:wire_throughput", "other", "sans-IO layer, no watcher"),
    Row("throughput", "crwatch-watch", "crwatch.watch", "crwatch_client:watch_throughput",
        "crwatch", "target >= 0.80x floor"),
    Row("throughput", "crwatch-watch-reading", "crwatch.watch, consumer reads every object",
        "crwatch_client:watch_throughput_reading", "crwatch", "target >= 0.9x floor"),
    Row("throughput", "crwatch-watch-objects", 'crwatch.watch(cache="objects"), reads every object',
        "crwatch_client:watch_throughput_objects", "crwatch"),
    Row("throughput", "crwatch-informer", "crwatch.Informer: cache + 1 callback",
        "informer_client:throughput", "crwatch", "the callback reads every object; "
        "target >= 0.85x floor"),
    Row("throughput", "crwatch-informer-objects", 'crwatch.Informer(cache="objects") + 1 callback',
        "informer_client:throughput_objects", "crwatch"),
    Row("throughput", "floor-metadata", "the floor over the metadata-only stream",
        "floor:readline_orjson_metadata", "other",
        "PartialObjectMetadata lines (the same objects' metadata)"),
    Row("throughput", "crwatch-informer-metadata", "crwatch.Informer(metadata_only=True)",
        "informer_client:throughput_metadata_only", "crwatch",
        "target >= 2x floor", vs="floor-metadata"),
    Row("throughput", "k8s-asyncio", "kubernetes-asyncio Watch().stream", "k8s_asyncio:throughput",
        "k8s-asyncio"),
    Row("throughput", "lightkube", "lightkube AsyncClient.watch", "lightkube_client:throughput",
        "lightkube", "generic resource"),
    # 2a. paginated list
    Row("sync-paged", "floor-paged", "floor: aiohttp GET pages + orjson", "floor:paged_list",
        "floor"),
    Row("sync-paged", "floor-paged-kept", "aiohttp GET pages + orjson, kept in a dict",
        "floor:paged_list_kept", "other", "what holding the objects costs"),
    Row("sync-paged", "floor-paged-kept-nogc", "the same, cyclic GC off during the sync",
        "floor:paged_list_kept_nogc", "other", "what gc.freeze()/disable could save"),
    Row("sync-paged", "crwatch-paged", "crwatch.watch: all initial ADDED",
        "crwatch_client:watch_sync", "crwatch", "server answers sendInitialEvents with 422"),
    *_informer_sync_rows("paged"),
    Row("sync-paged", "k8s-asyncio-paged", "kubernetes-asyncio list, limit/continue",
        "k8s_asyncio:paged_list", "k8s-asyncio"),
    Row("sync-paged", "lightkube-paged", "lightkube list, chunk_size=500",
        "lightkube_client:paged_list", "lightkube"),
    # 2b. streaming list
    Row("sync-stream", "floor-stream", "floor: readline + orjson to the end bookmark",
        "floor:stream_list", "floor"),
    Row("sync-stream", "floor-stream-kept", "readline + orjson, kept in a dict",
        "floor:stream_list_kept", "other", "what holding the objects costs"),
    Row("sync-stream", "floor-stream-kept-nogc", "the same, cyclic GC off during the sync",
        "floor:stream_list_kept_nogc", "other", "what gc.freeze()/disable could save"),
    Row("sync-stream", "crwatch-stream", "crwatch.watch: all initial ADDED",
        "crwatch_client:watch_sync", "crwatch"),
    *_informer_sync_rows("stream"),
    # 3. memory
    Row("memory", "memory-dicts", "parsed dicts alone (orjson)", "floor:memory_full", "floor"),
    Row("memory", "memory-no-managed-fields", "parsed dicts, managedFields dropped",
        "floor:memory_no_managed_fields", "other"),
    Row("memory", "memory-crwatch-watch", "crwatch.watch after the initial list",
        "crwatch_client:watch_sync_memory", "crwatch", "watch() keeps a Store of every object"),
    Row("memory", "memory-informer", "crwatch.Informer cache (compact)",
        "informer_client:memory", "crwatch", "target <= 1.3x the JSON size",
        detail="{bytes_per_object:.0f} B/object; full gc.collect() {gc_collect_ms:.0f} ms"),
    Row("memory", "memory-informer-objects", 'crwatch.Informer(cache="objects") cache',
        "informer_client:memory_objects", "crwatch", detail="full gc.collect() "
        "{gc_collect_ms:.0f} ms, {gc_collect_frozen_ms:.1f} ms after gc.freeze()"),
    Row("memory", "memory-informer-drop-mf",
        "crwatch.Informer cache, transform=drop_managed_fields",
        "informer_client:memory_drop_managed_fields", "crwatch",
        vs="memory-no-managed-fields",
        detail="full gc.collect() {gc_collect_ms:.0f} ms, "
        "{gc_collect_frozen_ms:.1f} ms after gc.freeze()"),
    Row("memory", "memory-informer-metadata", "crwatch.Informer(metadata_only=True) cache",
        "informer_client:memory_metadata_only", "crwatch", "target <= 0.6 KiB/object",
        detail="{bytes_per_object:.0f} B/object"),
    Row("memory", "memory-informer-metadata-drop-mf",
        "crwatch.Informer(metadata_only=True), transform=drop_managed_fields",
        "informer_client:memory_metadata_only_drop_managed_fields", "crwatch",
        "target <= 0.6 KiB/object", detail="{bytes_per_object:.0f} B/object"),
    # 4. fan-out: every subscriber a sync no-op callback; the rate is the informer's, until
    # every fast subscriber has seen the last event
    Row("fanout", "fanout-1", "Informer, 1 subscriber", "informer_client:throughput", "floor",
        "the reference (x1 subscriber)"),
    Row("fanout", "fanout-10", "Informer, 10 subscribers", "informer_client:fanout_10",
        "crwatch", "target >= 0.75x", detail="min delivered {delivered_min:,.0f}"),
    Row("fanout", "fanout-100", "Informer, 100 subscribers", "informer_client:fanout_100",
        "crwatch", detail="min delivered {delivered_min:,.0f}"),
    Row("fanout", "fanout-9", "Informer, 9 subscribers", "informer_client:fanout_9", "crwatch",
        "the next rows without their slow subscriber"),
    Row("fanout", "fanout-slow", "Informer, 9 subscribers + 1 sleeping 1 ms/event",
        "informer_client:fanout_9_and_slow", "crwatch",
        "rate of the 9; overflow=\"wait\"", vs="fanout-9",
        detail="min delivered {delivered_min:,.0f}; slow one handed {slow_delivered:,.0f}, "
        "coalesced {slow_coalesced:,.0f}"),
    Row("fanout", "fanout-stuck", "Informer, 9 subscribers + 1 stuck in its first call",
        "informer_client:fanout_9_and_stuck", "crwatch",
        "rate of the 9; overflow=\"wait\"", vs="fanout-9",
        detail="min delivered {delivered_min:,.0f}; stuck one handed {slow_delivered:,.0f}, "
        "coalesced {slow_coalesced:,.0f}"),
    # 5. recovery (the stream server's fault endpoint; default Backoff)
    Row("recovery", "recovery-drop", "resume after a clean EOF: EOF -> first new event",
        "informer_client:recovery_drop", "crwatch", figure_ms="recovery_ms",
        detail="re-watch request after {rewatch_ms:.1f} ms, event {first_event_ms:.1f} ms later"),
    Row("recovery", "recovery-410", "relist after 410 Expired: 410 -> cache complete",
        "informer_client:recovery_expire", "crwatch", figure_ms="recovery_ms",
        detail="backoff {backoff_ms:.0f} ms (default Backoff: 0-800 ms jitter) + relist "
        "{relist_ms:.0f} ms; {relist_events:.0f} events emitted (the objects the watch had "
        "changed)"),
    # 6. writes against FakeApiServer (target: >= 5,000 applies/s server side)
    Row("writes", "fake-create-python", "FakeApiServer.create (server-side cost)",
        "fake_writes:create_python", "floor", detail="{write_us:.0f} us each"),
    Row("writes", "fake-apply-python", "FakeApiServer.apply, one field changed each time",
        "fake_writes:apply_python", "crwatch", "target >= 5,000/s",
        detail="{write_us:.0f} us each"),
    Row("writes", "fake-apply-handler", "HTTP apply, timed inside the request handler",
        "fake_writes:apply_handler", "crwatch", "server side: body decode to encoded answer",
        detail="{handler_us:.0f} us each"),
    Row("writes", "fake-create-http", "HTTP POST, one at a time (aiohttp, same process)",
        "fake_writes:create_http", "other", detail="round trip {round_trip_us:.0f} us"),
    Row("writes", "fake-apply-http", "HTTP apply, one at a time (aiohttp, same process)",
        "fake_writes:apply_http", "other", detail="round trip {round_trip_us:.0f} us"),
    # 7. work queue
    Row("queue", "queue-floor", "floor: asyncio.Queue put_nowait/get/task_done",
        "controller_client:queue_floor", "floor", "no dedup, no processing set"),
    Row("queue", "queue-crwatch", "crwatch.WorkQueue add/get/done",
        "controller_client:queue_crwatch", "crwatch", "target >= 0.5x floor",
        detail="mean queue latency {latency_mean_us:.0f} us"),
    # 8. controller
    Row("controller", "controller-floor", "floor: Informer wait_synced()",
        "controller_client:informer_sync", "floor"),
    Row("controller", "controller-crwatch", "crwatch.Controller: every key reconciled once",
        "controller_client:controller_first_pass", "crwatch", "target <= 1.3x floor (time)",
        detail="{reconciles:.0f} reconciles"),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# processes


@contextlib.contextmanager
def stream_server(args: list[str]) -> Iterator[tuple[str, str]]:
    """Start the stream server; yield (base URL, kubeconfig path); stop it."""
    proc = subprocess.Popen(
        [PY, str(HERE / "_stream_server.py"), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"stream server did not start: {line!r}")
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        with tempfile.TemporaryDirectory(prefix="crwatch-bench-") as tmp:
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\n"
                f"clusters:\n- name: bench\n  cluster: {{server: '{base}'}}\n"
                "users:\n- name: bench\n  user: {}\n"
                "contexts:\n- name: bench\n"
                "  context: {cluster: bench, user: bench, namespace: default}\n"
                "current-context: bench\n"
            )
            yield base, str(kubeconfig)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_child(
    target: str, base: str, kubeconfig: str, count: int, profile: str = ""
) -> dict[str, Any]:
    env = dict(os.environ)
    if CRWATCH_PATH:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [CRWATCH_PATH, env.get("PYTHONPATH")]))
    cmd = [PY, str(HERE / "_child.py"), target, "--base", base, "--count", str(count)]
    cmd += ["--kubeconfig", kubeconfig]
    if profile:
        cmd += ["--profile", profile]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {CHILD_TIMEOUT:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"skipped": f"exit {proc.returncode}: {tail[0]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if "skipped" in result and proc.stderr.strip():
        result["stderr_tail"] = proc.stderr.strip().splitlines()[-3:]
    return result


# ---------------------------------------------------------------------------------------------
# figures


@dataclass
class Outcome:
    row: Row
    status: str = "placeholder"  # ok | skipped | placeholder
    note: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    median: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)


def summarize(out: Outcome, group: Group) -> None:
    ok = [r for r in out.runs if "skipped" not in r]
    if not ok:
        out.status = "skipped" if out.runs else "placeholder"
        if out.runs:
            out.note = out.runs[0]["skipped"]
        return
    out.status = "ok"
    per_run = {
        "rate_per_s": [r["count"] / r["wall_s"] for r in ok],
        "wall_s": [r["wall_s"] for r in ok],
        "cpu_us_per_item": [r["cpu_s"] / r["count"] * 1e6 for r in ok],
        "peak_rss_mb": [r["peak_rss_kb"] / 1024 for r in ok],
        "count": [r["count"] for r in ok],
    }
    # The clients' extra figures (bytes per object, recovery times...): medians too.
    for key, value in ok[0].items():
        if (
            isinstance(value, (int, float))
            and key not in per_run
            and key not in ("wall_s", "cpu_s", "peak_rss_kb")
            and all(isinstance(r.get(key), (int, float)) for r in ok)
        ):
            per_run[key] = [r[key] for r in ok]
    out.median = {k: statistics.median(v) for k, v in per_run.items()}
    if len(ok) > 1:
        # The spread of what the figure column shows: ms, bytes per object, or the rate.
        shown = out.row.figure_ms or ("bytes_per_object" if "bytes_per_object" in per_run else "")
        values = per_run[shown or "rate_per_s"]
        mid = statistics.median(values)
        out.median["rate_spread_pct"] = (max(values) - min(values)) / mid * 100 if mid else 0.0


def primary(out: Outcome) -> float:
    """Return the figure the ratio columns compare: rate (higher is better) or bytes/object."""
    return out.median.get("bytes_per_object", out.median.get("rate_per_s", 0.0))


def add_ratios(outcomes: list[Outcome]) -> None:
    for group in GROUPS:
        members = [o for o in outcomes if o.row.group == group.name]
        refs = {
            role: o
            for o in members
            for role in ("floor", *PEERS)
            if o.row.role == role and o.status == "ok"
        }
        for o in members:
            if o.status != "ok":
                continue
            for role, ref in refs.items():
                if ref is not o and primary(ref):
                    o.ratios[role] = primary(o) / primary(ref)
            other = next((r for r in members if r.row.name == o.row.vs), None)
            if other is not None and other.status == "ok" and primary(other):
                o.ratios[f"vs {other.row.name}"] = primary(o) / primary(other)


def vs_note(o: Outcome, members: list[Outcome]) -> str:
    ratio = o.ratios.get(f"vs {o.row.vs}")
    if ratio is None:
        return ""
    label = next(m.row.label for m in members if m.row.name == o.row.vs)
    return f"{ratio:.2f}x {label!r}"


def fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k/s" if x >= 1000 else f"{x:.0f}/s"


def figure(out: Outcome, group: Group) -> str:
    m = out.median
    if out.row.figure_ms:
        return f"{m[out.row.figure_ms]:.0f} ms"
    if "bytes_per_object" in m:
        return f"{m['bytes_per_object'] / 1024:.2f} KiB/obj"
    if group.unit == "objects":
        return f"{m['wall_s']:.2f} s ({fmt_rate(m['rate_per_s'])})"
    return fmt_rate(m["rate_per_s"])


def table(outcomes: list[Outcome], machine: dict[str, Any], config: dict[str, Any]) -> str:
    cols = ["client", "figure", "CPU µs/item", "peak RSS", "±%", "×floor", "×k8s-asyncio",
            "×lightkube", "note"]  # fmt: skip
    lines: list[list[str]] = []
    sections: list[tuple[int, str]] = []
    by_name = {g.name: g for g in GROUPS}
    for group in GROUPS:
        members = [o for o in outcomes if o.row.group == group.name]
        if not members:
            continue
        size = group.count(
            config["events"],
            config["objects"],
            config.get("recovery_objects", 10_000),
            config.get("controller_objects", 10_000),
        )
        ref = f" (×floor: against {group.ref})" if group.ref != "floor" else ""
        sections.append((len(lines), f"{group.title} — {size:,} {group.unit}{ref}"))
        for o in members:
            if o.status != "ok":
                not_yet = o.status == "placeholder" or o.note.startswith("not yet available")
                label = "not yet available" if not_yet else "skipped"
                lines.append([o.row.label, label, "", "", "", "", "", "", o.note or o.row.note])
                continue
            m = o.median
            lines.append(
                [
                    o.row.label,
                    figure(o, by_name[o.row.group]),
                    f"{m['cpu_us_per_item']:.2f}",
                    f"{m['peak_rss_mb']:.0f} MB",
                    f"{m['rate_spread_pct']:.0f}" if "rate_spread_pct" in m else "",
                    *(f"{o.ratios[k]:.2f}" if k in o.ratios else "" for k in ("floor", *PEERS)),
                    "; ".join(
                        filter(None, [o.row.note, vs_note(o, members), o.row.detail.format(**m)])
                    ),
                ]
            )
    widths = [max(len(c), *(len(r[i]) for r in lines)) if lines else len(c) for i, c in
              enumerate(cols)]  # fmt: skip
    widths[-1] = len(cols[-1])  # the note column is not padded

    def fmt(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i in (0, 1, len(cols) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    more = "".join(
        f" ({g.name}: {g.min_runs})"
        for g in GROUPS
        if g.min_runs > config["runs"] and not config.get("smoke")
    )
    out = [
        "crwatch benchmarks",
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, Python "
        f"{machine['python']}, load avg {machine['loadavg_before']} (before) / "
        f"{machine.get('loadavg_after', '?')} (after)",
        "versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + f"; crwatch measured from {machine.get('crwatch_source', '?')}",
        f"runs: median of {config['runs']} runs per row{more}, each client in its own process;"
        " ±% = spread (max-min)/median of the figure; ×X = this row's rate (or bytes/object)"
        " / X's",
        "",
        fmt(cols),
        fmt(["-" * w for w in widths[:-1]] + ["-" * 4]),
    ]
    starts = dict(sections)
    for i, line in enumerate(lines):
        if i in starts:
            out.append(starts[i])
        out.append(fmt(line))
    return "\n".join(out)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def crwatch_snapshot(ref: str, into: Path) -> str:
    """Export ``src/crwatch`` at ``ref`` into ``into``; return the commit's short hash.

    Other people edit the working tree while the benchmark runs; measuring a commit keeps a
    half-saved file from breaking (or flattering) a run, and ties the figures to a hash.
    """
    commit = _git("rev-parse", "--short", f"{ref}^{{commit}}")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src/crwatch"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


# ---------------------------------------------------------------------------------------------
# machine


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("crwatch", "aiohttp", "orjson", "kubernetes-asyncio", "lightkube"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------------------------------------
# main


def select(only: str) -> list[Row]:
    if not only:
        return list(ROWS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]

    def hit(row: Row, word: str) -> bool:
        # A word selects a row when it is a prefix of, or a glob matching, its name or group.
        return any(
            name.startswith(word) or fnmatch.fnmatchcase(name, word)
            for name in (row.name, row.group)
        )

    picked = [r for r in ROWS if any(hit(r, w) for w in wanted)]
    # Always bring the group's floor along, so the ratio column means something.
    groups = {r.group for r in picked}
    floors = [r for r in ROWS if r.role == "floor" and r.group in groups and r not in picked]
    return [r for r in ROWS if r in picked or r in floors]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,000 events, 10,000 objects")
    ap.add_argument("--runs", type=int, default=None, help="runs per row (default 5; quick 3)")
    ap.add_argument(
        "--only", default="", help="rows or groups: comma-separated name prefixes or globs"
    )
    ap.add_argument("--events", type=int, default=None, help="override N (throughput)")
    ap.add_argument("--objects", type=int, default=None, help="override M (sync, memory)")
    ap.add_argument("--profile", default="", help="cProfile each crwatch row into this directory")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="every row once on tiny inputs (300 events, 200 objects, 1,000 for recovery),\n"
        "the working tree, nothing written; exit 1 if a row failed (CI runs this)",
    )
    ap.add_argument(
        "--crwatch",
        default="HEAD",
        metavar="REF",
        help="measure crwatch as committed at REF (default HEAD), or 'worktree' for the\n"
        "installed working tree with its uncommitted edits",
    )
    args = ap.parse_args()
    if args.list:
        for r in ROWS:
            print(f"{r.group:12} {r.name:28} {r.label}")
        return
    if args.smoke:
        args.events, args.objects, args.runs = args.events or 300, args.objects or 200, 1
        args.no_write, args.crwatch = True, "worktree"
    n = args.events or (20_000 if args.quick else 200_000)
    m = args.objects or (10_000 if args.quick else 100_000)
    recovery = 1_000 if args.smoke else 10_000  # recovery: objects cached before the fault
    controller_objects = 200 if args.smoke else 10_000  # controller: objects reconciled
    runs = args.runs or (3 if args.quick else 5)
    config = {
        "events": n,
        "objects": m,
        "recovery_objects": recovery,
        "controller_objects": controller_objects,
        "runs": runs,
        "quick": args.quick,
        "only": args.only,
        "smoke": args.smoke,
    }
    machine = machine_info()
    snapshot_dir = tempfile.TemporaryDirectory(prefix="crwatch-src-")
    global CRWATCH_PATH
    if args.crwatch == "worktree":
        dirty = _git("status", "--porcelain", "src/crwatch")
        machine["crwatch_source"] = "working tree" + (" (uncommitted edits)" if dirty else "")
    else:
        commit = crwatch_snapshot(args.crwatch, Path(snapshot_dir.name))
        CRWATCH_PATH = str(Path(snapshot_dir.name) / "src")
        machine["crwatch_source"] = f"commit {commit} ({args.crwatch})"
    rows = select(args.only)
    outcomes = [Outcome(r, note=r.note if r.target is None else "") for r in rows]
    started = time.perf_counter()
    for group in GROUPS:
        members = [o for o in outcomes if o.row.group == group.name and o.row.target]
        if not members:
            continue
        count = group.count(n, m, recovery, controller_objects)
        flags = [f.format(N=n, M=m, R=recovery, C=controller_objects) for f in group.server]
        print(f"[{group.name}] server {' '.join(flags)}", file=sys.stderr, flush=True)
        serving = stream_server(flags) if group.server else contextlib.nullcontext(("", ""))
        with serving as (base, kubeconfig):
            group_runs = runs if args.smoke else max(runs, group.min_runs)
            for run in range(group_runs):
                # Every other round in reverse order, so that no row always runs right
                # after another (an A/A pair of identical rows came out 0.98x that way).
                for o in members if run % 2 == 0 else members[::-1]:
                    if o.runs and "skipped" in o.runs[-1]:
                        continue  # unavailable: do not retry it every run
                    assert o.row.target is not None
                    profile = ""
                    if args.profile and o.row.role == "crwatch" and run == 0:
                        Path(args.profile).mkdir(parents=True, exist_ok=True)
                        profile = str(Path(args.profile) / f"{o.row.name}.pstats")
                    res = run_child(o.row.target, base, kubeconfig, count, profile)
                    o.runs.append(res)
                    shown = res.get("skipped") or (
                        f"{res[o.row.figure_ms]:,.0f} ms"
                        if o.row.figure_ms
                        else f"{res['count'] / res['wall_s']:,.0f}/s"
                    )
                    print(f"  run {run + 1}/{group_runs} {o.row.name}: {shown}", file=sys.stderr)
        for o in members:
            summarize(o, group)
    snapshot_dir.cleanup()
    add_ratios(outcomes)
    machine["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = table(outcomes, machine, config)
    print(text)
    print(f"\n(total {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.smoke:
        # A peer that is not installed may be skipped; a client that failed may not.
        failed = [
            o for o in outcomes
            if o.status == "skipped"
            and (o.row.role == "crwatch" or not o.runs[0].get("unavailable"))
        ]  # fmt: skip
        for o in failed:
            print(f"FAILED {o.row.name}: {o.note}", file=sys.stderr)
        sys.exit(1 if failed else 0)
    if args.no_write:
        return
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "timestamp": stamp,
        "command": " ".join(shlex.quote(a) for a in ["python", "bench/run.py", *sys.argv[1:]]),
        "machine": machine,
        "config": config,
        "results": [
            {
                "group": o.row.group,
                "name": o.row.name,
                "label": o.row.label,
                "role": o.row.role,
                "status": o.status,
                "note": o.note or o.row.note,
                "median": o.median,
                "ratios": o.ratios,
                "runs": o.runs,
            }
            for o in outcomes
        ],
        "table": text,
    }
    RESULTS.mkdir(exist_ok=True)
    payload = json.dumps(doc, indent=2) + "\n"
    (RESULTS / f"{stamp}.json").write_text(payload)
    (RESULTS / "latest.json").write_text(payload)
    print(f"wrote bench/results/{stamp}.json and bench/results/latest.json", file=sys.stderr)


if __name__ == "__main__":
    main()
