"""FakeApiServer.close_watches(): the clean end a real server gives on cache re-init."""

from __future__ import annotations

import json

import aiohttp
import anyio
import pytest

from crwatch.testing import FakeApiServer


@pytest.mark.anyio
async def test_close_watches_ends_streams_after_stored_events() -> None:
    """Open watches get every stored event, then a clean EOF; other resources are untouched."""
    async with FakeApiServer() as server, aiohttp.ClientSession() as session:
        widgets = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        server.register_crd(group="example.com", version="v1", plural="gadgets", kind="Gadget")
        start = server.resource_version
        url = f"{server.url}/apis/example.com/v1/widgets?watch=true&resourceVersion={start}"
        other = f"{server.url}/apis/example.com/v1/gadgets?watch=true&resourceVersion={start}"
        async with session.get(url) as response, session.get(other) as untouched:
            server.create(widgets, {"metadata": {"name": "a", "namespace": "default"}})
            assert server.close_watches(widgets) == 1
            with anyio.fail_after(5):
                body = await response.content.read()  # returns only at EOF
            events = [json.loads(line) for line in body.splitlines()]
            assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
                ("ADDED", "a")
            ]
            assert not untouched.content.at_eof()
            assert server.close_watches() == 1  # the gadgets watch
            with anyio.fail_after(5):
                assert await untouched.content.read() == b""
