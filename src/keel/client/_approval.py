"""Approval half of :class:`keel.Client`: release or refuse a retrained version (R-REG-02).

Both transports without new transport methods: embedded, the transport's services run
:func:`keel.automation.retrain.approve`; over HTTP, ``POST /v1/models/{name}/versions/{v}/
approve|reject`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["ApprovalMixin"]


class ApprovalMixin:
    """``approve_model_version`` and ``reject_model_version``; mixed into :class:`keel.Client`."""

    transport: Transport

    def approve_model_version(
        self, name: str, version: int, reason: str, *, stage: str = "staging"
    ) -> dict[str, Any]:
        """Release ``version`` into ``stage``: ``staging`` gives it alias ``challenger`` and
        starts its rollout template, ``production`` makes it ``champion``. Approving a
        version whose gates failed, or that was rejected, is recorded as an ``override``.
        InvalidInput for an empty ``reason`` or an unknown stage."""
        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.automation.retrain import approve

            return approve(
                services,
                name,
                version,
                actor=self._actor(),
                reason=reason,
                stage=stage,  # type: ignore[arg-type]
            )
        return self._post(name, version, "approve", {"reason": reason, "stage": stage})

    def reject_model_version(self, name: str, version: int, reason: str) -> dict[str, Any]:
        """Refuse ``version``: it stays registered without the ``challenger`` alias; a
        Conflict when it is the champion."""
        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.automation.retrain import reject

            return reject(services, name, version, actor=self._actor(), reason=reason)
        return self._post(name, version, "reject", {"reason": reason})

    def _actor(self) -> str:
        return getattr(self.transport, "user", None) or "local"

    def _post(self, name: str, version: int, action: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"/v1/models/{quote(name, safe='')}/versions/{int(version)}/{action}"
        result: dict[str, Any] = self.transport._request("POST", url, json=body).json()  # type: ignore[attr-defined]
        return result
