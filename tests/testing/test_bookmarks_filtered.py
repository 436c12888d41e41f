"""Bookmarks carry the RV of changes a watch filtered out (namespace or selector)."""

from __future__ import annotations

import json

import aiohttp
import anyio
import pytest

from crwatch.testing import FakeApiServer


@pytest.mark.anyio
@pytest.mark.parametrize("query", ["", "&labelSelector=tier%3Dedge"])
async def test_bookmark_reports_rv_of_filtered_changes(query: str) -> None:
    """A watch of one namespace (or selector) learns later RVs from bookmarks alone.

    Regression: the fake used to advance the watch's bookmark floor over events it filtered
    out, so such a watch never got a bookmark for them and could only resume from an old RV.
    """
    async with (
        FakeApiServer(bookmark_interval=0.05) as server,
        aiohttp.ClientSession() as session,
    ):
        widgets = server.register_crd(
            group="example.com", version="v1", plural="widgets", kind="Widget"
        )
        start = server.resource_version
        url = (
            f"{server.url}/apis/example.com/v1/namespaces/default/widgets"
            f"?watch=true&allowWatchBookmarks=true&resourceVersion={start}{query}"
        )
        async with session.get(url) as response:
            server.create(widgets, {"metadata": {"name": "x", "namespace": "other"}})
            target = server.resource_version
            with anyio.fail_after(5):
                while True:
                    event = json.loads(await response.content.readline())
                    assert event["type"] == "BOOKMARK", event
                    if int(event["object"]["metadata"]["resourceVersion"]) >= target:
                        break
            assert event["object"]["kind"] == "Widget"
