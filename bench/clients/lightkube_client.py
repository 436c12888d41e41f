"""Peer: lightkube's ``AsyncClient.watch`` and ``list`` over a generic namespaced resource."""

from __future__ import annotations

from . import GROUP, NAMESPACE, PLURAL, VERSION, Ctx, Unavailable

try:
    from lightkube import AsyncClient, KubeConfig
    from lightkube.generic_resource import create_namespaced_resource
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise Unavailable(f"lightkube not installed: {exc}") from exc

Widget = create_namespaced_resource(GROUP, VERSION, "Widget", PLURAL)


def _client(ctx: Ctx) -> AsyncClient:
    return AsyncClient(config=KubeConfig.from_file(ctx.kubeconfig), namespace=NAMESPACE)


async def throughput(ctx: Ctx) -> int:
    n = 0
    client = _client(ctx)
    try:
        async for _op, _obj in client.watch(Widget, namespace=NAMESPACE):
            n += 1
            if n >= ctx.count:
                break
    finally:
        await client.close()
    return n


async def paged_list(ctx: Ctx) -> int:
    n = 0
    client = _client(ctx)
    try:
        async for _obj in client.list(Widget, namespace=NAMESPACE, chunk_size=500):
            n += 1
    finally:
        await client.close()
    return n
