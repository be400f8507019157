"""Policy documents (deployment policies, gate policies, triggers) written as YAML or JSON.

One reader for all of them, so each refuses the same inputs the same way: text that is
not YAML/JSON is an InvalidInput naming the document (422, CLI exit 2); text nested
deeper than the parsers can follow (both recurse once per level, so 100,000 ``[`` were a
RecursionError, a 500) or bytes that are not UTF-8 are a BadRequest, as request bodies
are everywhere else (issue 15 item 8).
"""

from __future__ import annotations

import json
from typing import Any

from keel.errors import BadRequest, InvalidInput

__all__ = ["load_document"]


def load_document(
    source: str | bytes, *, field: str, what: str | None = None, json_when_braced: bool = True
) -> Any:
    """Parse YAML or JSON text: with ``json_when_braced`` text starting with ``{`` is read
    as JSON, anything else as YAML (of which JSON is nearly a subset). ``field`` names the
    document in errors; ``what`` (default ``field``) is how the message calls it, e.g. a
    file's path."""
    import yaml

    label = what or field
    if isinstance(source, bytes | bytearray):
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{label}: not UTF-8 ({exc})", field=field) from None
    try:
        if json_when_braced and source.lstrip().startswith("{"):
            return json.loads(source)
        return yaml.safe_load(source)
    except RecursionError:
        raise BadRequest(f"{label}: nested too deeply", field=field) from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{label}: not valid YAML or JSON: {exc}", field=field) from None
