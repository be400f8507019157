"""The experiment record of a deployment in :class:`keel.Client` (R-DEP-17): its report and
the amendment of its pre-registered hypothesis, on both transports.

Over HTTP the calls go to ``/v1/deployments/{name}/report|hypothesis``; embedded they call
the same domain functions the routes call, so both answer the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["DeployReportMixin"]


class DeployReportMixin:
    """``deployment_report`` and ``amend_deployment_hypothesis``; mixed into the Client."""

    transport: Transport

    def _report_services(self) -> Any | None:
        # LocalTransport holds the domain services; the HTTP transport does not.
        return getattr(self.transport, "services", None)

    def deployment_report(self, name: str, *, markdown: bool = False) -> Any:
        """The experiment report of deployment ``name`` (a dict; Markdown text when
        ``markdown``): ``label`` ``interim`` while it runs, ``archived`` once it ended."""
        services = self._report_services()
        if services is None:
            url = f"/v1/deployments/{quote(name, safe='')}/report"
            params = {"format": "markdown" if markdown else "json"}
            answer = self.transport._request("GET", url, params=params)  # type: ignore[attr-defined]
            return answer.text if markdown else answer.json()
        from keel.deploy.report import to_markdown
        from keel.deploy.reportarchive import build_report

        report = build_report(services.deployments, services.tracking, name)
        return to_markdown(report) if markdown else report

    def amend_deployment_hypothesis(
        self, name: str, hypothesis: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace the hypothesis of ``name`` before it served anything; Conflict once it
        has (the hypothesis is pre-registered), InvalidInput naming ``hypothesis.*``."""
        services = self._report_services()
        if services is None:
            url = f"/v1/deployments/{quote(name, safe='')}/hypothesis"
            found: dict[str, Any] = self.transport._request(  # type: ignore[attr-defined]
                "PUT", url, json=dict(hypothesis)
            ).json()
            return found
        from keel.deploy.hypothesis import amend_hypothesis

        return amend_hypothesis(
            services.deployments, name, dict(hypothesis), getattr(self.transport, "user", None)
        )
