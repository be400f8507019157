"""Served team-draft interleaving for a deployment (R-DEP-18, R-DEP-01).

A scorer ranks: given a request's candidate items (rows), each arm's scores order them
(the positive-class probability of a binary classifier, the value of a regressor; ties
keep the request's order). :func:`rank` scores every candidate with the deployment's
primary arm (team ``a``) and its candidate arm (team ``b``: the canary or challenger)
through the gateway's own predict path (the arm's micro-batcher, the bulkhead for the
experimental arm, its breaker, cache and prediction log), merges the two rankings with
:func:`keel.deploy.interleave.team_draft` seeded by the impression id (the same id and
candidates give the same list) and stores the impression. :func:`record_clicks` credits
the clicked items' teams; :func:`interleaving_test` is the sign test over impressions with
a click (:func:`keel.deploy.interleave.preference_test`).
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from keel._models import now_ms
from keel.deploy.interleave import Interleaving, credit, preference_test, team_draft
from keel.deploy.interleaving_models import (
    ClicksRequest,
    Impression,
    RankRequest,
    item_key,
)
from keel.errors import Conflict, InvalidInput, NotFound, Unavailable
from keel.serving import _json
from keel.serving.interface import Target

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService
    from keel.serving.armroutes import ArmRoute, DeploymentRoute
    from keel.serving.gateway import Gateway
    from keel.store.sql.impressions import ImpressionSql

__all__ = [
    "CANDIDATE_ROLES",
    "impressions_of",
    "interleaving_test",
    "rank",
    "record_clicks",
    "teams_of",
]

#: Roles that play team ``b`` against the primary, first of them in policy order.
CANDIDATE_ROLES = ("canary", "challenger")


def impressions_of(services: Any) -> ImpressionSql:
    """The impression store over the database engine of ``services`` (keel.services)."""
    from keel.store.sql.impressions import ImpressionSql

    return ImpressionSql(services.store.engine)


def teams_of(route: DeploymentRoute) -> tuple[ArmRoute, ArmRoute]:
    """The primary arm and the candidate arm the route serves (live, standby or in its
    shadow phase); InvalidInput naming ``arms`` when it serves no pair."""
    served = [*route.arms.values(), *route.standby, *route.shadows]
    primary = next((arm for arm in served if arm.role == "primary"), None)
    candidate = next((arm for arm in served if arm.role in CANDIDATE_ROLES), None)
    if primary is None or candidate is None:
        raise InvalidInput(
            f"deployment {route.name} does not serve a primary and a canary or challenger "
            "arm: interleaving needs both",
            field="arms",
        )
    return primary, candidate


def _scores(body: dict[str, Any], classes: Sequence[Any] | None, arm: str) -> list[float]:
    """Each row's score in an arm's predict answer (NaN ranks last)."""
    if classes is not None:
        if len(classes) != 2:
            raise InvalidInput(
                f"arm {arm}: ranking needs a binary classifier or a regressor, "
                f"this model has {len(classes)} classes",
                field="model",
            )
        values = [row[1] for row in body["probabilities"]]
    else:
        values = body["predictions"]
    scores = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(
                f"arm {arm}: ranking needs numeric scores, the model answered {value!r}",
                field="model",
            )
        scores.append(-math.inf if math.isnan(value) else float(value))
    return scores


async def _score(
    gateway: Gateway,
    route: DeploymentRoute,
    arm: ArmRoute,
    request: RankRequest,
    client_key: str,
) -> tuple[list[float], int]:
    """The arm's scores of the candidates, and the version that gave them."""
    entry = await gateway.pool.get(route.model, arm.version)
    payload: dict[str, Any] = {
        "instances": request.instances,
        "probabilities": entry.has_probabilities,
    }
    if request.routing_key is not None:
        payload["routing_key"] = request.routing_key
    target = Target(route.name, deployment=True, arm=arm.name)
    result = await gateway.predict(target, _json.dumps(payload), client_key=client_key)
    body = result.body
    if body.get("arm") != arm.name or body.get("fallback"):
        # the bulkhead sent it to the primary, or the breaker to an older version: the
        # list would not compare the two arms, so none is shown
        raise Unavailable(
            f"arm {arm.name} of {route.name} cannot answer now (bulkhead full or breaker "
            "open); retry",
            field="arms",
            retry_after_s=1,
        )
    return _scores(body, entry.model.classes, arm.name), int(body["version"])


def _ranking(ids: Sequence[Any], scores: Sequence[float]) -> list[Any]:
    order = sorted(range(len(ids)), key=lambda i: -scores[i])  # stable: ties keep row order
    return [ids[i] for i in order]


def _repeat(found: Impression, name: str, ids: Sequence[Any], k: int | None) -> dict[str, Any]:
    """A stored impression's answer to a repeated request, or Conflict if the id served
    another list (other candidates, ``k`` or deployment)."""
    same = (
        found.deployment == name
        and found.k == k
        and [item_key(i) for i in found.candidates] == [item_key(i) for i in ids]
    )
    if not same:
        raise Conflict(
            f"impression_id: {found.id!r} already names a list of other candidates",
            field="impression_id",
        )
    return {**found.answer(), "repeated": True}


