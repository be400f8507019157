"""Data validation before training (R-CICD-07) and training-window sanity (R-TRN-21).

Run on every retraining (trigger-fired, scheduled, manual) after the rows are assembled
and before anything is trained:

1. statistics per column and the schema inferred from the model's reference — the
   training data its serving version's run logged (``context="training"``);
2. schema violations: a reference feature the rows lack, a feature the reference never
   had, a kind that changed (:mod:`keel.automation.retrain.schema`);
3. corrupted source periods: each ``quarantine.period`` of the window is checked on its
   own (missing share, out-of-range share, unseen-category share — the monitors'
   :func:`keel.monitoring.quality.check_quality` — and an improbably constant column);
   failing periods are left out and counted while their share of the rows is at most
   ``quarantine.max_share``, else the retraining is refused; the kept rows are then
   checked as a whole;
4. skew against the reference: KS (numeric) and PSI (every feature) from
   :mod:`keel.monitoring.stats`, keel's one implementation (warn by default);
5. the window's coverage of days and hours (:mod:`keel.automation.retrain.window`).

A failure raises :class:`DataRefused`; the pipeline then records the refusal (job result,
``retraining`` decision with the numbers and the columns, run artifact) and trains nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.automation.retrain.data import (
    INTERNAL_COLUMNS,
    TS_COLUMN,
    TrainingData,
    _serving_version,
)
from keel.automation.retrain.schema import (
    ColumnSchema,
    Violation,
    column_stats,
    infer_schema,
    schema_violations,
)
from keel.automation.retrain.spec import JobArgs
from keel.automation.retrain.validation_record import (
    ARTIFACT,
    refuse,
    store,
    stored,
    stored_summary,
    summary,
)
from keel.automation.retrain.validation_spec import DataValidationSpec
from keel.automation.retrain.window import check_window
from keel.errors import NotFound
from keel.monitoring.profile import ColumnProfile, ReferenceProfile
from keel.monitoring.quality import QualityThresholds, check_quality
from keel.monitoring.stats.ks import ks
from keel.monitoring.stats.psi import psi

__all__ = [
    "ARTIFACT",
    "DataRefused",
    "Reference",
    "find_reference",
    "refuse",
    "store",
    "stored",
    "stored_summary",
    "summary",
    "validate",
]

#: A column constant over n rows is improbable when the reference gives that value a
#: share p with p**n below this (a value the reference never had: p = 0).
CONSTANT_P = 1e-6


class DataRefused(Exception):
    """The training rows failed validation; ``report`` says which columns and why."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__("; ".join(f["message"] for f in report["failures"]))
        self.report = report


@dataclass(frozen=True)
class Reference:
    """The model's reference rows and where they came from."""

    frame: pd.DataFrame
    source: dict[str, Any]
    inputs: tuple[str, ...] = ()  # the version's signature inputs (its features)

    def columns(self, label: str) -> list[str]:
        """The reference's feature columns: its signature inputs when they name columns of
        the frame (a logged training frame may hold ids too), else all but label and time."""
        named = [c for c in self.frame.columns if c in self.inputs]
        return named or [c for c in self.frame.columns if c != label and c not in INTERNAL_COLUMNS]


def find_reference(services: Any, model: str) -> Reference | None:
    """The training dataset the serving version's run logged (the champion's, else the
    newest version's); None when there is none to compare with."""
    version = _serving_version(services, model)
    if version is None or version.run_id is None:
        return None
    try:
        run = services.tracking.get_run(version.run_id)
    except NotFound:
        return None
    for item in run.inputs:
        if item.context == "training":
            stored = services.datasets.get_by_hash(item.content_hash)
            frame = services.datasets.load(stored.name, stored.version)
            source = {"version": version.version, "run_id": run.id, "dataset": stored.name}
            inputs = tuple(c["name"] for c in (version.signature or {}).get("inputs", []))
            source.update(dataset_version=stored.version, rows=len(frame))
            return Reference(frame, source, inputs)
    return None


