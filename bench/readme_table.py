"""Print the performance tables of bench/RESULTS.md from a results file (default: the latest run).

``python bench/readme_table.py [bench/results/<stamp>.json]`` prints Markdown: a sentence
naming the machine, the commit and the runs, then one table of the rows users compare. The
figures are copied from the JSON that ``bench/run.py`` wrote, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: The benchmark object's JSON size (bench/_objects.py's Widget), for the memory targets.
JSON_BYTES = 1_949

#: (section title, ratio column meaning, [(row name, label), ...]); "-" rows are skipped.
SECTIONS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("**Throughput**, one watch stream of {N} ~2 KB events", "", [
        ("floor", "floor: aiohttp `readline()` + `orjson.loads`"),
        ("floor-kept", "the floor, newest object per key kept in a dict"),
        ("crwatch-watch", "`crwatch.watch`"),
        ("crwatch-watch-reading", "`crwatch.watch`, the consumer reading every object"),
        ("crwatch-watch-objects", '`crwatch.watch(cache="objects")`, reading every object'),
        ("crwatch-informer", "`crwatch.Informer`, cache + 1 callback reading every object"),
        ("crwatch-informer-objects", '`crwatch.Informer(cache="objects")`, the same'),
        ("floor-metadata", "the floor over the metadata-only stream"),
        ("crwatch-informer-metadata", "`crwatch.Informer(metadata_only=True)`"),
        ("k8s-asyncio", "kubernetes-asyncio `Watch().stream`"),
        ("lightkube", "lightkube `AsyncClient.watch`"),
    ]),
    ("**Initial sync**, {M} objects, paginated list (500/page)",
     "×: the floor's time / this row's", [
        ("floor-paged", "floor: GET pages + orjson, objects dropped"),
        ("floor-paged-kept", "the same, kept in a dict"),
        ("floor-paged-kept-nogc", "the same, kept, cyclic GC off"),
        ("crwatch-informer-paged", "`Informer.wait_synced()` (compact cache, no freeze)"),
        ("crwatch-informer-paged-freeze", '`Informer(gc_freeze="list")`'),
        ("crwatch-informer-paged-objects", '`Informer(cache="objects", gc_freeze="list")`'),
        ("crwatch-informer-paged-keep", '`Informer(cache="objects", gc_freeze="keep")`'),
        ("crwatch-informer-paged-off", '`Informer(cache="objects", gc_freeze="off")`'),
        ("k8s-asyncio-paged", "kubernetes-asyncio list"),
        ("lightkube-paged", "lightkube list"),
    ]),
    ("**Initial sync**, {M} objects, streaming list", "×: the floor's time / this row's", [
        ("floor-stream", "floor: readline + orjson, objects dropped"),
        ("floor-stream-kept", "the same, kept in a dict"),
        ("floor-stream-kept-nogc", "the same, kept, cyclic GC off"),
        ("crwatch-informer-stream", "`Informer.wait_synced()` (compact cache, no freeze)"),
        ("crwatch-informer-stream-freeze", '`Informer(gc_freeze="list")`'),
        ("crwatch-informer-stream-objects", '`Informer(cache="objects", gc_freeze="list")`'),
        ("crwatch-informer-stream-keep", '`Informer(cache="objects", gc_freeze="keep")`'),
        ("crwatch-informer-stream-off", '`Informer(cache="objects", gc_freeze="off")`'),
    ]),
    ("**Memory** per cached object, {M} objects", "×: bytes against the parsed dicts", [
        ("memory-dicts", "parsed dicts alone"),
        ("memory-no-managed-fields", "parsed dicts, `managedFields` dropped"),
        ("memory-informer", "Informer cache (compact)"),
        ("memory-informer-objects", 'Informer cache, `cache="objects"`'),
        ("memory-informer-drop-mf", "Informer cache, `transform=crwatch.drop_managed_fields`"),
        ("memory-informer-metadata", "Informer cache, `metadata_only=True`"),
    ]),
    ("**Fan-out**, one Informer, {N} events", "×: against 1 subscriber", [
        ("fanout-1", "1 no-op callback subscriber"),
        ("fanout-10", "10 subscribers"),
        ("fanout-100", "100 subscribers"),
        ("fanout-9", "9 subscribers"),
        ("fanout-slow", "9 subscribers + 1 sleeping 1 ms per event: the 9's rate"),
        ("fanout-stuck", "9 subscribers + 1 stuck in its first call: the 9's rate"),
    ]),
    ("**Recovery**, one Informer, {R} objects", "", [
        ("recovery-drop", "clean EOF → first new event (resume from the last resourceVersion)"),
        ("recovery-410", "410 Expired → cache complete again (default backoff {backoff_ms:.0f} ms"
         " + relist {relist_ms:.0f} ms, medians)"),
    ]),
    ("**Work queue**, {N} keys added in bursts of 100, 4 workers, no-op reconcile", "", [
        ("queue-floor", "floor: a bare `asyncio.Queue`"),
        ("queue-crwatch", "`crwatch.WorkQueue` (dedup, processing set, histograms)"),
    ]),
    ("**Controller**, {C} objects: start → every key reconciled once",
     "×: the floor's time / this row's", [
        ("controller-floor", "floor: the informer's own `wait_synced()`"),
        ("controller-crwatch", "`crwatch.Controller`, 4 workers, no-op reconcile"),
    ]),
]  # fmt: skip


def _figure(res: dict[str, Any]) -> str:
    med = res["median"]
    if "recovery_ms" in med:
        return f"{med['recovery_ms']:.0f} ms"
    if "bytes_per_object" in med:
        return f"{med['bytes_per_object'] / 1024:.2f} KiB"
    if res["group"].startswith("sync") or res["group"] == "controller":
        return f"{med['wall_s']:.2f} s"
    if res["group"] == "queue":
        return f"{med['rate_per_s'] / 1000:.1f}k keys/s"
    return f"{med['rate_per_s'] / 1000:.1f}k events/s"


def render(doc: dict[str, Any]) -> str:
    """Return the Markdown for one results document."""
    by_name = {r["name"]: r for r in doc["results"]}
    cfg, machine = doc["config"], doc["machine"]
    sizes = {
        "N": f"{cfg['events']:,}",
        "M": f"{cfg['objects']:,}",
        "R": f"{cfg.get('recovery_objects', 10_000):,}",
        "C": f"{cfg.get('controller_objects', 10_000):,}",
    }
    source = machine.get("crwatch_source", "?")
    lines = [
        f"Measured with `{doc['command']}` on {machine['cpu_model']}, {machine['cores']} cores"
        f" shared with other work, CPython {machine['python']}, loopback; crwatch at"
        f" {source}, median of {cfg['runs']} runs per row (recovery: 9), each client in its"
        f" own process, run {doc['timestamp']}. The whole table (CPU per item, peak RSS,"
        " spread, every ratio) is in [`bench/results/latest.json`](results/latest.json);"
        " how it measures is in [`bench/README.md`](README.md).",
        "",
        "| | median | × |",
        "| --- | --- | --- |",
    ]
    for title, ratio, rows in SECTIONS:
        head = title.format(**sizes)
        lines.append(f"| {head}{f' ({ratio})' if ratio else ''} | | |")
        for name, label in rows:
            res = by_name.get(name)
            if res is None or res["status"] != "ok":
                continue
            ratio_value = res["ratios"].get("floor")
            shown = "1×" if res["role"] == "floor" else f"{ratio_value:.2f}×" if ratio_value else ""
            lines.append(f"| {label.format(**res['median'])} | {_figure(res)} | {shown} |")
    lines += ["", *targets(by_name)]
    return "\n".join(lines)


def _spread(by_name: dict[str, dict[str, Any]], name: str) -> float:
    return float(by_name[name]["median"].get("rate_spread_pct", 0.0)) / 100


def targets(by_name: dict[str, dict[str, Any]]) -> list[str]:
    """Return a Markdown table of the issues' targets against this run's medians."""

    def med(name: str, key: str) -> float:
        res = by_name[name]
        if res["status"] != "ok":
            raise KeyError(name)
        return float(res["median"][key])

    def rate(name: str) -> float:
        return med(name, "rate_per_s")

    def wall(name: str) -> float:
        return med(name, "wall_s")

    def per_obj(name: str) -> float:
        return med(name, "bytes_per_object")

    # (target, value, met, the bound; for "does not drop", the rows whose spread is noise)
    Check = tuple[
        str, Callable[[], float], Callable[[float], bool], Callable[[], str], tuple[str, ...]
    ]
    checks: list[Check] = [
        ("`crwatch.watch` ≥ 0.8× the floor's events/s",
         lambda: rate("crwatch-watch") / rate("floor"), lambda x: x >= 0.8,
         lambda: f"{rate('crwatch-watch') / rate('floor-kept'):.2f}× the floor keeping a cache",
         ()),
        ("Informer + 1 callback ≥ 0.7× the floor",
         lambda: rate("crwatch-informer") / rate("floor"), lambda x: x >= 0.7,
         lambda: f"{rate('crwatch-informer') / rate('floor-kept'):.2f}× the floor keeping a"
         " cache", ()),
        ("`crwatch.watch` ≥ 4× kubernetes-asyncio's `Watch`",
         lambda: rate("crwatch-watch") / rate("k8s-asyncio"), lambda x: x >= 4, str, ()),
        ("paginated sync ≤ 1.3× the floor's time",
         lambda: wall("crwatch-informer-paged") / wall("floor-paged"), lambda x: x <= 1.3,
         lambda: f"{wall('crwatch-informer-paged') / wall('floor-paged-kept-nogc'):.2f}× the"
         " floor keeping the objects, GC off", ()),
        ("streaming sync ≤ 1.3× the floor's time",
         lambda: wall("crwatch-informer-stream") / wall("floor-stream"), lambda x: x <= 1.3,
         lambda: f"{wall('crwatch-informer-stream') / wall('floor-stream-kept-nogc'):.2f}× the"
         " floor keeping the objects, GC off", ()),
        ("`cache=\"objects\"`: bytes per object ≤ 1.1× the parsed dicts",
         lambda: per_obj("memory-informer-objects") / per_obj("memory-dicts"),
         lambda x: x <= 1.1, str, ()),
        ("… and smaller with `drop_managed_fields`",
         lambda: per_obj("memory-informer-drop-mf") / per_obj("memory-dicts"), lambda x: x < 1,
         str, ()),
        ("`crwatch.watch`, reading every object, ≥ 0.9× the floor (issue 13)",
         lambda: rate("crwatch-watch-reading") / rate("floor"), lambda x: x >= 0.9,
         lambda: f"{rate('crwatch-watch-objects') / rate('floor'):.2f}× with"
         ' `cache="objects"`', ()),
        ("Informer + 1 callback reading every object ≥ 0.85× the floor (issue 13)",
         lambda: rate("crwatch-informer") / rate("floor"), lambda x: x >= 0.85,
         lambda: f"{rate('crwatch-informer-objects') / rate('floor'):.2f}× with"
         ' `cache="objects"`', ()),
        ("metadata-only Informer ≥ 2× the floor's events/s on whole objects (issue 13)",
         lambda: rate("crwatch-informer-metadata") / rate("floor"), lambda x: x >= 2,
         lambda: f"{rate('floor-metadata') / rate('floor'):.2f}× for the floor's own loop"
         " over the metadata stream", ()),
        ("compact cache: bytes per object ≤ 1.3× the object's JSON (issue 13)",
         lambda: per_obj("memory-informer") / JSON_BYTES, lambda x: x <= 1.3,
         lambda: f"RSS, allocator fragmentation included; JSON {JSON_BYTES:,} B", ()),
        ("metadata-only cache ≤ 0.6 KiB per object (issue 13)",
         lambda: per_obj("memory-informer-metadata") / 614.4, lambda x: x <= 1,
         lambda: f"{per_obj('memory-informer-metadata'):,.0f} B: the object's metadata"
         " alone is ~1.1 KB of JSON", ()),
        ("paginated sync ≤ 1.2× the floor's time, no `gc.freeze` (issue 13)",
         lambda: wall("crwatch-informer-paged") / wall("floor-paged"), lambda x: x <= 1.2,
         str, ()),
        ("streaming sync ≤ 1.2× the floor's time, no `gc.freeze` (issue 13)",
         lambda: wall("crwatch-informer-stream") / wall("floor-stream"), lambda x: x <= 1.2,
         lambda: f"{wall('crwatch-informer-stream') / wall('floor-stream-kept-nogc'):.2f}× the"
         " floor keeping the objects, GC off", ()),
        ("100 subscribers ≥ 0.6× one subscriber's events/s (issue 13)",
         lambda: rate("fanout-100") / rate("fanout-1"), lambda x: x >= 0.6, str, ()),
        ("10 subscribers ≥ 0.75× one subscriber's events/s",
         lambda: rate("fanout-10") / rate("fanout-1"), lambda x: x >= 0.75, str, ()),
        ("9 fast subscribers beside a slow one: their rate does not drop",
         lambda: rate("fanout-slow") / rate("fanout-9"), lambda x: x >= 1, str,
         ("fanout-9", "fanout-slow")),
        ("… beside one stuck in its first call",
         lambda: rate("fanout-stuck") / rate("fanout-9"), lambda x: x >= 1, str,
         ("fanout-9", "fanout-stuck")),
        ("work queue ≥ 0.5× a bare `asyncio.Queue` loop's keys/s (issue 12)",
         lambda: rate("queue-crwatch") / rate("queue-floor"), lambda x: x >= 0.5, str, ()),
        ("controller's first pass ≤ 1.3× the informer's sync time (issue 12)",
         lambda: wall("controller-crwatch") / wall("controller-floor"), lambda x: x <= 1.3,
         str, ()),
    ]  # fmt: skip
    out = ["| target | this run | met | against the bound |", "| --- | --- | --- | --- |"]
    for target, value_of, ok, bound_of, noise in checks:
        try:
            value = value_of()
        except KeyError:
            continue  # a row this run did not measure
        try:
            bound = bound_of()
        except KeyError:
            bound = ""
        met = "yes" if ok(value) else "no"
        if met == "no" and noise:
            # "Does not drop": a difference inside both rows' spread is noise (bench/README).
            spread = max(_spread(by_name, name) for name in noise)
            if 1 - value < spread:
                met = f"within the spread (±{spread:.0%})"
        out.append(f"| {target} | {value:.2f}× | {met} | {bound} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", nargs="?", default=str(HERE / "results" / "latest.json"))
    args = ap.parse_args()
    print(render(json.loads(Path(args.results).read_text())))


if __name__ == "__main__":
    main()
