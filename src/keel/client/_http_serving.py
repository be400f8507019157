"""Deployment, decision and predict calls of :class:`~keel.client._http.HttpTransport`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from keel.client._http_base import HttpBase, q
from keel.decisions.models import Decision
from keel.decisions.prevention import ResolveRequest
from keel.deploy.models import Deployment

if TYPE_CHECKING:
    from keel.deploy.replay import ReplayRequest
    from keel.serving.interface import Target

__all__ = ["HttpServing"]


class HttpServing(HttpBase):
    """Deployments, their decisions and predictions over the REST API."""

    def create_deployment(self, policy: dict[str, Any]) -> Deployment:
        return self._call("POST", "/v1/deployments", Deployment, json=policy)

    def get_deployment(self, name: str) -> Deployment:
        return self._call("GET", f"/v1/deployments/{q(name)}", Deployment)

    def list_deployments(self, model: str | None) -> list[Deployment]:
        query = f"?{urlencode({'model': model})}" if model else ""
        return self._call_list("GET", f"/v1/deployments{query}", Deployment)

    def deployment_action(
        self, name: str, action: str, reason: str | None, arm: str | None
    ) -> Deployment:
        body = {k: v for k, v in (("reason", reason), ("arm", arm)) if v is not None}
        url = f"/v1/deployments/{q(name)}/{action}"
        return self._call("POST", url, Deployment, json=body)

    def replay_deployment(self, name: str, request: ReplayRequest) -> dict[str, Any]:
        url = f"/v1/deployments/{q(name)}/replay"
        body = request.model_dump(mode="json", exclude_none=True)
        result: dict[str, Any] = self._request("POST", url, json=body).json()
        return result

    def deployment_decisions(self, name: str, limit: int) -> list[Decision]:
        url = f"/v1/deployments/{q(name)}/decisions?{urlencode({'limit': limit})}"
        return self._call_list("GET", url, Decision)

    def decisions(
        self,
        model: str | None,
        kind: str | None,
        since: str | None,
        deployment: str | None,
        limit: int,
        open: bool | None = None,
    ) -> list[Decision]:
        params: dict[str, Any] = {
            "model": model, "kind": kind, "since": since, "deployment": deployment,
            "open": None if open is None else str(open).lower(),
        }  # fmt: skip
        query = urlencode({**{k: v for k, v in params.items() if v is not None}, "limit": limit})
        return self._call_list("GET", f"/v1/decisions?{query}", Decision)

    def get_decision(self, decision_id: int) -> Decision:
        return self._call("GET", f"/v1/decisions/{int(decision_id)}", Decision)

    def resolve_decision(self, decision_id: int, request: ResolveRequest) -> Decision:
        url = f"/v1/decisions/{int(decision_id)}/resolve"
        body = request.model_dump(mode="json", exclude_none=True)
        return self._call("POST", url, Decision, json=body)

    def record_gate_decision(self, name: str, version: int, run_id: str) -> Decision:
        url = f"/v1/models/{q(name)}/versions/{version}/validations"
        return self._call("POST", url, Decision, json={"run_id": run_id})

    def predict(self, target: Target, body: bytes) -> dict[str, Any]:
        name = quote(target.name, safe="")
        if target.deployment:
            path = f"/v1/deployments/{name}/predict"
        elif target.alias is not None:
            path = f"/v1/models/{name}@{quote(target.alias, safe='')}/predict"
        else:
            path = f"/v1/models/{name}/{target.version}/predict"
        headers = {"content-type": "application/json"}
        result: dict[str, Any] = self._request("POST", path, content=body, headers=headers).json()
        return result
