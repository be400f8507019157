"""The tracking service and SQL store on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest

from keel.errors import BadRequest, Conflict, InvalidInput, NotFound
from keel.services import Services
from keel.tracking.models import RunStatus


def test_run_lifecycle_records_times_and_status(services: Services) -> None:
    run = services.tracking.create_run("churn", name="r1")
    assert run.status is RunStatus.RUNNING and run.end_time_ms is None
    ended = services.tracking.end_run(run.id, "FAILED")
    assert ended.status is RunStatus.FAILED
    assert ended.end_time_ms is not None and ended.end_time_ms >= ended.start_time_ms


def test_terminal_run_cannot_be_restarted(services: Services) -> None:
    run = services.tracking.create_run("churn")
    services.tracking.end_run(run.id)
    with pytest.raises(InvalidInput):
        services.tracking.end_run(run.id, "RUNNING")


def test_param_conflict_is_409_and_batch_is_atomic(services: Services) -> None:
    run = services.tracking.create_run("churn", params={"lr": 0.1})
    services.tracking.log_batch(run.id, params={"lr": "0.1"})  # same value: idempotent
    with pytest.raises(Conflict) as caught:
        services.tracking.log_batch(
            run.id, metrics=[{"key": "auc", "value": 0.9}], params={"lr": 0.2}
        )
    assert caught.value.status == 409 and caught.value.field == "params.lr"
    assert services.tracking.get_run(run.id).metrics == {}  # nothing of the batch landed


def test_nan_and_inf_metrics_round_trip(services: Services) -> None:
    run = services.tracking.create_run("churn")
    values = [float("nan"), float("inf"), float("-inf"), 0.5]
    for step, value in enumerate(values):
        services.tracking.log_metric(run.id, "m", value, step=step)
    history = [m.value for m in services.tracking.metric_history(run.id, "m")]
    assert math.isnan(history[0]) and history[1:] == values[1:]
    services.tracking.log_metric(run.id, "n", float("nan"))
    assert math.isnan(services.tracking.get_run(run.id).metrics["n"])


def test_latest_metric_is_highest_step(services: Services) -> None:
    run = services.tracking.create_run("churn")
    services.tracking.log_metric(run.id, "loss", 0.3, step=5)
    services.tracking.log_metric(run.id, "loss", 0.9, step=1)  # late arrival, older step
    assert services.tracking.get_run(run.id).metrics["loss"] == 0.3


def test_unknown_run_and_experiment_raise_not_found(services: Services) -> None:
    with pytest.raises(NotFound) as caught:
        services.tracking.get_run("missing")
    assert "missing" in caught.value.message
    with pytest.raises(NotFound):
        services.tracking.get_experiment("nope")
    with pytest.raises(NotFound):
        services.tracking.log_metric("missing", "m", 1.0)


def test_duplicate_experiment_name_conflicts(services: Services) -> None:
    services.tracking.create_experiment("churn")
    with pytest.raises(Conflict):
        services.tracking.create_experiment("churn")


@pytest.mark.parametrize(
    "key", ["", "a" * 251, "bad\nkey", "../etc", "/abs"], ids=["empty", "long", "nl", "dots", "abs"]
)
def test_invalid_metric_keys_rejected(services: Services, key: str) -> None:
    run = services.tracking.create_run("churn")
    with pytest.raises(InvalidInput):
        services.tracking.log_metric(run.id, key, 1.0)


def test_batch_size_limit(services: Services) -> None:
    services.tracking.max_batch = 3
    run = services.tracking.create_run("churn")
    with pytest.raises(InvalidInput):
        services.tracking.log_batch(
            run.id, metrics=[{"key": f"m{i}", "value": i} for i in range(4)]
        )


def _seed_search(services: Services) -> dict[str, str]:
    ids = {}
    rows = [
        ("a", "lgbm", "growth", 0.91),
        ("b", "lgbm", "risk", 0.85),
        ("c", "xgb", "growth", 0.95),
        ("d", "lgbm", "growth", 0.7),
    ]
    for name, model, team, auc in rows:
        run = services.tracking.create_run(
            "search", name=name, params={"model": model}, tags={"team": team}
        )
        services.tracking.log_metric(run.id, "auc", auc)
        ids[name] = run.id
    services.tracking.create_run("search", name="e", params={"model": "lgbm"})  # no metric
    return ids


def test_search_filter_and_order(services: Services) -> None:
    _seed_search(services)
    page = services.tracking.search_runs(
        ["search"],
        "metrics.auc > 0.8 and params.model = 'lgbm' and tags.team = 'growth'",
        ["metrics.auc DESC"],
    )
    assert [r.name for r in page] == ["a"]
    ordered = services.tracking.search_runs(["search"], None, ["metrics.auc DESC"])
    assert [r.name for r in ordered] == ["c", "a", "b", "d", "e"]  # missing metric sorts last


def test_search_or_in_like_and_attributes(services: Services) -> None:
    _seed_search(services)
    found = services.tracking.search_runs(
        ["search"], "(metrics.auc >= 0.95 or tags.team = 'risk') and name in ('b', 'c')", ["name"]
    )
    assert [r.name for r in found] == ["b", "c"]
    like = services.tracking.search_runs(["search"], "params.model like 'lg%'", ["name"])
    assert [r.name for r in like] == ["a", "b", "d", "e"]
    running = services.tracking.search_runs(["search"], "status = 'RUNNING'")
    assert len(running) == 5


def test_search_pagination_visits_every_run_once(services: Services) -> None:
    ids = _seed_search(services)
    seen, token = [], None
    while True:
        page = services.tracking.search_runs(
            ["search"], None, ["name"], max_results=2, page_token=token
        )
        seen += [r.name for r in page]
        token = page.next_token
        if token is None:
            break
    assert seen == sorted([*ids, "e"])


@pytest.mark.parametrize(
    "expression, token",
    [
        ("metrics.auc >", None),
        ("metrics.auc > 0.8 andd x", "andd"),
        ("foo.x = 1", "foo.x"),
        ("metrics.auc ~ 1", "~"),
        ("metrics.auc = 'x'", "'x'"),
    ],
)
def test_invalid_filter_is_400_naming_token(
    services: Services, expression: str, token: str | None
) -> None:
    services.tracking.create_experiment("search")
    with pytest.raises(BadRequest) as caught:
        services.tracking.search_runs(["search"], expression)
    assert caught.value.status == 400 and caught.value.field == "filter"
    if token is not None:
        assert caught.value.detail["token"] == token


def test_forged_page_token_rejected(services: Services) -> None:
    services.tracking.create_experiment("search")
    with pytest.raises(InvalidInput) as caught:
        services.tracking.search_runs(["search"], page_token="!!!")
    assert caught.value.field == "page_token"
