"""Which test to run for a feature, by its type and the sample size.

=============  ===============  ==================================  ==============
feature type   smaller sample   test                                drift when
=============  ===============  ==================================  ==============
numeric        ≤ 1,000 rows     ``ks`` (two-sample KS)              p < 0.01
numeric        > 1,000 rows     ``wasserstein`` (normalised by std) ≥ 0.1
categorical    ≤ 1,000 rows     ``chi2`` (homogeneity)              p < 0.01
categorical    > 1,000 rows     ``jensen_shannon`` (base 2)         ≥ 0.1
any            < 30 rows        none: verdict "insufficient data"
=============  ===============  ==================================  ==============

Why switch at 1,000 rows: a p-value answers "is there *any* difference", and
with large windows every negligible difference becomes significant; a
distance with a threshold answers "is the difference big enough to matter".
The 0.01 significance level is seed 004's drift rule (KS p < 0.01). Every
choice can be overridden per feature (test and threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.errors import InvalidInput
from keel.monitoring.vocabulary import FeatureKind, TestName

__all__ = [
    "LARGE_SAMPLE",
    "MIN_SAMPLES",
    "TESTS",
    "FeatureKind",
    "TestChoice",
    "TestName",
    "choose_test",
]


#: Tests whose verdict is a p-value below the threshold; the others are distances above it.
P_VALUE_TESTS: frozenset[str] = frozenset({"ks", "chi2"})
#: Which tests apply to which kind of feature.
TESTS: dict[FeatureKind, frozenset[str]] = {
    "numeric": frozenset({"ks", "wasserstein", "psi", "jensen_shannon", "kl_divergence"}),
    "categorical": frozenset({"chi2", "psi", "jensen_shannon", "kl_divergence"}),
}
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.01,
    "chi2": 0.01,
    "wasserstein": 0.1,
    "jensen_shannon": 0.1,
    "psi": 0.2,
    "kl_divergence": 0.1,
}
LARGE_SAMPLE = 1_000
MIN_SAMPLES = 30


@dataclass(frozen=True, slots=True)
class TestChoice:
    """A test and the threshold that decides drift."""

    test: TestName
    threshold: float

    @property
    def uses_pvalue(self) -> bool:
        """True when drift means ``pvalue < threshold``, else ``statistic >= threshold``."""
        return self.test in P_VALUE_TESTS


def choose_test(
    kind: FeatureKind,
    n_reference: int,
    n_current: int,
    *,
    test: TestName | None = None,
    threshold: float | None = None,
) -> TestChoice:
    """The test for one feature per the table above, or the override given."""
    if test is not None and test not in TESTS[kind]:
        raise InvalidInput(f"test: {test!r} does not apply to a {kind} feature", field="test")
    if test is None:
        large = min(n_reference, n_current) > LARGE_SAMPLE
        if kind == "numeric":
            test = "wasserstein" if large else "ks"
        else:
            test = "jensen_shannon" if large else "chi2"
    return TestChoice(test, DEFAULT_THRESHOLDS[test] if threshold is None else threshold)
