"""Fault injection and access control of FakeApiServer, seen by real clients."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from fakeserver_helpers import WIDGETS, get_json, register_widgets, session, watch, widget
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from crwatch.testing import FakeApiServer, Fault

pytestmark = pytest.mark.anyio


def _names(events: list[dict[str, Any]]) -> list[str]:
    return [e["object"]["metadata"]["name"] for e in events]


async def _seed(server: FakeApiServer, n: int = 3) -> None:
    widgets = register_widgets(server)
    for i in range(n):
        server.create(widgets, widget(f"w{i}"))


@pytest.mark.parametrize(
    ("code", "reason"), [(429, "TooManyRequests"), (503, "ServiceUnavailable")]
)
async def test_status_fault_with_retry_after(
    fake_apiserver: FakeApiServer, code: int, reason: str
) -> None:
    """Fault.status answers the code with a Status and Retry-After, once by default."""
    await _seed(fake_apiserver)
    rule = fake_apiserver.faults.add(
        Fault.status(code, retry_after=2), verb="list", resource="widgets"
    )
    status, body, headers = await get_json(fake_apiserver, WIDGETS)
    assert status == code
    assert headers["Retry-After"] == "2"
    assert body["reason"] == reason
    assert body["details"]["retryAfterSeconds"] == 2
    assert rule.fired == 1
    firing = rule.firings[0]
    assert (firing.verb, firing.resource, firing.namespace) == ("list", "widgets", "default")
    assert (await get_json(fake_apiserver, WIDGETS))[0] == 200  # one-shot
    assert rule.fired == 1


async def test_status_500_through_kubernetes_asyncio(
    fake_apiserver: FakeApiServer, k8s_api_client: Any
) -> None:
    """A 500 fault on get surfaces as ApiException(500) in kubernetes-asyncio."""
    await _seed(fake_apiserver)
    fake_apiserver.faults.add(Fault.status(500), verb="get")
    api = client.CustomObjectsApi(k8s_api_client)
    with pytest.raises(ApiException) as err:
        await api.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "w0")
    assert err.value.status == 500
    assert orjson.loads(err.value.body)["reason"] == "InternalError"


async def test_times_and_unlimited(fake_apiserver: FakeApiServer) -> None:
    """times=N fires N times; times=None fires until removed; filters narrow matching."""
    await _seed(fake_apiserver)
    twice = fake_apiserver.faults.add(Fault.status(500), verb="list", times=2)
    codes = [(await get_json(fake_apiserver, WIDGETS))[0] for _ in range(3)]
    assert codes == [500, 500, 200]
    assert twice.exhausted
    forever = fake_apiserver.faults.add(
        Fault.status(503), verb="get", namespace="default", times=None
    )
    other_ns = "/apis/example.com/v1/namespaces/other/widgets/x"
    assert (await get_json(fake_apiserver, other_ns))[0] == 404
    for _ in range(3):
        assert (await get_json(fake_apiserver, f"{WIDGETS}/w0"))[0] == 503
    forever.remove()
    assert (await get_json(fake_apiserver, f"{WIDGETS}/w0"))[0] == 200
    assert forever.fired == 3
    by_path = fake_apiserver.faults.add(Fault.status(500), path="/api/v1/namespaces")
    assert (await get_json(fake_apiserver, WIDGETS))[0] == 200
    assert (await get_json(fake_apiserver, "/api/v1/namespaces/default"))[0] == 500
    assert by_path.fired == 1


async def test_http_410_on_watch(fake_apiserver: FakeApiServer) -> None:
    """Fault.expired answers the next watch with HTTP 410 Expired."""
    await _seed(fake_apiserver)
    fake_apiserver.faults.add(Fault.expired(), verb="watch", resource="widgets")
    status, body, _ = await get_json(fake_apiserver, WIDGETS, {"watch": "1"})
    assert status == 410
    assert body["reason"] == "Expired"
    assert body["code"] == 410


async def test_error_410_event_in_200_stream(fake_apiserver: FakeApiServer) -> None:
    """Fault.expired_event sends ERROR 410 after N events in a 200 stream, then EOF."""
    await _seed(fake_apiserver)
    fake_apiserver.faults.add(Fault.expired_event(after_events=2), verb="watch")
    async with watch(fake_apiserver) as stream:
        events = await stream.rest()
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ERROR"]
    assert events[2]["object"]["code"] == 410
    assert events[2]["object"]["reason"] == "Expired"
    assert events[2]["object"]["kind"] == "Status"


async def test_end_watch_after_n_events(fake_apiserver: FakeApiServer) -> None:
    """Fault.end_after(N) ends the stream with a clean EOF after N events."""
    await _seed(fake_apiserver, 5)
    rule = fake_apiserver.faults.add(Fault.end_after(2), verb="watch", resource="widgets")
    async with watch(fake_apiserver) as stream:
        events = await stream.rest()
        assert stream.response.content.at_eof()
    assert _names(events) == ["w0", "w1"]
    assert rule.fired == 1
    async with watch(fake_apiserver) as stream:  # the next watch is normal
        assert len(await stream.events(5)) == 5


async def test_end_after_live_events(fake_apiserver: FakeApiServer) -> None:
    """end_after counts live events too, not only the initial ones."""
    await _seed(fake_apiserver, 0)
    widgets = fake_apiserver.resource("example.com", "v1", "widgets")
    fake_apiserver.faults.add(Fault.end_after(1), verb="watch")
    async with watch(fake_apiserver, resourceVersion=fake_apiserver.resource_version) as stream:
        fake_apiserver.create(widgets, widget("x"))
        fake_apiserver.create(widgets, widget("y"))
        assert _names(await stream.rest()) == ["x"]


async def test_stall_before_headers_then_resume(fake_apiserver: FakeApiServer) -> None:
    """Fault.stall with no events sends no bytes at all for the duration, then serves."""
    await _seed(fake_apiserver, 1)
    fake_apiserver.faults.add(Fault.stall(0.3), verb="watch")
    loop = asyncio.get_running_loop()
    async with session(fake_apiserver) as http:
        started = loop.time()
        async with http.get(WIDGETS, params={"watch": "1"}) as response:
            assert loop.time() - started >= 0.29
            line = await asyncio.wait_for(response.content.readline(), 2)
            assert orjson.loads(line)["type"] == "ADDED"


async def test_stall_mid_stream_then_close(fake_apiserver: FakeApiServer) -> None:
    """A stall after N events keeps the connection open and silent, then closes it."""
    await _seed(fake_apiserver, 3)
    fake_apiserver.faults.add(Fault.stall(0.3, after_events=1, then="close"), verb="watch")
    async with watch(fake_apiserver) as stream:
        assert (await stream.event())["type"] == "ADDED"
        assert await stream.silent(0.2)
        assert await stream.rest(timeout=2) == []


async def test_stall_before_headers_then_close(fake_apiserver: FakeApiServer) -> None:
    """A stall with then="close" drops the connection without any response."""
    await _seed(fake_apiserver, 1)
    fake_apiserver.faults.add(Fault.stall(0.05, then="close"), verb="list", times=2)
    async with session(fake_apiserver) as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.get(WIDGETS) as response:
                await response.read()


async def test_reset_before_headers(fake_apiserver: FakeApiServer, k8s_api_client: Any) -> None:
    """Fault.reset aborts the connection before any header; clients see a connection error."""
    await _seed(fake_apiserver, 1)
    # aiohttp retries an idempotent request once on a dropped connection: fire twice.
    rule = fake_apiserver.faults.add(Fault.reset(), verb="get", resource="widgets", times=2)
    async with session(fake_apiserver) as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.get(f"{WIDGETS}/w0") as response:
                await response.read()
    assert rule.fired == 2
    api = client.CustomObjectsApi(k8s_api_client)
    got = await api.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "w0")
    assert got["metadata"]["name"] == "w0"


async def test_malformed_line(fake_apiserver: FakeApiServer) -> None:
    """Fault.malformed_line writes a non-JSON line after N events, then carries on."""
    await _seed(fake_apiserver, 2)
    fake_apiserver.faults.add(Fault.malformed_line(after_events=1), verb="watch")
    async with watch(fake_apiserver) as stream:
        content = stream.response.content
        lines = [await asyncio.wait_for(content.readline(), 3) for _ in range(3)]
    assert orjson.loads(lines[0])["type"] == "ADDED"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(lines[1])
    assert orjson.loads(lines[2])["type"] == "ADDED"


async def test_truncated_line(fake_apiserver: FakeApiServer) -> None:
    """Fault.truncated_line writes part of an event's JSON and ends the stream."""
    await _seed(fake_apiserver, 3)
    fake_apiserver.faults.add(Fault.truncated_line(after_events=1), verb="watch")
    async with watch(fake_apiserver) as stream:
        raw = await asyncio.wait_for(stream.response.content.read(), 3)
    first, rest = raw.split(b"\n", 1)
    assert orjson.loads(first)["type"] == "ADDED"
    assert rest
    assert not rest.endswith(b"\n")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(rest)


