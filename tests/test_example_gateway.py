"""The seed scenario, ``examples/openapi_gateway_sync.py``, against FakeApiServer and a gateway.

The gateway is a small aiohttp.web stand-in for an admin API that records every call.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from aiohttp import web

import crwatch
from _support import until
from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parent.parent / "examples" / "openapi_gateway_sync.py"
PER_SECOND = 20.0
BURST = 2
MAX_ITEMS = 5
STALE = "deleted-while-down"  # on the gateway at start, not in the cluster: pruned
INITIAL = 31  # specs at start: six full batches at once, more than the burst


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_gateway_sync", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("openapi_gateway_sync", module)
    spec.loader.exec_module(module)
    return module


class Gateway:
    """A stand-in admin API: ``POST /specs:batch`` applies deletions, then puts."""

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}
        self.calls: list[tuple[float, dict[str, Any]]] = []  # accepted batches of changes
        self.prunes: list[dict[str, Any]] = []  # accepted deletions of stale specs
        self.failed = 0
        self.fail_next = 0
        self.url = ""

    async def batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.fail_next:
            self.fail_next -= 1
            self.failed += 1
            return web.Response(status=503)
        if any(ref["name"] == STALE for ref in body["delete"]):
            self.prunes.append(body)
        else:
            self.calls.append((anyio.current_time(), body))
        for ref in body["delete"]:
            self.specs.pop(f"{ref['namespace']}/{ref['name']}", None)
        for item in body["put"]:
            self.specs[f"{item['namespace']}/{item['name']}"] = item["spec"]
        return web.json_response({"ok": True})

    async def list(self, request: web.Request) -> web.Response:
        refs = [dict(zip(("namespace", "name"), key.split("/"), strict=True)) for key in self.specs]
        return web.json_response(refs)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    state = Gateway()
    app = web.Application()
    app.router.add_post("/specs:batch", state.batch)
    app.router.add_get("/specs", state.list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def server_specs(server: FakeApiServer, rtype: Any) -> dict[str, Any]:
    items = server.list(rtype)
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["spec"] for o in items}


def spec(name: str, version: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.example.com/v1",
        "kind": "OpenAPISpec",
        "metadata": {"name": name},
        "spec": {
            "openapi": "3.0.3",
            "info": {"title": name, "version": f"1.{version}"},
            "paths": {f"/{name}": {"get": {"responses": {"200": {"description": "ok"}}}}},
        },
    }


async def test_gateway_ends_with_exactly_the_servers_specs(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client, gateway: Gateway
) -> None:
    """The example mirrors the cluster's specs onto the gateway in batched, rate-limited calls.

    Initial state, spec changes, deletions and a create-then-delete all converge to exactly
    the server's specs; calls carry at most max_items changes and never exceed
    per_second×t+burst; status-only writes cause no call; a 503 is retried; a spec the
    gateway held but the cluster does not (deleted while the example was down) is pruned.
    """
    example = load_example()
    rtype = fake_apiserver.register_crd(
        group="gateway.example.com",
        version="v1",
        plural="openapispecs",
        kind="OpenAPISpec",
        status_subresource=True,
    )
    for i in range(INITIAL - 1):
        fake_apiserver.create(rtype, spec(f"api{i}", 0), namespace="default")
    fake_apiserver.create(rtype, spec("billing", 0), namespace="payments")
    gateway.fail_next = 1  # the first call fails: the example retries it
    gateway.specs[f"default/{STALE}"] = {"info": {"title": "stale"}}

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: example.sync(
                crwatch_client,
                gateway.url,
                max_items=MAX_ITEMS,
                max_wait=0.05,
                per_second=PER_SECOND,
                burst=BURST,
                retry_initial=0.01,
            )
        )
        await until(lambda: gateway.specs == server_specs(fake_apiserver, rtype))
        assert len(gateway.calls) == math.ceil(INITIAL / MAX_ITEMS)
        # Six full batches were ready at once: the limiter spread them out.
        full = (INITIAL // MAX_ITEMS) - 1
        assert (
            gateway.calls[full][0] - gateway.calls[0][0] >= (full + 1 - BURST) / PER_SECOND - 0.05
        )

        for i in range(0, 12, 2):  # spec changes, several per object
            for version in (1, 2, 3):
                body = {"spec": {"info": {"title": f"api{i}", "version": f"1.{version}"}}}
                fake_apiserver.patch(rtype, f"api{i}", body, namespace="default")
        for i in (1, 3):
            fake_apiserver.delete(rtype, f"api{i}", namespace="default")
        await until(lambda: gateway.specs == server_specs(fake_apiserver, rtype))

        # Created and deleted within one window: the gateway never hears of it.
        fake_apiserver.create(rtype, spec("short-lived", 0), namespace="default")
        fake_apiserver.delete(rtype, "short-lived", namespace="default")
        fake_apiserver.create(rtype, spec("marker", 0), namespace="default")
        await until(lambda: gateway.specs == server_specs(fake_apiserver, rtype))

        calls_before = len(gateway.calls)
        fake_apiserver.patch(
            rtype, "api5", {"status": {"ready": True}}, namespace="default", status=True
        )
        # A spec change after it, seen in order: once the gateway has it, the status write
        # would have caused a call already (or been batched with it).
        body = {"spec": {"info": {"title": "marker", "version": "1.1"}}}
        fake_apiserver.patch(rtype, "marker", body, namespace="default")
        await until(lambda: gateway.specs == server_specs(fake_apiserver, rtype))
        since = [body for _, body in gateway.calls[calls_before:]]
        assert [[item["name"] for item in b["put"]] for b in since] == [["marker"]]
        assert all(b["delete"] == [] for b in since)
        tg.cancel_scope.cancel()

    assert gateway.specs == server_specs(fake_apiserver, rtype)
    assert gateway.failed == 1
    assert gateway.prunes == [{"put": [], "delete": [{"namespace": "default", "name": STALE}]}]
    assert "short-lived" not in str([body for _, body in gateway.calls])
    sizes = [len(body["put"]) + len(body["delete"]) for _, body in gateway.calls]
    assert max(sizes) <= MAX_ITEMS
    assert (
        len(gateway.calls) < INITIAL + 18 + 2 + 4
    )  # batched and coalesced: fewer calls than changes
    times = [t for t, _ in gateway.calls]
    slack = 0.05  # request latency between the limiter's release and the gateway's clock
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= PER_SECOND * (times[j] - times[i] + slack) + BURST
    assert times[-1] - times[0] >= (len(times) - BURST - 1) / PER_SECOND - slack
