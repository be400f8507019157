"""Rollback drills (R-DEP-09): roll a deployment back on purpose, verify that what is served
afterwards is consistent, time it against the R-DEP-07 tiers, record it, and optionally
put the deployment back as it was.

The rollback is the service's own (:meth:`DeploymentService.rollback`, kind ``rollback``
with a ``drill`` detail, no bad windows: a drill's predictions were not bad). Then:

1. **replicas**: every replica that reported within the liveness window serves the new
   state version with live weight on the primary only (R-DEP-06); waited for up to
   ``timeout_s`` (the immediate tier, 60 s, by default);
2. **this gateway's route** answers from the primary only;
3. **probe predictions**: a fixed probe set sent through the deployment is answered by
   the primary's version and equals the predictions of that version loaded directly
   (the registry's files, the one loader);
4. **prediction cache**: no entry of a rolled-back version remains. The drill first puts
   the probe set's answers of each candidate version in the cache (so there is something
   to leave behind), and after the rollback asks the cache to drop that version again:
   the number it still found must be 0.

The outcome is a decision record of kind ``drill`` with every check and timing. The probe
requests go through the real gateway, so they are logged like any request (a handful of
rows, their ``extra`` naming the deployment route).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel._models import invalid_input
from keel.errors import Conflict, InvalidInput
from keel.serving._segments import FEATURE_PREFIX
from keel.serving.interface import Target

if TYPE_CHECKING:
    from keel.deploy.models import Deployment
    from keel.deploy.service import DeploymentService
    from keel.serving.gateway import Gateway

__all__ = [
    "MAX_PROBE_ROWS",
    "TIERS_S",
    "DrillRequest",
    "LiveGateway",
    "check_request",
    "run_drill",
    "tier_of",
]

#: R-DEP-07's tiers: immediate < 1 min, rapid < 15 min, delayed < 4 h.
TIERS_S = (("immediate", 60.0), ("rapid", 900.0), ("delayed", 14_400.0))
#: Probe rows at most (each is predicted through the gateway and directly).
MAX_PROBE_ROWS = 1000
T = TypeVar("T")


class DrillRequest(BaseModel):
    """A drill: the probe set (or how many of the newest logged requests to take as one),
    whether to restore the prior state afterwards, and how long replicas may take to agree.
    The body of ``POST /v1/deployments/{name}/drill``, also checked by the SDK first."""

    model_config = ConfigDict(extra="forbid")
    instances: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_PROBE_ROWS
    )
    probe_rows: int = Field(default=20, ge=1, le=MAX_PROBE_ROWS)
    restore: bool = True
    timeout_s: float = Field(default=60.0, gt=0, le=3600)


def check_request(**fields: Any) -> DrillRequest:
    """A :class:`DrillRequest` (None values take the defaults); InvalidInput naming the field."""
    try:
        return DrillRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise invalid_input(exc) from None


def tier_of(seconds: float) -> str:
    """The R-DEP-07 tier a rollback of ``seconds`` meets, or ``too_slow``.

    >>> tier_of(0.4), tier_of(120), tier_of(20_000)
    ('immediate', 'rapid', 'too_slow')
    """
    for name, limit in TIERS_S:
        if seconds < limit:
            return name
    return "too_slow"


@dataclass(slots=True)
class LiveGateway:
    """A running gateway seen from another thread: the drill runs in a worker thread while
    the gateway's event loop keeps answering requests."""

    gateway: Gateway
    loop: asyncio.AbstractEventLoop

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def predict(self, target: Target, instances: list[dict[str, Any]]) -> dict[str, Any]:
        """The response body of one predict request through the gateway."""
        body = json.dumps({"instances": instances}).encode()
        return self._run(self.gateway.predict(target, body, client_key="drill")).body

    def drop_cached(self, model: str, version: int) -> int:
        """Drop ``model`` v``version``'s cache entries (every replica); how many were here."""
        return self._run(self.gateway.invalidate(model=model, version=version))

    def flush_log(self, timeout_s: float) -> None:
        """Write this gateway's buffered prediction-log rows, so the newest requests it
        answered are there to probe with (the log otherwise flushes on its interval)."""
        flush = getattr(self.gateway.prediction_log, "flush", None)
        if flush is not None:
            flush(timeout_s)

    def has_cache(self) -> bool:
        """Whether this gateway caches predictions at all."""
        return self.gateway.cache is not None

    def served_arms(self, name: str) -> dict[str, int] | None:
        """Arm → version of the live arms this gateway routes ``name`` to (None: unknown)."""
        route = self.gateway.routes.routes.get(name)
        return None if route is None else {a.name: a.version for a in route.arms.values()}


