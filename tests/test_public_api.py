"""The public door: ``__all__`` is sorted and complete, and every public name is documented."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

PUBLIC_MODULES = [
    "crwatch",
    "crwatch.compat",
    "crwatch.metrics",
    "crwatch.otel",
    "crwatch.prometheus",
    "crwatch.testing",
]


def _public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(module_name: str) -> None:
    """Every public, non-module attribute is exported, and ``__all__`` is sorted."""
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    missing = _public_names(module) - set(exported)
    assert not missing, f"public names not in __all__: {sorted(missing)}"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing attribute {name}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    """Each exported class and function, and each public method of them, has a docstring."""
    module = importlib.import_module(module_name)
    undocumented = []
    for name in module.__all__:
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not inspect.getdoc(value):
            undocumented.append(name)
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if attr.startswith("_"):
                    continue
                func = member.fget if isinstance(member, property) else member
                if isinstance(func, (classmethod, staticmethod)):
                    func = func.__func__
                if inspect.isfunction(func) and not inspect.getdoc(func):
                    undocumented.append(f"{name}.{attr}")
    assert not undocumented, f"undocumented public names: {undocumented}"


def test_public_names_report_the_public_module() -> None:
    """Exported classes and functions present themselves as ``crwatch.X``, not private paths."""
    import crwatch

    leaking = [
        name
        for name in crwatch.__all__
        if getattr(getattr(crwatch, name), "__module__", "crwatch").startswith("crwatch._")
    ]
    assert not leaking
