"""Served team-draft interleaving (R-DEP-18, R-DEP-01): ``POST /v1/deployments/{name}/rank``
scores the candidates with both arms through the gateway, ``/clicks`` records what was
clicked, ``GET /interleaving`` is the sign test. Real churn models, a live uvicorn server,
SQLite and PostgreSQL; the SDK on both transports and the CLI."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from tests.deploy.conftest import FEATURES, POLICY, Models, register_models
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.client import Client
from keel.demo.data import TARGET
from keel.deploy.interleave import Interleaving, credit, team_draft
from keel.errors import Conflict, InvalidInput, NotFound
from keel.services import Services

RANKED = {**POLICY, "name": "churn-rank"}
SHADOW = {  # another model: one unfinished deployment per model
    "name": "churn-shadow",
    "model": "churn2",
    "strategy": "shadow",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "shadow"}],
}


@pytest.fixture
def ranked(services: Services, register_churn: Callable[[str, str], Models]) -> Models:
    """churn-rank: v1 (labels shuffled, AUC ~0.51) primary, v2 (good, AUC ~0.81) canary."""
    models = register_churn("shuffled", "good")
    services.deployments.create(RANKED, actor="ana")
    return models


@pytest.fixture
def sdks(services: Services, live_server: str, tmp_path: Path) -> Iterator[list[Client]]:
    embedded = Client(settings=services.settings)
    remote = Client(
        live_server, settings=services.settings.model_copy(update={"home": tmp_path / "remote"})
    )
    yield [embedded, remote]
    embedded.close()
    remote.close()


def _candidates(rows: pd.DataFrame, idx: Any) -> tuple[list[dict[str, Any]], list[str]]:
    picked = rows.iloc[idx]
    return picked[FEATURES].to_dict("records"), [f"c{j}" for j in idx]


def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url, json=body, timeout=60)


def test_challenger_ranking_churners_higher_wins_the_click_stream(
    live_server: str,
    ranked: Models,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    sdks: list[Client],
) -> None:
    base = f"{live_server}/v1/deployments/churn-rank"
    rows = churn_rows[1].reset_index(drop=True)
    churners = {f"c{j}" for j in np.flatnonzero(rows[TARGET].to_numpy() == 1)}
    rng = np.random.default_rng(7)
    expected: list[str | None] = []
    for user in range(80):
        instances, ids = _candidates(rows, rng.choice(len(rows), size=8, replace=False))
        shown = _post(
            f"{base}/rank",
            {"instances": instances, "item_ids": ids, "k": 4, "routing_key": f"u{user}"},
        )
        assert shown.status_code == 200, shown.text
        answer = shown.json()
        assert answer["deployment"] == "churn-rank" and len(answer["items"]) == 4
        assert answer["versions"] == {"a": 1, "b": 2}
        assert answer["arms"] == {"a": "primary", "b": "canary"}
        clicked = [item for item in answer["items"] if item in churners]
        recorded = _post(
            f"{base}/clicks", {"impression_id": answer["impression_id"], "clicked": clicked}
        )
        assert recorded.status_code == 200, recorded.text
        if clicked:  # an impression without a click is no comparison
            won = credit(Interleaving(tuple(answer["items"]), tuple(answer["teams"])), clicked)
            expected.append(won)
            assert recorded.json()["winner"] == won
    got = httpx.get(f"{base}/interleaving", timeout=60)
    assert got.status_code == 200, got.text
    test = got.json()
    wins_a, wins_b = expected.count("a"), expected.count("b")
    assert (test["wins_a"], test["wins_b"], test["ties"]) == (wins_a, wins_b, expected.count(None))
    assert test["impressions"] == 80 and test["with_clicks"] == len(expected)
    exact = binomtest(wins_a, wins_a + wins_b, 0.5)
    assert test["pvalue"] == pytest.approx(exact.pvalue, rel=1e-12)
    ci = exact.proportion_ci(0.95, method="exact")
    assert (test["ci_low"], test["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert test["share_a"] == pytest.approx(wins_a / (wins_a + wins_b))
    assert test["pvalue"] < 0.05 and test["preferred"] == "b" and test["preferred_arm"] == "canary"
    for sdk in sdks:  # both transports read the same test
        assert sdk.interleaving("churn-rank") == test


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_same_impression_id_same_list_both_transports(
    live_server: str,
    ranked: Models,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    sdks: list[Client],
) -> None:
    rows = churn_rows[1].reset_index(drop=True)
    instances, ids = _candidates(rows, list(range(10)))
    frame = rows.iloc[:10][FEATURES]
    by_score = {  # each model's own ranking: positive-class probability, highest first
        team: [ids[i] for i in np.argsort(-ranked.by_version[v].predict_proba(frame)[:, 1])]
        for team, v in (("a", 1), ("b", 2))
    }
    for sdk, impression in zip(sdks, ["page-embedded", "page-http"], strict=True):
        first = sdk.rank("churn-rank", instances, item_ids=ids, k=6, impression_id=impression)
        again = sdk.rank("churn-rank", instances, item_ids=ids, k=6, impression_id=impression)
        assert first["impression_id"] == impression
        assert (again["items"], again["teams"]) == (first["items"], first["teams"])
        draft = team_draft(by_score["a"], by_score["b"], length=6, rng=random.Random(impression))
        assert (tuple(first["items"]), tuple(first["teams"])) == (draft.items, draft.teams)
        with pytest.raises(Conflict) as taken:  # the id names other candidates now
            sdk.rank("churn-rank", instances[:5], item_ids=ids[:5], impression_id=impression)
        assert taken.value.field == "impression_id"
    default = sdks[1].rank("churn-rank", instances[:3])  # item ids default to the row index
    assert sorted(default["items"]) == [0, 1, 2]
    assert sdks[0].interleaving("churn-rank")["impressions"] == 3


def test_bad_input_names_the_field_and_stores_nothing(
    live_server: str,
    services: Services,
    ranked: Models,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    sdks: list[Client],
) -> None:
    register_models(services.settings, churn_rows[0], "good", "weak", model="churn2")
    services.deployments.create(SHADOW, actor="ana")
    instances, ids = _candidates(churn_rows[1].reset_index(drop=True), list(range(5)))
    base = f"{live_server}/v1/deployments"
    cases = [
        ("churn-rank", {"instances": instances, "item_ids": ids[:4]}, 422, "item_ids"),
        ("churn-rank", {"instances": instances, "item_ids": ["x", *ids[:3], "x"]}, 422, "item_ids"),
        ("churn-rank", {"instances": instances[:2], "item_ids": [1, "1"]}, 422, "item_ids"),
        ("churn-rank", {"instances": instances, "k": 0}, 422, "k"),
        ("churn-rank", {"instances": []}, 422, "instances"),
        ("churn-rank", {"instances": [{**instances[0], "tenure": "x"}]}, 422, "tenure"),
        ("churn-rank", {"instances": instances, "routing_key": ""}, 422, "routing_key"),
        ("churn-shadow", {"instances": instances}, 422, "arms"),
        ("nope", {"instances": instances}, 404, "name"),
    ]
    for name, body, status, field in cases:
        answer = _post(f"{base}/{name}/rank", body)
        assert answer.status_code == status, (body, answer.text)
        assert field in answer.json()["error"]["field"], answer.text
    for sdk in sdks:  # the same validator before anything is sent
        with pytest.raises(InvalidInput) as bad:
            sdk.rank("churn-rank", instances, item_ids=ids[:4])
        assert bad.value.field == "item_ids"
        with pytest.raises(InvalidInput) as one_arm:
            sdk.rank("churn-shadow", instances)
        assert one_arm.value.field == "arms"
    assert sdks[0].interleaving("churn-rank")["impressions"] == 0

    shown = _post(f"{base}/churn-rank/rank", {"instances": instances, "item_ids": ids}).json()
    first, second = shown["items"][0], shown["items"][1]
    for body, status, field in [
        ({"impression_id": "nope", "clicked": [first]}, 404, "impression_id"),
        ({"impression_id": shown["impression_id"], "clicked": ["c99"]}, 422, "clicked"),
        ({"impression_id": shown["impression_id"], "clicked": "c0"}, 422, "clicked"),
    ]:
        answer = _post(f"{base}/churn-rank/clicks", body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["field"] == field
    with pytest.raises(NotFound):  # an impression of another deployment is unknown here
        sdks[1].record_clicks("churn-shadow", shown["impression_id"], [first])
    assert sdks[1].interleaving("churn-rank")["with_clicks"] == 0
    # a repeat replaces the clicks of the impression: it counts once, by its last clicks
    teams = dict(zip(shown["items"], shown["teams"], strict=True))
    for sdk, clicked in zip(sdks, [[first], [second]], strict=True):
        recorded = sdk.record_clicks("churn-rank", shown["impression_id"], clicked)
        assert recorded["winner"] == teams[clicked[0]] and recorded["clicked"] == clicked
    test = sdks[0].interleaving("churn-rank")
    assert test["with_clicks"] == 1 and test[f"wins_{teams[second]}"] == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_cli_rank_clicks_interleaving(
    services: Services,
    ranked: Models,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    runner = CliRunner()
    for command in ("rank", "clicks", "interleaving"):
        helped = runner.invoke(cli, ["deploy", command, "--help"])
        assert helped.exit_code == 0 and "Example: keel deploy " + command in helped.output
    candidates = churn_rows[1][FEATURES].iloc[:6].assign(item=[f"m{i}" for i in range(6)])
    path = tmp_path / "candidates.json"
    path.write_text(candidates.to_json(orient="records"))
    args = ["deploy", "rank", "churn-rank", "--instances", str(path), "--id-column", "item"]
    shown = runner.invoke(cli, [*args, "--k", "3", "--json"])
    assert shown.exit_code == 0, shown.output
    answer = json.loads(shown.output)
    assert len(answer["items"]) == 3 and set(answer["items"]) <= set(candidates["item"])
    table = runner.invoke(cli, args)
    assert table.exit_code == 0 and "impression" in table.output, table.output
    clicked = runner.invoke(
        cli, ["deploy", "clicks", "churn-rank", answer["impression_id"], answer["items"][0]]
    )
    assert clicked.exit_code == 0, clicked.output
    report = runner.invoke(cli, ["deploy", "interleaving", "churn-rank", "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.output)["with_clicks"] == 1
    shown_table = runner.invoke(cli, ["deploy", "interleaving", "churn-rank"])
    assert shown_table.exit_code == 0 and "p=" in shown_table.output, shown_table.output
    for bad, option in [
        ([*args, "--k", "0"], "--k"),
        (
            ["deploy", "rank", "churn-rank", "--instances", str(tmp_path / "none.json")],
            "--instances",
        ),
        ([*args[:-1], "nope"], "--id-column"),
        (["deploy", "clicks", "churn-rank", answer["impression_id"], "zzz"], "clicked"),
    ]:
        failed = runner.invoke(cli, bad)
        assert failed.exit_code == 2 and option in failed.output, failed.output
    missing = runner.invoke(cli, ["deploy", "clicks", "churn-rank", "nope", "m1"])
    assert missing.exit_code != 0 and "impression_id" in missing.output
