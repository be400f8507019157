"""Online features in the gateway: a feature service naming a served model feeds it.

Real data end to end: a Parquet feature view, a point-in-time training frame from
``get_historical_features``, a scikit-learn model trained on it and registered, the view
materialised online, a real uvicorn server, pushes over the REST API and the prediction
log read back with DuckDB.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.serving.conftest import Live, live_gateway, register, test_settings, unique

from keel.client import Client
from keel.config import Settings
from keel.features import Entity, FeatureService, FeatureStore, FeatureView, FileSource
from keel.serving import predictions
from keel.serving.enrich import build_binding

REQUEST = "minutes_today"  # the request-time feature
FETCHED = ["tenure_days", "monthly_revenue", "late_payments"]  # read online
COLUMNS = [REQUEST, *FETCHED]
CUSTOMERS = 300
UNKNOWN = 99_999  # never materialised


@dataclass
class Served:
    """A server whose model ``name`` is fed by feature service ``service`` over ``view``."""

    live: Live
    settings: Settings
    name: str  # bound: the service names it
    other: str  # the same model under another name, unbound at first
    view: str
    service: str
    model: LogisticRegression
    latest: pd.DataFrame  # the materialised (newest) snapshot per customer, by customer_id
    definitions: list[Any]

    def predict(self, body: dict[str, Any], name: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.live.url}/v1/models/{name or self.name}/1/predict", json=body, timeout=30
        )

    def expected(self, rows: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
        """``predict_proba`` of the model on the rows merged by hand: online values, then
        whatever the row gives itself."""
        merged = []
        for row in rows:
            values = self.latest.loc[row["customer_id"], FETCHED].to_dict()
            values.update({k: v for k, v in row.items() if k != "customer_id"})
            merged.append(values)
        frame = pd.DataFrame(merged)[COLUMNS].astype(
            {"tenure_days": "int64", "late_payments": "int64"}
        )
        result: np.ndarray[Any, Any] = self.model.predict_proba(frame)
        return result


def _definitions(root: Path, view: str, service: str, model: str) -> list[Any]:
    customer = Entity(name="customer", join_keys=["customer_id"], value_type="int64")
    profile = FeatureView(
        name=view,
        entities=["customer"],
        source=FileSource(path=str(root / "profile.parquet")),
        ttl=7 * 86400,
        features=[
            {"name": "tenure_days", "dtype": "int64"},
            {"name": "monthly_revenue", "dtype": "float64"},
            {"name": "late_payments", "dtype": "int64"},
            {"name": "plan", "dtype": "string"},  # in the service, not read by the model
        ],
    )
    return [customer, profile, FeatureService(name=service, features=[f"{view}:*"], model=model)]


def _profile(now: pd.Timestamp) -> pd.DataFrame:
    """Daily snapshots of every customer, the last one a day ago (inside the 7-day TTL)."""
    rng = np.random.default_rng(11)
    frames = []
    for day in (3, 2, 1):
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": np.arange(CUSTOMERS, dtype=np.int64),
                    "event_timestamp": now - pd.Timedelta(days=day),
                    "tenure_days": rng.integers(10, 2000, CUSTOMERS).astype(np.int64),
                    "monthly_revenue": rng.gamma(2.0, 30.0, CUSTOMERS).round(2),
                    "late_payments": rng.poisson(1.0, CUSTOMERS).astype(np.int64),
                    "plan": rng.choice(["basic", "plus", "pro"], CUSTOMERS),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _train(store: FeatureStore, service: str, now: pd.Timestamp) -> tuple[Any, pd.DataFrame]:
    """A classifier on a point-in-time training frame: one request feature + the service's."""
    rng = np.random.default_rng(5)
    n = 3000
    labels = pd.DataFrame(
        {
            "customer_id": rng.integers(0, CUSTOMERS, n).astype(np.int64),
            "event_timestamp": now
            - pd.to_timedelta(rng.uniform(3600, 3 * 86400 - 60, n), unit="s"),
            REQUEST: rng.uniform(0, 60, n).round(1),
        }
    )
    train = store.get_historical_features(labels, service)
    x = train[COLUMNS].astype({"tenure_days": "int64", "late_payments": "int64"})
    z = (
        0.06 * x[REQUEST]
        - 0.002 * x["tenure_days"]
        + 0.015 * x["monthly_revenue"]
        + 0.9 * x["late_payments"]
        - 1.5
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    model = LogisticRegression(max_iter=5000).fit(x, y)
    return model, x


@contextmanager
def serving(home: Path, **overrides: Any) -> Iterator[Served]:
    """Definitions applied, a model trained on them and registered, the view materialised,
    then a live server; ``overrides`` go to the settings (e.g. ``redis_url``)."""
    settings = test_settings(home, features_registry_refresh_s=1.0, **overrides)
    root = home / "data"
    root.mkdir(parents=True)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    profile = _profile(now)
    profile.to_parquet(root / "profile.parquet")
    suffix = uuid.uuid4().hex[:8]  # Redis online stores are shared: views unique per run
    view, service = f"profile_{suffix}", f"churn_features_{suffix}"
    name, other = unique("fs-churn"), unique("fs-other")
    definitions = _definitions(root, view, service, name)
    store = FeatureStore(settings)
    try:
        store.apply(definitions)
        model, x = _train(store, service, now)
        store.materialize(now - pd.Timedelta(days=4), now)
    finally:
        store.close()
    register(settings, name, model, x.head(5))
    register(settings, other, model, x.head(5))
    latest = profile[profile["event_timestamp"] == profile["event_timestamp"].max()]
    with live_gateway(settings) as live:
        yield Served(
            live,
            settings,
            name,
            other,
            view,
            service,
            model,
            latest.set_index("customer_id"),
            definitions,
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module; tests that push use customers no other test reads."""
    with serving(tmp_path_factory.mktemp("feature-serving")) as result:
        yield result


def _proba(response: httpx.Response) -> np.ndarray[Any, Any]:
    assert response.status_code == 200, response.text
    return np.array(response.json()["probabilities"])


def test_prediction_equals_the_model_on_the_merged_frame(served: Served) -> None:
    rows = [
        {"customer_id": 3, REQUEST: 12.5},
        {"customer_id": 17, REQUEST: 0.0},
        {"customer_id": 42, REQUEST: 55.0},
    ]
    response = served.predict({"instances": rows, "probabilities": True})
    np.testing.assert_allclose(_proba(response), served.expected(rows), rtol=1e-9)
    body = response.json()
    assert body["cached"] is False and body["version"] == 1
    assert body["predictions"] == np.argmax(served.expected(rows), axis=1).tolist()
    assert "features;dur=" in response.headers["server-timing"]

    split = {
        "columns": ["customer_id", REQUEST],
        "data": [[r["customer_id"], r[REQUEST]] for r in rows],
        "probabilities": True,
    }
    np.testing.assert_allclose(_proba(served.predict(split)), served.expected(rows), rtol=1e-9)
    entry = served.live.gateway.pool.peek(served.name, 1)
    assert entry.binding.services == (served.service,)
    assert entry.binding.refs == tuple(f"{served.view}:{f}" for f in FETCHED)  # not "plan"
    status = httpx.get(f"{served.live.url}/v1/serving/status").json()
    assert next(m for m in status["models"] if m["model"] == served.name)["feature_services"] == [
        served.service
    ]


def test_a_value_in_the_request_wins_over_the_online_one(served: Served) -> None:
    online = served.expected([{"customer_id": 8, REQUEST: 3.0}])
    rows = [{"customer_id": 8, REQUEST: 3.0, "tenure_days": 5000, "late_payments": 0}]
    given = _proba(served.predict({"instances": rows, "probabilities": True}))
    np.testing.assert_allclose(given, served.expected(rows), rtol=1e-9)
    assert not np.allclose(given, online)


def test_the_prediction_log_holds_the_fetched_features(served: Served) -> None:
    customer = 77
    response = served.predict({"instances": [{"customer_id": customer, REQUEST: 21.5}]})
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    deadline = time.monotonic() + 15
    logged: list[dict[str, Any]] = []
    while not logged and time.monotonic() < deadline:
        time.sleep(0.1)
        table = predictions(served.name, 1, settings=served.settings)
        logged = [r for r in table.to_pylist() if r["request_id"] == request_id]
    assert len(logged) == 1, "the request never reached the prediction log"
    row = logged[0]
    online = served.latest.loc[customer]
    assert row["f_" + REQUEST] == 21.5
    assert row["f_tenure_days"] == online["tenure_days"]
    assert row["f_monthly_revenue"] == pytest.approx(online["monthly_revenue"])
    assert row["f_late_payments"] == online["late_payments"]
    assert row["entity_key"] == str(customer)
    assert "f_customer_id" not in row and "f_plan" not in row  # a key and an unread feature


def _push(served: Served, customer: int, **values: Any) -> None:
    row = served.latest.loc[customer].to_dict()
    row.update(values, customer_id=customer, event_timestamp=pd.Timestamp.now(tz="UTC"))
    with Client(served.live.url, settings=served.settings) as client:
        assert client.push_features(served.view, pd.DataFrame([row])) == 1


def _check_push_invalidates(served: Served, customer: int) -> None:
    body = {"instances": [{"customer_id": customer, REQUEST: 30.0}], "probabilities": True}
    before = served.expected(body["instances"])
    answers = [served.predict(body) for _ in range(3)]  # the hit path gets its chance
    assert [a.json()["cached"] for a in answers] == [False, True, True]
    for answer in answers:
        np.testing.assert_allclose(_proba(answer), before, rtol=1e-9)

    _push(served, customer, late_payments=9, monthly_revenue=400.0)
    changed = [
        {"customer_id": customer, REQUEST: 30.0, "late_payments": 9, "monthly_revenue": 400.0}
    ]
    after = served.expected(changed)
    assert not np.allclose(after, before)
    answers = [served.predict(body) for _ in range(3)]
    assert [a.json()["cached"] for a in answers] == [False, True, True]
    for answer in answers:
        np.testing.assert_allclose(_proba(answer), after, rtol=1e-9)

    # Back to the first values: their cached prediction was dropped by the first push.
    original = served.latest.loc[customer]
    _push(served, customer)
    again = served.predict(body)
    assert again.json()["cached"] is False
    np.testing.assert_allclose(_proba(again), before, rtol=1e-9)
    assert original["late_payments"] != 9


def test_a_push_changes_the_answer_to_the_same_body(served: Served) -> None:
    _check_push_invalidates(served, customer=121)


def test_a_push_invalidates_the_shared_redis_cache(tmp_path: Path, redis_url: str) -> None:
    with serving(tmp_path, redis_url=redis_url) as redis_served:
        assert redis_served.live.gateway.cache.backend == "RedisCache"
        _check_push_invalidates(redis_served, customer=5)


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_missing_or_mistyped_entity_key_is_422_naming_it(served: Served) -> None:
    missing = served.predict({"instances": [{"customer_id": 1, REQUEST: 2.0}, {REQUEST: 3.0}]})
    error = _error(missing)
    assert error["field"] == "instances[1].customer_id"
    assert error["detail"]["row"] == 1
    assert "customer_id" in error["message"] and served.service in error["message"]

    mistyped = served.predict({"instances": [{"customer_id": "one", REQUEST: 2.0}]})
    assert _error(mistyped)["field"] == "instances[0].customer_id"


def test_an_unknown_entity_is_422_naming_the_column_and_row(served: Served) -> None:
    rows = [{"customer_id": 2, REQUEST: 1.0}, {"customer_id": UNKNOWN, REQUEST: 1.0}]
    error = _error(served.predict({"instances": rows}))
    assert error["field"] == "tenure_days"  # the first non-nullable column fetched online
    assert error["detail"]["row"] == 1
    assert error["detail"]["feature"] == f"{served.view}:tenure_days"
    assert "not nullable" in error["message"]
    assert (
        f"no online value of {served.view}:tenure_days for customer_id={UNKNOWN}"
        in (error["message"])
    )


def test_other_request_errors_are_unchanged(served: Served) -> None:
    extra = served.predict({"instances": [{"customer_id": 1, REQUEST: 2.0, "shoe_size": 44}]})
    assert _error(extra)["field"] == "shoe_size"
    wrong = served.predict({"instances": [{"customer_id": 1, REQUEST: "many"}]})
    assert _error(wrong)["field"] == REQUEST
    assert _error(served.predict({"instances": []}))["field"] == "instances"


def test_binding_a_served_model_later_stops_its_fast_paths(served: Served) -> None:
    full = {
        "instances": [
            {REQUEST: 9.0, "tenure_days": 100, "monthly_revenue": 50.0, "late_payments": 2}
        ]
    }
    answers = [served.predict(full, served.other) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["cached"] for a in answers] == [False, True, True]
    assert served.live.gateway.pool.peek(served.other, 1).binding is None
    extra = FeatureService(
        name=f"other_{served.service}", features=[f"{served.view}:*"], model=served.other
    )
    with Client(served.live.url, settings=served.settings) as client:
        client.apply_features([*served.definitions, extra])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # seen within the gateway's re-read (~0.5 s here)
        response = served.predict(full, served.other)
        if response.status_code != 200:
            break
        time.sleep(0.1)
    assert _error(response)["field"] == "instances[0].customer_id"
    keyed = {"instances": [dict(full["instances"][0], customer_id=4)], "probabilities": True}
    np.testing.assert_allclose(
        _proba(served.predict(keyed, served.other)), served.expected(keyed["instances"])
    )
    # the first model's service did not change: its binding was kept
    assert served.live.gateway.pool.peek(served.name, 1).binding is not None


def test_the_gateway_stops_listening_to_pushes_when_closed(tmp_path: Path) -> None:
    with serving(tmp_path) as result:
        store = result.live.app.state.services.features
        binder = result.live.gateway.binder
        assert binder._pushed in store._callbacks
    assert binder._pushed not in store._callbacks


def test_names_follow_the_signature() -> None:
    customer = Entity(name="customer", join_keys=["customer_id"])
    account = FeatureView(
        name="account",
        entities=["customer"],
        source=FileSource(path="account.parquet"),
        features=[{"name": "tenure", "dtype": "int64"}, {"name": "plan", "dtype": "string"}],
    )
    usage = FeatureView(
        name="usage",
        entities=["customer"],
        source=FileSource(path="usage.parquet"),
        features=[{"name": "tenure", "dtype": "int64"}, {"name": "calls", "dtype": "float64"}],
    )
    service = FeatureService(name="s", features=["account:*", "usage:*"], model="m")
    inputs = ((service,), (account, usage), (customer,))

    # a model trained on full_names=True output, and one reading a plain name
    binding = build_binding("m", ["x", "account__tenure", "usage__tenure", "calls"], inputs)
    assert binding is not None
    assert binding.fetched == (
        ("account__tenure", "account__tenure"),
        ("usage__tenure", "usage__tenure"),
        ("usage__calls", "calls"),
    )
    assert binding.refs == ("account:tenure", "usage:tenure", "usage:calls")
    assert binding.keys == (("customer_id", "int64"),) and binding.drop == ("customer_id",)

    keeps_key = build_binding("m", ["customer_id", "plan"], inputs)
    assert keeps_key is not None and keeps_key.drop == ()  # the key is a model input

    free = build_binding("m", None, inputs)  # no signature: plain names unless shared
    assert free is not None
    assert [c for _, c in free.fetched] == ["account__tenure", "plan", "usage__tenure", "calls"]

    assert build_binding("m", ["x", "y"], inputs) is None  # reads none of them
