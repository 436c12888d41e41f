"""Typed models: a store's or an event's objects decoded into a user type.

``informer.store.typed(Widget)`` is a read-only view whose reads return ``Widget`` instances
instead of dicts; ``event.typed(Widget)`` does the same for one event. A model is

* a :class:`msgspec.Struct` subclass: a compact cache's bytes are decoded straight into it
  (msgspec validates types while decoding; the dict is never built), and a dict is
  converted with :func:`msgspec.convert`;
* an attrs class: built from the object's top-level fields (``apiVersion`` and ``kind``
  under their attrs names ``api_version`` / ``kind`` or as written; nested values as
  parsed, for the class's own converters);
* any other callable taking the object's dict and returning the model (a pydantic
  ``Model.model_validate``, a ``cattrs`` structure function, a ``from_dict``).

An object that does not fit raises :class:`ModelError` naming the object and the model, with
the decoder's own message (which for msgspec names the field path). crwatch imports msgspec
only when a model is a ``Struct``: it is the user's dependency, not crwatch's.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from ._events import Packed
from ._exceptions import CrwatchError

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["ModelError", "TypedStore", "decode_model"]

M = TypeVar("M")


class ModelError(CrwatchError, ValueError):
    """An object does not fit the model it is decoded into.

    Attributes:
        key: the object's key (``namespace/name``).
        model: the model's name.
    """

    def __init__(self, key: str, model: str, reason: str) -> None:
        super().__init__(f"object {key!r} does not fit {model}: {reason}")
        self.key = key
        self.model = model


def _model_name(model: object) -> str:
    return getattr(model, "__qualname__", None) or repr(model)


def _is_struct(model: object) -> bool:
    msgspec = sys.modules.get("msgspec")
    return msgspec is not None and isinstance(model, type) and issubclass(model, msgspec.Struct)


_line_types: dict[type[Any], type[Any]] = {}


def _line_type(model: type[Any]) -> type[Any]:
    """Return a Struct for a watch line ``{"type": ..., "object": <model>}`` (one per model)."""
    line = _line_types.get(model)
    if line is None:
        import msgspec

        line = _line_types[model] = msgspec.defstruct("Line", [("object", model)])
    return line


def _attrs_kwargs(model: type[Any], obj: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for field in attrs.fields(model):
        name = field.alias or field.name
        for key in (name, "apiVersion" if name == "api_version" else None):
            if key is not None and key in obj:
                kwargs[name] = obj[key]
                break
    return kwargs


def decode_model(model: Any, value: dict[str, Any] | Packed, key: str) -> Any:
    """Decode one object (a dict, or a compact cache's packed bytes) into ``model``.

    Raises:
        ModelError: the object does not fit the model.
    """
    try:
        if _is_struct(model):
            import msgspec

            if type(value) is tuple:
                raw, wrapped = value[0], value[3]
                if wrapped:
                    try:
                        return msgspec.json.decode(raw, type=_line_type(model)).object
                    except msgspec.ValidationError as exc:
                        # Paths within the object, not within the watch line it came in.
                        reason = str(exc).replace("`$.object.", "`$.").replace("`$.object`", "`$`")
                        raise ModelError(key, _model_name(model), reason) from exc
                return msgspec.json.decode(raw, type=model)
            return msgspec.convert(value, model)
        obj = value
        if type(obj) is tuple:
            from ._events import unpack

            obj = unpack(obj)
        if attrs.has(model):
            return model(**_attrs_kwargs(model, obj))  # type: ignore[arg-type]
        return model(obj)
    except ModelError:
        raise
    except Exception as exc:  # the decoder's own error type: msgspec, attrs, pydantic, ...
        raise ModelError(key, _model_name(model), str(exc) or type(exc).__name__) from exc


class TypedStore(Generic[M]):
    """A read-only view of a :class:`crwatch.Store` whose reads return ``M`` instances.

    Made by :meth:`crwatch.Store.typed`. Each read decodes the cached object into the model
    (see :func:`crwatch.Store.typed` for what a model may be); keys, ``len`` and ``in`` are
    the store's.
    """

    __slots__ = ("_model", "_store")

    def __init__(self, store: Store, model: type[M] | Callable[[dict[str, Any]], M]) -> None:
        self._store = store
        self._model = model

    def __repr__(self) -> str:
        return f"<crwatch.TypedStore {_model_name(self._model)} {len(self._store)} objects>"

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def get(self, key: str) -> M | None:
        """Return the object cached under ``key`` as a model, or ``None``.

        Raises:
            ModelError: the object does not fit the model.
        """
        value = self._store._stored(key)
        return None if value is None else decode_model(self._model, value, key)

    def list(self) -> builtins.list[M]:
        """Return every cached object as a model (a new list).

        Raises:
            ModelError: an object does not fit the model.
        """
        return [decode_model(self._model, value, key) for key, value in self._store._stored_items()]

    def keys(self) -> builtins.list[str]:
        """Return every cached key (a new list)."""
        return self._store.keys()
