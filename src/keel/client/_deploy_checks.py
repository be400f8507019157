"""Deployment checks in :class:`keel.Client`: the rollback drill (R-DEP-09), canary debugging
per step × slice (R-DEP-21) and the holdout lift (R-DEP-18), on both transports.

Kept out of the shared transport files (being split, #15): over HTTP the calls go through
the HTTP transport's one request method to ``/v1/deployments/{name}/drill|debug|holdout``;
embedded they call the same domain functions the routes call, the drill through the
embedded gateway (the server's gateway in this process), so both answer the same. Those
calls bypass the local transport, so the class carries its full-disk rule itself
(:func:`~keel.client._local_errors.full_disk_as_served`: InsufficientStorage, as a 507
over HTTP).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from keel.client._local_errors import full_disk_as_served

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["DeployChecksMixin"]


def _drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


@full_disk_as_served
class DeployChecksMixin:
    """Drill, debug and holdout methods; mixed into :class:`keel.Client`."""

    transport: Transport

    def _services(self) -> Any | None:
        # LocalTransport holds the domain services; the HTTP transport does not.
        return getattr(self.transport, "services", None)

    def _get(self, name: str, what: str, params: dict[str, Any]) -> dict[str, Any]:
        url = f"/v1/deployments/{quote(name, safe='')}/{what}"
        found: dict[str, Any] = self.transport._request(  # type: ignore[attr-defined]
            "GET", url, params=_drop_none(params)
        ).json()
        return found

    def drill_deployment(
        self,
        name: str,
        *,
        instances: Sequence[dict[str, Any]] | None = None,
        probe_rows: int | None = None,
        restore: bool = True,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Roll ``name`` back as a drill and verify it (replicas, probe predictions, cache),
        timed against the rollback tiers; restores the prior state unless ``restore`` is
        false. ``instances`` is the probe set (default: the newest ``probe_rows`` logged
        requests). InvalidInput names a bad field; Conflict when the deployment is finished.
        """
        from keel.deploy.drill import check_request

        body = check_request(
            instances=None if instances is None else [dict(r) for r in instances],
            probe_rows=probe_rows,
            restore=restore,
            timeout_s=timeout_s,
        )
        services = self._services()
        if services is None:
            url = f"/v1/deployments/{quote(name, safe='')}/drill"
            found: dict[str, Any] = self.transport._request(  # type: ignore[attr-defined]
                "POST", url, json=body.model_dump(exclude_none=True)
            ).json()
            return found
        from keel.deploy.drill import LiveGateway, run_drill

        embedded = _embedded_gateway(self.transport)
        return run_drill(
            services.deployments,
            LiveGateway(embedded.gateway, embedded.loop),
            name,
            instances=body.instances,
            probe_rows=body.probe_rows,
            restore=body.restore,
            timeout_s=body.timeout_s,
            actor=getattr(self.transport, "user", None),
        )

    def debug_deployment(
        self,
        name: str,
        *,
        arm: str | None = None,
        slices: Sequence[str] | None = None,
        metric: str | None = None,
        alpha: float = 0.05,
    ) -> dict[str, Any]:
        """The candidate ``arm`` against the primary per traffic step × slice: numbers,
        Holm-adjusted tests, flagged slices and the step each was first flagged at."""
        services = self._services()
        if services is None:
            params = {"arm": arm, "slices": list(slices) if slices else None, "metric": metric}
            return self._get(name, "debug", {**params, "alpha": alpha})
        from keel.deploy.debugging import debug_canary

        return debug_canary(
            services.deployments,
            name,
            arm=arm,
            slices=list(slices) if slices else None,
            metric=metric,
            alpha=alpha,
        )

    def holdout_lift(
        self,
        name: str,
        *,
        holdout_arm: str = "holdout",
        champion_arm: str | None = None,
        metric: str | None = None,
        since: str | int | None = None,
        alpha: float = 0.05,
    ) -> dict[str, Any]:
        """The champion's lift over the ``holdout_arm`` of deployment ``name`` since ``since``
        (epoch ms, ISO-8601 or an age like ``30d``), with its CI and the error-rate change."""
        services = self._services()
        if services is None:
            params = {"holdout_arm": holdout_arm, "champion_arm": champion_arm, "metric": metric}
            return self._get(name, "holdout", {**params, "since": since, "alpha": alpha})
        from keel.deploy.holdout import holdout_lift

        return holdout_lift(
            services.deployments,
            name,
            holdout_arm=holdout_arm,
            champion_arm=champion_arm,
            metric=metric,
            since=since,
            alpha=alpha,
        )


def _embedded_gateway(transport: Any) -> Any:
    """The local transport's embedded gateway, started as its first predict would start it
    (closed with the client)."""
    if transport._gateway is None:
        from keel.client._embedded import EmbeddedGateway

        transport._gateway = EmbeddedGateway(transport.services)
    return transport._gateway
