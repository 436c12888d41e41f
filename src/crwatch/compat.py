"""Move from the official clients' ``Watch().stream`` loop to crwatch, one line at a time.

::

    # before
    for event in kubernetes.watch.Watch().stream(api.list_namespaced_custom_object,
                                                 "example.com", "v1", "default", "widgets"):
        ...
    # after: the same dicts, with a list first, resumption, relists on 410, stall detection
    for event in crwatch.compat.stream(api.list_namespaced_custom_object,
                                       "example.com", "v1", "default", "widgets"):
        ...

See the migration guide for what changes in behaviour.
"""

from __future__ import annotations

from ._compat import Stream, stream

__all__ = ["Stream", "stream"]

Stream.__module__ = __name__
stream.__module__ = __name__
