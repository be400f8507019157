"""The optimised/converted-model checklist (R-CICD-08) as gates ``runtime.*``.

* ``runtime.equivalence``: the challenger vs its reference on the holdout: the share of rows
  whose class (at the decision threshold) differs and the largest |Δ probability|. The
  reference is the challenger converted to ONNX here, with keel's exporter (the graph an
  edge deployment would run), or the champion (``reference: champion``, when the challenger
  *is* the champion optimised, e.g. an exported graph registered back).
* ``runtime.edge``: the stress gate's missing / out-of-range / unseen-category rows
  (:func:`keel.automation.gates.measure.stress_cases`, one generator) through both: both
  answer, and the class agrees.
* ``runtime.memory``: peak memory of one ``predict_proba`` over the holdout batch, measured
  with :mod:`tracemalloc` in this process. Chosen over ``getrusage`` in a subprocess because
  the loaded model cannot always cross a process boundary (an ONNX Runtime session does not
  pickle; reloading would measure a different object), forking a process that runs threads
  (a server, OpenMP in LightGBM) can deadlock, and ``ru_maxrss`` is a process high-water
  mark that includes the interpreter and every import. tracemalloc sees what Python's
  allocators hand out, numpy and pandas buffers included; memory a native library takes
  with its own ``malloc`` (LightGBM's, ONNX Runtime's arena) is not counted.
* ``runtime.warmup``: first-call latency vs the steady-state median (measured before any
  other gate calls the model; a model already called elsewhere is warm).
* ``runtime.versions``: the library versions recorded in the model's metadata when it was
  logged (``flavor_meta.*_version``, ``python``) vs this environment.
"""

from __future__ import annotations

import platform
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.automation.gates.measure import positive_scores, stress_cases
from keel.automation.gates.policy import (
    RuntimeEdgePolicy,
    RuntimeEquivalencePolicy,
    RuntimeMemoryPolicy,
    RuntimeWarmupPolicy,
    StressPolicy,
)
from keel.automation.gates.result import GateResult, cannot_compute, judged, skipped

__all__ = [
    "Reference",
    "edge_gate",
    "equivalence_gate",
    "memory_gate",
    "no_reference",
    "onnx_reference",
    "versions_gate",
    "warmup",
    "warmup_gate",
]

#: ``flavor_meta`` version keys whose distribution name is not the key's stem.
_DISTRIBUTIONS = {"sklearn_version": "scikit-learn"}


class Reference:
    """What the challenger is compared with: a model and how rows are fed to it."""

    def __init__(self, model: Any, name: str, feed: Any = None) -> None:
        self.model = model
        self.name = name
        self._feed = feed

    def scores(self, features: pd.DataFrame, positive: Any) -> np.ndarray:
        """Positive-class probabilities of the reference on ``features``."""
        rows = features if self._feed is None else self._feed(features)
        return positive_scores(self.model, rows, positive)


def onnx_reference(model: Any) -> tuple[Reference | None, str]:
    """The challenger converted to ONNX and run by ONNX Runtime; else None and why not.

    A model keel cannot convert (no signature, already ONNX, a flavor without a converter)
    has no converted variant; a converter that fails on a convertible flavor raises
    InvalidInput (the caller turns it into a failing gate).
    """
    signature = getattr(model, "signature", None)
    flavor = getattr(model, "flavor", None)
    if flavor is None or signature is None:
        return None, "the challenger is not a registered keel model with a signature"
    if flavor not in ("sklearn", "lightgbm", "xgboost"):
        return None, f"no ONNX conversion for flavor {flavor!r} (compare with reference: champion)"
    # keel's exporter, the one `keel models export` runs: same converter, same session
    from keel.serving._onnx_convert import convert
    from keel.serving.export import _onnx_input, _session_model

    proto, _ = convert(model, signature, Path("."))
    session = _session_model(proto.SerializeToString(), model, signature)
    names = [c["name"] for c in signature["inputs"]]

    def feed(frame: pd.DataFrame) -> pd.DataFrame:
        typed = model.prepare_frame(frame) if model.prepare_frame is not None else frame
        return _onnx_input(typed[names])

    return Reference(session, "onnx", feed), ""


def _compare(new: np.ndarray, old: np.ndarray, threshold: float) -> dict[str, Any]:
    diff = np.abs(new - old)
    changed = (new >= threshold) != (old >= threshold)
    return {
        "rows": int(new.size),
        "class_changes": int(changed.sum()),
        "class_diff_share": float(changed.mean()) if new.size else 0.0,
        "max_proba_diff": float(diff.max()) if new.size else 0.0,
        "mean_proba_diff": float(diff.mean()) if new.size else 0.0,
    }


