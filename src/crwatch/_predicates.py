"""Pure change predicates for :func:`crwatch.changed`: ``(old, new) -> bool``.

A predicate answers "did this change matter?" for two states of the same object, both
present (``changed()`` itself decides what happens to ADDED and DELETED events: they always
pass, see kube-rs issue #1768 where predicate filters lost deletions). Predicates never
mutate their arguments and read no clock, so they compose with :func:`any_of`,
:func:`all_of` and :func:`not_` and are tested with hypothesis alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._exceptions import InvalidOptionError

__all__ = [
    "Predicate",
    "all_of",
    "annotations_differ",
    "any_of",
    "finalizers_differ",
    "generation_differs",
    "labels_differ",
    "not_",
    "resource_version_differs",
]

#: A change predicate: ``predicate(old, new)`` is true when the change matters.
Predicate = Callable[[dict[str, Any], dict[str, Any]], bool]

_MISSING: Any = object()


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _without_metadata_and_status(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def generation_differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Return whether the object's desired state changed.

    Compares ``metadata.generation``, which the API server increments on every change to
    the spec of custom resources with a status subresource (and of most built-in types) but
    not on status or metadata-only changes. When either state has no generation (custom
    resources without a status subresource, ConfigMaps...), compares the objects without
    ``metadata`` and ``status`` instead.
    """
    old_generation = _meta(old).get("generation", _MISSING)
    new_generation = _meta(new).get("generation", _MISSING)
    if old_generation is not _MISSING and new_generation is not _MISSING:
        return bool(old_generation != new_generation)
    return _without_metadata_and_status(old) != _without_metadata_and_status(new)


def labels_differ(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Return whether ``metadata.labels`` changed (a missing map equals an empty one)."""
    return (_meta(old).get("labels") or {}) != (_meta(new).get("labels") or {})


def annotations_differ(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Return whether ``metadata.annotations`` changed (a missing map equals an empty one)."""
    return (_meta(old).get("annotations") or {}) != (_meta(new).get("annotations") or {})


def finalizers_differ(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Return whether ``metadata.finalizers`` changed, order included (missing equals empty)."""
    return list(_meta(old).get("finalizers") or ()) != list(_meta(new).get("finalizers") or ())


def resource_version_differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Return whether ``metadata.resourceVersion`` changed: any write at all, status included."""
    return _meta(old).get("resourceVersion") != _meta(new).get("resourceVersion")


def _check(name: str, predicates: tuple[Predicate, ...]) -> None:
    for predicate in predicates:
        if not callable(predicate):
            raise InvalidOptionError(
                f"{name}() takes predicates (old, new) -> bool, got {predicate!r}"
            )


def any_of(*predicates: Predicate) -> Predicate:
    """Combine predicates: the change matters when one of them says so (none: never)."""
    _check("any_of", predicates)

    def any_of_predicate(old: dict[str, Any], new: dict[str, Any]) -> bool:
        return any(predicate(old, new) for predicate in predicates)

    any_of_predicate.__qualname__ = f"any_of({', '.join(map(_name, predicates))})"
    return any_of_predicate


def all_of(*predicates: Predicate) -> Predicate:
    """Combine predicates: the change matters when all of them say so (none: always)."""
    _check("all_of", predicates)

    def all_of_predicate(old: dict[str, Any], new: dict[str, Any]) -> bool:
        return all(predicate(old, new) for predicate in predicates)

    all_of_predicate.__qualname__ = f"all_of({', '.join(map(_name, predicates))})"
    return all_of_predicate


def not_(predicate: Predicate) -> Predicate:
    """Negate a predicate, for example ``not_(resource_version_differs)``.

    Safe with :func:`crwatch.changed`: negating never turns a deletion into a dropped
    event, because deletions do not go through predicates.
    """
    _check("not_", (predicate,))

    def not_predicate(old: dict[str, Any], new: dict[str, Any]) -> bool:
        return not predicate(old, new)

    not_predicate.__qualname__ = f"not_({_name(predicate)})"
    return not_predicate


def _name(predicate: Predicate) -> str:
    return getattr(predicate, "__qualname__", None) or repr(predicate)
