"""The gate policy: which validation gates run and their thresholds (YAML/JSON, strict keys).

Every gate has a section with ``enabled`` (default true). A gate that is enabled but cannot
be computed (empty holdout, one class, a declared column missing) fails; a gate whose inputs
were never declared (no slice or sensitive columns, no training data, no champion) is
*skipped* with that reason, and ``strict: true`` turns every skip into a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keel._documents import load_document
from keel._models import invalid_input
from keel.errors import InvalidInput

__all__ = [
    "CalibrationPolicy",
    "CostPolicy",
    "EquivalencePolicy",
    "EscalationPolicy",
    "FairnessPolicy",
    "FloorPolicy",
    "GatePolicy",
    "ImportancePolicy",
    "LatencyPolicy",
    "MarginPolicy",
    "OverfitPolicy",
    "RuntimePolicy",
    "ShapDirectionPolicy",
    "SizePolicy",
    "SkewPolicy",
    "SlicesPolicy",
    "StressPolicy",
    "load_policy",
    "parse_policy",
]

_Prob = Field(ge=0.0, le=1.0)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class MarginPolicy(_Section):
    """Challenger vs champion on the same holdout (R-TRN-05).

    ``kind: absolute`` needs ``challenger ≥ champion + min_improvement``; ``relative`` needs
    ``challenger ≥ champion · (1 + min_improvement)``.
    """

    min_improvement: float = Field(default=0.02, ge=-1.0, le=1.0)
    kind: Literal["absolute", "relative"] = "absolute"


class FloorPolicy(_Section):
    """The challenger's holdout AUC must exceed ``min_auc`` (R-TRN-06)."""

    min_auc: float = Field(default=0.80, ge=0.0, le=1.0)


class OverfitPolicy(_Section):
    """Train AUC minus holdout AUC at most ``max_gap`` (R-CICD-05: 0.04 is acceptable)."""

    max_gap: float = Field(default=0.05, ge=0.0, le=1.0)


class SlicesPolicy(_Section):
    """Per-slice non-regression: a slice with ``min_rows`` rows (and both classes) regresses
    when the challenger's AUC is below the champion's by more than ``tolerance``."""

    columns: list[str] = Field(default_factory=list)
    tolerance: float = Field(default=0.02, ge=0.0, le=1.0)
    min_rows: int = Field(default=100, ge=2)


class CalibrationPolicy(_Section):
    """Brier score: challenger ≤ champion + ``tolerance``; and ≤ ``max_brier`` if set."""

    tolerance: float = Field(default=0.01, ge=0.0, le=1.0)
    max_brier: float | None = Field(default=None, ge=0.0, le=1.0)


class FairnessPolicy(_Section):
    """Demographic parity and equalised-odds differences (fairlearn) of the challenger's
    decisions at the decision threshold, per declared sensitive column (R-GOV-02)."""

    sensitive_columns: list[str] = Field(default_factory=list)
    max_demographic_parity_difference: float = Field(default=0.1, ge=0.0, le=1.0)
    max_equalized_odds_difference: float = Field(default=0.1, ge=0.0, le=1.0)


class SkewPolicy(_Section):
    """Training-serving skew: two-sample KS per numeric feature ≤ ``max_ks`` (R-CICD-03)."""

    max_ks: float = Field(default=0.1, gt=0.0, le=1.0)
    features: list[str] | None = None


class EquivalencePolicy(_Section):
    """Prediction-distribution equivalence of challenger vs champion (R-CICD-06): a paired
    TOST on the mean predicted probability with margin ``margin`` (relative to the
    champion's mean) at level ``alpha``."""

    margin: float = Field(default=0.05, gt=0.0, le=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)


class LatencyPolicy(_Section):
    """p99 predict latency per batch of ``batch_rows`` holdout rows ≤ ``budget_ms``."""

    budget_ms: float = Field(default=50.0, gt=0.0)
    batch_rows: int = Field(default=1, ge=1, le=100_000)
    max_batches: int = Field(default=200, ge=10, le=100_000)


