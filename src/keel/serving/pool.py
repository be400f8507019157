"""The model pool: loaded model versions kept in memory, least recently used evicted first.

The pool is bounded by a memory budget (``KEEL_SERVING_POOL_MAX_BYTES``). A model's size is
the **on-disk size of its files** (the sum of the registry's ``ModelFile.size_bytes``, i.e.
of the unpacked model directory): known before loading, the same on every replica, and
close to the in-memory size for tree ensembles stored as text or skops files. A model
larger than the whole budget is still served; it just evicts everything else.

Loads run in a thread, once per version however many requests wait for it (single
flight). A version that failed to load is not retried for :data:`LOAD_RETRY_S` seconds;
requests for it get 503 meanwhile. :meth:`ModelPool.warm` also runs a prediction on the
version's stored input example (the warm-up), so the first user request is not the first
call into the model; ``load_ms``, ``warmup_ms`` and the latency of the first request are
kept per version (cold = loaded by a request, warm = preloaded and warmed up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keel.errors import KeelError, ModelError, NotFound, Unavailable
from keel.registry.flavors import LoadedModel
from keel.registry.packaging import load_model_dir
from keel.registry.service import RegistryService
from keel.serving._lgbmcall import BoosterCall
from keel.serving.batcher import BatchResult
from keel.serving.hits import HitMemo
from keel.serving.metrics import MODEL_LOAD, POOL_BYTES
from keel.serving.outputs import check_outputs
from keel.serving.validation import InputSpec

__all__ = ["LOAD_RETRY_S", "ModelPool", "PoolEntry"]

log = logging.getLogger("keel.serving")
LOAD_RETRY_S = 5.0


@dataclass(slots=True)
class PoolEntry:
    """One loaded model version and what is known about serving it."""

    name: str
    version: int
    model: LoadedModel
    spec: InputSpec
    size_bytes: int
    load_ms: float
    example: dict[str, Any] | None = None
    warmup_ms: float | None = None
    first_request_ms: float | None = None
    first_request_warm: bool | None = None
    loaded_at: float = field(default_factory=time.time)
    hits: HitMemo = field(default_factory=HitMemo)  # rendered cache-hit answers by body

    @property
    def has_probabilities(self) -> bool:
        """Whether the model outputs class probabilities."""
        return self.model.classes is not None

    matrix_ok: bool = False  # set at load: rows may go to the model as one float array
    #: With ``matrix_ok``, a LightGBM booster's one-C-call predictor (``_lgbmcall``).
    booster_call: BoosterCall | None = None
    # Online features (keel.serving.enrich): the FeatureBinding of a model a feature
    # service feeds, enrich.PENDING until the gateway resolved it, None when the body
    # alone is the model's input (only then may the in-process fast paths answer).
    binding: Any = None
    binding_inputs: Any = None  # the definitions ``binding`` was built from

    def run(
        self,
        rows: list[tuple[Any, ...]],
        probabilities: bool,
        columns: Sequence[str] | None = None,
    ) -> BatchResult:
        """Predict checked rows (in a worker thread); a model failure becomes ModelError.

        ``columns`` names the values of each row when the model has no signature (the
        request's own keys); with a signature the rows are in its order.
        """
        try:
            if self.matrix_ok:
                frame: Any = np.array(rows, dtype=np.float64)  # None → NaN, as in a frame
            else:
                frame = self.spec.frame(rows, self.spec.columns or columns or [])
            if self.booster_call is not None:  # one pass for labels and probabilities
                predictions, matrix = self.booster_call(frame, probabilities)
                proba = None if matrix is None else matrix.tolist()
            else:
                predictions = self.model.predict(frame).tolist()
                proba = self.model.predict_proba(frame).tolist() if probabilities else None
        except KeelError:
            raise
        except Exception as exc:  # whatever the model raises is the model's error
            raise ModelError(
                f"model {self.name}/{self.version} raised {type(exc).__name__}: {exc}",
                field="model",
                error_class=type(exc).__name__,
                model=self.name,
                version=self.version,
            ) from exc
        # one output per row, before a batch hands row i's output to row i's request
        check_outputs(
            (self.name, self.version),
            len(rows),
            predictions,
            proba,
            classes=self.model.classes,
            outputs=self.spec.outputs,
        )
        return predictions, proba

    def describe(self) -> dict[str, Any]:
        """Serving facts for the status endpoint."""
        return {
            "model": self.name,
            "version": self.version,
            "flavor": self.model.flavor,
            "size_bytes": self.size_bytes,
            "load_ms": round(self.load_ms, 3),
            "warmup_ms": None if self.warmup_ms is None else round(self.warmup_ms, 3),
            "first_request_ms": (
                None if self.first_request_ms is None else round(self.first_request_ms, 3)
            ),
            "first_request_warm": self.first_request_warm,
            "loaded_at": self.loaded_at,
            "feature_services": list(getattr(self.binding, "services", ())),
        }


def takes_float_matrix(model: LoadedModel, spec: InputSpec) -> bool:
    """Whether a batch can skip pandas: a LightGBM model whose inputs are all float columns
    named, in order, as the model's features. The booster then reads the same numbers from
    a float64 array as from the frame, without ``_data_from_pandas`` (about a millisecond
    per call); ``tests/serving`` checks the answers equal ``model.predict(frame)``.
    """
    if model.flavor != "lightgbm" or spec.columns is None:
        return False
    if any(kind not in ("double", "float") for kind in spec.kinds):
        return False
    names = [c.replace(" ", "_") for c in spec.columns]  # LightGBM's own renaming
    return model.feature_names is not None and names == model.feature_names


class ModelPool:
    """LRU of :class:`PoolEntry` bounded by ``max_bytes``."""

    def __init__(
        self,
        registry: RegistryService,
        executor: Executor,
        *,
        max_bytes: int,
        allow_pickle: bool = False,
        trusted_classes: Collection[str] = (),
        max_rows: int = 10_000,
        on_load: Callable[[PoolEntry], None] | None = None,
        on_evict: Callable[[PoolEntry], None] | None = None,
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.max_bytes = max_bytes
        self.allow_pickle = allow_pickle
        self.trusted_classes = frozenset(trusted_classes)
        self.max_rows = max_rows
        self.on_load = on_load
        self.on_evict = on_evict  # drops what else holds the entry, so its memory is freed
        self._entries: OrderedDict[tuple[str, int], PoolEntry] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[PoolEntry]] = {}
        self._failed: dict[tuple[str, int], tuple[float, Unavailable]] = {}
        self.evictions = 0

    @property
    def total_bytes(self) -> int:
        """Size of every loaded model."""
        return sum(e.size_bytes for e in self._entries.values())

    def peek(self, name: str, version: int) -> PoolEntry | None:
        """The loaded entry, or None; does not load."""
        return self._entries.get((name, version))

    def loaded(self, name: str, version: int) -> PoolEntry | None:
        """The version if it is loaded (marked recently used), else None; never loads."""
        key = (name, version)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def entries(self) -> list[PoolEntry]:
        """Loaded entries, least recently used first."""
        return list(self._entries.values())

    async def get(self, name: str, version: int) -> PoolEntry:
        """The loaded version, loading it first if needed.

        Raises NotFound for an unknown version, Unavailable (503) when it fails to load.
        """
        key = (name, version)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        failed = self._failed.get(key)
        if failed is not None and failed[0] > time.monotonic():
            raise failed[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(name, version))
            self._loading[key] = pending
            pending.add_done_callback(lambda f: self._loaded(key, f))
        return await asyncio.shield(pending)

    def _loaded(self, key: tuple[str, int], future: asyncio.Future[PoolEntry]) -> None:
        self._loading.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved here: callers that timed out no longer wait

    async def _load(self, name: str, version: int) -> PoolEntry:
        try:
            entry = await asyncio.to_thread(self._load_sync, name, version)
        except Unavailable as exc:
            self._failed[(name, version)] = (time.monotonic() + LOAD_RETRY_S, exc)
            raise
        self._failed.pop((name, version), None)
        self._entries[(name, version)] = entry
        self._evict(keep=(name, version))
        MODEL_LOAD.labels(name, str(version)).set(entry.load_ms / 1000)
        if self.on_load is not None:
            self.on_load(entry)
        return entry

    def _load_sync(self, name: str, version: int) -> PoolEntry:
        item = self.registry.get_version(name, version)  # NotFound → 404
        started = time.perf_counter()
        try:
            directory = self.registry.model_dir(item)
            model = load_model_dir(
                directory, allow_pickle=self.allow_pickle, trusted_classes=self.trusted_classes
            )
            spec = InputSpec(model.signature or item.signature, max_rows=self.max_rows)
            matrix_ok = takes_float_matrix(model, spec)
        except NotFound:
            raise
        except Exception as exc:  # any failure to load makes the version unavailable
            log.warning("model %s/%s failed to load: %r", name, version, exc)
            raise Unavailable(
                f"model {name}/{version} failed to load: {type(exc).__name__}: {exc}",
                field="model",
                error_class=type(exc).__name__,
                model=name,
                version=version,
            ) from exc
        return PoolEntry(
            name=name,
            version=version,
            model=model,
            spec=spec,
            size_bytes=sum(f.size_bytes for f in item.files),
            load_ms=(time.perf_counter() - started) * 1000,
            example=item.input_example,
            matrix_ok=matrix_ok,
            booster_call=BoosterCall.of(model) if matrix_ok else None,
        )

    def _evict(self, keep: tuple[str, int]) -> None:
        while self.total_bytes > self.max_bytes and len(self._entries) > 1:
            oldest = next(k for k in self._entries if k != keep)
            evicted = self._entries.pop(oldest)
            self.evictions += 1
            if self.on_evict is not None:
                self.on_evict(evicted)
            log.info("model pool evicted %s/%s (budget %d bytes)", *oldest, self.max_bytes)
        POOL_BYTES.set(self.total_bytes)

    async def warm(self, name: str, version: int) -> PoolEntry:
        """Load the version and predict its input example once; raises Unavailable on failure."""
        entry = await self.get(name, version)
        if entry.warmup_ms is not None:
            return entry
        started = time.perf_counter()
        try:
            rows = entry.spec.example_rows(entry.example)
            if rows:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.executor, entry.run, rows, entry.has_probabilities)
        except KeelError as exc:
            self._entries.pop((name, version), None)
            POOL_BYTES.set(self.total_bytes)
            raise Unavailable(
                f"model {name}/{version} failed its warm-up prediction: {exc.message}",
                field="model",
                model=name,
                version=version,
            ) from exc
        entry.warmup_ms = (time.perf_counter() - started) * 1000
        return entry
