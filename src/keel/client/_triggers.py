"""Triggers half of :class:`keel.Client`: apply, list, read and evaluate retraining triggers.

Both transports give the same answers and errors: the definition is checked here first
(InvalidInput naming the key path), then sent to the embedded services or to
``/v1/triggers``. Kept out of the shared transport classes: each transport's two or three
calls live in :class:`_Local` and :class:`_Http` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from keel.automation.triggers.models import Trigger, TriggerSpec, parse_trigger
from keel.client._local_errors import full_disk_as_served

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["TriggersMixin"]


class TriggersMixin:
    """Trigger methods; mixed into :class:`keel.Client`."""

    transport: Transport

    def apply_trigger(self, definition: Mapping[str, Any] | TriggerSpec | str | Path) -> Trigger:
        """Create or replace a trigger from a mapping of its YAML keys, a spec, YAML/JSON
        text or a file path; InvalidInput names a bad key path, metric, feature or cron."""
        if isinstance(definition, Path):
            spec = parse_trigger(definition.read_text())
        elif isinstance(definition, TriggerSpec):
            spec = definition
        else:
            spec = parse_trigger(definition if isinstance(definition, str) else dict(definition))
        return _calls(self.transport).apply(spec)

    def list_triggers(self, model: str | None = None) -> list[Trigger]:
        """Every trigger (of ``model``), by name."""
        return _calls(self.transport).list(model)

    def get_trigger(self, name: str) -> Trigger:
        """One trigger with its last evaluation and firing times."""
        return _calls(self.transport).get(name)

    def evaluate_trigger(self, name: str, *, manual: bool = False) -> dict[str, Any]:
        """Evaluate a trigger now (recorded in the decision log); each condition's numbers,
        ``met``, ``fired``, ``reason``, ``action`` and the ``job_id`` it queued, if any.
        ``manual=True`` makes its ``manual`` condition true."""
        return _calls(self.transport).evaluate(name, manual)

    def fire_trigger(
        self, name: str, *, commit: str | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """What CI calls on a commit (R-CICD-02): evaluate now with ``manual`` conditions
        met and ``commit`` (7-64 hex digits) compared by ``code`` conditions; the commit and
        actor are recorded on the evaluation and the retraining run's tags."""
        from keel.automation.triggers.code import parse_fire_event

        event = parse_fire_event({"commit": commit, "actor": actor})
        return _calls(self.transport).fire(name, event.model_dump(exclude_none=True))


@full_disk_as_served
class _Local:
    def __init__(self, transport: Any) -> None:
        self.services, self.user = transport.services, getattr(transport, "user", None)

    def apply(self, spec: TriggerSpec) -> Trigger:
        return self.services.triggers.apply(spec, actor=self.user)  # type: ignore[no-any-return]

    def list(self, model: str | None) -> list[Trigger]:
        return self.services.triggers.list_triggers(model)  # type: ignore[no-any-return]

    def get(self, name: str) -> Trigger:
        return self.services.triggers.get(name)  # type: ignore[no-any-return]

    def evaluate(self, name: str, manual: bool) -> dict[str, Any]:
        result = self.services.triggers.evaluate(name, manual=manual, actor=self.user or "sdk")
        # through JSON, so the embedded answer is the HTTP one value for value
        return orjson.loads(orjson.dumps(result.as_dict()))  # type: ignore[no-any-return]

    def fire(self, name: str, event: dict[str, Any]) -> dict[str, Any]:
        result = self.services.triggers.fire(name, event, actor=self.user)
        return orjson.loads(orjson.dumps(result.as_dict()))  # type: ignore[no-any-return]


class _Http:
    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def apply(self, spec: TriggerSpec) -> Trigger:
        body = spec.model_dump(mode="json", exclude_none=True)
        return self.transport._call("POST", "/v1/triggers", Trigger, json=body)  # type: ignore[no-any-return]

    def list(self, model: str | None) -> list[Trigger]:
        params = {"model": model} if model else {}
        return self.transport._call_list("GET", "/v1/triggers", Trigger, params=params)  # type: ignore[no-any-return]

    def get(self, name: str) -> Trigger:
        return self.transport._call("GET", f"/v1/triggers/{_q(name)}", Trigger)  # type: ignore[no-any-return]

    def evaluate(self, name: str, manual: bool) -> dict[str, Any]:
        url = f"/v1/triggers/{_q(name)}/evaluate"
        return self.transport._request("POST", url, json={"manual": manual}).json()  # type: ignore[no-any-return]

    def fire(self, name: str, event: dict[str, Any]) -> dict[str, Any]:
        url = f"/v1/triggers/{_q(name)}/fire"
        return self.transport._request("POST", url, json=event).json()  # type: ignore[no-any-return]


def _calls(transport: Any) -> _Local | _Http:
    return _Local(transport) if hasattr(transport, "services") else _Http(transport)


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
