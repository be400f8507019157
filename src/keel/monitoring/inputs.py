"""What a monitor run reads: the model version, the reference, the window, held-out data.

Reference frames (and their profiles) and calibration sets are cached per
monitor, keyed by content hash, so a scheduled monitor loads them once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from keel.errors import InvalidInput, NotFound
from keel.monitoring.models import Monitor, MonitorSpec
from keel.monitoring.profile import ReferenceProfile
from keel.registry.models import ModelVersion
from keel.registry.service import RegistryService
from keel.serving._segments import BASE_SCHEMA
from keel.serving.predlog import FEATURE_PREFIX
from keel.serving.predquery import parse_time, predictions
from keel.tracking.datasets import DatasetService
from keel.tracking.service import TrackingService

__all__ = ["MonitorInputs", "Reference", "WindowTime", "slice_columns", "strip_prefix", "window_ms"]

#: A window bound: datetime, epoch ms, ISO-8601 text or an age (``keel.serving.parse_time``).
WindowTime = dt.datetime | int | str | None


@dataclass
class Reference:
    """A reference frame and what is derived from it once (profile, model outputs)."""

    frame: pd.DataFrame
    profile: ReferenceProfile
    outputs: dict[int, pd.DataFrame]


class MonitorInputs:
    """Loads (and caches) the data a monitor run compares."""

    def __init__(
        self,
        registry: RegistryService,
        tracking: TrackingService,
        datasets: DatasetService,
        predictions_root: Path,
    ) -> None:
        self.registry = registry
        self.tracking = tracking
        self.datasets = datasets
        self.predictions_root = predictions_root
        self._references: dict[tuple[str, str], Reference] = {}
        self._calibration: dict[tuple[str, str, int], pd.DataFrame] = {}

    def calibration_set(
        self, monitor: Monitor, version: ModelVersion, reference: pd.DataFrame
    ) -> pd.DataFrame:
        """Labelled rows the model did not train on, to calibrate its confidence.

        A model is over-confident on its own training data, so the estimate is
        calibrated on the version's run inputs logged as ``validation`` (else
        ``evaluation``) when they carry the label column; the reference otherwise.
        """
        key = (monitor.name, version.name, version.version)
        if key in self._calibration:
            return self._calibration[key]
        frame = reference
        if version.run_id is not None:
            inputs = self.tracking.get_run(version.run_id).inputs
            for context in ("validation", "evaluation"):
                found = [i for i in inputs if i.context == context]
                if found:
                    item = self.datasets.get_by_hash(found[0].content_hash)
                    candidate = self.datasets.load(item.name, item.version)
                    if monitor.label_column in candidate.columns:
                        frame = candidate
                        break
        self._calibration[key] = frame
        return frame

    def check_columns(self, spec: MonitorSpec) -> None:
        """Refuse ``features``, ``label_column``, ``slices``, ``overrides`` and ``rules`` naming
        columns a run could never find (InvalidInput naming the field), so a scheduled monitor
        is refused when it is created instead of failing on every run.

        Checked against the reference's columns and the served version's signature when they
        can be found now; a monitor whose version or reference cannot be resolved yet (no
        champion alias so far) is checked when it runs.
        """
        try:
            version = self.version(spec)
        except NotFound:
            version = None
        signature = {
            c["name"] for c in ((version.signature if version else None) or {}).get("inputs", [])
        }
        try:
            known = set(self.reference(spec, version).frame.columns)
        except (InvalidInput, NotFound):
            return  # no reference to check against: the run says why
        _refuse_unknown("features", spec.features or [], known, "the reference")
        if spec.label_column is not None:
            _refuse_unknown("label_column", [spec.label_column], known, "the reference")
            if spec.label_column in (spec.features or []):
                raise InvalidInput(
                    f"label_column: {spec.label_column!r} is also listed in features",
                    field="label_column",
                )
        monitored = set(spec.features or known) - {spec.label_column}
        _refuse_unknown("overrides", list(spec.overrides), monitored, "the monitored features")
        # A slice may be any logged column: a feature, the output, or a log field (arm …).
        logged = known | signature | set(BASE_SCHEMA.names) | {"output", "model", "version"}
        _refuse_unknown("slices", spec.slices, logged, "the reference or the logged columns")
        rules = [rule.feature for rule in spec.rules]
        _refuse_unknown("rules", rules, known | signature, "the reference or the signature")

    def version(self, monitor: MonitorSpec) -> ModelVersion | None:
        if monitor.version == "*":
            return None
        if monitor.version.isdigit():
            return self.registry.get_version(monitor.model, int(monitor.version))
        return self.registry.resolve(f"models:/{monitor.model}@{monitor.version}")

    def reference(self, monitor: MonitorSpec, version: ModelVersion | None) -> Reference:
        if monitor.reference is not None:
            name, number = self.dataset_ref(monitor.reference)
            item = self.datasets.get(name, number)
        else:
            item = self._training_data(monitor, version)
        key = (monitor.name, item.content_hash)
        if key not in self._references:
            frame = self.datasets.load(item.name, item.version)
            self._references[key] = Reference(frame, ReferenceProfile.from_frame(frame), {})
        return self._references[key]

    def _training_data(self, monitor: MonitorSpec, version: ModelVersion | None) -> Any:
        if version is None or version.run_id is None:
            raise InvalidInput(
                f"monitor {monitor.name}: no reference given and the model version has no "
                "run to take training data from",
                field="reference",
            )
        run = self.tracking.get_run(version.run_id)
        training = [i for i in run.inputs if i.context == "training"]
        if not training:
            raise InvalidInput(
                f"monitor {monitor.name}: run {run.id} logged no training dataset; "
                "give a reference dataset",
                field="reference",
            )
        return self.datasets.get_by_hash(training[0].content_hash)

    def dataset_ref(self, ref: str) -> tuple[str, int | None]:
        name, _, number = ref.partition("@")
        if number and not number.isdigit():
            raise InvalidInput(
                f"reference: expected name or name@version, got {ref!r}", field="reference"
            )
        version = int(number) if number else None
        self.datasets.get(name, version)
        return name, version

    def window(
        self, monitor: Monitor, version: ModelVersion | None, start_ms: int, end_ms: int
    ) -> pd.DataFrame:
        table = predictions(
            monitor.model,
            version.version if version else None,
            start_ms,
            end_ms,
            root=self.predictions_root,
        )
        frame = strip_prefix(table.to_pandas())
        if monitor.sampling_rate < 1 and len(frame):
            frame = frame.sample(frac=monitor.sampling_rate, random_state=0)
        return frame

    def features(
        self, monitor: Monitor, reference: pd.DataFrame, window: pd.DataFrame
    ) -> list[str]:
        if monitor.features:
            missing = [f for f in monitor.features if f not in reference.columns]
            if missing:
                raise InvalidInput(
                    f"features: not in the reference: {', '.join(missing)}", field="features"
                )
            return list(monitor.features)
        logged = {c for c in window.columns}
        skip = {monitor.label_column}
        chosen = [c for c in reference.columns if c in logged and c not in skip]
        # An empty window has no feature columns yet: monitor every reference column.
        return chosen or [c for c in reference.columns if c not in skip]


def window_ms(value: WindowTime, field: str, now: int) -> int:
    """A window bound in epoch ms (default ``now``); InvalidInput naming ``field``."""
    moment = parse_time(value, field)
    if moment is None:
        return now
    ms = int(moment.timestamp() * 1000)
    if ms > now:
        raise InvalidInput(f"{field} is in the future", field=field, value=str(value))
    return ms


def slice_columns(slice_by: list[str], window: pd.DataFrame) -> list[str]:
    """``slice_by`` checked against the window's columns (a typo used to give no slices)."""
    unknown = [c for c in slice_by if c not in window.columns]
    if unknown:
        raise InvalidInput(
            f"slice_by: not columns of the run's window: {', '.join(map(repr, unknown))}",
            field="slice_by",
            unknown=unknown,
        )
    return slice_by


def _refuse_unknown(field: str, names: list[str], known: set[str], where: str) -> None:
    missing = [n for n in names if n not in known]
    if missing:
        raise InvalidInput(
            f"{field}: not in {where}: {', '.join(map(repr, missing))}",
            field=field,
            unknown=missing,
            known=sorted(known)[:50],
        )


def strip_prefix(frame: pd.DataFrame) -> pd.DataFrame:
    """Logged ``f_<feature>`` columns under their feature names."""
    prefix = len(FEATURE_PREFIX)
    renamed = {c: c[prefix:] for c in frame.columns if c.startswith(FEATURE_PREFIX)}
    return frame.rename(columns=renamed)
