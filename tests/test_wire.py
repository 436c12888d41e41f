"""Tests of the sans-IO wire layer: framing, event parsing, Status mapping, RV order."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crwatch import (
    BadRequestError,
    EventTooLargeError,
    ExpiredError,
    ForbiddenError,
    InvalidError,
    MalformedLineError,
    NotFoundError,
    ResourceVersionTooLargeError,
    ServerError,
    TooManyRequestsError,
)
from crwatch._wire import (
    SNIPPET_BYTES,
    LineSplitter,
    compare_resource_versions,
    loads,
    parse_event,
    parse_retry_after,
    peek_line,
    split_list,
    status_to_error,
)

# Lines as the server writes them: no newline inside, may be long, may contain spaces.
_line = st.binary(min_size=1, max_size=300).map(lambda b: b.replace(b"\n", b"x"))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[last:p])
        last = p
    return chunks


def _feed_all(splitter: LineSplitter, chunks: list[bytes]) -> list[bytes | EventTooLargeError]:
    out: list[bytes | EventTooLargeError] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out


@given(st.lists(_line, max_size=20), st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_yields_the_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    """However the byte stream is cut into chunks, the splitter returns the same lines."""
    data = b"".join(line + b"\n" for line in lines)
    expected = [line for line in lines if line.strip()]
    got = _feed_all(LineSplitter(), _split(data, cuts))
    assert got == expected


@given(
    st.lists(st.tuples(_line, st.booleans()), max_size=15),
    st.lists(st.integers(min_value=0), max_size=30),
    st.integers(min_value=1, max_value=120),
)
def test_oversize_lines_are_skipped_and_resynchronised(
    spec: list[tuple[bytes, bool]], cuts: list[int], limit: int
) -> None:
    """Lines over the limit become one EventTooLargeError each, in order; the rest pass intact."""
    lines = [line * (limit // len(line) + 2) if big else line[:limit] for line, big in spec]
    data = b"".join(line + b"\n" for line in lines)
    splitter = LineSplitter(limit)
    got = _feed_all(splitter, _split(data, cuts))
    expected: list[object] = []
    for line in lines:
        if len(line) > limit:
            expected.append(("too large", len(line)))
        elif line.strip():
            expected.append(line)
    normalised = [
        ("too large", item.size) if isinstance(item, EventTooLargeError) else item for item in got
    ]
    assert normalised == expected
    assert splitter.buffered <= limit


def test_splitter_memory_is_bounded_while_skipping() -> None:
    """A huge line with no newline yet is not buffered beyond the limit."""
    splitter = LineSplitter(100)
    for _ in range(50):
        assert splitter.feed(b"x" * 1000) == []
        assert splitter.buffered <= 100
    (err,) = splitter.feed(b"x\n")
    assert isinstance(err, EventTooLargeError)
    assert err.size == 50_001
    assert err.limit == 100
    assert splitter.feed(b'{"a":1}\n') == [b'{"a":1}']


def test_close_returns_the_incomplete_tail() -> None:
    """At end of stream the partial last line is handed back (and the splitter reset)."""
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert splitter.close() == b'{"b"'
    assert splitter.close() == b""
    assert splitter.feed(b"  \r\n") == []


def test_crlf_lines_parse() -> None:
    """A trailing carriage return (a proxy's CRLF) does not break JSON parsing."""
    (line,) = LineSplitter().feed(b'{"type":"ADDED","object":{"metadata":{}}}\r\n')
    assert isinstance(line, bytes)
    assert parse_event(line).type == "ADDED"


def test_parse_event_reads_type_object_and_rv() -> None:
    """ADDED/MODIFIED/DELETED lines give the object dict and its resourceVersion."""
    obj = {"metadata": {"name": "a", "namespace": "default", "resourceVersion": "42"}}
    ev = parse_event(orjson.dumps({"type": "MODIFIED", "object": obj}))
    assert ev.type == "MODIFIED"
    assert ev.object == obj
    assert ev.resource_version == "42"
    assert not ev.initial_events_end


def test_parse_event_flags_initial_events_end_bookmark() -> None:
    """Only the annotated BOOKMARK ends the initial events of a streaming list."""
    end = {
        "metadata": {"resourceVersion": "9", "annotations": {"k8s.io/initial-events-end": "true"}}
    }
    assert parse_event(orjson.dumps({"type": "BOOKMARK", "object": end})).initial_events_end
    plain = {"metadata": {"resourceVersion": "10"}}
    assert not parse_event(orjson.dumps({"type": "BOOKMARK", "object": plain})).initial_events_end
    # The annotation on a non-bookmark means nothing.
    assert not parse_event(orjson.dumps({"type": "ADDED", "object": end})).initial_events_end


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b'{"type":"ADDED","object":{"metadata":',
        b"[1,2]",
        b'{"type":"WHATEVER","object":{}}',
        b'{"type":"ADDED"}',
        b'{"type":"ADDED","object":"x"}',
    ],
)
def test_parse_event_rejects_malformed_lines(line: bytes) -> None:
    """Anything but a JSON watch event of a known type is a MalformedLineError with a snippet."""
    with pytest.raises(MalformedLineError) as info:
        parse_event(line)
    assert info.value.line == line[:200]