class SizePolicy(_Section):
    """The version's artifact bytes ≤ ``max_bytes``."""

    max_bytes: int = Field(default=200_000_000, ge=1)


class StressPolicy(_Section):
    """Missing and out-of-range rows: the model answers, probabilities in [0, 1].

    Out-of-range values are ``min - factor·span`` and ``max + factor·span`` of the training
    range (the holdout's when no training data is given).
    """

    rows: int = Field(default=50, ge=1, le=10_000)
    factor: float = Field(default=10.0, gt=0.0)


class ImportancePolicy(_Section):
    """Feature-importance concentration (R-CICD-05): the ``top`` most important features may
    hold at most ``max_share`` of the total importance (mean |SHAP| over at most
    ``sample_rows`` holdout rows; permutation importance when shap cannot explain the
    model, or always with ``method: permutation``)."""

    top: int = Field(default=5, ge=1)
    max_share: float = Field(default=0.6, gt=0.0, le=1.0)
    sample_rows: int = Field(default=500, ge=20, le=20_000)
    method: Literal["auto", "shap", "permutation"] = "auto"


class ShapDirectionPolicy(_Section):
    """SHAP direction vs domain knowledge (R-CICD-05): per declared numeric feature, the sign
    of the correlation between its value and its SHAP value must be ``expected``'s word."""

    expected: dict[str, Literal["positive", "negative"]] = Field(min_length=1)
    sample_rows: int = Field(default=500, ge=20, le=20_000)


class RuntimeEquivalencePolicy(_Section):
    """Numerical equivalence (R-CICD-08) of the challenger and ``reference``: its ONNX
    conversion (``onnx``) or the champion (``champion``, e.g. when the challenger is the
    champion optimised): at most ``max_class_diff_share`` of holdout rows change class, and
    the largest |Δ probability| is at most ``max_proba_diff`` when set."""

    reference: Literal["onnx", "champion"] = "onnx"
    max_class_diff_share: float = Field(default=0.001, ge=0.0, le=1.0)
    max_proba_diff: float | None = Field(default=None, ge=0.0, le=1.0)


class RuntimeEdgePolicy(_Section):
    """Edge/OOD rows (the stress gate's cases) through the challenger and the reference:
    both answer, and at most ``max_class_diff_share`` of the rows change class per case."""

    max_class_diff_share: float = Field(default=0.001, ge=0.0, le=1.0)


class RuntimeMemoryPolicy(_Section):
    """Peak memory allocated by one ``predict_proba`` over at most ``max_rows`` holdout rows
    (tracemalloc) within ``budget_mb``."""

    budget_mb: float = Field(default=1024.0, gt=0.0)
    max_rows: int = Field(default=10_000, ge=1, le=1_000_000)


class RuntimeWarmupPolicy(_Section):
    """First-call latency vs the steady-state median over ``repeats`` calls on a batch of
    ``batch_rows`` rows; gated only when ``max_ratio`` (first / median) is set."""

    batch_rows: int = Field(default=1, ge=1, le=100_000)
    repeats: int = Field(default=20, ge=3, le=1_000)
    max_ratio: float | None = Field(default=None, ge=1.0)


class RuntimeVersionsPolicy(_Section):
    """Library versions the model recorded when it was logged vs this environment: a
    different major or minor version fails (a patch difference is reported)."""


class RuntimePolicy(_Section):
    """The optimised/converted-model checklist (R-CICD-08); opt-in (``runtime: {}``)."""

    equivalence: RuntimeEquivalencePolicy = Field(default_factory=RuntimeEquivalencePolicy)
    edge: RuntimeEdgePolicy = Field(default_factory=RuntimeEdgePolicy)
    memory: RuntimeMemoryPolicy = Field(default_factory=RuntimeMemoryPolicy)
    warmup: RuntimeWarmupPolicy = Field(default_factory=RuntimeWarmupPolicy)
    versions: RuntimeVersionsPolicy = Field(default_factory=RuntimeVersionsPolicy)


