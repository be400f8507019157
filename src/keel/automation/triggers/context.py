"""What one evaluation reads from durable state, loaded once and shared by its conditions.

Everything is a function of ``now``: predictions logged before it (the prediction log),
labels received by it (feedback ``as_of``), the reference the model was trained on, the
registry and the feature store. A replay that passes past times sees what was known then.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from keel.automation.triggers.models import Trigger
from keel.errors import InvalidInput, NotFound
from keel.monitoring.inputs import Reference, strip_prefix
from keel.monitoring.models import MonitorSpec
from keel.registry.models import ModelVersion
from keel.serving.predlog import FEATURE_PREFIX
from keel.serving.predquery import predictions, query_log

__all__ = ["EvaluationContext", "last_scores", "monitor_spec", "output_scores"]

T = TypeVar("T")


def monitor_spec(services: Any, trigger: Trigger) -> MonitorSpec:
    """The monitor whose reference and settings the trigger uses: the one it names, else an
    unsaved one over the model's training data (``MonitorInputs`` reads either)."""
    if trigger.monitor is not None:
        return services.monitors.get(trigger.monitor)  # type: ignore[no-any-return]
    return MonitorSpec(name=f"trigger-{trigger.name}", model=trigger.model, version=trigger.version)


class EvaluationContext:
    """Lazy, cached reads of one evaluation of ``trigger`` at ``now_ms``."""

    def __init__(
        self,
        services: Any,
        trigger: Trigger,
        now_ms: int,
        *,
        manual: bool,
        event: dict[str, Any] | None = None,
    ) -> None:
        self.services = services
        self.trigger = trigger
        self.now_ms = now_ms
        self.manual = manual
        #: what a ``fire`` request posted (``commit``, ``actor``, ``ref``), if one did
        self.event = event
        self.spec = monitor_spec(services, trigger)
        self._version: ModelVersion | None | bool = False
        self._labelled: pd.DataFrame | None = None
        self._reference: Reference | None = None
        self._windows: dict[tuple[int, int], pd.DataFrame] = {}
        self._pending: dict[Hashable, Future[Any]] = {}
        self._done: dict[Hashable, Any] = {}

    # -- the model ----------------------------------------------------------------------------
    @property
    def version(self) -> ModelVersion | None:
        """The served version (the trigger's alias or number); None when it does not resolve
        (no champion yet): conditions then read every version's predictions."""
        if self._version is False:
            try:
                self._version = self.services.monitors.inputs.version(self.spec)
            except (NotFound, InvalidInput):
                self._version = None
        return self._version  # type: ignore[return-value]

    @property
    def version_number(self) -> int | None:
        """The served version's number, or None."""
        return self.version.version if self.version is not None else None

    def last_training_ms(self) -> int:
        """When the model's newest version was registered (0 when it has none)."""
        versions = self.services.registry.list_versions(self.trigger.model)
        return max((v.created_at_ms for v in versions), default=0)

    # -- labels and predictions ------------------------------------------------------------
    def labelled(self) -> pd.DataFrame:
        """Every prediction of the model logged before now that has a label received by now:
        numeric columns ``ts_ms``, ``received_ms``, ``version``, ``label_value``, ``score``
        (positive-class probability, NaN when not logged) and ``output``."""
        if self._labelled is None:
            table = self.services.feedback.labelled_table(
                self.trigger.model,
                None,
                None,
                self.now_ms,
                as_of=self.now_ms,
                columns=["version", "output", "probabilities"],
            )
            if table.num_rows == 0:
                self._labelled = pd.DataFrame(
                    columns=["ts_ms", "received_ms", "version", "label_value", "score", "output"]
                )
            else:
                self._labelled = pd.DataFrame(
                    {
                        "ts_ms": _epoch_ms(table.column("ts")),
                        "received_ms": _epoch_ms(table.column("received_ts")),
                        "version": table.column("version").to_numpy(),
                        "label_value": table.column("label_value").to_numpy(),
                        "score": last_scores(table.column("probabilities")),
                        "output": table.column("output").to_pandas(),
                    },
                    # Not copied into one block per dtype: 0.1 s over a million rows.
                    copy=False,
                )
        return self._labelled

    def labelled_between(self, start_ms: int, end_ms: int, *, served: bool = True) -> pd.DataFrame:
        """Labelled predictions made in ``[start_ms, end_ms)`` (of the served version);
        possibly the cached frame itself, so callers must not modify it."""
        frame = self.labelled()
        if not len(frame):
            return frame
        keep = (frame["ts_ms"] >= start_ms) & (frame["ts_ms"] < end_ms)
        if served and self.version_number is not None:
            keep &= frame["version"] == self.version_number
        # A window over every labelled row (seed 004's) needs no copy of a million rows.
        return frame if keep.all() else frame[keep]

    def window(self, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Logged predictions in ``[start_ms, end_ms)`` of the served version, features
        without their ``f_`` prefix."""
        key = (start_ms, end_ms)
        if key not in self._windows:
            self._windows[key] = self._read_window(start_ms, end_ms)
        return self._windows[key]

    def prefetch(self, work: dict[Hashable, Callable[[], Any]]) -> None:
        """Start each piece of ``work`` in one background thread, so that it overlaps the
        label join of the performance and volume conditions (DuckDB and numpy's sorts
        release the GIL: the evaluation takes about the longer of the two, not their sum).
        The work must touch no database (resolve the model and reference first)."""
        if not work:
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="keel-trigger-prefetch")
        for key, job in work.items():
            self._pending[key] = pool.submit(job)
        pool.shutdown(wait=False)

    def prefetched(self, key: Hashable, work: Callable[[], T]) -> T:
        """``work()``, once: the background thread's result when :meth:`prefetch` started
        it under ``key`` (its failure raises here, as the work itself would have), else
        computed now."""
        if key not in self._done:
            pending = self._pending.pop(key, None)
            self._done[key] = pending.result() if pending else work()
        result: T = self._done[key]
        return result

    def _read_window(self, start_ms: int, end_ms: int) -> pd.DataFrame:
        # Only the reference's logged columns, in one query: a million rows' probability
        # lists, partition columns (a million "model" strings) and unused columns cost
        # more to read than the drift tests cost to run. ``ts`` as well, so that the
        # selection is never empty (no reference column logged), then dropped (a feature
        # named ``ts`` would collide with it). In log order, not sorted by time: the tests
        # ignore the order, and sorting a million rows costs about as much as reading them.
        names = "|".join(re.escape(f"{FEATURE_PREFIX}{c}") for c in self.reference().frame.columns)
        pattern = f"^(ts|{names})$".replace("'", "''")

        def run(con: duckdb.DuckDBPyConnection, source: str, params: dict[str, Any]) -> pa.Table:
            sql = f"SELECT COLUMNS('{pattern}') FROM {source}"
            found: pa.Table = con.sql(sql, params=params).to_arrow_table()
            return found

        root = self.services.monitors.inputs.predictions_root
        table = query_log(run, self.trigger.model, self.version_number, start_ms, end_ms, root=root)
        if table is None:
            return pd.DataFrame()
        frame = strip_prefix(table.to_pandas().drop(columns="ts"))
        rate = getattr(self.spec, "sampling_rate", 1.0)
        if rate < 1 and len(frame):
            frame = frame.sample(frac=rate, random_state=0)
        return frame

    def outputs(self, start_ms: int, end_ms: int) -> np.ndarray:
        """The model's score per prediction in the window: the positive-class probability
        when logged, else the numeric output."""
        table = predictions(
            self.trigger.model,
            self.version_number,
            start_ms,
            end_ms,
            columns=["output", "probabilities"],
            root=self.services.monitors.inputs.predictions_root,
            ordered=False,  # a distribution of scores: the order does not matter
        )
        return output_scores(table)

    # -- reference --------------------------------------------------------------------------
    def reference(self) -> Reference:
        """The reference frame and profile (the monitor's, or the version's training data)."""
        if self._reference is None:
            self._reference = self.services.monitors.inputs.reference(self.spec, self.version)
        return self._reference

    def features(self, window: pd.DataFrame) -> list[str]:
        """The features compared: logged columns of the reference, minus the label column."""
        return list(
            self.services.monitors.inputs.features(self.spec, self.reference().frame, window)
        )


def output_scores(table: pa.Table) -> np.ndarray:
    """Positive-class probabilities when every row has them, else numeric outputs."""
    from keel.monitoring.performance_checks import output_values

    if table.num_rows == 0:
        return np.empty(0)
    scores = last_scores(table.column("probabilities"))
    if not np.isnan(scores).any():
        return scores
    values = pd.to_numeric(output_values(table.column("output").to_pandas()), errors="coerce")
    return np.asarray(values.dropna(), dtype=np.float64)


def last_scores(column: pa.ChunkedArray) -> np.ndarray:
    """The last element of each probability list (the positive class), NaN where none;
    vectorised over the list offsets (a million Python lists would take a second)."""
    lists = column.combine_chunks()
    if lists.type == pa.null() or len(lists) == 0:
        return np.full(len(lists), np.nan)
    offsets = lists.offsets.to_numpy()
    values = lists.values.to_numpy(zero_copy_only=False).astype(np.float64)
    lengths = np.diff(offsets)
    last = np.clip(offsets[1:] - 1, 0, None)
    picked = values[last] if values.size else np.zeros(len(lists))
    return np.where(lengths > 0, picked, np.nan)


def _epoch_ms(column: pa.ChunkedArray) -> np.ndarray:
    """Milliseconds since the epoch of a timestamp column."""
    epoch: np.ndarray = column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy()
    return epoch
