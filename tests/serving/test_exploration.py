"""R-TRN-24 on the serving side: the gateway answers a model's explored share with its
action and logs ``explore`` and ``propensity``; the retraining reads them.

Over a real uvicorn server with a LightGBM model on the telco churn table: share 0.1 on
2,000 keyed requests explores ~10% (binomial, within 4 sd), exactly the keys the
retraining's stable hash picks, the same keys again after a restart; explored rows get
the action, the log keeps the model's output with explore/propensity, and the
retraining's rows carry exactly the logged propensities (IPW weights {1, 1/share}).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.serving.conftest import Churn, live_gateway, register, unique
from typer.testing import CliRunner

from keel import Client
from keel._models import now_ms
from keel.automation.retrain.data import WEIGHT_COLUMN, assemble
from keel.automation.retrain.exploration import (
    EXPLORE_COLUMN,
    PROPENSITY_COLUMN,
    ExplorationSpec,
    explored,
    mark,
)
from keel.automation.retrain.spec import DataSpec, RetrainSpec
from keel.cli.main import app as cli_app
from keel.config import Settings
from keel.errors import InvalidInput
from keel.services import open_services
from keel.serving import predictions
from keel.serving._segments import BASE_SCHEMA, records_to_table, served_to_table
from keel.serving.predlog import partition_dir, write_segment
from keel.serving.records import ServedRequest

SHARE = 0.1
ACCEPT = 1  # the action: the model's positive class


def _clean(churn: Churn) -> pd.DataFrame:
    """The test rows without missing values (JSON has no NaN)."""
    return churn.test.dropna(subset=churn.features).reset_index(drop=True)


def _rows(churn: Churn, n: int) -> list[dict[str, Any]]:
    """``n`` clean test rows as JSON, from the start again after the last (row i is clean
    row i mod len)."""
    frame = _clean(churn)[churn.features]
    rows = [
        {k: (str(v) if isinstance(v, str) else float(v)) for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]
    return [rows[i % len(rows)] for i in range(n)]


def _send(url: str, name: str, rows: list[dict[str, Any]], keys: list[str]) -> list[Any]:
    """One request per row, keyed by its entity key, 8 at a time; the bodies in order."""

    async def run() -> list[Any]:
        limit = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:

            async def one(row: dict[str, Any], key: str) -> Any:
                async with limit:
                    response = await http.post(
                        f"/v1/models/{name}/1/predict",
                        json={"instances": [row], "entity_keys": [key]},
                    )
                assert response.status_code == 200, response.text
                return response.json()

            return await asyncio.gather(*map(one, rows, keys))

    return asyncio.run(run())


def _expected_propensity(explore: np.ndarray, model_says: np.ndarray) -> np.ndarray:
    """Written out (not exploration.propensities): explored and rejected by the model →
    share; not explored and rejected → 1 − share; accepted by the model → 1 either way."""
    out = np.ones(len(explore))
    out[explore & (model_says != ACCEPT)] = SHARE
    out[~explore & (model_says != ACCEPT)] = 1 - SHARE
    return out


def test_gateway_explores_a_stable_share_and_retraining_reads_it(
    make_settings: Callable[..., Settings], churn: Churn
) -> None:
    settings = make_settings()
    name = unique("hire")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    n = 2000
    rows = _rows(churn, n)
    keys = [f"cand-{i}" for i in range(n)]
    clean = _clean(churn)
    on_test = churn.small.predict(clean[churn.features])
    model_says = np.array([on_test[i % len(clean)] for i in range(n)])
    with live_gateway(settings) as live:
        sdk = Client(live.url, settings=settings)
        stored = sdk.set_exploration(name, share=SHARE, action=ACCEPT, key="entity_key")
        assert stored == {"share": SHARE, "action": ACCEPT, "key": "entity_key"}
        assert sdk.get_exploration(name) == stored
        sdk.close()
        started = time.perf_counter()
        first = _send(live.url, name, rows, keys)
        print(f"{n} requests in {time.perf_counter() - started:.2f} s")
        assert live.gateway.status()["exploration"] == {name: stored}
    flags = np.array([body["explored"][0] for body in first])
    # exactly the retraining's stable hash of the key, salted by the model name
    np.testing.assert_array_equal(flags, explored(keys, SHARE, name))
    sd = math.sqrt(n * SHARE * (1 - SHARE))  # binomial: 13.4
    assert abs(int(flags.sum()) - n * SHARE) < 4 * sd
    answers = np.array([body["predictions"][0] for body in first])
    np.testing.assert_array_equal(answers[flags], ACCEPT)  # explored: the action
    np.testing.assert_array_equal(answers[~flags], model_says[~flags])  # else the model's
    assert (model_says[flags] != ACCEPT).sum() > 0  # some explored rows overruled the model

    # a restart: the policy is read from the registry as the version loads, before its
    # first answer; the same keys are explored again
    with live_gateway(settings) as live:
        again = _send(live.url, name, rows[:200], keys[:200])
    np.testing.assert_array_equal([b["explored"][0] for b in again], flags[:200])

    log = predictions(name, settings=settings).to_pandas()
    assert len(log) == n + 200
    by_id = log.set_index("request_id")
    ids = [body["request_id"] for body in first]
    logged = by_id.loc[ids]
    np.testing.assert_array_equal(logged["explore"].astype(bool), flags)
    np.testing.assert_array_equal(logged["output"], model_says)  # the model's answer
    np.testing.assert_allclose(logged["propensity"], _expected_propensity(flags, model_says))

    # outcomes of the accepted rows only (what a hiring model observes), then a retraining
    # whose spec names another share: the logged propensities win
    accepted = [i for i in range(n) if answers[i] == ACCEPT]
    truth = clean["churn"].to_numpy()
    svc = open_services(settings)
    try:
        svc.feedback.submit(
            [{"request_id": ids[i], "label": int(truth[i % len(clean)])} for i in accepted]
        )
        spec = RetrainSpec.model_validate(
            {
                "train": "tests.automation.retrain_train:train",
                "label": "churn",
                "window": "1d",
                "exploration": {"share": 0.3, "action": ACCEPT, "key": "entity_key"},
            }
        )
        data = assemble(svc, name, spec, DataSpec(), now_ms() + 1000)
    finally:
        svc.close()
    frame = data.frame
    assert len(frame) == len(accepted) and data.explored_rows == int(flags.sum())
    explored_rejected = int((flags & (model_says != ACCEPT)).sum())
    assert int((frame[PROPENSITY_COLUMN] == SHARE).sum()) == explored_rejected
    assert set(frame[PROPENSITY_COLUMN]) == {1.0, SHARE}
    assert set(frame[WEIGHT_COLUMN].round(9)) == {1.0, round(1 / SHARE, 9)}
    assert int(frame[EXPLORE_COLUMN].sum()) == int(flags.sum())


def test_exploration_off_leaves_answers_and_log_as_they_were(
    make_settings: Callable[..., Settings], churn: Churn
) -> None:
    settings = make_settings()
    name = unique("plain")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    rows, keys = _rows(churn, 50), [f"k{i}" for i in range(50)]
    with live_gateway(settings) as live:
        plain = _send(live.url, name, rows, keys)
        sdk = Client(live.url, settings=settings)
        sdk.set_exploration(name, share=0.5, action=ACCEPT, key="entity_key")
        assert sdk.clear_exploration(name) is True
        assert sdk.get_exploration(name) is None
        assert sdk.clear_exploration(name) is False
        sdk.close()
        after = _send(live.url, name, rows, keys)
    for body in plain + after:
        assert set(body) == {"predictions", "model", "version", "request_id", "cached", "fallback"}
    assert [b["predictions"] for b in plain] == [b["predictions"] for b in after]
    log = predictions(name, settings=settings).to_pandas()
    assert len(log) == 100
    assert log["explore"].isna().all() and log["propensity"].isna().all()


def test_request_id_key_explores_whole_requests_by_their_id(
    make_settings: Callable[..., Settings], churn: Churn
) -> None:
    settings = make_settings()
    name = unique("byid")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    with live_gateway(settings) as live:
        sdk = Client(live.url, settings=settings)
        sdk.set_exploration(name, share=0.5, action=ACCEPT)
        sdk.close()
        with httpx.Client(base_url=live.url, timeout=30) as http:
            bodies = [
                http.post(f"/v1/models/{name}/1/predict", json={"instances": _rows(churn, 3)})
                .raise_for_status()
                .json()
                for _ in range(40)
            ]
    for body in bodies:
        flag = bool(explored([body["request_id"]], 0.5, name)[0])
        assert body["explored"] == [flag] * 3  # one key per request: all its rows or none
        if flag:
            assert body["predictions"] == [ACCEPT] * 3
    assert 0 < sum(b["explored"][0] for b in bodies) < 40


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"share": 0, "action": 1}, "exploration.share"),
        ({"share": 1, "action": 1}, "exploration.share"),
        ({"share": 1.5, "action": 1}, "exploration.share"),
        ({"share": 0.1}, "exploration.action"),
        ({"share": 0.1, "action": None}, "exploration.action"),
        ({"share": 0.1, "action": 1, "key": "user"}, "exploration.key"),
        ({"share": 0.1, "action": 1, "weighting": "ipw"}, "exploration.weighting"),
    ],
)
def test_bad_policy_is_a_422_naming_the_field_and_stores_nothing(
    make_settings: Callable[..., Settings], churn: Churn, body: dict[str, Any], field: str
) -> None:
    settings = make_settings()
    name = unique("bad")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    with live_gateway(settings) as live:
        response = httpx.put(f"{live.url}/v1/models/{name}/exploration", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
        for sdk in (Client(live.url, settings=settings), Client(settings=settings)):
            if "action" in body and set(body) <= {"share", "action", "key"}:  # its arguments
                with pytest.raises(InvalidInput) as caught:
                    sdk.set_exploration(name, **body)
                assert caught.value.field == field
            sdk.close()
        assert httpx.get(f"{live.url}/v1/models/{name}/exploration").status_code == 404


def test_cli_sets_shows_and_refuses_with_exit_2(
    make_settings: Callable[..., Settings], churn: Churn
) -> None:
    settings = make_settings()
    name = unique("cli")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    runner = CliRunner()
    with live_gateway(settings) as live:
        server = ["--server", live.url]
        done = runner.invoke(
            cli_app,
            ["models", "exploration", "set", name, "--share", "0.05", "--action", "1", *server],
        )
        assert done.exit_code == 0, done.output
        shown = runner.invoke(cli_app, ["models", "exploration", "show", name, "--json", *server])
        assert shown.exit_code == 0, shown.output
        assert '"share": 0.05' in shown.output and '"action": 1' in shown.output
        for args, word in (
            (["--share", "1.2", "--action", "1"], "exploration.share"),
            (["--share", "0.1", "--action", "null"], "exploration.action"),
            (["--share", "0.1", "--action", "1", "--key", "user"], "exploration.key"),
        ):
            bad = runner.invoke(cli_app, ["models", "exploration", "set", name, *args, *server])
            assert bad.exit_code == 2, bad.output
            assert word in bad.output
        unknown = httpx.put(
            f"{live.url}/v1/models/no-such-model/exploration", json={"share": 0.1, "action": 1}
        )
        assert unknown.status_code == 404, unknown.text
        off = runner.invoke(cli_app, ["models", "exploration", "off", name, *server])
        assert off.exit_code == 0, off.output
        gone = runner.invoke(cli_app, ["models", "exploration", "show", name, *server])
        assert gone.exit_code == 1


def test_old_log_files_without_the_columns_still_read(tmp_path: Path) -> None:
    """A segment written before explore/propensity existed reads beside a new one (null)."""
    root = tmp_path / "predictions"
    at = 1_772_359_200_000
    old_schema = pa.schema([f for f in BASE_SCHEMA if f.name not in ("explore", "propensity")])
    old = {f.name: pa.nulls(2, f.type) for f in old_schema}
    old["ts"] = pa.array([at, at + 1], pa.int64()).cast(BASE_SCHEMA.field("ts").type)
    old["request_id"] = pa.array(["a", "b"])
    old["output"] = pa.array([0, 1])
    write_segment(pa.table(old), partition_dir(root, "m", 1, at), "part-old.parquet")
    alone = predictions("m", root=root, columns=["request_id", "output"]).to_pylist()
    assert [r["request_id"] for r in alone] == ["a", "b"]
    served = ServedRequest(
        "c", at + 2, "m", 1, ("x",), [(1.0,)], [0], None, [False], False, 1.0,
        explore=[True], propensity=[SHARE],
    )  # fmt: skip
    write_segment(
        served_to_table("m", 1, [served], {}), partition_dir(root, "m", 1, at), "p2.parquet"
    )
    both = predictions("m", root=root).to_pandas()
    assert both["request_id"].tolist() == ["a", "b", "c"]
    assert both["explore"].tolist()[:2] == [None, None] and bool(both["explore"].iloc[2])
    assert both["propensity"].iloc[2] == SHARE and both["propensity"].iloc[:2].isna().all()
    # the record path writes the same columns as the whole-request path
    records = records_to_table("m", 1, list(served.records()), {})
    assert records.column("explore").to_pylist() == [True]
    assert records.column("propensity").to_pylist() == [SHARE]


def test_mark_takes_logged_rows_and_recomputes_the_rest() -> None:
    """Rows logged by the gateway keep their numbers; rows logged before it explored (no
    explore/propensity) are recomputed from their key with the spec's share."""
    spec = ExplorationSpec(share=0.2, action=1)
    ids = [f"r{i}" for i in range(400)]
    recomputed = explored(ids, 0.2, "m")
    frame = pd.DataFrame(
        {
            "request_id": ids,
            "output": [0] * 400,
            "explore": [True, False] + [None] * 398,
            "propensity": [0.05, 0.95] + [None] * 398,
        }
    )
    flags, weights = mark(frame, spec, "m")
    assert flags[:2].tolist() == [True, False] and weights[:2].tolist() == [0.05, 0.95]
    np.testing.assert_array_equal(flags[2:], recomputed[2:])
    np.testing.assert_allclose(weights[2:], np.where(recomputed[2:], 0.2, 0.8))


