"""keel.features is a domain package: no adapters, and no import of keel.serving."""

from __future__ import annotations

import ast
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
    public = {n for n in vars(keel.features) if not n.startswith("_")}
    modules = {n for n, v in vars(keel.features).items() if type(v) is type(keel)}
    assert set(keel.features.__all__) == public - modules - {"annotations"}
