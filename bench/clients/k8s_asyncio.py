"""Peer: kubernetes-asyncio's ``Watch`` and paginated ``list_namespaced_custom_object``."""

from __future__ import annotations

from kubernetes_asyncio import client as kc
from kubernetes_asyncio import watch as kw

from . import GROUP, NAMESPACE, PLURAL, VERSION, Ctx

PAGE = 500


async def throughput(ctx: Ctx) -> int:
    n = 0
    async with kc.ApiClient(kc.Configuration(host=ctx.base)) as api:
        crd = kc.CustomObjectsApi(api)
        async with kw.Watch() as w:
            stream = w.stream(crd.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL)
            async for _event in stream:
                n += 1
                if n >= ctx.count:
                    w.stop()
                    break
    return n


async def paged_list(ctx: Ctx) -> int:
    n = 0
    cont = None
    async with kc.ApiClient(kc.Configuration(host=ctx.base)) as api:
        crd = kc.CustomObjectsApi(api)
        while True:
            page = await crd.list_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, limit=PAGE, _continue=cont
            )
            n += len(page["items"])
            cont = page["metadata"].get("continue")
            if not cont:
                return n
