"""How the command line prints events: ``-o table|wide|json|yaml``, colours, progress.

Shared by ``crwatch watch`` and ``crwatch demo``; it knows events and text streams, not
clients or servers.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final, TextIO

import orjson

from ._events import Event, EventType
from ._exceptions import InvalidOptionError

__all__ = ["OUTPUTS", "Progress", "check_output", "format_event", "use_color"]

#: The ``-o`` choices.
OUTPUTS: Final = ("table", "wide", "json", "yaml")

# ANSI SGR colours: green, yellow, red; dim for synthetic marks.
_COLORS: Final = {EventType.ADDED: "32", EventType.MODIFIED: "33", EventType.DELETED: "31"}
_ERASE_LINE: Final = "\r\x1b[K"


def use_color(stream: TextIO) -> bool:
    """Colour only a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def check_output(output: str) -> None:
    """Refuse an output format this process cannot produce, before anything connects.

    Raises:
        InvalidOptionError: an unknown format, or ``yaml`` without PyYAML installed.
    """
    if output not in OUTPUTS:
        raise InvalidOptionError(f"unknown output format {output!r}; use one of {OUTPUTS}")
    if output == "yaml":
        try:
            import yaml  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        except ImportError:
            raise InvalidOptionError(
                "-o yaml needs PyYAML (pip install pyyaml); -o json prints the same "
                "documents as JSON lines"
            ) from None


def format_event(event: Event, output: str = "table", *, color: bool = False) -> str:
    """Render one event: a table row (``table``, ``wide``) or one document (``json``, ``yaml``).

    ``json`` is one line per event, ``{"type", "object"}`` plus ``"synthetic": true`` for a
    change inferred by a relist; ``yaml`` is the same document after a ``---`` line.
    """
    if output in ("json", "yaml"):
        doc: dict[str, Any] = {"type": str(event.type), "object": event.object}
        if event.synthetic:
            doc["synthetic"] = True
        if output == "json":
            return orjson.dumps(doc).decode()
        import yaml  # type: ignore[import-untyped,unused-ignore]

        text: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        return "---\n" + text.rstrip("\n")
    kind = f"{event.type!s:<9}"
    mark = " (synthetic)" if event.synthetic else ""
    if color:
        kind = f"\x1b[{_COLORS.get(event.type, '0')}m{kind}\x1b[0m"
        mark = f"\x1b[2m{mark}\x1b[0m" if mark else ""
    row = f"{kind} {event.key:<32} rv={event.resource_version}"
    if output == "wide":
        meta = event.object.get("metadata") or {}
        labels = ",".join(f"{k}={v}" for k, v in sorted((meta.get("labels") or {}).items()))
        row += (
            f" gen={meta.get('generation', '-')}"
            f" created={meta.get('creationTimestamp') or '-'}"
            f" labels={labels or '<none>'}"
        )
    return row + mark


class Progress:
    """One self-erasing status line on a terminal while the initial list loads.

    ``listing widgets.v1.example.com: 1,234 objects`` is redrawn at most every
    ``interval`` seconds; every row printed in between erases it first, so a terminal that
    shows both stdout and stderr never mixes the two.
    """

    __slots__ = ("_drawn", "_interval", "_last", "_stream", "_what", "active", "count")

    def __init__(self, stream: TextIO, what: str, *, interval: float = 0.1) -> None:
        self._stream = stream
        self._what = what
        self._interval = interval
        self._last = float("-inf")
        self._drawn = False
        self.active = True
        self.count = 0

    def draw(self, *, force: bool = False) -> None:
        """Show the line with the current count (throttled unless ``force``)."""
        now = time.monotonic()
        if not self.active or (not force and now - self._last < self._interval):
            return
        self._last = now
        noun = "object" if self.count == 1 else "objects"
        self._stream.write(f"{_ERASE_LINE}listing {self._what}: {self.count:,} {noun}")
        self._stream.flush()
        self._drawn = True

    def erase(self) -> None:
        """Remove the line (before a row is printed); :meth:`draw` shows it again."""
        if self._drawn:
            self._stream.write(_ERASE_LINE)
            self._stream.flush()
            self._drawn = False

    def finish(self) -> None:
        """Erase the line for good: the initial state is in."""
        self.erase()
        self.active = False
