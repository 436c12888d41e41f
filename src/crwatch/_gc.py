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
  left alone, since :func:`gc.unfreeze` would undo its freeze. A child forked mid-list
  unfreezes at once (the list goes on in the parent only).
- ``"keep"``: freeze as well, and leave everything frozen; later full collections never
  walk the cache again. A reference cycle frozen while alive is never collected.
- ``"off"``: never touch the GC.
"""

from __future__ import annotations

import gc
import os
import threading
from typing import Literal

GcFreeze = Literal["list", "keep", "off"]
GC_FREEZE_POLICIES: tuple[GcFreeze, ...] = ("list", "keep", "off")

_lock = threading.Lock()
_holders = 0  # lists running with a temporary freeze
_active = False  # the freeze of the running lists is ours to undo
_kept = False  # a "keep" freeze happened meanwhile: leave everything frozen
# Bumped in a forked child: lists that began in the parent do not run there, so their
# end() must not count (see _after_fork).
_generation = 0


def begin() -> int:
    """Start a list with ``gc_freeze="list"``; pass what it returns to :func:`end`."""
    global _holders, _active, _kept
    with _lock:
        if not _holders:
            # Nothing frozen by anyone else, or unfreezing would undo their freeze.
            # (get_freeze_count() walks the frozen objects: once per list, none usually.)
            _active = gc.isenabled() and gc.get_freeze_count() == 0
            _kept = False
        _holders += 1
        return _generation


def freeze() -> None:
    """Freeze for the running lists (a page is in): nothing unless :func:`begin` took the GC."""
    if _active:
        gc.freeze()


def end(token: int) -> None:
    """End a list that called :func:`begin` (complete, abandoned or cancelled)."""
    global _holders, _active
    with _lock:
        if token != _generation:
            return  # it began before a fork: the child's count never included it
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


def _after_fork() -> None:
    """In a forked child: no list runs here, so undo the parent's temporary freeze."""
    global _lock, _holders, _active, _kept, _generation
    _lock = threading.Lock()  # the parent may have held it while forking
    if _holders and _active and not _kept:
        gc.unfreeze()
    _holders = 0
    _active = _kept = False
    _generation += 1


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_after_fork)
