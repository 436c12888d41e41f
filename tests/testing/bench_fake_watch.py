"""Measure how many events/s watchers receive from FakeApiServer (not a test; run it).

    python tests/testing/bench_fake_watch.py [N]          # live: N patches while watching
    REPLAY=1 python tests/testing/bench_fake_watch.py N   # replay N stored events
    K=4 python tests/testing/bench_fake_watch.py N        # K watchers at once

Consumers run in separate processes and count lines from ``iter_any()`` chunks, so the
number measures the server (plus, in live mode, the in-process producer).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from crwatch.testing import FakeApiServer

CONSUMER = r"""
import asyncio, sys, time, aiohttp
async def main(url, n, rv):
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        async with s.get(url, params={"watch": "1", "resourceVersion": rv}) as r:
            print("ready", flush=True)
            count, start = 0, None
            async for chunk in r.content.iter_any():
                start = start or time.perf_counter()
                count += chunk.count(b"\n")
                if count >= n:
                    break
            took = time.perf_counter() - start
            print(f"{count} events in {took:.3f}s = {count / took:,.0f} events/s", flush=True)
asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


async def main(n: int) -> None:
    """Run one measurement."""
    replay = bool(os.environ.get("REPLAY"))
    watchers = int(os.environ.get("K", "1"))
    async with FakeApiServer(history_size=n + 10) as server:
        widgets = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        server.create(widgets, {"metadata": {"name": "w"}, "spec": {"n": 0}})
        rv = server.resource_version
        if replay:
            for i in range(1, n + 1):
                server.patch(widgets, "w", {"spec": {"n": i}})
        url = f"{server.url}/apis/example.com/v1/namespaces/default/widgets"
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CONSUMER,
                url,
                str(n),
                str(rv),
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(watchers)
        ]
        for proc in procs:
            assert proc.stdout is not None
            await proc.stdout.readline()
        if not replay:
            started = time.perf_counter()
            for i in range(1, n + 1):
                server.patch(widgets, "w", {"spec": {"n": i}})
                if i % 500 == 0:
                    await asyncio.sleep(0)
            took = time.perf_counter() - started
            print(f"producer: {n} patches in {took:.3f}s = {n / took:,.0f}/s")
        for proc in procs:
            assert proc.stdout is not None
            print("watcher:", (await proc.stdout.readline()).decode().strip())
            await proc.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
