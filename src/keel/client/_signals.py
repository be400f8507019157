"""Implicit feedback signals in :class:`keel.Client` (R-TRN-23): a model's mapping from
signals (``watched``, ``skipped``, ``dwell_seconds``) to labels.

Both transports without new transport methods: embedded, :mod:`keel.monitoring.signals`
runs on the transport's services; over HTTP, ``PUT``/``GET /v1/models/{name}/signals``
run it server-side. One validator, the same InvalidInput naming ``signals.<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["SignalsMixin"]


class SignalsMixin:
    """``set_signals`` and ``get_signals``; mixed into :class:`keel.Client`."""

    transport: Transport

    def set_signals(self, model: str, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``model``'s signal mapping (a fixed label per signal, or
        ``{threshold: x, above: 1, below: 0}`` for a signal with a value); feedback items
        may then send ``signal`` (+ ``value``) with ``model`` instead of ``label``.
        Returns the stored mapping; InvalidInput naming ``signals.<name>``."""
        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.monitoring.signals import set_signals

            return set_signals(services.registry, model, mapping).to_dict()
        url = f"/v1/models/{quote(model, safe='')}/signals"
        result: dict[str, Any] = self.transport._request("PUT", url, json=dict(mapping)).json()  # type: ignore[attr-defined]
        return result

    def get_signals(self, model: str) -> dict[str, Any] | None:
        """``model``'s signal mapping, or None when it has none."""
        from keel.errors import NotFound

        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.monitoring.signals import get_signals

            found = get_signals(services.registry, model)
            return None if found is None else found.to_dict()
        url = f"/v1/models/{quote(model, safe='')}/signals"
        try:
            result: dict[str, Any] = self.transport._request("GET", url).json()  # type: ignore[attr-defined]
        except NotFound as error:
            if error.field == "name" and "no signal mapping" in error.message:
                return None
            raise
        return result