def validate(
    services: Any, job: JobArgs, data: TrainingData, now_ms: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows to train on (corrupted periods left out) and the report; DataRefused when
    the rows must not be trained on."""
    spec = job.retrain.data_validation
    assert spec is not None
    frame, features = data.frame, data.features
    reference = find_reference(services, job.model)
    failures: list[Violation] = []
    warnings: list[Violation] = []
    schema: dict[str, ColumnSchema] = {}
    profile: ReferenceProfile | None = None
    if reference is not None:
        ref_columns = reference.columns(job.retrain.label)
        profile = ReferenceProfile.from_frame(reference.frame[ref_columns])
        schema = infer_schema(profile, ref_columns)
        found = schema_violations(schema, frame, features)
        # a spec that lists its features declares the feature set: a feature added or
        # dropped there is a warning; against the signature's features it is a failure
        declared = job.retrain.features is not None
        for v in found:
            soft = declared and v.check == "new_column" or declared and v.column not in features
            (warnings if soft else failures).append(v)
        schema = {c: s for c, s in schema.items() if c in features and c in frame.columns}
    else:
        failures += [
            Violation("missing_column", c, f"{c}: no value in any row", 1.0, None)
            for c in features
            if len(frame) and frame[c].isna().all()
        ]
    report: dict[str, Any] = {
        "reference": None if reference is None else reference.source,
        "rows": len(frame),
        "schema": {c: s.as_dict() for c, s in schema.items()},
    }
    kept = frame
    if not failures:
        # without a reference the window is its own for the periods: a day far from the
        # rest (a feed that broke for a day) still stands out; the whole is checked alone
        own = profile or ReferenceProfile.from_frame(frame[features])
        own_schema = schema if profile else infer_schema(own, features)
        kept, periods, bad = _quarantine(frame, features, own_schema, own, spec, failures)
        report["quarantine"] = periods
        if not failures:
            failures += _column_checks(kept, features, schema, profile, spec)
    report["kept_rows"] = len(kept)
    report["quarantined_rows"] = len(frame) - len(kept)
    report["stats"] = column_stats(kept, features)
    if profile is not None and not failures:
        report["skew"] = _skew(kept, schema, profile, spec, failures, warnings)
    if not failures:
        ref_ts = None
        if reference is not None and TS_COLUMN in reference.frame.columns:
            ref_ts = reference.frame[TS_COLUMN].dropna().to_numpy(np.int64)
        start = now_ms - job.retrain.window_s * 1000
        if job.data.mode == "after_change_point" and job.data.since_ms is not None:
            start = max(start, job.data.since_ms)
        numbers, found = check_window(
            kept[TS_COLUMN].to_numpy(np.int64), ref_ts, (now_ms - start) // 1000, spec.window
        )
        report["window"] = numbers
        (failures if spec.window.action == "refuse" else warnings).extend(found)
    report["failures"] = [v.as_dict() for v in failures]
    report["warnings"] = [v.as_dict() for v in warnings]
    report["passed"] = not failures
    report["thresholds"] = spec.model_dump(by_alias=True)
    if failures:
        raise DataRefused(report)
    return kept.reset_index(drop=True), report


def _checks_profile(profile: ReferenceProfile, columns: list[str]) -> ReferenceProfile:
    return ReferenceProfile({c: profile.columns[c] for c in columns}, profile.rows)


def _column_checks(
    rows: pd.DataFrame,
    features: list[str],
    schema: dict[str, ColumnSchema],
    profile: ReferenceProfile | None,
    spec: DataValidationSpec,
) -> list[Violation]:
    """Failures of one period (or the kept rows): the monitors' data-quality checks with
    this spec's thresholds, plus improbably constant columns."""
    found: list[Violation] = []
    columns = list(schema)
    if profile is not None and columns:
        limits = QualityThresholds(
            null_rate_increase=spec.max_missing_share,
            out_of_range_share=spec.max_out_of_range_share,
            new_category_share=spec.max_unseen_category_share,
            unparseable_share=0.0,
            out_of_range_error_share=spec.max_out_of_range_share,
        )
        quality = check_quality(_checks_profile(profile, columns), rows[columns], limits)
        for f in quality.findings:
            if f.severity == "error" or f.check == "new_categories":
                name = {"null_rate": "missing_share", "new_categories": "unseen_categories"}
                found.append(
                    Violation(
                        name.get(f.check, f.check), f.feature, f.message, f.value, f.threshold
                    )
                )
    if len(rows) >= spec.min_period_rows:
        found += _constant(rows, features, profile)
    return found


def _constant(
    rows: pd.DataFrame, features: list[str], profile: ReferenceProfile | None
) -> list[Violation]:
    found = []
    for c in features:
        values = rows[c].dropna()
        if len(values) < 2 or values.nunique() != 1:
            continue
        value = values.iloc[0]
        ref = None if profile is None else profile.columns.get(c)
        share = 0.0 if ref is None else _reference_share(ref, value)
        if ref is None and len(values) < len(rows):  # no reference: only a fully constant column
            continue
        chance = share ** len(values)
        if chance < CONSTANT_P:
            where = f"the reference has it in {share:.1%} of rows" if ref else "no reference"
            found.append(
                Violation(
                    "constant",
                    c,
                    f"{c} is {value!r} in all {len(values)} rows ({where}; chance {chance:.1e})",
                    chance,
                    CONSTANT_P,
                )
            )
    return found


def _reference_share(ref: ColumnProfile, value: Any) -> float:
    if ref.kind == "numeric":
        assert ref.sorted_values is not None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return 0.0
        hits = np.searchsorted(ref.sorted_values, number, "right") - np.searchsorted(
            ref.sorted_values, number, "left"
        )
        return float(hits) / ref.sorted_values.size if ref.sorted_values.size else 0.0
    assert ref.counts is not None
    counts = ref.counts.rename(index=str)
    total = float(counts.sum())
    return float(counts.get(str(value), 0)) / total if total else 0.0


def _quarantine(
    frame: pd.DataFrame,
    features: list[str],
    schema: dict[str, ColumnSchema],
    profile: ReferenceProfile | None,
    spec: DataValidationSpec,
    failures: list[Violation],
) -> tuple[pd.DataFrame, dict[str, Any], int]:
    """Check each period; leave out failing ones when few, else add a failure."""
    q = spec.quarantine
    if not len(frame):
        return frame, {"periods": [], "rows": 0, "share": 0.0}, 0
    period = frame[TS_COLUMN].to_numpy(np.int64) // (q.period_s * 1000)
    bad_periods: list[dict[str, Any]] = []
    drop = np.zeros(len(frame), dtype=bool)
    for key in np.unique(period):
        mask = period == key
        if mask.sum() < spec.min_period_rows:
            continue  # too few rows to judge a period by
        found = _column_checks(frame.loc[mask], features, schema, profile, spec)
        if found:
            drop |= mask
            start = dt.datetime.fromtimestamp(int(key) * q.period_s, dt.UTC)
            bad_periods.append(
                {
                    "start": start.isoformat().replace("+00:00", "Z"),
                    "rows": int(mask.sum()),
                    "columns": sorted({v.column for v in found if v.column}),
                    "checks": [v.as_dict() for v in found],
                }
            )
    share = float(drop.mean())
    summary = {"periods": bad_periods, "rows": int(drop.sum()), "share": round(share, 6)}
    if share > q.max_share:
        columns = sorted({c for p in bad_periods for c in p["columns"]})
        starts = ", ".join(p["start"][:16] for p in bad_periods[:10])
        failures.append(
            Violation(
                "corrupted_periods",
                ", ".join(columns) or None,
                f"{len(bad_periods)} period(s) fail the column checks on {', '.join(columns)}: "
                f"{int(drop.sum())} rows, {share:.1%} of the window (quarantine max_share "
                f"{q.max_share:g}): {starts}; first: {bad_periods[0]['checks'][0]['message']}",
                share,
                q.max_share,
            )
        )
        return frame, summary, int(drop.sum())
    return frame.loc[~drop], summary, int(drop.sum())


def _skew(
    rows: pd.DataFrame,
    schema: dict[str, ColumnSchema],
    profile: ReferenceProfile,
    spec: DataValidationSpec,
    failures: list[Violation],
    warnings: list[Violation],
) -> dict[str, dict[str, float | None]]:
    """KS (numeric) and PSI per feature vs the reference, over each side's non-missing values."""
    out: dict[str, dict[str, float | None]] = {}
    target = failures if spec.skew.action == "refuse" else warnings
    for name, column in schema.items():
        ref = profile.columns[name]
        current = rows[name].dropna()
        if column.kind == "numeric" and ref.sorted_values is not None:
            ref_values = ref.sorted_values
            cur_values = pd.to_numeric(current, errors="coerce").dropna().to_numpy(np.float64)
            if not (ref_values.size and cur_values.size):
                continue
            test = ks(ref_values, cur_values)
            numbers = {
                "ks": _num(test.statistic),
                "ks_pvalue": _num(test.pvalue),
                "psi": _num(psi(ref_values, cur_values).statistic),
            }
        else:
            assert ref.counts is not None
            ref_levels = np.repeat(
                ref.counts.index.astype(str).to_numpy(object), ref.counts.to_numpy()
            )
            cur_levels = current.astype(str).to_numpy(object)
            if not (ref_levels.size and cur_levels.size):
                continue
            numbers = {"psi": _num(psi(ref_levels, cur_levels).statistic)}
        out[name] = numbers
        ks_value, psi_value = numbers.get("ks"), numbers.get("psi")
        if ks_value is not None and ks_value > spec.skew.max_ks:
            message = f"{name}: KS={ks_value:.3f} vs the reference > max_ks {spec.skew.max_ks:g}"
            target.append(Violation("skew_ks", name, message, ks_value, spec.skew.max_ks))
        if psi_value is not None and psi_value > spec.skew.max_psi:
            message = (
                f"{name}: PSI={psi_value:.3f} vs the reference > max_psi {spec.skew.max_psi:g}"
            )
            target.append(Violation("skew_psi", name, message, psi_value, spec.skew.max_psi))
    return out


def _num(value: Any) -> float | None:
    number = float(np.asarray(value).reshape(-1)[0])
    return number if math.isfinite(number) else None
