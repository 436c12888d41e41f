"""``ListWatchOptions``: the list/watch options of ``watch()`` and ``Informer``, checked once."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import crwatch
from crwatch._options import ListWatchOptions


def test_defaults_and_normalisation() -> None:
    """Defaults match the documented ones; None and empty values become what the driver uses."""
    options = ListWatchOptions(label_selector="", field_selector="", stall_timeout=5, seed=3)
    assert (options.label_selector, options.field_selector) == (None, None)
    assert options.stall_timeout == 5.0
    assert isinstance(options.stall_timeout, float)
    assert options.backoff == crwatch.Backoff()
    assert options.seed == 3
    assert (options.page_size, options.max_event_bytes) == (500, 16 * 1024 * 1024)
    assert (options.streaming_list, options.gc_freeze, options.watch_timeout) == (
        "auto",
        "off",
        (300, 600),
    )
    assert isinstance(ListWatchOptions().seed, int)  # drawn at random when not given
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        options.page_size = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("streaming_list", "streams"), [("auto", True), (True, True), (False, False)]
)
def test_streaming_list_reaches_the_machine_as_its_meaning(
    streaming_list: Any, streams: bool
) -> None:
    """``"auto"`` and ``True`` start with a streaming list, ``False`` never does."""
    config = ListWatchOptions(streaming_list=streaming_list).machine_config()
    assert config.streaming_list is streams


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("namespace", ""),
        ("namespace", "a/b"),
        ("namespace", 3),
        ("label_selector", 5),
        ("field_selector", ["a"]),
        ("stall_timeout", 0),
        ("stall_timeout", float("inf")),
        ("stall_timeout", True),
        ("initial_list_deadline", "60"),
        ("streaming_list", "yes"),
        ("page_size", 0),
        ("page_size", False),
        ("max_event_bytes", 1023),
        ("on_auth_error", "ignore"),
        ("backoff", 1.0),
        ("watch_timeout", (10, 5)),
        ("watch_timeout", [1, 2]),
        ("seed", "x"),
        ("gc_freeze", True),
        ("cache", "bytes"),
        ("cache", None),
    ],
)
def test_each_bad_option_is_named_in_a_typed_error(name: str, value: Any) -> None:
    """Every option is checked when the value is built, and the error names it."""
    with pytest.raises(crwatch.InvalidOptionError, match=name):
        ListWatchOptions(**{name: value})