def equivalence_gate(
    scores: np.ndarray,
    reference: Reference,
    features: pd.DataFrame,
    threshold: float,
    policy: RuntimeEquivalencePolicy,
    positive: Any = 1,
) -> GateResult:
    """Share of holdout rows whose class differs ≤ ``max_class_diff_share`` (and max
    |Δ probability| ≤ ``max_proba_diff`` when set)."""
    name = "runtime.equivalence"
    try:
        other = reference.scores(features, positive)
    except Exception as exc:  # the reference's own failure is the finding
        return cannot_compute(name, f"the {reference.name} reference raised {exc!r}"[:300])
    if other.shape != scores.shape or not np.isfinite(other).all():
        return cannot_compute(name, f"the {reference.name} reference gave bad scores")
    numbers = _compare(scores, other, threshold)
    ok = numbers["class_diff_share"] <= policy.max_class_diff_share
    reason = (
        f"{numbers['class_changes']} of {numbers['rows']} rows change class vs {reference.name} "
        f"({numbers['class_diff_share']:.3%} {'≤' if ok else '>'} "
        f"{policy.max_class_diff_share:.3%}); max |Δp| {numbers['max_proba_diff']:.2e}"
    )
    if policy.max_proba_diff is not None:
        close = numbers["max_proba_diff"] <= policy.max_proba_diff
        reason += f" {'≤' if close else '>'} {policy.max_proba_diff:g}"
        ok = ok and close
    return judged(
        name,
        ok,
        reason,
        numbers["class_diff_share"],
        policy.max_class_diff_share,
        reference=reference.name,
        decision_threshold=threshold,
        **numbers,
    )


def edge_gate(
    model: Any,
    reference: Reference,
    features: pd.DataFrame,
    training: pd.DataFrame | None,
    signature: dict[str, Any] | None,
    stress: StressPolicy,
    threshold: float,
    policy: RuntimeEdgePolicy,
    positive: Any = 1,
) -> GateResult:
    """The stress cases through challenger and reference: both answer, the class agrees."""
    name = "runtime.edge"
    if len(features) == 0:
        return cannot_compute(name, "the holdout is empty")
    base = features.head(stress.rows).reset_index(drop=True)
    reference_rows = features if training is None else training
    cases = stress_cases(base, reference_rows, signature, stress.factor)
    results: dict[str, Any] = {}
    problems = []
    for case, (frame, _columns) in cases.items():
        answers = []
        for who, score in (("challenger", None), (reference.name, reference)):
            try:
                got = (
                    positive_scores(model, frame, positive)
                    if score is None
                    else score.scores(frame, positive)
                )
            except Exception as exc:  # what each side raises is the finding
                problems.append(f"{case}: {who} raised {type(exc).__name__}")
                break
            if not np.isfinite(got).all():
                problems.append(f"{case}: {who} gave NaN or infinite probabilities")
                break
            answers.append(got)
        if len(answers) < 2:
            results[case] = "not answered"
            continue
        numbers = _compare(answers[0], answers[1], threshold)
        results[case] = numbers
        if numbers["class_diff_share"] > policy.max_class_diff_share:
            problems.append(
                f"{case}: {numbers['class_changes']}/{numbers['rows']} rows change class "
                f"(max |Δp| {numbers['max_proba_diff']:.2e})"
            )
    if not cases:
        return cannot_compute(name, "no column to stress")
    worst = max(
        (r["class_diff_share"] for r in results.values() if isinstance(r, dict)), default=1.0
    )
    if problems:
        worst = max(worst, 1.0 if any("raised" in p or "NaN" in p for p in problems) else worst)
    reason = (
        "; ".join(problems)
        if problems
        else f"{reference.name} agrees on every case ({', '.join(results)}) "
        f"of {len(base)} rows, worst class change {worst:.1%}"
    )
    return judged(
        name, not problems, reason, worst, policy.max_class_diff_share,
        reference=reference.name, cases=results,
    )  # fmt: skip


