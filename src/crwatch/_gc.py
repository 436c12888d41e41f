"""Hiding listed objects from the cyclic garbage collector while a list fills the cache.

Python's cyclic GC walks every tracked container of the oldest generation in each full
collection, and a full collection runs whenever that generation has grown by a quarter. A
list that fills a cache with 100,000 objects (1.4 million containers) so triggers a dozen
full collections over an ever larger cache: two thirds of the time of the whole list.
:func:`gc.freeze` moves everything alive into a permanent generation that collections skip.

``gc_freeze`` (see :func:`crwatch.watch`) picks one of three policies:

- ``"list"`` (the default): freeze after every page while a list runs, and
  :func:`gc.unfreeze` once no list is running any more. The objects return to the oldest
  generation, so the next full collection walks them once, instead of a dozen times during
  the list. Nothing stays frozen, so nothing can leak. It is process-wide, hence shared:
  concurrent lists (of several informers) unfreeze when the last one ends, and a process
  that has frozen objects of its own (``gc.freeze()`` before forking, or ``"keep"``) is
  left alone, since :func:`gc.unfreeze` would undo its freeze.
- ``"keep"``: freeze as well, and leave everything frozen; later full collections never
  walk the cache again. A reference cycle frozen while alive is never collected.
- ``"off"``: never touch the GC.
"""

from __future__ import annotations

import gc
import threading
from typing import Literal

GcFreeze = Literal["list", "keep", "off"]
GC_FREEZE_POLICIES: tuple[GcFreeze, ...] = ("list", "keep", "off")

_lock = threading.Lock()
_holders = 0  # lists running with a temporary freeze
_active = False  # the freeze of the running lists is ours to undo
_kept = False  # a "keep" freeze happened meanwhile: leave everything frozen


def begin() -> None:
    """Start a list with ``gc_freeze="list"``; pair it with :func:`end`."""
    global _holders, _active, _kept
    with _lock:
        if not _holders:
            # Nothing frozen by anyone else, or unfreezing would undo their freeze.
            _active = gc.isenabled() and gc.get_freeze_count() == 0
            _kept = False
        _holders += 1


def freeze() -> None:
    """Freeze for the running lists (a page is in): nothing unless :func:`begin` took the GC."""
    if _active:
        gc.freeze()


def end() -> None:
    """End a list that called :func:`begin` (complete, abandoned or cancelled)."""
    global _holders, _active
    with _lock:
        _holders -= 1
        if _holders or not _active:
            return
        _active = False
        if not _kept:
            gc.unfreeze()


def keep() -> None:
    """Freeze for good (``gc_freeze="keep"``); running lists then leave it frozen."""
    global _kept
    with _lock:
        if _holders:
            _kept = True
        gc.freeze()
