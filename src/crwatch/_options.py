"""The list/watch options shared by ``watch()`` and ``Informer``, checked in one place.

:class:`ListWatchOptions` is a frozen value whose fields are the options, each with its
default and its check: building one validates everything (raising
:class:`~crwatch.InvalidOptionError` at the call, not later in a task), and the driver reads
nothing else. A new option is a field here (plus its keyword in the public signatures).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias

from attrs import Attribute, evolve, field, frozen

from ._backoff import Backoff
from ._client import Client
from ._exceptions import InvalidOptionError
from ._gc import GC_FREEZE_POLICIES, GcFreeze
from ._machine import Config
from ._resource import Resource
from ._transport import Transport

__all__ = ["ListWatchOptions", "MiB", "namespace_set", "target"]

MiB: Final = 1024 * 1024


def target(client: Client, resource: Resource | str) -> tuple[Transport, Resource]:
    """Check what to watch: the client's transport and the resource (parsed from text)."""
    if not isinstance(client, Client):
        raise InvalidOptionError(f"client must be a crwatch.Client, got {type(client).__name__}")
    transport = client._require_transport()
    if isinstance(resource, str):
        resource = Resource.parse(resource)
    elif not isinstance(resource, Resource):
        raise InvalidOptionError(f"resource must be a crwatch.Resource, got {resource!r}")
    return transport, resource