def test_another_replica_applies_a_change_within_its_refresh_interval(
    make_settings: Callable[..., Settings], churn: Churn, tmp_path: Path
) -> None:
    """Two servers on one store: a policy stored through one reaches the other's gateway by
    its periodic re-read (its registry object is another: no in-process notice)."""
    settings = make_settings(serving_alias_refresh_ms=100)
    name = unique("replica")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    other = settings.model_copy(update={"prediction_log_dir": tmp_path / "other-log"})
    rows, keys = _rows(churn, 40), [f"k{i}" for i in range(40)]
    with live_gateway(settings) as first, live_gateway(other) as second:
        _send(second.url, name, rows[:1], keys[:1])  # loaded there, without a policy
        assert "explored" not in _send(second.url, name, rows[:1], keys[:1])[0]
        sdk = Client(first.url, settings=settings)
        sdk.set_exploration(name, share=0.5, action=ACCEPT, key="entity_key")
        sdk.close()
        deadline = time.monotonic() + 10
        while name not in second.gateway.status()["exploration"]:
            assert time.monotonic() < deadline, "the other replica never read the policy"
            time.sleep(0.05)
        bodies = _send(second.url, name, rows, keys)
    flags = [b["explored"][0] for b in bodies]
    assert flags == explored(keys, 0.5, name).tolist()


