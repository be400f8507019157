"""keel's public surface is exactly its ``__all__`` (httpx ``tests/test_exported_members.py``)."""

from __future__ import annotations
import __future__

import importlib
from types import ModuleType

import pytest

import keel

PUBLIC_MODULES = ["keel", "keel.client", "keel.errors"]


def _bound_public_names(module: ModuleType) -> list[str]:
    """Names the module binds that do not start with '_', minus submodules and __future__.

    Read through ``dir``/``getattr``, so names a module loads lazily (``keel``'s SDK names,
    PEP 562 ``__getattr__``) count as bound.
    """
    return sorted(
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(value := getattr(module, name), ModuleType)
        and type(value) is not type(__future__.annotations)
    )


def test_keel_all_equals_public_names() -> None:
    assert keel.__all__ == _bound_public_names(keel)


def test_keel_all_names_are_bound_sorted_and_unique() -> None:
    assert keel.__all__ == sorted(set(keel.__all__))
    assert set(keel.__all__) <= set(_bound_public_names(keel))


def test_keel_client_all_equals_public_names() -> None:
    module = importlib.import_module("keel.client")
    assert module.__all__ == _bound_public_names(module)


def test_keel_reexports_client_and_error_classes() -> None:
    errors = importlib.import_module("keel.errors")
    client = importlib.import_module("keel.client")
    classes = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert classes | set(client.__all__) <= set(keel.__all__)


@pytest.mark.parametrize(
    ("module", "name"),
    [(m, n) for m in PUBLIC_MODULES for n in importlib.import_module(m).__all__],
)
def test_public_name_is_importable(module: str, name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module} import {name}", namespace)  # the statement users write
    assert namespace[name] is getattr(importlib.import_module(module), name)


def test_version_is_a_string() -> None:
    assert isinstance(keel.__version__, str) and keel.__version__[0].isdigit()
