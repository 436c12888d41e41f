"""Resource names resolved through FakeApiServer's discovery endpoints, over HTTP."""

from __future__ import annotations

import contextlib
import pickle
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

import crwatch
from crwatch.testing import FakeApiServer

pytestmark = pytest.mark.anyio

_AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@pytest.fixture(params=[True, False], ids=["aggregated", "legacy"])
def fake_apiserver_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every test runs against a server with aggregated discovery and one without it."""
    return {"bookmark_interval": 0.05, "aggregated_discovery": request.param}


async def test_every_spelling_resolves_to_the_served_resource(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client
) -> None:
    """Plural, singular, kind in any case, short name and the qualified forms agree."""
    fake_apiserver.register_crd(
        group="example.com", version="v1", plural="widgets", kind="Widget", short_names=["wd"]
    )
    expected = crwatch.Resource("example.com", "v1", "widgets", kind="Widget", namespaced=True)
    for name in (
        "widgets",
        "widget",
        "Widget",
        "WIDGETS",
        "wd",
        "widgets.example.com",
        "widget.example.com",
        "Widget.example.com",
        "widgets.v1.example.com",
        "example.com/v1/widgets",
    ):
        resource = await crwatch_client.resource(name)
        assert resource == expected, name
        assert (resource.kind, resource.namespaced) == ("Widget", True), name
    found = await crwatch_client.discovery.lookup("wd")
    assert found.short_names == ("wd",)
    assert found.singular == "widget"
    assert found.watchable
    assert {"list", "watch", "patch"} <= found.verbs
    assert str(found) == "widgets.v1.example.com"


async def test_core_and_cluster_scoped_types(crwatch_client: crwatch.Client) -> None:
    """Core types resolve by plural, short name and the version forms; scope is reported.

    So do built-in groups' types, with their categories.
    """
    configmaps = crwatch.Resource("", "v1", "configmaps", kind="ConfigMap", namespaced=True)
    for name in ("configmaps", "cm", "ConfigMap", "configmaps.v1", "v1/configmaps"):
        assert await crwatch_client.resource(name) == configmaps, name
    namespaces = await crwatch_client.resource("ns")
    assert (namespaces.plural, namespaces.namespaced) == ("namespaces", False)
    crds = await crwatch_client.discovery.lookup("crd")
    assert str(crds) == "customresourcedefinitions.v1.apiextensions.k8s.io"
    assert (crds.namespaced, crds.categories) == (False, ("api-extensions",))


async def test_the_core_group_wins_over_others(crwatch_client: crwatch.Client) -> None:
    """``events`` (served by core v1 and events.k8s.io) is the core type, as in kubectl."""
    for name in ("events", "event", "Event", "ev"):
        assert (await crwatch_client.resource(name)).group == "", name
    named = await crwatch_client.resource("events.events.k8s.io")
    assert (named.group, named.version) == ("events.k8s.io", "v1")


async def test_preferred_version_first_else_the_version_that_serves_it(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client
) -> None:
    """A bare name gets the group's preferred version; a named version is kept.

    A type served only in a non-preferred version of its group still resolves, to it.
    """
    fake_apiserver.register_crd(
        group="example.com", version=["v1beta1", "v1"], plural="widgets", kind="Widget"
    )
    fake_apiserver.register_crd(
        group="example.com", version="v1alpha1", plural="gadgets", kind="Gadget"
    )
    preferred = await crwatch_client.discovery.lookup("widgets")
    assert (preferred.resource.version, preferred.preferred) == ("v1", True)
    assert (await crwatch_client.resource("widgets.v1beta1.example.com")).version == "v1beta1"
    assert (await crwatch_client.resource("example.com/v1beta1/widgets")).version == "v1beta1"
    gadgets = await crwatch_client.discovery.lookup("gadgets")
    assert (gadgets.resource.version, gadgets.preferred) == ("v1alpha1", False)
    with pytest.raises(crwatch.UnknownResourceError):
        await crwatch_client.resource("example.com/v1/gadgets")


async def test_several_groups_are_ambiguous_until_one_is_named(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client
) -> None:
    """A plural served by two non-core groups is refused with both candidates listed."""
    for group in ("b.example.com", "a.example.com"):
        fake_apiserver.register_crd(group=group, version="v1", plural="widgets", kind="Widget")
    with pytest.raises(crwatch.AmbiguousResourceError) as caught:
        await crwatch_client.resource("widgets")
    err = caught.value
    assert isinstance(err, LookupError)
    assert err.name == "widgets"
    assert sorted(err.candidates) == ["widgets.v1.a.example.com", "widgets.v1.b.example.com"]
    assert "widgets.v1.a.example.com" in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.candidates, str(copy)) == (type(err), err.candidates, str(err))
    assert (await crwatch_client.resource("widgets.a.example.com")).group == "a.example.com"


async def test_a_resource_name_beats_another_types_short_name(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client
) -> None:
    """``dbs`` is the type named dbs, not the one whose short name is dbs."""
    fake_apiserver.register_crd(group="a.io", version="v1", plural="dbs", kind="Db")
    fake_apiserver.register_crd(
        group="b.io", version="v1", plural="databases", kind="Database", short_names=["dbs"]
    )
    assert (await crwatch_client.resource("dbs")).group == "a.io"
    assert (await crwatch_client.resource("dbs.b.io")).plural == "databases"


async def test_cached_then_refreshed_on_a_miss(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client
) -> None:
    """A hit costs no request; a CRD created after the first lookup is found on a miss.

    With aggregated discovery the whole catalogue is two requests (``/api``, ``/apis``);
    without it, one more per group/version that had to be read.
    """
    fake_apiserver.register_crd(group="example.com", version="v1", plural="widgets", kind="W")
    discovery = crwatch_client.discovery
    await discovery.lookup("widgets")
    first = discovery.statistics()
    assert first.aggregated is fake_apiserver.aggregated_discovery
    if fake_apiserver.aggregated_discovery:
        assert first.requests == 2
    else:
        assert first.requests >= 3  # /api, /apis, then the group/version documents
    await crwatch_client.resource("widgets.example.com")
    assert discovery.statistics().requests == first.requests
    assert discovery.statistics().lookups == 2

    fake_apiserver.register_crd(group="example.com", version="v1", plural="gadgets", kind="G")
    assert (await crwatch_client.resource("gadgets")).plural == "gadgets"
    after = discovery.statistics()
    assert after.refreshes == 1
    assert after.requests > first.requests
    if fake_apiserver.aggregated_discovery:
        assert after.requests == 4
    assert after.resources > first.resources
    assert after.unavailable == ()


async def test_unknown_name_is_a_typed_error_after_one_refresh(
    crwatch_client: crwatch.Client,
) -> None:
    """An unknown type says what kubectl says, after reading discovery again once."""
    await crwatch_client.resource("configmaps")
    with pytest.raises(crwatch.UnknownResourceError) as caught:
        await crwatch_client.resource("widgets.example.com")
    assert str(caught.value) == 'the server doesn\'t have a resource type "widgets.example.com"'
    assert isinstance(caught.value, crwatch.DiscoveryError)
    assert crwatch_client.discovery.statistics().refreshes == 1


async def test_the_cache_is_shared_by_clients_over_one_api_client(
    fake_apiserver: FakeApiServer, k8s_api_client: object
) -> None:
    """Two Clients borrowing one ApiClient read discovery once; invalidate() forgets it."""
    fake_apiserver.register_crd(group="example.com", version="v1", plural="widgets", kind="W")
    one, two = crwatch.Client(k8s_api_client), crwatch.Client(k8s_api_client)
    await one.resource("widgets")
    requests = one.discovery.statistics().requests
    await two.resource("widgets")
    assert two.discovery.statistics().requests == requests
    two.discovery.invalidate()
    assert one.discovery.statistics().groups == 0
    await one.resource("widgets")
    assert one.discovery.statistics().requests > requests


async def test_resources_lists_every_served_type(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client
) -> None:
    """``resources()`` has core types first and every served version, no subresources."""
    fake_apiserver.register_crd(
        group="example.com",
        version=["v1", "v2"],
        plural="widgets",
        kind="Widget",
        status_subresource=True,
    )
    everything = await crwatch_client.discovery.resources()
    names = [str(r) for r in everything]
    assert names[0].count(".") == 1  # core first: plural.v1
    assert {"widgets.v2.example.com", "widgets.v1.example.com"} <= set(names)
    assert not [n for n in names if "/" in n]
    assert crwatch_client.discovery.statistics().groups >= 3


async def test_discovery_refused_is_an_auth_error(tmp_path: Path) -> None:
    """A wrong token makes the lookup fail with UnauthorizedError, not "unknown type"."""
    async with FakeApiServer(token="right-token") as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        kubeconfig.write_text(kubeconfig.read_text().replace("right-token", "wrong-token"))
        async with crwatch.Client.from_kubeconfig(kubeconfig) as client:
            with pytest.raises(crwatch.UnauthorizedError):
                await client.resource("configmaps")


async def test_an_unconnected_client_has_no_discovery(tmp_path: Path) -> None:
    """Discovery needs a connection: before ``async with`` it is a clear error."""
    async with FakeApiServer() as server:
        client = crwatch.Client.from_kubeconfig(server.kubeconfig(tmp_path / "kubeconfig"))
        with pytest.raises(crwatch.InvalidOptionError, match="async with"):
            await client.resource("configmaps")


@pytest.mark.parametrize(
    "name",
    ["", "  ", "a b", "a..b", ".a", "a/b", "a/v1/", "x/y/z", "a/b/c/d", "/v1/pods"],
)
async def test_unparsable_names_are_refused_before_any_request(
    crwatch_client: crwatch.Client, name: str
) -> None:
    """Malformed names raise InvalidOptionError and send nothing to the server."""
    with pytest.raises(crwatch.InvalidOptionError):
        await crwatch_client.resource(name)
    assert crwatch_client.discovery.statistics().requests == 0


@given(
    plural=st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True),
    group=st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True),
    version=st.sampled_from(["v1", "v2", "v1beta1", "v3alpha2"]),
)
def test_every_qualified_form_reads_back_the_same_parts(
    plural: str, group: str, version: str
) -> None:
    """``p.v.g`` and ``g/v/p`` name the same type first; ``p.g`` names any version of g."""
    from crwatch._discovery import _Query, parse_name

    exact = _Query(plural, group, version)
    assert parse_name(f"{plural}.{version}.{group}")[0] == exact
    assert parse_name(f"{group}/{version}/{plural}") == (exact,)
    assert parse_name(f"{plural.upper()}.{group}")[0] == _Query(plural, group)


@contextlib.asynccontextmanager
async def _proxy(
    server: FakeApiServer,
    tmp_path: Path,
    rewrite: Callable[[str, Any], web.StreamResponse | None],
) -> AsyncIterator[Path]:
    """Put a pass-through proxy in front of ``server``; yield a kubeconfig pointing at it.

    ``rewrite(path, body)`` may answer a discovery request itself (``body`` is the server's
    JSON answer); ``None`` passes the server's answer through, headers and all.
    """
    async with aiohttp.ClientSession() as session:

        async def proxy(request: web.Request) -> web.StreamResponse:
            headers = {"Accept": request.headers.get("Accept", "*/*")}
            async with session.get(server.url + request.path_qs, headers=headers) as upstream:
                body = await upstream.read()
                content_type = upstream.headers.get("Content-Type", "")
            replaced = rewrite(request.path, orjson.loads(body) if body[:1] == b"{" else None)
            if replaced is not None:
                return replaced
            return web.Response(
                body=body, status=upstream.status, headers={"Content-Type": content_type}
            )

        app = web.Application()
        app.router.add_get("/{tail:.*}", proxy)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
            kubeconfig.write_text(
                kubeconfig.read_text().replace(server.url, f"http://127.0.0.1:{port}")
            )
            yield kubeconfig
        finally:
            await runner.cleanup()


async def test_a_group_that_cannot_answer_hides_only_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A group/version answering 503 is skipped (with a warning), not fatal to others.

    It is not asked again on a hit, and is asked again after a miss: once it answers, its
    types resolve. The 503 comes from a pass-through proxy in front of FakeApiServer (legacy
    discovery), as an aggregated API whose backend is down answers.
    """
    down = True

    def rewrite(path: str, body: Any) -> web.StreamResponse | None:
        if down and path == "/apis/broken.io/v1":
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
            status |= {"code": 503, "reason": "ServiceUnavailable", "message": "no backend"}
            return web.json_response(status, status=503)
        return None

    async with FakeApiServer(aggregated_discovery=False) as server:
        server.register_crd(group="example.com", version="v1", plural="widgets", kind="Widget")
        server.register_crd(group="broken.io", version="v1", plural="gizmos", kind="Gizmo")
        async with (
            _proxy(server, tmp_path, rewrite) as kubeconfig,
            crwatch.Client.from_kubeconfig(kubeconfig) as client,
        ):
            discovery = client.discovery
            with caplog.at_level("WARNING", logger="crwatch"):
                assert (await client.resource("widgets")).group == "example.com"
            assert discovery.statistics().unavailable == ("broken.io/v1",)
            assert "broken.io/v1" in caplog.text
            requests = discovery.statistics().requests
            await client.resource("widget")
            assert discovery.statistics().requests == requests  # a hit asks nobody

            with pytest.raises(crwatch.UnknownResourceError):
                await client.resource("gizmos")
            down = False
            assert (await client.resource("gizmos")).group == "broken.io"
            assert discovery.statistics().unavailable == ()


