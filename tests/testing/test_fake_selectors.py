"""Label/field selector parsing and matching (docs/protocol.md, "Selectors"), with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crwatch.testing._selectors import (
    LabelRequirement,
    SelectorError,
    field_value,
    parse_field_selector,
    parse_label_selector,
)

keys = st.sampled_from(["app", "tier", "example.com/role", "k8s.io/x-y"])
values = st.sampled_from(["a", "b", "edge", "v1.2", "x_y", "9", "12"])
labels = st.dictionaries(keys, values, max_size=4)


@st.composite
def requirements(draw: st.DrawFn) -> tuple[str, LabelRequirement]:
    key = draw(keys)
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", ">", "<"]))
    if op in ("=", "==", "!="):
        value = draw(values)
        return f"{key}{op}{value}", LabelRequirement(key, "!=" if op == "!=" else "=", (value,))
    if op in ("in", "notin"):
        vals = tuple(draw(st.lists(values, min_size=1, max_size=3)))
        return f"{key} {op} ({', '.join(vals)})", LabelRequirement(key, op, vals)
    if op in (">", "<"):
        number = str(draw(st.integers(0, 20)))
        return f"{key}{op}{number}", LabelRequirement(key, op, (number,))
    if op == "!":
        return f"!{key}", LabelRequirement(key, "!")
    return key, LabelRequirement(key, "exists")


def reference(req: LabelRequirement, have: dict[str, str]) -> bool:
    """Evaluate the §10.1 table, written independently of the implementation."""
    present = req.key in have
    value = have.get(req.key)
    if req.operator == "=":
        return present and value == req.values[0]
    if req.operator == "!=":
        return not present or value != req.values[0]
    if req.operator == "in":
        return present and value in req.values
    if req.operator == "notin":
        return not present or value not in req.values
    if req.operator == "exists":
        return present
    if req.operator == "!":
        return not present
    if not present or value is None or not value.lstrip("-").isdigit():
        return False
    return (
        int(value) > int(req.values[0]) if req.operator == ">" else int(value) < int(req.values[0])
    )


@given(st.lists(requirements(), min_size=1, max_size=4), labels)
def test_label_selector_matches_reference(
    reqs: list[tuple[str, LabelRequirement]], have: dict[str, str]
) -> None:
    """Any generated selector parses to its requirements and matches like the §10.1 table."""
    text = ",".join(t for t, _ in reqs)
    selector = parse_label_selector(text)
    assert list(selector.requirements) == [r for _, r in reqs]
    assert selector.matches(have) == all(reference(r, have) for _, r in reqs)


@given(st.lists(requirements(), min_size=1, max_size=3))
def test_label_selector_whitespace_insensitive(reqs: list[tuple[str, LabelRequirement]]) -> None:
    """Whitespace around tokens does not change the parse."""
    text = " , ".join(f"  {t}  " for t, _ in reqs)
    assert parse_label_selector(text) == parse_label_selector(",".join(t for t, _ in reqs))


@pytest.mark.parametrize(
    "text",
    [
        "a in (b",
        "a in b",
        "a=b=c",
        "a,",
        "=a",
        "a notin ()",
        "-a=b",
        "a>b",
        "a b",
        "a=(b)",
        "a=" + "x" * 64,
    ],
)
def test_label_selector_parse_errors(text: str) -> None:
    """Malformed label selectors raise SelectorError (400 on the wire)."""
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_label_selector_empty_matches_all() -> None:
    """An empty selector, and a "k=" (empty value) requirement, behave like the server."""
    assert parse_label_selector("").matches({})
    assert parse_label_selector("   ").empty
    empty_value = parse_label_selector("a=")
    assert empty_value.matches({"a": ""})
    assert not empty_value.matches({})


field_values = st.text(alphabet="abc,=\\ x.-", max_size=8)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["metadata.name", "spec.color"]),
            st.sampled_from(["=", "==", "!="]),
            field_values,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_field_selector_escaping_roundtrip(terms: list[tuple[str, str, str]]) -> None:
    r"""Escaped values (\\, \, and \=) parse back to the original values."""
    text = ",".join(f"{f}{op}{_escape(v)}" for f, op, v in terms)
    selector = parse_field_selector(text)
    got = [(r.field, r.operator, r.value) for r in selector.requirements]
    assert got == [(f, "!=" if op == "!=" else "=", v) for f, op, v in terms]


def test_field_selector_matching_and_missing_fields() -> None:
    """Values compare as strings; a missing field compares as "" (§10.2)."""
    obj = {"metadata": {"name": "a"}, "spec": {"size": 3, "on": True}}
    sel = parse_field_selector("spec.size=3,spec.on=true,spec.color!=red")
    assert sel.matches(lambda p: field_value(obj, p))
    assert parse_field_selector("spec.color=").matches(lambda p: field_value(obj, p))
    assert field_value(obj, "spec.on") == "true"
    assert field_value(obj, "spec") == ""


@pytest.mark.parametrize("text", ["nonsense", "a=b\\q", "a=b=c", "a<b"])
def test_field_selector_parse_errors(text: str) -> None:
    """Terms without an operator, bad escapes and unescaped '=' are errors."""
    with pytest.raises(SelectorError):
        parse_field_selector(text)