def _optional_text(_: Any, attribute: Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidOptionError(f"{attribute.name} must be a string or None, got {value!r}")


def _selector(value: object) -> object:
    # An empty selector selects everything: the same as none (and no empty query parameter).
    return value or None if isinstance(value, str) else value


def _namespace(instance: Any, attribute: Attribute[Any], value: object) -> None:
    _optional_text(instance, attribute, value)
    if value is not None and (not value or "/" in str(value)):
        raise InvalidOptionError(f"namespace must be a non-empty name, got {value!r}")


def namespace_set(value: object) -> frozenset[str] | None:
    """Check ``namespaces=``: ``None``, or a non-empty collection of namespace names.

    Raises:
        InvalidOptionError: ``value`` is text, empty, or holds something else than names.
    """
    if value is None:
        return None
    # A string is iterable too: "ab" must not become {"a", "b"}.
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidOptionError(
            f"namespaces must be a set (or other collection) of names, got {value!r}"
        )
    try:
        names = frozenset(value)
    except TypeError:
        raise InvalidOptionError(f"namespaces must hold namespace names, got {value!r}") from None
    if not names:
        raise InvalidOptionError("namespaces must name at least one namespace, got none")
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidOptionError(
                f"namespaces must hold non-empty namespace names, got {name!r}"
            )
    return names


def _one_scope(instance: Any, _: Attribute[Any], value: frozenset[str] | None) -> None:
    if value is not None and instance.namespace is not None:
        raise InvalidOptionError(
            "namespace and namespaces are mutually exclusive: pass namespaces={...} only "
            f"(got namespace={instance.namespace!r} and namespaces={sorted(value)!r})"
        )


def _seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidOptionError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _stall_timeout(value: object) -> float:
    return _seconds("stall_timeout", value)


def _initial_list_deadline(value: object) -> float:
    return _seconds("initial_list_deadline", value)


def _streaming_list(_: Any, __: Attribute[Any], value: object) -> None:
    if not (value is True or value is False or value == "auto"):
        raise InvalidOptionError(f"streaming_list must be True, False or 'auto', got {value!r}")


def _page_size(_: Any, __: Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidOptionError(f"page_size must be a positive int or None, got {value!r}")


def _max_event_bytes(_: Any, __: Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise InvalidOptionError(f"max_event_bytes must be an int of at least 1024, got {value!r}")


def _on_auth_error(_: Any, __: Attribute[Any], value: object) -> None:
    if value not in ("raise", "retry"):
        raise InvalidOptionError(f"on_auth_error must be 'raise' or 'retry', got {value!r}")


def _backoff(value: object) -> Backoff:
    if value is None:
        return Backoff()
    if not isinstance(value, Backoff):
        raise InvalidOptionError(f"backoff must be a crwatch.Backoff, got {value!r}")
    return value


def _watch_timeout(_: Any, __: Attribute[Any], value: object) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 1 <= value[0] <= value[1]
    ):
        raise InvalidOptionError(
            f"watch_timeout must be (low, high) whole seconds, 1 <= low <= high, got {value!r}"
        )


def _seed(value: object) -> int:
    if value is None:
        return random.SystemRandom().getrandbits(64)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionError(f"seed must be an int or None, got {value!r}")
    return value


def _metadata_only(_: Any, __: Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"metadata_only must be True or False, got {value!r}")


#: How a cache keeps objects: see the ``cache`` option of :func:`crwatch.watch`.
CacheMode: TypeAlias = Literal["objects", "compact"]
CACHE_MODES: tuple[str, ...] = ("objects", "compact")


def _cache(_: Any, __: Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or value not in CACHE_MODES:
        raise InvalidOptionError(f'cache must be "objects" or "compact", got {value!r}')


def _gc_freeze(_: Any, __: Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or value not in GC_FREEZE_POLICIES:
        raise InvalidOptionError(f'gc_freeze must be "list", "keep" or "off", got {value!r}')


@frozen(kw_only=True)
class ListWatchOptions:
    """The options of one list/watch (see :func:`crwatch.watch` for what each one means).

    Building one checks every field; ``backoff=None`` becomes ``Backoff()``, ``seed=None``
    a random seed, an empty selector ``None``, the timeouts floats, and ``namespaces`` a
    frozenset.

    ``namespaces`` (a set of namespaces, each with its own list/watch over one cache) is read
    by the :class:`crwatch.Informer`, which runs one driver per namespace, each with
    :meth:`for_namespace`'s options; a driver itself only ever reads ``namespace``.
    """

    namespace: str | None = field(default=None, validator=_namespace)
    namespaces: frozenset[str] | None = field(
        default=None, converter=namespace_set, validator=_one_scope
    )
    label_selector: str | None = field(default=None, converter=_selector, validator=_optional_text)
    field_selector: str | None = field(default=None, converter=_selector, validator=_optional_text)
    stall_timeout: float = field(default=90.0, converter=_stall_timeout)
    streaming_list: bool | Literal["auto"] = field(default="auto", validator=_streaming_list)
    initial_list_deadline: float = field(default=60.0, converter=_initial_list_deadline)
    page_size: int | None = field(default=500, validator=_page_size)
    max_event_bytes: int = field(default=16 * MiB, validator=_max_event_bytes)
    on_auth_error: Literal["raise", "retry"] = field(default="raise", validator=_on_auth_error)
    backoff: Backoff = field(default=None, converter=_backoff)
    watch_timeout: tuple[int, int] = field(default=(300, 600), validator=_watch_timeout)
    seed: int = field(default=None, converter=_seed)
    gc_freeze: GcFreeze = field(default="off", validator=_gc_freeze)
    metadata_only: bool = field(default=False, validator=_metadata_only)
    cache: CacheMode = field(default="compact", validator=_cache)

    def for_namespace(self, namespace: str, index: int) -> ListWatchOptions:
        """Return the options of the list/watch of one of ``namespaces`` (the ``index``-th).

        Each gets its own seed (``seed + index``), so their reconnect jitter and watch
        timeouts differ, as those of independent watchers do.
        """
        return evolve(self, namespace=namespace, namespaces=None, seed=self.seed + index)

    def machine_config(self) -> Config:
        """Return the state machine's part of the options."""
        return Config(
            # "auto" and True both start with a streaming list and fall back to paginated
            # lists when the server refuses it or misses the deadline (streaming lists:
            # https://kubernetes.io/docs/reference/using-api/api-concepts/#streaming-lists).
            streaming_list=self.streaming_list is not False,
            page_size=self.page_size,
            initial_list_deadline=self.initial_list_deadline,
            backoff=self.backoff,
            on_auth_error=self.on_auth_error,
            watch_timeout=self.watch_timeout,
        )
