"""The docs keep up with the code: setup commands, settings, error codes, routes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from keel.api import create_app
from keel.cli.main import app as cli_app
from keel.config import Settings
from keel.errors import KeelError

ROOT = Path(__file__).resolve().parents[1]


def _read(relative: str) -> str:
    path = ROOT / relative
    assert path.is_file(), f"{relative} is missing"
    return path.read_text(encoding="utf-8")


def _errors(cls: type[KeelError] = KeelError) -> list[type[KeelError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _errors(sub)
    return found


def _cli_envvars(command: object) -> set[str]:
    names = {getattr(p, "envvar", None) for p in getattr(command, "params", [])}
    for sub in getattr(command, "commands", {}).values():
        names |= _cli_envvars(sub)
    return {n for n in names if isinstance(n, str)}


@pytest.mark.parametrize(
    "command",
    ["pip install -e '.[all]' && keel demo", "pip install -e '.[dev]' && python -m pytest"],
)
def test_readme_has_setup_command(command: str) -> None:
    assert command in _read("README.md")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_configuration_documents_setting(name: str) -> None:
    assert f"`KEEL_{name.upper()}`" in _read("docs/configuration.md")


def test_configuration_documents_no_unknown_variables() -> None:
    documented = set(re.findall(r"KEEL_[A-Z][A-Z0-9_]*", _read("docs/configuration.md")))
    known = {f"KEEL_{name.upper()}" for name in Settings.model_fields}
    known |= _cli_envvars(typer.main.get_command(cli_app))
    unknown = {name for name in documented - known if not name.startswith("KEEL_TEST_")}
    assert unknown == set()


@pytest.mark.parametrize("cls", _errors(), ids=lambda c: c.__name__)
def test_api_doc_documents_error_code(cls: type[KeelError]) -> None:
    doc = _read("docs/api.md")
    row = re.search(rf"^\| `{cls.code}` \| (\d+) \|", doc, re.MULTILINE)
    assert row is not None, f"docs/api.md has no row for `{cls.code}`"
    assert int(row.group(1)) == cls.status


def _normalised(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0])


ROUTES = sorted(create_app(Settings(home=ROOT / ".unused")).openapi()["paths"])


@pytest.mark.parametrize("path", ROUTES)
def test_api_doc_documents_route(path: str) -> None:
    documented = {
        _normalised(p) for p in re.findall(r"`(?:[A-Z]+ )?(/[^`]*)`", _read("docs/api.md"))
    }
    assert _normalised(path) in documented


def test_features_docs_materialise_up_to_now_not_a_fixed_past_date() -> None:
    """#15.24: a fixed past end date with a 3-day TTL left every online value null."""
    text = _read("docs/features.md")
    assert re.search(r"materiali[sz]e\w*\(\s*[\"']20\d\d-", text) is None
    assert re.search(r"keel features materialize 20\d\d-", text) is None
    assert "materialize_incremental(datetime.now(UTC))" in text
