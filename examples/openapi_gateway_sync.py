r"""Push every changed OpenAPISpec custom resource to an API gateway's admin API.

A ``crwatch.Informer`` watches ``openapispecs.v1.gateway.example.com``; one subscriber
mirrors each object's ``spec`` onto the gateway, behind crwatch middlewares:

- ``generation_changed()``: status-only and metadata-only writes cause no call;
- ``batch(max_items=..., max_wait=..., coalesce=True)``: one call carries many changes, and
  an object changed five times in a window is sent once, in its latest state (an object
  created and deleted inside one window is never sent; a deletion of a sent one always is);
- ``rate_limit(per_second=..., burst=...)``: the gateway sees at most that many calls.

The gateway's admin API here is a small, generic one::

    POST /specs:batch   {"put": [{"namespace": ..., "name": ..., "spec": {...}}, ...],
                         "delete": [{"namespace": ..., "name": ...}, ...]}

    GET  /specs         [{"namespace": ..., "name": ...}, ...]

A call that fails (connection error or 5xx) is retried with capped exponential backoff, so
no change is lost while the gateway is down. Once the informer has synced, specs the gateway
holds but the cluster no longer has (deleted while this program was not running) are
deleted too. Run it::

    python examples/openapi_gateway_sync.py --gateway http://127.0.0.1:9080 \
        [--kubeconfig ~/.kube/config] [--namespace default] [--per-second 5] [--burst 10]
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


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    *,
    retry_initial: float = 0.5,
    retry_max: float = 30.0,
) -> Any:
    """Call the gateway and return its JSON answer, retrying failures until it answers."""
    delay = retry_initial
    while True:
        try:
            async with session.request(method, url, json=body) as response:
                if response.status < 500:
                    response.raise_for_status()  # 4xx: our bug, not worth retrying
                    return await response.json()
                reason = f"HTTP {response.status}"
        except aiohttp.ClientConnectionError as exc:
            reason = repr(exc)
        log.warning("gateway call failed (%s); retrying in %.1f s", reason, delay)
        await anyio.sleep(random.uniform(0, delay))  # full jitter
        delay = min(retry_max, delay * 2)


async def push(
    session: aiohttp.ClientSession, gateway: str, batch: crwatch.Batch, *, retry_initial: float
) -> None:
    """POST one batch of changes to the gateway."""
    await call(
        session, "POST", f"{gateway}/specs:batch", batch_body(batch), retry_initial=retry_initial
    )


async def prune(
    session: aiohttp.ClientSession, gateway: str, store: crwatch.Store, *, retry_initial: float
) -> None:
    """Delete the gateway's specs that the cluster does not have (call once synced)."""
    held = await call(session, "GET", f"{gateway}/specs", retry_initial=retry_initial)
    stale = [ref for ref in held if f"{ref['namespace']}/{ref['name']}" not in store]
    if stale:
        log.info("pruning %d specs the cluster no longer has", len(stale))
        body = {"put": [], "delete": stale}
        await call(session, "POST", f"{gateway}/specs:batch", body, retry_initial=retry_initial)


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
    informer = crwatch.Informer(
        client,
        SPECS,
        namespace=namespace,
        transform=crwatch.drop_managed_fields,
        subscriber_errors="stop",  # a batch the gateway refuses (4xx) stops the program
    )
    async with aiohttp.ClientSession() as session:

        async def sync_gateway(batch: crwatch.Batch) -> None:
            log.info("pushing %d changes", len(batch))
            await push(session, gateway, batch, retry_initial=retry_initial)

        informer.subscribe(
            sync_gateway,
            crwatch.generation_changed(),
            crwatch.batch(max_items=max_items, max_wait=max_wait, coalesce=True),
            crwatch.rate_limit(per_second=per_second, burst=burst),
        )
        async with informer:
            await informer.wait_synced()
            await prune(session, gateway, informer.store, retry_initial=retry_initial)
            await anyio.sleep_forever()


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