async def test_slow_writer(fake_apiserver: FakeApiServer) -> None:
    """Fault.slow delays every event by the given time."""
    await _seed(fake_apiserver, 3)
    fake_apiserver.faults.add(Fault.slow(0.1), verb="watch")
    loop = asyncio.get_running_loop()
    async with watch(fake_apiserver) as stream:
        started = loop.time()
        await stream.events(3)
        assert loop.time() - started >= 0.28


async def test_stream_faults_do_not_fire_on_lists(fake_apiserver: FakeApiServer) -> None:
    """A stream fault without a verb waits for a watch and leaves lists alone."""
    await _seed(fake_apiserver, 2)
    rule = fake_apiserver.faults.add(Fault.end_after(1))
    assert (await get_json(fake_apiserver, WIDGETS))[0] == 200
    assert rule.fired == 0
    async with watch(fake_apiserver) as stream:
        assert len(await stream.rest()) == 1
    assert rule.fired == 1


async def test_token_auth_401(tmp_path: Any) -> None:
    """With a token, missing or wrong credentials get the 401 Status; the right one works."""
    async with FakeApiServer(token="tok-123") as server:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer nope"}):
                async with http.get(server.url + "/api/v1/namespaces", headers=headers) as r:
                    assert r.status == 401
                    assert await r.json() == {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": "Unauthorized",
                        "reason": "Unauthorized",
                        "code": 401,
                    }
        assert (await get_json(server, "/api/v1/namespaces"))[0] == 200


