"""Run one benchmark client in this process and print its measurements as one JSON line.

``python bench/_child.py MODULE:FUNCTION --base URL --count N [--kubeconfig PATH]``

``FUNCTION`` (in ``bench/clients/MODULE.py``) takes a :class:`Ctx` and returns the number of
events or objects it handled (or that and a dict of extra figures); it may be sync or
async. It raises :class:`Unavailable` to be reported as skipped with a reason. Imports
happen before the clock starts; the clock covers connecting, reading and parsing, and stops
when the function returns (less what it reports as ``untimed_wall_s``/``untimed_cpu_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from clients import Ctx, Unavailable  # noqa: E402

Usage = tuple[float, float, int, float, int]  # wall, cpu, peak RSS KiB, system cpu, minor faults


def _usage() -> Usage:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return (
        time.perf_counter(),
        ru.ru_utime + ru.ru_stime,
        ru.ru_maxrss,
        ru.ru_stime,
        ru.ru_minflt,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--base", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--kubeconfig", default="")
    ap.add_argument("--profile", default="", help="write a cProfile .pstats file here")
    args = ap.parse_args()
    mod_name, _, fn_name = args.target.partition(":")
    out: dict[str, Any] = {"target": args.target}
    try:
        fn = getattr(importlib.import_module(f"clients.{mod_name}"), fn_name)
    except Unavailable as exc:
        print(json.dumps({**out, "skipped": str(exc), "unavailable": True}))
        return
    except Exception as exc:
        print(json.dumps({**out, "skipped": f"import failed: {exc!r}"}))
        return
    ctx = Ctx(base=args.base, count=args.count, kubeconfig=args.kubeconfig)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    async def timed() -> tuple[Any, Usage, Usage]:
        start = _usage()
        if profiler:
            profiler.enable()
        result = fn(ctx)
        if inspect.isawaitable(result):
            result = await result
        if profiler:
            profiler.disable()
        return result, start, _usage()

    gc.collect()
    try:
        result, (w0, c0, _, s0, f0), (w1, c1, maxrss, s1, f1) = asyncio.run(timed())
    except Unavailable as exc:
        print(json.dumps({**out, "skipped": str(exc), "unavailable": True}))
        return
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({**out, "skipped": f"failed: {exc!r}"}))
        return
    if profiler:
        profiler.dump_stats(args.profile)
    extra: dict[str, Any] = {}
    if isinstance(result, tuple):
        result, extra = result
    # A client may do work it must not be timed for (``untimed_wall_s``/``untimed_cpu_s``).
    out.update(
        count=int(result),
        wall_s=w1 - w0 - extra.pop("untimed_wall_s", 0.0),
        cpu_s=c1 - c0 - extra.pop("untimed_cpu_s", 0.0),
        peak_rss_kb=maxrss,
        # Untimed work included: the kernel's share, and page faults (see bench/README.md).
        sys_s=s1 - s0,
        minor_faults=f1 - f0,
        **extra,
    )
    if "crwatch" in sys.modules:
        out["crwatch_from"] = str(Path(sys.modules["crwatch"].__file__ or "?").parent)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
