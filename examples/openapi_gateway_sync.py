r"""Push every changed OpenAPISpec custom resource to an API gateway's admin API.

Watches ``openapispecs.v1.gateway.example.com`` and mirrors each object's ``spec`` onto the
gateway, through crwatch middlewares:

- ``generation_changed()``: status-only and metadata-only writes cause no call;
- ``batch(max_items=..., max_wait=..., coalesce=True)``: one call carries many changes, and
  an object changed five times in a window is sent once, in its latest state (an object
  created and deleted inside one window is never sent; a deletion of a sent one always is);
- ``rate_limit(per_second=..., burst=...)``: the gateway sees at most that many calls.

The gateway's admin API here is a small, generic one::

    POST /specs:batch   {"put": [{"namespace": ..., "name": ..., "spec": {...}}, ...],
                         "delete": [{"namespace": ..., "name": ...}, ...]}

A call that fails (connection error or 5xx) is retried with capped exponential backoff, so
no change is lost while the gateway is down. Run it::

    python examples/openapi_gateway_sync.py --gateway http://127.0.0.1:9080 \
        [--kubeconfig ~/.kube/config] [--namespace default] [--per-second 5] [--burst 10]

Limitation: a spec deleted while this program was not running stays on the gateway; prune
the gateway against the cluster's list at startup if that matters.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp
import anyio

import crwatch

log = logging.getLogger("openapi_gateway_sync")

SPECS = crwatch.Resource("gateway.example.com", "v1", "openapispecs")


def batch_body(batch: crwatch.Batch) -> dict[str, list[dict[str, Any]]]:
    """Turn a coalesced batch into the gateway's batch request (deletions first)."""
    puts: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for event in batch:
        meta = event.object["metadata"]
        ref = {"namespace": meta.get("namespace", ""), "name": meta["name"]}
        if event.type is crwatch.EventType.DELETED:
            deletes.append(ref)
        else:
            puts.append({**ref, "spec": event.object.get("spec", {})})
    # A batch may hold DELETED then ADDED for one object (deleted and created again): the
    # gateway applies deletions first, then puts, which gives the latest state.
    return {"put": puts, "delete": deletes}


async def push(
    session: aiohttp.ClientSession,
    gateway: str,
    batch: crwatch.Batch,
    *,
    retry_initial: float = 0.5,
    retry_max: float = 30.0,
) -> None:
    """POST one batch to the gateway, retrying failures until it is accepted."""
    body = batch_body(batch)
    delay = retry_initial
    while True:
        try:
            async with session.post(f"{gateway}/specs:batch", json=body) as response:
                if response.status < 500:
                    response.raise_for_status()  # 4xx: our bug, not worth retrying
                    return
                reason = f"HTTP {response.status}"
        except aiohttp.ClientConnectionError as exc:
            reason = repr(exc)
        log.warning("gateway call failed (%s); retrying in %.1f s", reason, delay)
        await anyio.sleep(random.uniform(0, delay))  # full jitter
        delay = min(retry_max, delay * 2)


async def sync(
    client: crwatch.Client,
    gateway: str,
    *,
    namespace: str | None = None,
    max_items: int = 100,
    max_wait: float = 0.5,
    per_second: float = 5.0,
    burst: int = 10,
    retry_initial: float = 0.5,
) -> None:
    """Mirror the OpenAPISpec objects onto the gateway until cancelled."""
    async with (
        aiohttp.ClientSession(raise_for_status=False) as session,
        crwatch.watch(client, SPECS, namespace=namespace) as events,
        crwatch.pipe(
            events,
            crwatch.generation_changed(),
            crwatch.batch(max_items=max_items, max_wait=max_wait, coalesce=True),
            crwatch.rate_limit(per_second=per_second, burst=burst),
        ) as batches,
    ):
        async for batch in batches:
            log.info("pushing %d changes", len(batch))
            await push(session, gateway, batch, retry_initial=retry_initial)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run :func:`sync` until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="the gateway admin API's base URL")
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube")
    parser.add_argument("--namespace", default=None, help="default: all namespaces")
    parser.add_argument("--max-items", type=int, default=100)
    parser.add_argument("--max-wait", type=float, default=0.5)
    parser.add_argument("--per-second", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        async with crwatch.Client.from_kubeconfig(args.kubeconfig) as client:
            await sync(
                client,
                args.gateway.rstrip("/"),
                namespace=args.namespace,
                max_items=args.max_items,
                max_wait=args.max_wait,
                per_second=args.per_second,
                burst=args.burst,
            )

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)  # asyncio: aiohttp needs it


if __name__ == "__main__":
    main()
