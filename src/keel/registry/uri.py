"""Parse model references: ``models:/name/3``, ``models:/name@champion``, ``name@alias``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from keel._models import MAX_VERSION
from keel.errors import InvalidInput

__all__ = ["ALIAS_PATTERN", "ModelRef", "check_alias", "parse_model_ref"]

ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
_RESERVED = {"latest"}


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A reference to one version: by number, by alias, or the latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version if self.version is not None else 'latest'}"


def check_alias(alias: object) -> str:
    """An alias: a letter then up to 63 letters, digits, '_' or '-'; not 'latest'."""
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias) or alias.lower() in _RESERVED:
        raise InvalidInput(
            f"alias {alias!r} is invalid: start with a letter, then letters, digits, '_' or '-' "
            "(at most 64), and not 'latest'",
            field="alias",
        )
    return alias


def parse_model_ref(text: str) -> ModelRef:
    """Parse a model URI.

    >>> parse_model_ref("models:/churn@champion")
    ModelRef(name='churn', version=None, alias='champion')
    >>> parse_model_ref("models:/churn/3")
    ModelRef(name='churn', version=3, alias=None)
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("model reference is empty", field="model")
    body = text[len("models:/") :] if text.startswith("models:/") else text
    if "@" in body:
        name, _, alias = body.partition("@")
        if not name:
            raise InvalidInput(f"model reference {text!r} has no name", field="model")
        return ModelRef(name=name, alias=check_alias(alias))
    name, slash, version = body.rpartition("/")
    if not slash:
        return ModelRef(name=body)
    if not name:
        raise InvalidInput(f"model reference {text!r} has no name", field="model")
    if version == "latest":
        return ModelRef(name=name)
    if not version.isdigit() or not 1 <= int(version) <= MAX_VERSION:
        raise InvalidInput(
            f"model reference {text!r}: version must be an integer in 1..{MAX_VERSION}, "
            "'latest' or '@alias'",
            field="model",
        )
    return ModelRef(name=name, version=int(version))