def _probe_set(
    service: DeploymentService, deployment: Deployment, instances: Sequence[Any] | None, rows: int
) -> list[dict[str, Any]]:
    if instances is not None:
        if not instances or len(instances) > MAX_PROBE_ROWS:
            raise InvalidInput(f"instances: send 1..{MAX_PROBE_ROWS} rows", field="instances")
        if not all(isinstance(row, dict) for row in instances):
            raise InvalidInput("instances: each row is an object of columns", field="instances")
        return [dict(row) for row in instances]
    if not 1 <= rows <= MAX_PROBE_ROWS:
        raise InvalidInput(f"probe_rows: expected 1..{MAX_PROBE_ROWS}", field="probe_rows")
    logged = pd.DataFrame()
    if service.predictions_root is not None:
        from keel.serving.predquery import predictions

        logged = predictions(
            deployment.model,
            root=service.predictions_root,
            deployment=deployment.name,
            limit=rows,
            newest=True,
        ).to_pandas()
    columns = [c for c in logged.columns if c.startswith(FEATURE_PREFIX)]
    if logged.empty or not columns:
        raise InvalidInput(
            f"instances: deployment {deployment.name!r} has no logged requests to probe with; "
            "send a probe set",
            field="instances",
        )
    frame = logged[columns].rename(columns=lambda c: c[len(FEATURE_PREFIX) :])
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return records


def _same(served: Sequence[Any], direct: Sequence[Any]) -> list[int]:
    """Indexes where the two answers differ (numbers compared to 1e-9 relative)."""
    differ = []
    for i, (a, b) in enumerate(zip(served, direct, strict=True)):
        if isinstance(a, int | float) and isinstance(b, int | float):
            if not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12):
                differ.append(i)
        elif str(a) != str(b):
            differ.append(i)
    return differ


def _direct(
    service: DeploymentService, model: str, version: int, probe: list[dict[str, Any]]
) -> list[Any]:
    from keel.monitoring.diagnosis import model_input

    if service.model_loader is None:
        raise InvalidInput("instances: no model loader configured", field="instances")
    loaded = service.model_loader(service.registry.get_version(model, version))
    frame = pd.DataFrame(probe)
    predicted = np.asarray(loaded.predict(model_input(loaded, frame, list(frame.columns))))
    out: list[Any] = predicted.tolist()
    return out


def _wait_for_replicas(
    service: DeploymentService, name: str, version: int, primary: str, timeout_s: float
) -> dict[str, Any]:
    """Poll the replica reports until every live one serves ``version`` on the primary only."""
    began = time.monotonic()
    while True:
        current = service.get(name)
        fresh_ms = service.replica_ttl_s * 1000
        live = [r for r in current.replicas if service.clock() - r.reported_at_ms <= fresh_ms]
        wrong = [
            r.replica
            for r in live
            if r.state_version < version or any(w > 0 for a, w in r.weights.items() if a != primary)
        ]
        elapsed = time.monotonic() - began
        if live and not wrong:
            return {"ok": True, "replicas": [r.replica for r in live], "waited_s": elapsed}
        if elapsed >= timeout_s:
            reason = "no replica reported" if not live else f"not yet consistent: {wrong}"
            return {"ok": False, "replicas": [r.replica for r in live], "waited_s": elapsed,
                    "reason": reason}  # fmt: skip
        time.sleep(0.05)