async def test_a_stale_group_in_aggregated_discovery_hides_only_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A group/version marked ``Stale`` in aggregated discovery is unavailable, not trusted.

    Its types do not resolve while it is stale (the server could not reach the API behind
    it); the others do, from the same two requests; once fresh, a miss finds it.
    """
    stale = True

    def rewrite(path: str, body: Any) -> web.StreamResponse | None:
        if path != "/apis" or not stale or body.get("kind") != "APIGroupDiscoveryList":
            return None
        for item in body["items"]:
            if item["metadata"].get("name") == "broken.io":
                item["versions"][0]["freshness"] = "Stale"
        return web.Response(
            body=orjson.dumps(body),
            headers={"Content-Type": _AGGREGATED_V2},
        )

    async with FakeApiServer() as server:
        server.register_crd(group="example.com", version="v1", plural="widgets", kind="Widget")
        server.register_crd(group="broken.io", version="v1", plural="gizmos", kind="Gizmo")
        async with (
            _proxy(server, tmp_path, rewrite) as kubeconfig,
            crwatch.Client.from_kubeconfig(kubeconfig) as client,
        ):
            discovery = client.discovery
            with caplog.at_level("WARNING", logger="crwatch"):
                assert (await client.resource("widgets")).group == "example.com"
            assert "broken.io/v1 is stale" in caplog.text
            statistics = discovery.statistics()
            assert (statistics.aggregated, statistics.requests) == (True, 2)
            assert statistics.unavailable == ("broken.io/v1",)
            with pytest.raises(crwatch.UnknownResourceError):
                await client.resource("gizmos")
            stale = False
            assert (await client.resource("gizmos")).group == "broken.io"
            assert discovery.statistics().unavailable == ()


async def test_aggregated_discovery_is_negotiated(fake_apiserver: FakeApiServer) -> None:
    """``/api`` and ``/apis`` answer ``APIGroupDiscoveryList`` only when Accept asks for it.

    The Content-Type names the form chosen (v2 or v2beta1, by the client's ``q`` values,
    then its order); plain JSON clients get the legacy documents; the server with the knob
    off never answers aggregated; a matching ``If-None-Match`` gets 304. Read with plain
    aiohttp, an independent client.
    """
    fake_apiserver.register_crd(
        group="example.com",
        version=["v1", "v2"],
        plural="widgets",
        kind="Widget",
        short_names=["wd"],
        status_subresource=True,
    )
    v2beta1 = _AGGREGATED_V2.replace("v=v2;", "v=v2beta1;")
    async with aiohttp.ClientSession() as session:

        async def get(path: str, accept: str, **headers: str) -> tuple[int, str, Any, Any]:
            headers["Accept"] = accept
            async with session.get(fake_apiserver.url + path, headers=headers) as response:
                raw = await response.read()
                body = orjson.loads(raw) if raw else None
                return response.status, response.headers.get("Content-Type"), body, response

        for path in ("/api", "/apis"):
            status, ctype, body, _ = await get(path, "application/json")
            assert (status, ctype) == (200, "application/json")
            assert body["kind"] in ("APIVersions", "APIGroupList")
        status, ctype, body, response = await get("/apis", f"{v2beta1},{_AGGREGATED_V2}")
        if not fake_apiserver.aggregated_discovery:
            assert (status, ctype, body["kind"]) == (200, "application/json", "APIGroupList")
            return
        assert (status, ctype) == (200, v2beta1)
        assert body["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
        assert response.headers["Vary"] == "Accept"
        # Quality values rank the clauses before their order does; q=0 refuses one.
        _, ctype, _, _ = await get("/apis", f"application/json;q=0.5, {_AGGREGATED_V2}")
        assert ctype == _AGGREGATED_V2
        _, ctype, _, _ = await get("/apis", f"{_AGGREGATED_V2};q=0, application/json")
        assert ctype == "application/json"
        status, ctype, body, response = await get("/apis", f"{_AGGREGATED_V2},application/json")
        assert (status, ctype) == (200, _AGGREGATED_V2)
        assert (body["kind"], body["apiVersion"]) == (
            "APIGroupDiscoveryList",
            "apidiscovery.k8s.io/v2",
        )
        group = next(i for i in body["items"] if i["metadata"]["name"] == "example.com")
        assert [v["version"] for v in group["versions"]] == ["v2", "v1"]  # preferred first
        widgets = group["versions"][0]["resources"][0]
        assert widgets["resource"] == "widgets"
        assert widgets["responseKind"] == {
            "group": "example.com",
            "version": "v2",
            "kind": "Widget",
        }
        assert (widgets["scope"], widgets["singularResource"]) == ("Namespaced", "widget")
        assert widgets["shortNames"] == ["wd"]
        assert [s["subresource"] for s in widgets["subresources"]] == ["status"]
        assert group["versions"][0]["freshness"] == "Current"
        tag = response.headers["ETag"]
        status, _, body, _ = await get("/apis", _AGGREGATED_V2, **{"If-None-Match": tag})
        assert (status, body) == (304, None)

        _, ctype, core, _ = await get("/api", _AGGREGATED_V2)
        assert ctype == _AGGREGATED_V2
        [core_group] = core["items"]
        assert core_group["metadata"].get("name", "") == ""
        resources = {r["resource"]: r for r in core_group["versions"][0]["resources"]}
        assert resources["namespaces"]["scope"] == "Cluster"
        assert resources["configmaps"]["scope"] == "Namespaced"

        fake_apiserver.register_crd(group="example.com", version="v1", plural="gadgets", kind="G")
        status, _, body, _ = await get("/apis", _AGGREGATED_V2, **{"If-None-Match": tag})
        assert status == 200  # the document changed, so its tag did
        assert "gadgets" in orjson.dumps(body).decode()


@pytest.mark.kubectl
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
async def test_names_resolve_as_kubectl_resolves_them(
    fake_apiserver: FakeApiServer, crwatch_client: crwatch.Client, tmp_path: Path
) -> None:
    """For each name, crwatch picks the group, version and plural kubectl lists.

    kubectl (an independent client) shows the URL it lists at ``-v=6``; the path must be
    the one of the Resource crwatch resolves.
    """
    fake_apiserver.register_crd(
        group="example.com",
        version=["v1beta1", "v1"],
        plural="widgets",
        kind="Widget",
        short_names=["wd"],
    )
    fake_apiserver.register_crd(group="example.com", version="v1alpha1", plural="gadgets", kind="G")
    fake_apiserver.register_crd(group="a.io", version="v1", plural="dbs", kind="Db")
    fake_apiserver.register_crd(
        group="b.io", version="v1", plural="databases", kind="Database", short_names=["dbs"]
    )
    kubeconfig = fake_apiserver.kubeconfig(tmp_path / "kubeconfig")
    names = [
        "widgets", "Widget", "wd", "widgets.example.com", "widgets.v1beta1.example.com",
        "gadgets", "events", "ev", "Event", "dbs", "configmaps", "ns",
    ]  # fmt: skip
    for name in names:
        result = await anyio.run_process(
            [
                "kubectl",
                f"--kubeconfig={kubeconfig}",
                f"--cache-dir={tmp_path / 'kube-cache'}",
                "--request-timeout=20s",
                "get",
                name,
                "-A",
                "-v=6",
            ],
            check=False,
        )
        listed = re.search(r"GET http://[^/ ]+(/[^? ]+)\?limit=", result.stderr.decode())
        assert listed is not None, (name, result.stderr.decode()[-2000:])
        assert (await crwatch_client.resource(name)).path() == listed.group(1), name