def _rss_kib(field: str) -> int | None:
    """``VmRSS``/``VmHWM`` of this process in KiB (Linux; None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _reset_hwm() -> bool:
    # "5" resets the process's peak RSS to its current RSS (Linux >= 4.0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_gate(model: Any, features: pd.DataFrame, policy: RuntimeMemoryPolicy) -> GateResult:
    """Peak bytes Python's allocators hand out during one ``predict_proba`` over at most
    ``max_rows`` holdout rows (tracemalloc; see the module docstring) ≤ ``budget_mb``.

    The rise of the process's peak RSS over the call is reported beside it where Linux
    lets it be reset (``rss_peak_delta_mb``): it sees native allocations too, but also
    every other thread of the process, so it is shown, not judged.
    """
    name = "runtime.memory"
    if len(features) == 0:
        return cannot_compute(name, "the holdout is empty")
    batch = features.head(policy.max_rows)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    rss_before = _rss_kib("VmRSS") if _reset_hwm() else None
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        model.predict_proba(batch)
        peak = tracemalloc.get_traced_memory()[1] - before
        rss_peak = _rss_kib("VmHWM") if rss_before is not None else None
    except Exception as exc:  # the model's own failure is the finding
        return cannot_compute(name, f"the model raised {type(exc).__name__}: {exc}"[:300])
    finally:
        if started:
            tracemalloc.stop()
    peak_mb = peak / 2**20
    rss_mb = None if rss_peak is None or rss_before is None else (rss_peak - rss_before) / 1024
    ok = peak_mb <= policy.budget_mb
    reason = (
        f"peak {peak_mb:.2f} MiB allocated predicting {len(batch):,} rows "
        f"{'≤' if ok else '>'} budget {policy.budget_mb:g} MiB (tracemalloc)"
    )
    if rss_mb is not None:
        reason += f"; process peak RSS rose {rss_mb:.1f} MiB"
    return judged(
        name, ok, reason, peak_mb, policy.budget_mb,
        peak_bytes=int(peak), rows=len(batch), method="tracemalloc", rss_peak_delta_mb=rss_mb,
    )  # fmt: skip


def warmup(model: Any, features: pd.DataFrame, policy: RuntimeWarmupPolicy) -> dict[str, Any]:
    """First-call and steady-state latency of ``predict_proba`` on one batch (ms); call it
    before anything else runs the model. An error is returned as ``error``."""
    batch = features.head(policy.batch_rows)
    if len(batch) == 0:
        return {"error": "the holdout is empty"}
    times = []
    try:
        for _ in range(policy.repeats + 1):
            began = time.perf_counter()
            model.predict_proba(batch)
            times.append((time.perf_counter() - began) * 1000.0)
    except Exception as exc:  # the model's own failure is the finding
        return {"error": f"the model raised {type(exc).__name__}: {exc}"[:300]}
    steady = float(np.median(times[1:]))
    return {
        "first_ms": times[0],
        "steady_median_ms": steady,
        "ratio": times[0] / steady if steady > 0 else float("inf"),
        "batch_rows": len(batch),
        "repeats": policy.repeats,
    }


def warmup_gate(measured: dict[str, Any], policy: RuntimeWarmupPolicy) -> GateResult:
    """Reported always; fails only when ``max_ratio`` is set and exceeded."""
    name = "runtime.warmup"
    if "error" in measured:
        return cannot_compute(name, measured["error"])
    ratio = measured["ratio"]
    ok = policy.max_ratio is None or ratio <= policy.max_ratio
    limit = "reported, not gated" if policy.max_ratio is None else (
        f"{'≤' if ok else '>'} max {policy.max_ratio:g}×"
    )  # fmt: skip
    reason = (
        f"first call {measured['first_ms']:.2f} ms vs steady median "
        f"{measured['steady_median_ms']:.2f} ms: {ratio:.1f}× ({limit})"
    )
    return judged(name, ok, reason, ratio, policy.max_ratio, **measured)


def _minor(version: str) -> tuple[int, ...] | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).release[:2]
    except InvalidVersion:
        return None


def versions_gate(model: Any) -> GateResult:
    """Each library version recorded at logging time has this environment's major.minor."""
    from keel.registry.flavors.base import library_version

    name = "runtime.versions"
    meta = getattr(model, "metadata", None) or {}
    recorded: dict[str, str] = {}
    for key, value in (meta.get("flavor_meta") or {}).items():
        if key.endswith("_version") and isinstance(value, str) and key != "format_version":
            recorded[_DISTRIBUTIONS.get(key, key.removesuffix("_version"))] = value
    if isinstance(meta.get("python"), str):
        recorded["python"] = meta["python"]
    if not recorded:
        return cannot_compute(name, "the model's metadata records no library versions")
    table: dict[str, dict[str, Any]] = {}
    mismatched = []
    for dist, want in sorted(recorded.items()):
        have = platform.python_version() if dist == "python" else library_version(dist)
        if have is None:
            verdict = "not installed"
        elif _minor(want) != _minor(have) or _minor(want) is None:
            verdict = "major/minor mismatch"
        else:
            verdict = "ok" if want == have else "patch differs"
        table[dist] = {"recorded": want, "installed": have, "verdict": verdict}
        if verdict in ("not installed", "major/minor mismatch"):
            mismatched.append(f"{dist} {want} recorded, {have or 'none'} installed")
    ok = not mismatched
    reason = (
        "; ".join(mismatched)
        if mismatched
        else "recorded major.minor versions match: "
        + ", ".join(f"{d} {v['installed']}" for d, v in table.items())
    )
    return judged(name, ok, reason, float(len(mismatched)), 0.0, libraries=table)


def no_reference(why: str) -> tuple[GateResult, GateResult]:
    """Equivalence and edge results when there is nothing to compare the challenger with."""
    return skipped("runtime.equivalence", why), skipped("runtime.edge", why)
