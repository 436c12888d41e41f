"""Resource: parsing, paths and validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crwatch

labels = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
groups = st.lists(labels, min_size=1, max_size=3).map(".".join)
versions = st.from_regex(r"v[1-9][0-9]?((alpha|beta)[1-9])?", fullmatch=True)


@given(plural=labels, version=versions, group=groups | st.just(""))
def test_parse_inverts_str(plural: str, version: str, group: str) -> None:
    """``Resource.parse(str(r)) == r`` for every valid resource, core group included."""
    resource = crwatch.Resource(group, version, plural)
    assert crwatch.Resource.parse(str(resource)) == resource


def test_parse_forms() -> None:
    """plural.version.group, plural.version (core) and a bare plural (core v1) all parse."""
    assert crwatch.Resource.parse("widgets.v1.example.com") == crwatch.Resource(
        "example.com", "v1", "widgets"
    )
    assert crwatch.Resource.parse("configmaps.v1") == crwatch.Resource("", "v1", "configmaps")
    assert crwatch.Resource.parse("configmaps") == crwatch.Resource("", "v1", "configmaps")


@pytest.mark.parametrize("text", ["", "widgets.example.com", "Widgets.v1.example.com", ".v1"])
def test_parse_rejects_ambiguous_or_invalid(text: str) -> None:
    """A missing version or an invalid plural is an InvalidOptionError naming the input."""
    with pytest.raises(crwatch.InvalidOptionError):
        crwatch.Resource.parse(text)


def test_paths_and_api_version() -> None:
    """Collection and object paths follow the API server's URL layout."""
    widgets = crwatch.Resource("example.com", "v1", "widgets")
    assert widgets.api_version == "example.com/v1"
    assert widgets.path() == "/apis/example.com/v1/widgets"
    assert widgets.path("default") == "/apis/example.com/v1/namespaces/default/widgets"
    assert widgets.path("ns", "a") == "/apis/example.com/v1/namespaces/ns/widgets/a"
    cms = crwatch.Resource("", "v1", "configmaps")
    assert cms.api_version == "v1"
    assert cms.path("kube-system") == "/api/v1/namespaces/kube-system/configmaps"


def test_resource_is_frozen_and_hashable() -> None:
    """Resources are values: immutable and usable as dict keys."""
    widgets = crwatch.Resource("example.com", "v1", "widgets", kind="Widget")
    with pytest.raises(AttributeError):
        widgets.plural = "gadgets"  # type: ignore[misc]
    assert {widgets: 1}[crwatch.Resource("example.com", "v1", "widgets", kind="Widget")] == 1