def run_drill(
    service: DeploymentService,
    serving: LiveGateway | None,
    name: str,
    *,
    instances: Sequence[Any] | None = None,
    probe_rows: int = 20,
    restore: bool = True,
    timeout_s: float = 60.0,
    actor: str | None = None,
) -> dict[str, Any]:
    """Roll ``name`` back as a drill, verify, record a ``drill`` decision and (``restore``)
    put the prior state back. Returns the checks, timings and tier.

    InvalidInput names ``instances``/``probe_rows``/``timeout_s``; Conflict when the
    deployment is finished or changes during the drill; NotFound for an unknown one.
    """
    if not 0 < timeout_s <= 3600:
        raise InvalidInput("timeout_s: expected (0, 3600]", field="timeout_s")
    before = service.store.get_deployment(name)
    if before.status not in ("active", "paused"):
        raise Conflict(f"deployment {name!r} is {before.status}; nothing to drill", field="status")
    policy = service.policy_of(before)
    primary = str(policy.arm("primary").name)
    versions = before.versions
    candidates = {a: v for a, v in versions.items() if a != primary}
    if serving is not None and instances is None:
        serving.flush_log(timeout_s)
    probe = _probe_set(service, before, instances, probe_rows)
    direct = _direct(service, before.model, versions[primary], probe)
    seeded: dict[str, int] = {}
    if serving is not None and serving.has_cache():
        for version in sorted(set(candidates.values())):  # something for the rollback to clear
            serving.predict(Target(before.model, version=version), probe)
            seeded[f"v{version}"] = len(probe)
    who = actor or "unknown"
    started = time.perf_counter()
    rolled = service.rollback(
        name,
        reason="rollback drill",
        actor=who,
        details={"drill": {"restore": restore, "probe_rows": len(probe)}},
        expected_version=before.version,
        mark_bad_windows=False,
    )
    committed_s = time.perf_counter() - started
    checks: dict[str, Any] = {}
    if serving is not None:
        arms = serving.served_arms(name)
        checks["route"] = {"ok": arms is not None and set(arms) == {primary}, "arms": arms}
        body = serving.predict(Target(name, deployment=True), probe)
        served = list(body.get("predictions", []))
        differ = _same(served, direct) if len(served) == len(direct) else list(range(len(probe)))
        checks["probe"] = {
            "ok": body.get("arm") == primary and body.get("version") == versions[primary]
            and not differ,
            "rows": len(probe), "arm": body.get("arm"), "version": body.get("version"),
            "differing_rows": differ[:20],
        }  # fmt: skip
        left = {
            f"v{v}": serving.drop_cached(before.model, v) for v in sorted(set(candidates.values()))
        }
        checks["cache"] = {
            "ok": not any(left.values()), "seeded": seeded, "remaining": left,
            "cache": serving.has_cache(),
        }  # fmt: skip
    checks["replicas"] = _wait_for_replicas(service, name, rolled.version, primary, timeout_s)
    elapsed = time.perf_counter() - started
    ok = serving is not None and all(c["ok"] for c in checks.values())
    report: dict[str, Any] = {
        "deployment": name,
        "model": before.model,
        "passed": ok,
        "primary": primary,
        "rolled_back": candidates,
        "committed_s": committed_s,
        "consistent_s": elapsed,
        "tier": tier_of(elapsed),
        "within_immediate": elapsed < TIERS_S[0][1],
        "checks": checks,
        "verified_in_gateway": serving is not None,
        "restored": False,
        "state_version": rolled.version,
    }
    summary = (
        f"rollback drill {'passed' if ok else 'FAILED'}: consistent after {elapsed:.2f}s "
        f"({report['tier']}); checks: "
        + ", ".join(f"{k} {'ok' if v['ok'] else 'failed'}" for k, v in checks.items())
    )
    if restore:
        record = service.decision_log.build(
            "drill", before.model, summary, {**report, "restored": True}, who, name,
            at_ms=service.clock(),
        )  # fmt: skip
        restored = service.store.update_deployment(
            name,
            rolled.version,
            status=before.status,
            state=before.state,
            at_ms=service.clock(),
            decisions=[record],
        )
        service.notify(restored, "resumed")
        report.update(restored=True, state_version=restored.version)
    else:
        service.decision_log.record(
            "drill", before.model, summary, report, who, name, at_ms=service.clock()
        )
    return report
