"""What a model returned, checked before anyone is answered with it.

A micro-batch hands row ``i`` of the model's output to the request that sent row ``i``:
a model that returns more or fewer outputs than it was given rows would answer requests
with other callers' predictions, or cut answers short (issue 15 item 6). Every model
call is checked here, in the predict thread: one output per row, one probability row per
row with one column per class, and, when the signature declares its outputs, each value
of the declared kind. A mismatch is the model's failure: :class:`~keel.errors.ModelError`
(502, counted by the circuit breaker) naming what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel.errors import ModelError
from keel.serving._values import check_value

__all__ = ["check_outputs"]


def check_outputs(
    model: tuple[str, int],
    rows: int,
    predictions: Sequence[Any],
    probabilities: Sequence[Any] | None,
    *,
    classes: Sequence[Any] | None = None,
    outputs: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Raise ModelError unless the outputs fit ``rows`` input rows (and the signature).

    ``outputs`` are the signature's output columns: one column means one value per row,
    several mean a list of that many values per row.
    """
    if len(predictions) != rows:
        raise _mismatch(
            model,
            f"returned {len(predictions)} predictions for {rows} rows",
            expected_rows=rows,
            returned_rows=len(predictions),
        )
    if probabilities is not None:
        if len(probabilities) != rows:
            raise _mismatch(
                model,
                f"returned {len(probabilities)} probability rows for {rows} rows",
                expected_rows=rows,
                returned_rows=len(probabilities),
            )
        if classes is not None:
            width = len(classes)
            for i, row in enumerate(probabilities):
                if not isinstance(row, list) or len(row) != width:
                    got = len(row) if isinstance(row, list) else type(row).__name__
                    raise _mismatch(
                        model,
                        f"returned {got} probabilities in row {i} for {width} classes",
                        row=i,
                        classes=width,
                    )
    if outputs:
        _check_declared(model, predictions, outputs)


def _check_declared(
    model: tuple[str, int], predictions: Sequence[Any], outputs: Sequence[dict[str, Any]]
) -> None:
    width = len(outputs)
    for i, prediction in enumerate(predictions):
        values = [prediction] if width == 1 else prediction
        if width == 1 and isinstance(prediction, list):
            if len(prediction) != 1:
                raise _mismatch(
                    model,
                    f"returned {len(prediction)} values in row {i}; the signature "
                    f"declares 1 output ({outputs[0]['name']!r})",
                    row=i,
                    outputs=1,
                )
            values = prediction
        if not isinstance(values, list) or len(values) != width:
            got = len(values) if isinstance(values, list) else 1
            raise _mismatch(
                model,
                f"returned {got} values in row {i}; the signature declares {width} outputs",
                row=i,
                outputs=width,
            )
        for column, value in zip(outputs, values, strict=True):
            if not check_value(column["type"], value):
                raise _mismatch(
                    model,
                    f"output {column['name']!r} expects {column['type']}, got {value!r} "
                    f"({type(value).__name__}) in row {i}",
                    row=i,
                    output=column["name"],
                    expected=column["type"],
                )


def _mismatch(model: tuple[str, int], what: str, **detail: Any) -> ModelError:
    name, version = model
    return ModelError(
        f"model {name}/{version} {what}: its output does not match its input",
        field="model",
        model=name,
        version=version,
        **detail,
    )
