"""Memory per object cached by ``crwatch.Informer``, against the same objects as plain dicts.

``python bench/informer_memory.py [--objects 100000] [--runs 1] [run.py flags...]``

The measurement lives in ``bench/run.py``'s memory group (one code path, one table): this
runs ``run.py --only memory`` (the parsed dicts alone, with ``managedFields`` dropped,
``crwatch.watch``, the Informer cache with and without ``crwatch.drop_managed_fields``; each
in a fresh process, RSS after ``gc.collect()`` per object, plus one full ``gc.collect()``
timed before and after ``gc.freeze()``) and prints its table without writing results.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1)
    args, rest = ap.parse_known_args()
    run = Path(__file__).resolve().with_name("run.py")
    cmd = [sys.executable, str(run), "--only", "memory", "--objects", str(args.objects)]
    cmd += ["--runs", str(args.runs), "--no-write", *rest]
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