def test_deployment_arms_explore_the_model_and_log_it(
    make_settings: Callable[..., Settings], churn: Churn
) -> None:
    """The policy is the model's: both arms of a deployment over it explore, by the same hash."""
    from tests.serving.test_deployment_routing import deploy

    settings = make_settings()
    model, name = deploy(settings, churn, unit="request")
    sdk = Client(settings=settings)  # embedded: the same validator and tag as over REST
    sdk.set_exploration(model, share=0.3, action=ACCEPT, key="entity_key")
    sdk.close()
    rows, keys = _rows(churn, 60), [f"d{i}" for i in range(60)]
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        bodies = [
            http.post(
                f"/v1/deployments/{name}/predict",
                json={"instances": [row], "entity_keys": [key]},
            )
            .raise_for_status()
            .json()
            for row, key in zip(rows, keys, strict=True)
        ]
    flags = explored(keys, 0.3, model)
    assert [b["explored"][0] for b in bodies] == flags.tolist()
    assert {b["arm"] for b in bodies} == {"primary", "challenger"}
    assert all(b["predictions"] == [ACCEPT] for b, f in zip(bodies, flags, strict=True) if f)
    log = predictions(model, settings=settings).to_pandas().set_index("request_id")
    logged = log.loc[[b["request_id"] for b in bodies]]
    assert logged["explore"].astype(bool).tolist() == flags.tolist()
    assert set(logged["arm"]) == {"primary", "challenger"}