def test_loads_is_orjson() -> None:
    """The one JSON parser accepts bytes and str."""
    assert loads(b'{"a":[1,2]}') == {"a": [1, 2]}
    assert loads('{"a":null}') == {"a": None}


@given(st.integers(min_value=1, max_value=10**30), st.integers(min_value=1, max_value=10**30))
def test_resource_version_order_matches_integers(a: int, b: int) -> None:
    """RV comparison (longer is greater, else lexical) agrees with integer order."""
    got = compare_resource_versions(str(a), str(b))
    assert (got > 0) == (a > b)
    assert (got < 0) == (a < b)
    assert (got == 0) == (a == b)


def _status(code: int, reason: str, **extra: object) -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"m{code}",
        "reason": reason,
        "code": code,
        **extra,
    }


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, BadRequestError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (410, ExpiredError),
        (422, InvalidError),
        (429, TooManyRequestsError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_status_to_error_picks_the_class(code: int, cls: type[Exception]) -> None:
    """A Status maps to the typed error, carrying verb and resource into its message."""
    err = status_to_error(_status(code, "R"), verb="watch", resource="widgets.v1.example.com")
    assert type(err) is cls
    assert err.code == code
    assert err.reason == "R"
    assert "watch widgets.v1.example.com" in str(err)


def test_status_to_error_too_large_rv_and_retry_after() -> None:
    """504 with cause ResourceVersionTooLarge is its own class; retryAfterSeconds is read."""
    status = _status(
        504,
        "Timeout",
        details={"causes": [{"reason": "ResourceVersionTooLarge"}], "retryAfterSeconds": 1},
    )
    err = status_to_error(status)
    assert isinstance(err, ResourceVersionTooLargeError)
    assert err.retry_after == 1.0
    # A header value wins over the Status detail.
    assert status_to_error(status, retry_after=3.0).retry_after == 3.0


def test_status_to_error_plain_text_and_continue_token() -> None:
    """A plain-text body becomes the message; a 410 list Status carries its fresh token."""
    err = status_to_error(None, code=404, body=b"404 page not found\n", verb="list", resource="w")
    assert isinstance(err, NotFoundError)
    assert err.message == "404 page not found"
    gone = status_to_error(_status(410, "Expired", metadata={"continue": "tok"}))
    assert isinstance(gone, ExpiredError)
    assert gone.continue_token == "tok"


def test_parse_retry_after() -> None:
    """Retry-After is seconds or an HTTP date; garbage and negatives are ignored."""
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_splitter_messages_and_whitespace_tail() -> None:
    """Errors say what is wrong; a tail of whitespace only is no line at all."""
    with pytest.raises(ValueError, match=r"^max_line_bytes must be positive$"):
        LineSplitter(0)
    splitter = LineSplitter(4)
    (err,) = splitter.feed(b"123456789\n")
    assert isinstance(err, EventTooLargeError)
    assert str(err) == "watch event of 9 bytes is over max_event_bytes=4; skipped"
    assert (err.size, err.limit) == (9, 4)
    splitter = LineSplitter()
    assert splitter.feed(b"ok\n \t ") == [b"ok"]
    assert splitter.close() == b""


def test_parse_event_messages_name_the_problem() -> None:
    """A malformed line's error says whether it was not JSON, not an object, or not an event."""
    with pytest.raises(MalformedLineError, match=r"^watch line is not JSON: "):
        parse_event(b"nope")
    with pytest.raises(MalformedLineError) as info:
        parse_event(b"[1]")
    assert str(info.value) == "watch line is not a JSON object"
    with pytest.raises(MalformedLineError) as info:
        parse_event(b'{"type":"NOPE","object":{}}')
    assert str(info.value) == "watch line is not a watch event (type='NOPE')"


@pytest.mark.parametrize(("rv", "expected"), [("7", "7"), (7, "7"), (None, ""), (0, ""), ("", "")])
def test_parse_event_resource_version_is_always_a_string(rv: object, expected: str) -> None:
    """A resourceVersion that is a number (a non-conformant server) still reads as text."""
    for kind in ("MODIFIED", "BOOKMARK"):
        obj = {"metadata": {"name": "a", "resourceVersion": rv}}
        event = parse_event(orjson.dumps({"type": kind, "object": obj}))
        assert event.resource_version == expected
        assert event.type == kind
        assert event.object == obj
        assert event.initial_events_end is False


def test_status_to_error_fields_from_a_status() -> None:
    """Message, reason, details and continue token come from the Status, defaults when absent."""
    details = {"name": "w", "causes": [{"reason": "FieldValueInvalid"}]}
    err = status_to_error(_status(422, "Invalid", details=details), verb="list")
    assert (err.message, err.reason, err.details) == ("m422", "Invalid", details)
    assert err.continue_token is None
    assert err.retry_after is None
    bare = status_to_error({"kind": "Status", "code": 503})
    assert (bare.message, bare.reason, bare.details, bare.code) == ("HTTP 503", "", {}, 503)
    # The HTTP code given wins over the Status code; a Status without one defaults to 500.
    assert status_to_error(_status(404, "NotFound"), code=403).code == 403
    assert status_to_error({"kind": "Status", "message": "x"}).code == 500
    assert status_to_error(_status(500, "X", metadata={"continue": ""})).continue_token is None
    # A retryAfterSeconds of 0 is no advice.
    zero = status_to_error(_status(429, "TooManyRequests", details={"retryAfterSeconds": 0}))
    assert zero.retry_after is None


def test_status_to_error_without_a_status() -> None:
    """Anything but a Status (no kind, another kind) falls back to the body and the code."""
    not_status = {"code": 404, "message": "from a proxy", "kind": "Pod"}
    err = status_to_error(not_status, code=502, body=b"bad gateway\n")
    assert (err.code, err.message, err.reason, err.details) == (502, "bad gateway", "", {})
    assert err.continue_token is None
    assert status_to_error(None, body="  text body  ").message == "text body"
    assert status_to_error(None).code == 500
    assert status_to_error(None, code=500).message == "HTTP 500"
    assert status_to_error(None, code=500, body=b"caf\xe9").message == "caf\ufffd"
    long = status_to_error(None, code=500, body=b"x" * 100_000).message
    assert len(long) == 5 * SNIPPET_BYTES  # a snippet, not the whole page


def test_parse_retry_after_edges() -> None:
    """Zero and fractions are honoured; a date in the past means now; the clock is real."""
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    far = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT")
    assert far is not None
    assert far > 1e9


_items = st.lists(
    st.fixed_dictionaries(
        {
            "metadata": st.one_of(
                st.fixed_dictionaries(
                    {"name": st.text(max_size=5), "resourceVersion": st.text(max_size=3)},
                    optional={
                        "namespace": st.text(max_size=3),
                        "uid": st.text(max_size=3),
                        "labels": st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
                    },
                ),
                st.just("not an object"),
                st.none(),
            ),
            "spec": st.dictionaries(
                st.text(max_size=3), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=4)
            ),
        }
    ),
    max_size=6,
)