async def rank(
    gateway: Gateway,
    store: ImpressionSql,
    name: str,
    request: RankRequest,
    *,
    client_key: str,
    clock: Callable[[], int] = now_ms,
) -> dict[str, Any]:
    """Interleave the candidates of ``request`` for deployment ``name`` and store the
    impression; see the module docstring. Raises NotFound (deployment), InvalidInput
    (``arms``, a row, ``model``), Conflict (``impression_id`` used for another list),
    Unavailable (an arm cannot answer now); nothing is stored on an error."""
    ids = request.ids
    if request.impression_id is not None:
        found = await asyncio.to_thread(store.get, request.impression_id)
        if found is not None:
            return _repeat(found, name, ids, request.k)
    route = (await gateway.routes.pick(name, b"{}"))[0]
    primary, candidate = teams_of(route)
    answers = await asyncio.gather(
        _score(gateway, route, primary, request, client_key),
        _score(gateway, route, candidate, request, client_key),
        return_exceptions=True,
    )
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    (scores_a, version_a), (scores_b, version_b) = answers  # type: ignore[misc]
    impression_id = request.impression_id or uuid.uuid4().hex
    mixed = team_draft(
        _ranking(ids, scores_a),
        _ranking(ids, scores_b),
        length=request.k,
        rng=random.Random(impression_id),  # str seeds hash the same in every process
    )
    impression = Impression(
        id=impression_id,
        deployment=name,
        created_at_ms=clock(),
        routing_key=None if request.routing_key is None else str(request.routing_key),
        k=request.k,
        candidates=ids,
        items=list(mixed.items),
        teams=list(mixed.teams),
        arms={"a": primary.name, "b": candidate.name},
        versions={"a": version_a, "b": version_b},
    )
    try:
        await asyncio.to_thread(store.add, impression)
    except Conflict:  # the same id raced in: answer what it stored
        found = await asyncio.to_thread(store.get, impression_id)
        if found is None:
            raise
        return _repeat(found, name, ids, request.k)
    return {**impression.answer(), "repeated": False}


def record_clicks(
    store: ImpressionSql,
    name: str,
    request: ClicksRequest,
    *,
    clock: Callable[[], int] = now_ms,
) -> dict[str, Any]:
    """Record every item clicked in one impression of ``name``, replacing earlier clicks
    of it (a repeat is idempotent). NotFound naming ``impression_id`` for an impression
    unknown to ``name``; InvalidInput naming ``clicked`` for an item it did not show.

    ``winner`` is the team with more clicked items (None: a tie, or no click).
    """
    found = store.get(request.impression_id)
    if found is None or found.deployment != name:
        raise NotFound(
            f"impression {request.impression_id!r} of deployment {name} not found",
            field="impression_id",
        )
    shown = {item_key(item): item for item in found.items}
    clicked: list[Any] = []
    for item in request.clicked:
        if item_key(item) not in shown:
            raise InvalidInput(
                f"clicked: {item!r} was not shown in impression {found.id}", field="clicked"
            )
        if shown[item_key(item)] not in clicked:
            clicked.append(shown[item_key(item)])
    winner = credit(Interleaving(tuple(found.items), tuple(found.teams)), clicked)  # type: ignore[arg-type]
    stored = winner if winner is not None else ("tie" if clicked else None)
    store.set_clicks(found.id, clicked, stored, clock())
    return {
        "impression_id": found.id,
        "deployment": name,
        "clicked": clicked,
        "winner": winner,
        "tie": stored == "tie",
        "replaced": found.clicked is not None,
    }


def interleaving_test(
    store: ImpressionSql, deployments: DeploymentService, name: str, *, alpha: float = 0.05
) -> dict[str, Any]:
    """The team-draft preference of ``name``: wins of each team and ties over the
    impressions with a click, the share ``a`` won with its exact CI, the two-sided sign
    test's p-value and the preferred team (and its arm) when significant at ``alpha``."""
    deployments.store.get_deployment(name)  # NotFound naming the deployment
    tally = store.tally(name)
    outcomes: list[Any] = ["a"] * tally.get("a", 0) + ["b"] * tally.get("b", 0)
    outcomes += [None] * tally.get("tie", 0)
    test = preference_test(outcomes, alpha=alpha)  # InvalidInput naming ``alpha``
    teams = store.teams(name)
    arms = {"a": {t[0] for t in teams}, "b": {t[2] for t in teams}}
    preferred_arm = None
    if test.preferred is not None and len(arms[test.preferred]) == 1:
        preferred_arm = next(iter(arms[test.preferred]))
    return {
        "deployment": name,
        "impressions": sum(tally.values()),
        "with_clicks": len(outcomes),
        "wins_a": test.wins_a,
        "wins_b": test.wins_b,
        "ties": test.ties,
        "share_a": test.share_a,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "pvalue": test.pvalue,
        "alpha": test.alpha,
        "preferred": test.preferred,
        "preferred_arm": preferred_arm,
        "teams": [
            {"a": {"arm": a, "version": va}, "b": {"arm": b, "version": vb}}
            for a, va, b, vb in sorted(teams)
        ],
    }
