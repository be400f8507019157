"""keel.features is a domain package: no adapters, and no import of keel.serving."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import keel.features

SRC = Path(keel.features.__file__).parent
FORBIDDEN = ("keel.api", "keel.cli", "keel.client", "keel.serving", "fastapi", "typer", "starlette")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(SRC.glob("*.py")), ids=lambda p: p.name)
def test_features_module_imports_no_adapter_or_serving(path: Path) -> None:
    bad = sorted(n for n in _imports(path) if n.startswith(FORBIDDEN))
    assert not bad, f"{path.name} imports {bad}"


def test_public_names_are_exported() -> None:
    # The names load on first use (PEP 562), so they are compared with the lazy table,
    # and each must resolve to the very object of the submodule the table names.
    exported = set(keel.features.__all__)
    assert exported == set(keel.features._LAZY)
    for name in sorted(exported):
        defined = importlib.import_module(keel.features._LAZY[name])
        assert getattr(keel.features, name) is getattr(defined, name), name
