"""Imports flow one way: adapters (api, cli, client, ui) → domain → store.

A domain package never imports an adapter or an adapter library; checked on
the source with ``ast`` so it also covers imports inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "keel"
DOMAIN = [
    "tracking",
    "registry",
    "monitoring",
    "serving",
    "features",
    "auth",
    "deploy",
    "decisions",
    "automation",
    "executors",
    "store",
    "config.py",
    "errors.py",
    "_models.py",
    "_durations.py",
    "_documents.py",
]
FORBIDDEN = (
    "keel.api",
    "keel.cli",
    "keel.client",
    "keel.ui",
    "fastapi",
    "typer",
    "jinja2",
    "starlette",
    "uvicorn",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _domain_files() -> list[Path]:
    files: list[Path] = []
    for entry in DOMAIN:
        target = SRC / entry
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


@pytest.mark.parametrize("path", _domain_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_domain_module_imports_no_adapter(path: Path) -> None:
    bad = sorted(n for n in _imports(path) if n.startswith(FORBIDDEN))
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


#: What serving may import from keel.deploy: its pure modules and entities. The gateway
#: reads deployments through ``serving.deployroutes.DeploymentReader`` (the service is
#: injected at construction), so the deployment service, its SQL and the controller
#: (which itself reads serving's prediction log) stay out of the serving process's imports.
SERVING_MAY_IMPORT_FROM_DEPLOY = frozenset({"keel.deploy.models", "keel.deploy.routing"})


@pytest.mark.parametrize(
    "path", sorted((SRC / "serving").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_serving_reads_deployments_through_the_reader(path: Path) -> None:
    used = {n for n in _imports(path) if n == "keel.deploy" or n.startswith("keel.deploy.")}
    bad = sorted(used - SERVING_MAY_IMPORT_FROM_DEPLOY)
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def _reaches_registry_store(node: ast.AST) -> bool:
    """``registry.store`` / ``self.registry.store``: the registry's store, not its service."""
    if not (isinstance(node, ast.Attribute) and node.attr == "store"):
        return False
    owner = node.value
    return (isinstance(owner, ast.Name) and owner.id == "registry") or (
        isinstance(owner, ast.Attribute) and owner.attr == "registry"
    )


@pytest.mark.parametrize(
    "path", sorted((SRC / "serving").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_serving_reads_the_registry_through_its_service(path: Path) -> None:
    """Aliases and versions come from ``RegistryService`` (``alias_version``, ``resolve``),
    so its checks and errors apply to the gateway too (#15.29)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = sorted(n.lineno for n in ast.walk(tree) if _reaches_registry_store(n))
    assert not lines, f"{path.relative_to(SRC)} reads registry.store on lines {lines}"


@pytest.mark.parametrize(
    "path", sorted((SRC / "features").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_features_never_import_the_composition_root(path: Path) -> None:
    """``FeatureStore(settings)`` opens its own engine; ``keel.services`` imports features,
    never the other way round (#15.29)."""
    bad = sorted(
        n for n in _imports(path) if n == "keel.services" or n.startswith("keel.services.")
    )
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_serving_events_import_no_feature_code() -> None:
    """What lets a standalone FeatureStore look up ``keel.serving.events`` at run time
    (``keel.features.invalidation``) without an import cycle."""
    code = (
        "import sys, keel.serving.events; "
        "print(sorted(m for m in sys.modules if m.startswith(('keel.features', 'keel.services'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
