"""Who failed, the model or the request: a model error on a request's rows, judged.

A model raises on bad input as it raises when it is broken, and the circuit breaker
must only count the second kind: eight requests with NaN in a column a
``LogisticRegression`` cannot take opened the breaker for every client (issue 15 item
7). When a model call raises, :func:`judged_call` asks the model two more questions:

1. does it predict the version's stored input example (rows it predicted when it was
   logged and warmed up)? If not, the model is failing: the original
   :class:`~keel.errors.ModelError` (502, counted by the breaker).
2. does it raise on the request's rows again? If so, those rows are the cause:
   :class:`~keel.errors.InvalidInput` (422, ``field="instances"``, no verdict for the
   breaker). If not, the failure was transient and the second answer is served.

A version without an input example cannot be judged: its errors stay 502. An output
that does not match the input (:mod:`keel.serving.outputs`) is the model's fault
whatever the rows, so it is not judged either. Micro-batches already run each request
alone when a batch fails (:mod:`keel.serving.batcher`), so the rows judged here are one
request's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from keel.errors import InvalidInput, KeelError, ModelError
from keel.serving.batcher import BatchResult
from keel.serving.pool import PoolEntry

__all__ = ["judged_call"]

Call = Callable[[PoolEntry, list[tuple[Any, ...]], bool, Sequence[str]], Awaitable[BatchResult]]


async def judged_call(
    call: Call,
    executor: Executor,
    entry: PoolEntry,
    rows: list[tuple[Any, ...]],
    probabilities: bool,
    columns: Sequence[str],
) -> BatchResult:
    """``call(entry, rows, probabilities, columns)``; a model error on it is judged (above).

    Raises ModelError when the model is at fault, InvalidInput when the rows are.
    """
    try:
        return await call(entry, rows, probabilities, columns)
    except ModelError as error:
        if "error_class" not in error.detail:
            raise  # not a raise inside the model (an output mismatch): the model's fault
        example = _example(entry)
        if example is None:
            raise
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, entry.run, example[0], False, example[1])
        except KeelError:
            raise error from None  # it fails on its own example too: the model is failing
        try:
            return await loop.run_in_executor(executor, entry.run, rows, probabilities, columns)
        except ModelError as again:
            if "error_class" not in again.detail:
                raise
            prefix = f"model {entry.name}/{entry.version}"
            raise InvalidInput(
                f"{prefix} cannot predict the request's rows "
                f"({again.message.removeprefix(f'{prefix} raised ')}); it predicts its "
                "input example, so the rows are the cause",
                field="instances",
                error_class=again.detail.get("error_class"),
                model=entry.name,
                version=entry.version,
            ) from again


def _example(entry: PoolEntry) -> tuple[list[tuple[Any, ...]], list[str]] | None:
    """The version's stored input example as rows and their columns, or None."""
    example = entry.example
    if not example or not example.get("data"):
        return None
    if entry.spec.columns is not None:
        try:
            return entry.spec.example_rows(example), entry.spec.columns
        except KeelError:  # an example its own signature refuses cannot vouch for the model
            return None
    return [tuple(row) for row in example["data"]], list(example["columns"])