@given(_items, st.text(max_size=4))
def test_split_list_keeps_each_item_exactly_and_reads_its_metadata(
    items: list[dict[str, Any]], rv: str
) -> None:
    """Each item's bytes parse to the item; its metadata fields are the ones read.

    An item whose metadata is not an object gets ``None`` (the cache then refuses it).
    """
    body = orjson.dumps({"kind": "List", "metadata": {"resourceVersion": rv}, "items": items})
    meta, got = split_list(body)
    assert meta == {"resourceVersion": rv}
    assert [orjson.loads(item.raw) for item in got] == items
    for item, source in zip(got, items, strict=True):
        if isinstance(source["metadata"], dict):
            wanted = ("name", "namespace", "resourceVersion", "uid")
            assert item.metadata == {k: v for k, v in source["metadata"].items() if k in wanted}
        else:
            assert item.metadata is None


def test_split_list_refuses_what_is_not_a_list() -> None:
    """Not JSON, or items that are not a list: ValueError; ``"items": null`` is empty."""
    for body in (b"nope", b'{"items": 3}', b"[1]"):
        with pytest.raises(ValueError):
            split_list(body)
    assert split_list(b'{"items": null}') == ({}, [])


@given(
    st.sampled_from(["ADDED", "MODIFIED", "BOOKMARK", 3]),
    _items.filter(bool).map(lambda items: items[0]),
)
def test_peek_line_reads_the_type_and_key_fields_only(kind: Any, obj: dict[str, Any]) -> None:
    """A ``{"type", "object"}`` line gives its type and the object's key fields.

    The same fields as ``split_list`` reads; a line of another shape (including metadata
    that is not an object) gives ``None``, for the usual parser to report.
    """
    line = orjson.dumps({"type": kind, "object": obj})
    got = peek_line(line)
    if not isinstance(kind, str) or isinstance(obj["metadata"], str):
        assert got is None
        return
    assert got is not None
    assert got[0] == kind
    meta = split_list(orjson.dumps({"items": [obj]}))[1][0].metadata
    assert got[1] == meta
    assert peek_line(b'{"type": "ADDED", "object": "x"}') is None
    assert peek_line(b"not json") is None
