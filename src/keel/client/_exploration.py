"""Serving exploration in :class:`keel.Client` (R-TRN-24): a model's share of requests the
gateway answers with a fixed action, logging ``explore`` and ``propensity``.

Both transports without new transport methods: embedded, :mod:`keel.serving.exploration`
runs on the transport's services; over HTTP, ``PUT``/``GET``/``DELETE
/v1/models/{name}/exploration`` run it server-side. One validator, the same InvalidInput
naming ``exploration.<field>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["ExplorationMixin"]


class ExplorationMixin:
    """``set_exploration``, ``get_exploration`` and ``clear_exploration``; mixed into
    :class:`keel.Client`."""

    transport: Transport

    def set_exploration(
        self, model: str, *, share: float, action: Any, key: str = "request_id"
    ) -> dict[str, Any]:
        """Answer ``share`` of ``model``'s requests (0 < share < 1) with ``action``: the rows
        whose routing key (``request_id`` or ``entity_key``) hashes into the share, stably.
        Responses list ``explored`` per row; the log keeps the model's output with
        ``explore`` and ``propensity``. Returns the stored policy; InvalidInput naming
        ``exploration.<field>``."""
        body = {"share": share, "action": action, "key": key}
        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.serving.exploration import set_exploration

            return set_exploration(services.registry, model, body).model_dump()
        result: dict[str, Any] = self.transport._request("PUT", _url(model), json=body).json()  # type: ignore[attr-defined]
        return result

    def get_exploration(self, model: str) -> dict[str, Any] | None:
        """``model``'s exploration policy, or None when it explores nothing."""
        from keel.errors import NotFound

        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.serving.exploration import get_exploration

            found = get_exploration(services.registry, model)
            return None if found is None else found.model_dump()
        try:
            result: dict[str, Any] = self.transport._request("GET", _url(model)).json()  # type: ignore[attr-defined]
        except NotFound as error:
            if error.field == "name" and "no exploration policy" in error.message:
                return None
            raise
        return result

    def clear_exploration(self, model: str) -> bool:
        """Stop exploring ``model``'s requests; whether it had a policy."""
        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.serving.exploration import clear_exploration

            return clear_exploration(services.registry, model)
        response = self.transport._request("DELETE", _url(model)).json()  # type: ignore[attr-defined]
        return bool(response["removed"])


def _url(model: str) -> str:
    return f"/v1/models/{quote(model, safe='')}/exploration"
