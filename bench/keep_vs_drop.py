"""What keeping parsed objects costs, with no network and the cyclic GC off.

``python bench/keep_vs_drop.py [--objects N]`` parses the benchmark's N watch lines three
ways, each in its own process: dropping each object (what the streaming-sync floor does),
keeping each one in a list (what any cache does), and, for scale, touching as many fresh
pages of anonymous memory as keeping them needed. It prints the time, the minor page faults
and the time per fault. The streaming-sync floor reuses the memory of each object it drops;
a cache needs fresh memory for every object, which the kernel hands out a page fault at a
time.
"""

from __future__ import annotations

import argparse
import gc
import mmap
import resource
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _objects import widget

PAGE = mmap.PAGESIZE


def _usage() -> tuple[float, int]:
    return time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(mode: str, objects: int, touch_bytes: int) -> None:
    """Run one mode in this process and print one line."""
    lines = [orjson.dumps({"type": "ADDED", "object": widget(i, i + 10)}) for i in range(objects)]
    gc.collect()
    gc.disable()
    t0, f0 = _usage()
    if mode == "drop":
        for line in lines:
            orjson.loads(line)
    elif mode == "keep":
        kept = [orjson.loads(line) for line in lines]
        assert len(kept) == objects
    else:
        memory = mmap.mmap(-1, touch_bytes)
        for offset in range(0, touch_bytes, PAGE):
            memory[offset] = 1
    t1, f1 = _usage()
    faults = f1 - f0
    per_fault = f"{(t1 - t0) / faults * 1e6:.2f} µs per fault" if faults > 100 else ""
    print(f"{mode:>5}: {t1 - t0:6.3f} s, {faults:>8,} minor page faults {per_fault}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--mode", choices=["drop", "keep", "touch"], help=argparse.SUPPRESS)
    ap.add_argument("--touch-mb", type=int, default=870, help="fresh memory to touch (MB)")
    args = ap.parse_args()
    if args.mode:
        measure(args.mode, args.objects, args.touch_mb << 20)
        return
    print(f"{args.objects:,} objects, each mode in its own process, cyclic GC off:")
    for mode in ("drop", "keep", "touch"):
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--objects",
                str(args.objects),
                "--touch-mb",
                str(args.touch_mb),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
