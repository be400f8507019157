"""`keel demo` end to end on the real telco churn table."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from rich.console import Console

from keel.client import Client
from keel.config import Settings
from keel.demo.churn import MODEL, run_demo
from keel.demo.data import load_churn


def test_demo_trains_registers_and_reloads_the_champion(tmp_path: Path) -> None:
    output = io.StringIO()
    figures = run_demo(home=str(tmp_path), console=Console(file=output, width=120))
    assert figures["lightgbm"]["auc"] > 0.8 and figures["baseline"]["auc"] > 0.8
    # The champion loaded back by alias scores exactly as the in-memory model did.
    assert np.isclose(figures["reloaded_auc"], figures["in_memory_auc"], atol=1e-12)
    client = Client(settings=Settings(home=tmp_path))
    model = client.get_model(MODEL)
    assert model.aliases["champion"] == figures["champion_version"]
    lineage = client.lineage(MODEL, figures["champion_version"])
    assert {d["context"] for d in lineage.datasets} == {"training", "validation", "evaluation"}
    assert "highest churn risk" in output.getvalue()
    # The loop: served, monitored quiet, then the price change raises an alert.
    loop = figures["loop"]
    assert loop["served"]["cache_hits"] == 50 and loop["served"]["batched_rows"] > 0
    assert (loop["quiet_status"], loop["alert_status"]) == ("ok", "alert")
    assert "monthly_charges" in loop["drifted"]
    assert loop["verdict"] in ("data drift", "concept drift")
    assert "<svg" in loop["report_html"]
    client.close()


def test_churn_table_shape_and_types() -> None:
    frame = load_churn()
    assert frame.shape == (7043, 21)
    assert set(frame["churn"].unique()) == {0, 1}
    assert str(frame["contract"].dtype) == "category"
