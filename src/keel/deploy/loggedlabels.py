"""Feedback labels of a deployment's logged rows, one per row (replay and attribution).

How the rows of one request are told apart
------------------------------------------
A predict request may carry several instances. The prediction log writes one row per
instance, each with the request's ``request_id`` and its own ``entity_key`` (when the
request gave ``entity_keys``), but no row index. Feedback names rows the same way
(:mod:`keel.monitoring.feedback`): a label by ``request_id`` is joined to every row of the
request, a label by ``entity_key`` + ``event_time`` to the latest logged row of that entity
at or before the outcome. So a labelled row is known by ``(request_id, entity_key)``, and:

* the rows with one such pair all take its label when its labels agree (a label of the
  whole request; an entity's outcome, even where the entity appears in two rows of the
  request: one customer at one moment has one outcome);
* one logged row with several labels (outcomes at several times joined to the entity's
  latest prediction) takes the newest received, as the feedback store's corrections do;
* several rows of one request with the same pair whose labels differ (a customer twice in
  a request, two outcomes) cannot be told apart, the log having no row index: they get no
  label, and the request is counted (:attr:`RowLabels.ambiguous_requests`) rather than
  given one of the labels at random.

The first of a request's labels is never spread over its other rows: each row keeps its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RowLabels", "logged_labels"]

#: Request ids listed in a report at most.
_EXAMPLES = 10


@dataclass(frozen=True)
class RowLabels:
    """The decoded label of each logged row (NaN without one), aligned with the logged
    frame's index, and the requests whose rows' labels could not be told apart."""

    labels: pd.Series
    ambiguous_requests: list[str]
    ambiguous_rows: int

    def report(self) -> dict[str, Any]:
        """``{"requests", "rows", "examples"}``: the unlabelled ambiguous requests and rows,
        and the first request ids (sorted)."""
        return {
            "requests": len(self.ambiguous_requests),
            "rows": self.ambiguous_rows,
            "examples": sorted(self.ambiguous_requests)[:_EXAMPLES],
        }


def logged_labels(
    logged: pd.DataFrame,
    labels: Callable[..., pd.DataFrame] | None,
    model: str,
    start: Any,
) -> RowLabels:
    """The label of each row of ``logged`` (prediction-log rows), through the feedback
    store's own join ``labels(model, start=start)`` (see the module for multi-row
    requests)."""
    labelled = labels(model, start=start) if labels is not None else pd.DataFrame()
    if labelled.empty or "request_id" not in labelled.columns or logged.empty:
        return RowLabels(pd.Series(np.nan, index=logged.index, dtype=object), [], 0)
    found = pd.DataFrame(
        {
            "pair": _pairs(labelled),
            "label": labelled["label"].to_numpy(),
            "received": labelled["received_ts"].to_numpy() if "received_ts" in labelled else 0,
        }
    ).sort_values("received", kind="stable")  # newest last: "last" is a pair's newest label
    per_pair = found.groupby("pair", sort=False)["label"].agg(label="last", distinct="nunique")
    rows = pd.DataFrame({"pair": _pairs(logged)})
    joined = rows.join(per_pair, on="pair").join(rows.groupby("pair").size().rename("n"), on="pair")
    ambiguous = ((joined["distinct"] > 1) & (joined["n"] > 1)).to_numpy()
    values = joined["label"].map(_decode).to_numpy(dtype=object, copy=True)
    values[ambiguous | joined["label"].isna().to_numpy()] = np.nan
    requests = list(dict.fromkeys(pair[0] for pair in rows["pair"][ambiguous]))
    return RowLabels(
        pd.Series(values, index=logged.index, dtype=object), requests, int(ambiguous.sum())
    )


def _pairs(frame: pd.DataFrame) -> list[tuple[str, str | None]]:
    """``(request_id, entity_key)`` of each row, the key None when missing (one Python
    value per row: a missing key then groups and matches like any other)."""
    ids = frame["request_id"].astype(str).tolist()
    if "entity_key" not in frame:
        return [(i, None) for i in ids]
    keys = frame["entity_key"].tolist()
    return [(i, None if pd.isna(k) else str(k)) for i, k in zip(ids, keys, strict=True)]


def _decode(text: Any) -> Any:
    # labels are stored as JSON text: 1, "yes"
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text
