"""Served interleaving in :class:`keel.Client` (R-DEP-18): rank candidates with both arms of
a deployment, record clicks, read the preference test, on both transports.

Both check the request with the route's own validators first
(:func:`keel.deploy.interleaving_models.check_rank`, ``check_clicks``). Over HTTP the
calls go to ``/v1/deployments/{name}/rank|clicks|interleaving``; embedded they call the
same service functions the routes call, ranking through the embedded gateway (the
server's gateway in this process), so both answer the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from keel.client._local_errors import full_disk_as_served

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["InterleavingMixin"]


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@full_disk_as_served
class InterleavingMixin:
    """``rank``, ``record_clicks`` and ``interleaving``; mixed into :class:`keel.Client`."""

    transport: Transport

    def _interleaving_services(self) -> Any | None:
        # LocalTransport holds the domain services; the HTTP transport does not.
        return getattr(self.transport, "services", None)

    def _interleaving_call(self, method: str, name: str, what: str, **kw: Any) -> Any:
        url = f"/v1/deployments/{quote(name, safe='')}/{what}"
        return self.transport._request(method, url, **kw).json()  # type: ignore[attr-defined]

    def rank(
        self,
        name: str,
        instances: Sequence[Mapping[str, Any]],
        *,
        item_ids: Sequence[str | int] | None = None,
        k: int | None = None,
        routing_key: str | int | None = None,
        impression_id: str | None = None,
    ) -> dict[str, Any]:
        """Interleave deployment ``name``'s two arms over the candidate ``instances``.

        Both arms score every candidate; each ranks by its score (positive-class
        probability or value) and team draft merges them, seeded by ``impression_id``
        (default: a new one). Returns ``impression_id``, ``items`` (up to ``k``; ids from
        ``item_ids``, default the row index), ``teams`` (``a``: the primary, ``b``: the
        canary or challenger), ``arms`` and ``versions``.

        >>> shown = client.rank("churn-live", rows, item_ids=ids, k=5)  # doctest: +SKIP
        """
        from keel.deploy.interleaving_models import check_rank

        body = check_rank(
            _drop_none(
                {
                    "instances": [dict(row) for row in instances],
                    "item_ids": None if item_ids is None else list(item_ids),
                    "k": k,
                    "routing_key": routing_key,
                    "impression_id": impression_id,
                }
            )
        )
        services = self._interleaving_services()
        if services is None:
            return dict(
                self._interleaving_call(
                    "POST", name, "rank", json=body.model_dump(mode="json", exclude_none=True)
                )
            )
        from keel.client._deploy_checks import _embedded_gateway
        from keel.deploy.interleaving_service import impressions_of, rank

        embedded = _embedded_gateway(self.transport)
        work = rank(embedded.gateway, impressions_of(services), name, body, client_key="sdk")
        return dict(embedded._run(work))

    def record_clicks(
        self, name: str, impression_id: str, clicked: Sequence[str | int]
    ) -> dict[str, Any]:
        """Record every item clicked in one impression of ``name`` (a repeat replaces the
        earlier clicks). NotFound names ``impression_id``; InvalidInput names ``clicked``
        for an item not shown. ``winner``: the team with more clicks (None: tie or none)."""
        from keel.deploy.interleaving_models import check_clicks

        body = check_clicks({"impression_id": impression_id, "clicked": list(clicked)})
        services = self._interleaving_services()
        if services is None:
            return dict(self._interleaving_call("POST", name, "clicks", json=body.model_dump()))
        from keel.deploy.interleaving_service import impressions_of, record_clicks

        return record_clicks(impressions_of(services), name, body)

    def interleaving(self, name: str, *, alpha: float = 0.05) -> dict[str, Any]:
        """The team-draft preference test of ``name`` over its impressions with a click:
        ``wins_a``, ``wins_b``, ``ties``, ``share_a`` with ``ci_low``/``ci_high``,
        ``pvalue``, ``preferred`` (``a``/``b``/None) and ``preferred_arm``."""
        services = self._interleaving_services()
        if services is None:
            return dict(
                self._interleaving_call("GET", name, "interleaving", params={"alpha": alpha})
            )
        from keel.deploy.interleaving_service import impressions_of, interleaving_test

        return interleaving_test(impressions_of(services), services.deployments, name, alpha=alpha)
