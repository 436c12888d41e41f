"""Independent raw-HTTP helpers for reading the fake server (aiohttp only, no crwatch)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from crwatch.testing import FakeApiServer, ResourceType

WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
ALL_WIDGETS = "/apis/example.com/v1/widgets"


def register_widgets(server: FakeApiServer, **kwargs: Any) -> ResourceType:
    """Register the running example CRD, widgets.example.com (namespaced)."""
    options: dict[str, Any] = {
        "group": "example.com",
        "version": "v1",
        "plural": "widgets",
        "kind": "Widget",
        "namespaced": True,
        "status_subresource": True,
        "selectable_fields": ("spec.color",),
    }
    options.update(kwargs)
    return server.register_crd(**options)


def widget(name: str, **spec: Any) -> dict[str, Any]:
    """Build a Widget body."""
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


class Stream:
    """A watch response read line by line."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def event(self, timeout: float = 3.0) -> dict[str, Any]:
        """Read the next event; fail on EOF or timeout."""
        line = await asyncio.wait_for(self.response.content.readline(), timeout)
        assert line, "stream ended"
        event: dict[str, Any] = orjson.loads(line)
        return event

    async def events(self, n: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Read the next ``n`` events."""
        return [await self.event(timeout) for _ in range(n)]

    async def rest(self, timeout: float = 3.0) -> list[dict[str, Any]]:
        """All remaining events until a clean EOF."""
        raw = await asyncio.wait_for(self.response.content.read(), timeout)
        return [orjson.loads(line) for line in raw.splitlines() if line]

    async def silent(self, seconds: float) -> bool:
        """Tell whether nothing at all arrives for ``seconds``."""
        try:
            await asyncio.wait_for(self.response.content.readany(), seconds)
        except asyncio.TimeoutError:
            return True
        return False


@asynccontextmanager
async def session(server: FakeApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    """Open an aiohttp session with the server's token, if any."""
    headers = {"Authorization": f"Bearer {server.token}"} if server.token else {}
    connector = aiohttp.TCPConnector(ssl=server.ssl_context() or True)
    async with aiohttp.ClientSession(server.url, headers=headers, connector=connector) as http:
        yield http


@asynccontextmanager
async def watch(server: FakeApiServer, path: str = WIDGETS, **params: Any) -> AsyncIterator[Stream]:
    """Open a watch stream on ``path`` with query ``params`` (``watch=true`` added)."""
    query = {"watch": "true", **{k: str(v) for k, v in params.items()}}
    async with session(server) as http, http.get(path, params=query) as response:
        assert response.status == 200, await response.text()
        yield Stream(response)


async def get_json(
    server: FakeApiServer, path: str, params: Mapping[str, Any] | None = None
) -> tuple[int, Any, Mapping[str, str]]:
    """GET and decode (JSON when possible, else text): (status, body, headers)."""
    async with (
        session(server) as http,
        http.get(path, params={k: str(v) for k, v in (params or {}).items()}) as response,
    ):
        raw = await response.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode()
        return response.status, body, response.headers


async def request(
    server: FakeApiServer,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """Send one request with a JSON body; (status, decoded body)."""
    raw_body = None if body is None else orjson.dumps(body)
    # aiohttp warns about large raw-bytes bodies; a file-like object streams them.
    data: Any = io.BytesIO(raw_body) if raw_body and len(raw_body) > 512 * 1024 else raw_body
    async with (
        session(server) as http,
        http.request(method, path, data=data, headers={"Content-Type": content_type}) as response,
    ):
        raw = await response.read()
        try:
            return response.status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return response.status, raw.decode()