async def test_deny_rule_403(fake_apiserver: FakeApiServer) -> None:
    """deny() answers 403 with the RBAC-style Forbidden Status until removed."""
    await _seed(fake_apiserver, 1)
    rule = fake_apiserver.deny(verb="watch", resource="widgets")
    status, body, headers = await get_json(fake_apiserver, WIDGETS, {"watch": "1"})
    assert status == 403
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'widgets.example.com is forbidden: User "system:anonymous" cannot watch '
        'resource "widgets" in API group "example.com" in the namespace "default"',
        "reason": "Forbidden",
        "details": {"group": "example.com", "kind": "widgets"},
        "code": 403,
    }
    assert (await get_json(fake_apiserver, WIDGETS))[0] == 200  # list is still allowed
    rule.remove()
    async with watch(fake_apiserver) as stream:
        assert (await stream.event())["type"] == "ADDED"


async def test_deny_cluster_scope_and_named(fake_apiserver: FakeApiServer) -> None:
    """Forbidden messages say "at the cluster scope" and name the object when there is one."""
    await _seed(fake_apiserver, 1)
    fake_apiserver.deny(resource="widgets", namespace="")
    status, body, _ = await get_json(fake_apiserver, "/apis/example.com/v1/widgets")
    assert status == 403
    assert body["message"].endswith('in API group "example.com" at the cluster scope')
    fake_apiserver.deny(verb="get", group="example.com")
    status, body, _ = await get_json(fake_apiserver, f"{WIDGETS}/w0")
    assert status == 403
    assert body["message"].startswith('widgets.example.com "w0" is forbidden: User')
    assert body["details"]["name"] == "w0"
    fake_apiserver.deny(verb="get", resource="gadgets")  # authz before routing
    status, _, _ = await get_json(fake_apiserver, "/apis/example.com/v1/namespaces/x/gadgets/y")
    assert status == 403