class CostPolicy(BaseModel):
    """Costs of a false positive and a false negative (R-COST-08); ``None``: threshold 0.5
    (or ``threshold``) and no cost curve."""

    model_config = ConfigDict(extra="forbid")

    cost_fp: float | None = Field(default=None, ge=0.0)
    cost_fn: float | None = Field(default=None, ge=0.0)
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _both_or_neither(self) -> CostPolicy:
        if (self.cost_fp is None) != (self.cost_fn is None):
            missing = "cost_fn" if self.cost_fn is None else "cost_fp"
            raise ValueError(f"{missing} is required when the other cost is given")
        if self.cost_fp is not None and self.cost_fp + (self.cost_fn or 0.0) <= 0:
            raise ValueError("cost_fp + cost_fn must be > 0")
        return self

    @property
    def is_costed(self) -> bool:
        """Whether the decision threshold is chosen by expected cost."""
        return self.cost_fp is not None and self.cost_fn is not None


class EscalationPolicy(_Section):
    """When passing gates still need a human (R-CICD-10): results too good or too thin to
    trust. A gain over the champion above ``max_improvement`` (AUC, absolute) while the
    champion still scores ``champion_ok_auc`` or more (a collapsed champion makes a big gain
    expected), a holdout AUC of ``max_auc`` or more (leakage?), a train/holdout AUC gap above
    ``max_gap``, or fewer than ``min_holdout_rows`` holdout rows."""

    max_improvement: float = Field(default=0.15, gt=0.0, le=1.0)
    champion_ok_auc: float = Field(default=0.6, ge=0.0, le=1.0)
    max_auc: float = Field(default=0.995, gt=0.5, le=1.0)
    max_gap: float = Field(default=0.15, gt=0.0, le=1.0)
    min_holdout_rows: int = Field(default=50, ge=0)


class GatePolicy(BaseModel):
    """Every validation gate's settings, with the issue's defaults."""

    model_config = ConfigDict(extra="forbid")

    strict: bool = False
    margin: MarginPolicy = Field(default_factory=MarginPolicy)
    floor: FloorPolicy = Field(default_factory=FloorPolicy)
    overfit: OverfitPolicy = Field(default_factory=OverfitPolicy)
    slices: SlicesPolicy = Field(default_factory=SlicesPolicy)
    calibration: CalibrationPolicy = Field(default_factory=CalibrationPolicy)
    fairness: FairnessPolicy = Field(default_factory=FairnessPolicy)
    skew: SkewPolicy = Field(default_factory=SkewPolicy)
    equivalence: EquivalencePolicy = Field(default_factory=EquivalencePolicy)
    latency: LatencyPolicy = Field(default_factory=LatencyPolicy)
    size: SizePolicy = Field(default_factory=SizePolicy)
    stress: StressPolicy = Field(default_factory=StressPolicy)
    cost: CostPolicy = Field(default_factory=CostPolicy)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    # opt-in gates: absent (None) they neither run nor appear in the report, so a strict
    # policy written before them does not start failing on their skips
    importance: ImportancePolicy | None = None
    shap_direction: ShapDirectionPolicy | None = None
    runtime: RuntimePolicy | None = None


def parse_policy(data: Mapping[str, Any] | None) -> GatePolicy:
    """Validate a policy mapping (``None`` or empty: every default)."""
    if data is None:
        return GatePolicy()
    if not isinstance(data, Mapping):
        raise InvalidInput("policy: expected a mapping of keys to values", field="policy")
    try:
        return GatePolicy.model_validate(dict(data))
    except ValidationError as exc:
        raise invalid_input(exc, whole="policy") from None


def load_policy(source: str | Path) -> GatePolicy:
    """Read a policy file (YAML or JSON); errors name the file's key."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"policy: cannot read {path}: {exc.strerror}", field="policy") from None
    return parse_policy(load_document(text, field="policy", what=f"policy: {path}"))
