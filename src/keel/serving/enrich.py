"""Online features for the models a feature service feeds (``FeatureService.model``).

A feature service whose ``model:`` is a served model's name *binds* that model (every
version). Each instance of a request then names its entity (the join keys of the views
the model reads), the gateway fetches the features for all the request's rows in one
``get_online_features`` call, in a thread (SQLite or Redis I/O), merges them into the
instances (a value in the request wins) and checks the merged rows against the signature
as for any request. Rules, naming and errors: docs/features.md, "Serving integration".

A bound model's answer depends on the online values as well as on the body, so the
gateway's in-process fast paths (which answer from the body bytes alone) never serve it:
:attr:`PoolEntry.binding <keel.serving.pool.PoolEntry.binding>` is not None for it.

keel.serving does not import keel.features: the composition root hands the gateway its
feature store (``start_gateway(features=services.features)``), used through the methods
of :class:`OnlineFeatureSource` only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from keel.errors import InvalidInput, Unavailable
from keel.serving.binding import (
    PENDING,
    FeatureBinding,
    OnlineFeatureSource,
    _inputs,
    build_binding,
    entity_tags,
)
from keel.serving.cachefront import GuardedCache
from keel.serving.events import make_invalidation
from keel.serving.pool import PoolEntry
from keel.serving.validation import ParsedInput

__all__ = [
    "PENDING",
    "FeatureBinder",
    "FeatureBinding",
    "OnlineFeatureSource",
    "build_binding",
    "entity_tags",
]

log = logging.getLogger("keel.serving")

#: A push of more entities than this drops every local entry (the composition root's
#: Redis publisher follows the same rule).
MAX_ENTITY_EVENTS = 1000
#: After a failed read of the definitions, the last ones read are used this long.
_RETRY_READ_S = 5.0


class FeatureBinder:
    """Resolves which feature services feed which loaded version, and fetches for them.

    Everything but the reads runs on the gateway's event loop; the definitions and the
    online values are read on its own threads (``threads``), inside the request's timeout.
    """

    def __init__(
        self,
        store: OnlineFeatureSource,
        entries: Callable[[], Iterable[PoolEntry]],
        *,
        threads: int = 2,
    ) -> None:
        self.store = store
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="keel-features")
        self.catalog: Any = None  # the definitions the index was built from
        self._entries = entries
        self._index: dict[str, tuple[Any, Any, Any]] = {}  # model name → its inputs
        self._read_failed_at = -_RETRY_READ_S
        self._cache: GuardedCache | None = None

    # ---- definitions ---------------------------------------------------------------------
    def use(self, catalog: Any) -> None:
        """Index ``catalog``'s services by model; versions of models whose services,
        views or entities changed resolve their binding again (their fast paths stop)."""
        if catalog is self.catalog:
            return
        by_model: dict[str, list[Any]] = {}
        for service in sorted(catalog.services.values(), key=lambda s: s.name):
            if service.model:
                by_model.setdefault(service.model, []).append(service)
        index: dict[str, tuple[Any, Any, Any]] = {}
        for model, services in by_model.items():
            inputs = _inputs(catalog, services)
            old = self._index.get(model)
            # the same object while equal: entries compare their inputs by identity
            index[model] = old if old is not None and old == inputs else inputs
        changed = {
            m for m in index.keys() | self._index.keys() if index.get(m) is not self._index.get(m)
        }
        self.catalog, self._index = catalog, index
        if changed:
            for entry in self._entries():
                if entry.name in changed:
                    entry.binding = PENDING

    async def _definitions(self) -> Any:
        catalog = self.store.cached_catalog()
        if catalog is not None:
            return catalog
        if self.catalog is not None and time.monotonic() - self._read_failed_at < _RETRY_READ_S:
            return self.catalog
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self.store.catalog)
        except Exception as exc:  # an outage of the metadata store: keep what we know
            self._read_failed_at = time.monotonic()
            if self.catalog is None:
                raise Unavailable(
                    f"feature definitions could not be read: {type(exc).__name__}: {exc}",
                    field="features",
                ) from exc
            log.warning("feature definitions could not be read, using the last ones: %r", exc)
            return self.catalog

    async def binding(self, entry: PoolEntry) -> FeatureBinding | None:
        """The binding of ``entry`` under the live definitions (None: not bound)."""
        self.use(await self._definitions())
        inputs = self._index.get(entry.name)
        if entry.binding is PENDING or entry.binding_inputs is not inputs:
            entry.binding = (
                None if inputs is None else build_binding(entry.name, entry.spec.columns, inputs)
            )
            entry.binding_inputs = inputs
        binding: FeatureBinding | None = entry.binding
        return binding

    async def watch(self, interval_s: float) -> None:
        """Re-read the definitions every ``interval_s``, so that a version served from the
        in-process fast paths notices an ``apply`` that binds it without other traffic."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            try:
                catalog = await loop.run_in_executor(self.executor, self.store.catalog)
            except Exception as exc:  # retried at the next tick
                log.warning("feature definitions could not be read: %r", exc)
                continue
            self.use(catalog)

    # ---- requests ------------------------------------------------------------------------
    async def parse(
        self, entry: PoolEntry, binding: FeatureBinding, body: bytes, timings: dict[str, float]
    ) -> ParsedInput:
        """The request's rows with the online features merged in, checked by the signature.

        The rows' ``entity_keys`` are their join-key values (joined by ``|``), whatever the
        body says, so that a push of the entity drops their cached predictions.
        """
        spec = entry.spec
        records, probabilities, _, event_ms = spec.envelope(body)
        entities = [_entity(binding, record, i) for i, record in enumerate(records)]
        columns = [column for _, column in binding.fetched]
        # rows that give every feature themselves need no lookup (the request wins)
        needed = [i for i, r in enumerate(records) if any(c not in r for c in columns)]
        found: dict[int, dict[str, Any]] = {}
        if needed:
            mark = time.perf_counter()
            rows = await self._fetch(binding, [entities[i] for i in needed])
            timings["features"] = (time.perf_counter() - mark) * 1000
            found = dict(zip(needed, rows, strict=True))
        merged: list[dict[str, Any]] = []
        fetched: dict[tuple[int, str], tuple[str, Any]] = {}  # (row, column) → (ref, value)
        for i, record in enumerate(records):
            row: dict[str, Any] = {}
            hit = found.get(i)
            if hit is not None:
                for (name, column), ref in zip(binding.fetched, binding.refs, strict=True):
                    if column not in record:
                        row[column] = value = hit.get(name)
                        fetched[(i, column)] = (ref, value)
            row.update(record)
            for key in binding.drop:
                row.pop(key, None)
            merged.append(row)
        tags: list[str | None] = ["|".join(str(v) for v in e.values()) for e in entities]
        try:
            return spec.from_records(merged, probabilities, tags, event_ms)
        except InvalidInput as exc:
            row_index = exc.detail.get("row")
            origin = None if row_index is None else fetched.get((row_index, exc.field or ""))
            if origin is None or row_index is None:
                raise
            raise _explained(exc, origin, entities[row_index]) from None

    async def _fetch(
        self, binding: FeatureBinding, entity_rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        read = functools.partial(
            self.store.get_online_features, entity_rows, binding.refs, full_names=True
        )
        try:
            return await loop.run_in_executor(self.executor, read)
        except Exception as exc:  # the online store failed: the request cannot be answered
            raise Unavailable(
                f"online features of model {binding.model} (feature service "
                f"{', '.join(binding.services)}) could not be read: {type(exc).__name__}: {exc}",
                field="features",
                error_class=type(exc).__name__,
            ) from exc

    # ---- invalidation --------------------------------------------------------------------
    def listen(self, cache: GuardedCache | None) -> None:
        """Drop ``cache``'s in-process entries of the entities each push updates."""
        self._cache = cache
        self.store.add_invalidation_callback(self._pushed)

    def _pushed(self, _view: str, keys: list[dict[str, Any]]) -> None:
        # Runs on the pushing thread: MemoryCache is lock-protected. Correctness does not
        # depend on it (cache keys hold the merged values, so a changed value is a miss);
        # it frees the entries that can no longer be hit. Redis entries are deleted by
        # the composition root's publisher, not here.
        cache = self._cache
        if cache is None or not cache.is_local:
            return
        tags = entity_tags(keys)
        if len(tags) > MAX_ENTITY_EVENTS:
            cache.drop_local(make_invalidation(everything=True))
            return
        for tag in tags:
            cache.drop_local(make_invalidation(entity=tag))

    def close(self) -> None:
        """Stop listening to pushes and release the threads, once a read in flight ends.

        Blocking: a definitions read (``watch``) still running would otherwise keep its
        database connection past the engine's dispose by the caller, open until
        garbage-collected. Queued work is cancelled.
        """
        self.store.remove_invalidation_callback(self._pushed)
        self.executor.shutdown(wait=True, cancel_futures=True)


def _entity(binding: FeatureBinding, record: dict[str, Any], row: int) -> dict[str, Any]:
    """The join keys of instance ``row``; InvalidInput naming ``instances[row].<key>``."""
    key: dict[str, Any] = {}
    for name, kind in binding.keys:
        field = f"instances[{row}].{name}"
        if name not in record:
            raise InvalidInput(
                f"instance {row} has no {name!r}: model {binding.model} reads online "
                f"features (feature service {', '.join(binding.services)}) of the entity it names",
                field=field,
                row=row,
            )
        value = record[name]
        if type(value) is not (str if kind == "string" else int):  # bool is not an int64 key
            raise InvalidInput(
                f"{field} must be {kind}, got {value!r} ({type(value).__name__})",
                field=field,
                row=row,
                expected=kind,
            )
        key[name] = value
    return key


def _explained(exc: InvalidInput, origin: tuple[str, Any], entity: dict[str, Any]) -> InvalidInput:
    """``exc`` about a value fetched online, saying so (and, for a missing one, why)."""
    ref, value = origin
    who = ", ".join(f"{k}={v!r}" for k, v in entity.items())
    if value is None:
        why = (
            f"no online value of {ref} for {who} (not materialised or pushed, "
            "or older than the view's TTL)"
        )
    else:
        why = f"the value was fetched online from {ref} for {who}"
    detail = dict(exc.detail, feature=ref, entity=entity)
    return InvalidInput(f"{exc.message}: {why}", field=exc.field, **detail)
