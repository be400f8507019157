"""What a monitor run reads: the model version, the reference, the window, held-out data.

Reference frames (and their profiles) and calibration sets are cached per
monitor, keyed by content hash, so a scheduled monitor loads them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from keel.errors import InvalidInput
from keel.monitoring.models import Monitor
from keel.monitoring.profile import ReferenceProfile
from keel.registry.models import ModelVersion
from keel.registry.service import RegistryService
from keel.serving.predlog import FEATURE_PREFIX
from keel.serving.predquery import predictions
from keel.tracking.datasets import DatasetService
from keel.tracking.service import TrackingService

__all__ = ["MonitorInputs", "Reference", "strip_prefix"]


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

    def version(self, monitor: Monitor) -> ModelVersion | None:
        if monitor.version == "*":
            return None
        if monitor.version.isdigit():
            return self.registry.get_version(monitor.model, int(monitor.version))
        return self.registry.resolve(f"models:/{monitor.model}@{monitor.version}")

    def reference(self, monitor: Monitor, version: ModelVersion | None) -> Reference:
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

    def _training_data(self, monitor: Monitor, version: ModelVersion | None) -> Any:
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


def strip_prefix(frame: pd.DataFrame) -> pd.DataFrame:
    """Logged ``f_<feature>`` columns under their feature names."""
    prefix = len(FEATURE_PREFIX)
    renamed = {c: c[prefix:] for c in frame.columns if c.startswith(FEATURE_PREFIX)}
    return frame.rename(columns=renamed)
