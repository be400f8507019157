"""Cache-hit answers serialised once per exact request body.

A client that repeats a request (what makes prediction-cache hits) gets the same
response body every time but for its request id: the same predictions, model, version
and flags. :class:`RenderedHit` keeps that body serialised, split around the request
id, so a repeated hit costs two byte concatenations instead of building a dict and
serialising it (measured with ``benchmarks/bench_serving.py``; see docs/benchmarks.md).

A rendered answer can never go stale: it remembers the rows the cache held when it was
rendered, and :meth:`RenderedHit.current` accepts it only while a fresh cache lookup
gives equal rows; the answer depends on nothing else. An expired, invalidated or
evicted entry is a miss, so the request takes the full path; a re-computed entry with
other values is rendered again. The memo lives on the loaded model version
(:class:`~keel.serving.pool.PoolEntry`), so a reload or a new version starts empty; it
keeps as many bodies as the parse memo of ``InputSpec.parse``, none larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keel.serving import _json
from keel.serving.cache import CachedRow
from keel.serving.validation import MEMO_ENTRIES, MEMO_MAX_BODY, ParsedInput

__all__ = ["HitMemo", "MemoKey", "RenderedHit", "TIMING", "render", "response_body"]

#: ``Server-Timing`` of an answer with the usual stages, as one %-format (one format costs
#: a third of formatting each stage and joining them: 2 µs on a 50 µs hit).
TIMING = "validation;dur=%.3f, cache;dur=%.3f, model;dur=%.3f, serialisation;dur=%.3f"
#: Two request ids of the same length: where their serialisations differ is the id's place.
_ID_A, _ID_B = "0" * 32, "1" * 32
#: A memo key: the request body, or (an arm's memo prefix, the body) on a deployment route.
MemoKey = bytes | tuple[bytes, bytes]


def response_body(
    predictions: list[Any],
    name: str,
    version: int,
    request_id: str,
    *,
    cached: bool,
    fallback: bool,
    probabilities: list[Any] | None,
    deployment: str | None = None,
    arm: str | None = None,
) -> dict[str, Any]:
    """The JSON body of a prediction response (``probabilities`` only when asked;
    ``deployment`` and ``arm`` on a deployment's route)."""
    body: dict[str, Any] = {
        "predictions": predictions,
        "model": name,
        "version": version,
        "request_id": request_id,
        "cached": cached,
        "fallback": fallback,
    }
    if probabilities is not None:
        body["probabilities"] = probabilities
    if deployment is not None:
        body["deployment"], body["arm"] = deployment, arm
    return body


@dataclass(frozen=True, slots=True)
class RenderedHit:
    """One request body's cache-hit answer, serialised around its request id."""

    parsed: ParsedInput
    rows: list[CachedRow]  # the cache's rows it was rendered from
    predictions: list[Any]
    probabilities: list[Any]
    hits: list[bool]  # every row a hit, for the prediction log
    prefix: bytes
    suffix: bytes

    def current(self, rows: list[Any]) -> bool:
        """Whether ``rows`` (a fresh cache lookup, None for a miss) are the rows this was
        rendered from: then the answer is this one, byte for byte but the request id."""
        return rows == self.rows

    def payload(self, request_id: bytes) -> bytes:
        """The response body with ``request_id`` (32 hex digits) in its place."""
        return self.prefix + request_id + self.suffix


def render(
    name: str,
    version: int,
    parsed: ParsedInput,
    rows: Sequence[CachedRow],
    deployment: str | None = None,
    arm: str | None = None,
) -> RenderedHit:
    """The cache-hit answer of ``parsed`` from ``rows`` (one per row, all present);
    ``deployment`` and ``arm`` as in :func:`response_body`."""
    predictions = [row[0] for row in rows]
    probabilities = [row[1] for row in rows]
    asked = probabilities if parsed.probabilities else None

    def encode(request_id: str) -> bytes:
        body = response_body(
            predictions,
            name,
            version,
            request_id,
            cached=True,
            fallback=False,
            probabilities=asked,
            deployment=deployment,
            arm=arm,
        )
        return _json.dumps(body)

    # Serialised with two ids: the first byte where they differ is where the id starts,
    # whatever the serialiser's spacing and whatever the predictions contain.
    first, second = encode(_ID_A), encode(_ID_B)
    at = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    return RenderedHit(
        parsed,
        list(rows),
        predictions,
        probabilities,
        [True] * len(rows),
        first[:at],
        first[at + len(_ID_A) :],
    )


class HitMemo:
    """Rendered answers by exact request body, at most :data:`MEMO_ENTRIES` (oldest dropped)."""

    __slots__ = ("_answers",)

    def __init__(self) -> None:
        self._answers: dict[MemoKey, RenderedHit] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: MemoKey) -> RenderedHit | None:
        """The answer rendered for ``key``, if any (check :meth:`RenderedHit.current`)."""
        return self._answers.get(key)

    def remember(self, key: MemoKey, answer: RenderedHit) -> None:
        """Keep ``answer`` for ``key`` (bodies over :data:`MEMO_MAX_BODY` bytes are not kept)."""
        body = key[1] if isinstance(key, tuple) else key
        if len(body) > MEMO_MAX_BODY:
            return
        answers = self._answers
        if key not in answers and len(answers) >= MEMO_ENTRIES:
            del answers[next(iter(answers))]  # the oldest (dicts keep insertion order)
        answers[key] = answer
