"""Each statistic equals its scipy reference (to 1e-9) on generated data."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps
from scipy.spatial import distance

from keel.monitoring import stats
from keel.monitoring.stats import (
    adjust_pvalues,
    chi2,
    choose_test,
    jensen_shannon,
    kl_divergence,
    ks,
    psi,
    wasserstein,
)
from keel.monitoring.stats._binning import EPSILON
from keel.monitoring.stats.ks import EXACT_MAX_N

TOL = 1e-9

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 6))
# Small integer-valued floats give many ties, the hard case for ECDF code.
tied = st.integers(-5, 5).map(float)
samples = st.one_of(
    arrays(np.float64, st.integers(1, 60), elements=finite),
    arrays(np.float64, st.integers(1, 60), elements=tied),
)
levels = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=80)


@given(samples, samples)
@settings(max_examples=200, deadline=None)
@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation:RuntimeWarning")
def test_ks_matches_scipy(ref: np.ndarray, cur: np.ndarray) -> None:
    expected = sps.ks_2samp(ref, cur)
    got = ks(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, abs=TOL)
    assert got.pvalue == pytest.approx(expected.pvalue, abs=TOL)


@pytest.mark.parametrize("shift", [0.0, 0.01, 0.05])
def test_ks_asymptotic_path_matches_scipy(shift: float) -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(size=EXACT_MAX_N + 5_000)
    cur = np.round(rng.normal(shift, size=EXACT_MAX_N + 1_000), 2)  # ties across samples
    expected = sps.ks_2samp(ref, cur)
    got = ks(ref, cur)
    assert got.statistic == pytest.approx(expected.statistic, abs=TOL)
    assert got.pvalue == pytest.approx(expected.pvalue, abs=TOL)


@given(samples, samples)
@settings(max_examples=200, deadline=None)
def test_wasserstein_matches_scipy(ref: np.ndarray, cur: np.ndarray) -> None:
    raw = sps.wasserstein_distance(ref, cur)
    assert wasserstein(ref, cur, normalise=False).statistic == pytest.approx(raw, rel=TOL, abs=TOL)
    expected = raw / max(np.std(ref), 0.001)
    assert wasserstein(ref, cur).statistic == pytest.approx(expected, rel=TOL, abs=TOL)


def _reference_cells(ref: np.ndarray, cur: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Independent binning with pandas.cut over the reference deciles."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    cuts = np.concatenate(([-np.inf], edges, [np.inf]))
    r = pd.Series(pd.cut(ref, cuts, right=True)).value_counts(sort=False).to_numpy(dtype=float)
    c = pd.Series(pd.cut(cur, cuts, right=True)).value_counts(sort=False).to_numpy(dtype=float)
    return r, c


def _smooth(counts: np.ndarray) -> np.ndarray:
    p = np.maximum(counts / counts.sum(), EPSILON)
    return p / p.sum()


@given(samples, samples)
@settings(max_examples=150, deadline=None)
def test_psi_and_kl_equal_scipy_entropy(ref: np.ndarray, cur: np.ndarray) -> None:
    r_counts, c_counts = _reference_cells(ref, cur, 10)
    r, c = _smooth(r_counts), _smooth(c_counts)
    assert psi(ref, cur).statistic == pytest.approx(
        sps.entropy(c, r) + sps.entropy(r, c), rel=TOL, abs=TOL
    )
    assert kl_divergence(ref, cur).statistic == pytest.approx(sps.entropy(c, r), rel=TOL, abs=TOL)
    js = distance.jensenshannon(r_counts / r_counts.sum(), c_counts / c_counts.sum(), base=2)
    assert jensen_shannon(ref, cur).statistic == pytest.approx(js, rel=TOL, abs=TOL)


@given(levels, levels)
@settings(max_examples=150, deadline=None)
def test_categorical_statistics_match_scipy(ref: list[str], cur: list[str]) -> None:
    cats = sorted(set(ref) | set(cur))
    r = np.array([ref.count(k) for k in cats], dtype=float)
    c = np.array([cur.count(k) for k in cats], dtype=float)
    got = chi2(ref, cur)
    if len(cats) == 1:
        assert (got.statistic, got.pvalue) == (0.0, 1.0)
    else:
        expected = sps.chi2_contingency(np.vstack([r, c]), correction=False)
        assert got.statistic == pytest.approx(expected.statistic, rel=TOL, abs=TOL)
        assert got.pvalue == pytest.approx(expected.pvalue, rel=TOL, abs=TOL)
    assert psi(ref, cur).statistic == pytest.approx(
        sps.entropy(_smooth(c), _smooth(r)) + sps.entropy(_smooth(r), _smooth(c)), abs=TOL
    )
    js = distance.jensenshannon(r / r.sum(), c / c.sum(), base=2)
    assert jensen_shannon(ref, cur).statistic == pytest.approx(js, abs=TOL)


def test_unseen_category_is_its_own_cell() -> None:
    ref = ["a"] * 60 + ["b"] * 40
    cur = ["a"] * 55 + ["b"] * 35 + ["new"] * 10
    table = np.array([[60, 40, 0], [55, 35, 10]], dtype=float)
    expected = sps.chi2_contingency(table, correction=False)
    assert chi2(ref, cur).pvalue == pytest.approx(expected.pvalue, abs=TOL)
    assert np.isfinite(psi(ref, cur).statistic)
    assert np.isfinite(kl_divergence(ref, cur).statistic)


def test_two_dimensional_inputs_are_tested_per_column() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(500, 4))
    cur = rng.normal(size=(400, 4))
    cur[:, 2] += 1.0
    result = ks(ref, cur)
    assert isinstance(result.pvalue, np.ndarray) and result.pvalue.shape == (4,)
    for j in range(4):
        expected = sps.ks_2samp(ref[:, j], cur[:, j])
        assert result.pvalue[j] == pytest.approx(expected.pvalue, abs=TOL)
    assert result.pvalue[2] < 1e-6
    w = wasserstein(ref, cur).statistic
    assert isinstance(w, np.ndarray) and int(np.argmax(w)) == 2
    cats = np.array([["x", "y"][i % 2] for i in range(300)] * 2, dtype=object).reshape(300, 2)
    assert chi2(cats, cats).pvalue.tolist() == [1.0, 1.0]  # type: ignore[union-attr]


def test_nans_are_ignored_and_empty_columns_give_nan() -> None:
    ref = np.array([1.0, 2.0, np.nan, 3.0])
    cur = np.array([np.nan, 2.0, 3.0, 4.0])
    assert ks(ref, cur).statistic == pytest.approx(
        sps.ks_2samp([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]).statistic
    )
    empty = ks(np.array([np.nan, np.nan]), np.array([1.0]))
    assert np.isnan(empty.statistic) and np.isnan(empty.pvalue)  # type: ignore[arg-type]
    assert np.isnan(psi(np.array([np.nan]), np.array([1.0])).statistic)  # type: ignore[arg-type]


def test_constant_reference_column_gives_finite_distances() -> None:
    ref = np.full(200, 5.0)
    assert wasserstein(ref, ref).statistic == 0.0
    assert wasserstein(ref, ref + 1).statistic == pytest.approx(1.0 / 0.001)
    assert psi(ref, ref).statistic == pytest.approx(0.0)


def test_mismatched_widths_are_rejected() -> None:
    with pytest.raises(ValueError, match="reference has 2 columns but current has 3"):
        ks(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="bins"):
        psi([1.0, 2.0], [1.0, 2.0], bins=1)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60))
@settings(max_examples=150, deadline=None)
def test_corrections_match_references(pvalues: list[float]) -> None:
    p = np.array(pvalues)
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), sps.false_discovery_control(p), atol=TOL)
    np.testing.assert_allclose(
        adjust_pvalues(p, "bonferroni"), np.minimum(p * p.size, 1.0), atol=TOL
    )
    np.testing.assert_array_equal(adjust_pvalues(p, "none"), p)


def test_correction_ignores_untestable_features() -> None:
    adjusted = adjust_pvalues([0.01, np.nan, 0.02], "bonferroni")
    assert adjusted[0] == pytest.approx(0.02) and np.isnan(adjusted[1])
    with pytest.raises(ValueError, match="correction"):
        adjust_pvalues([0.1], "holm")  # type: ignore[arg-type]


def test_fifty_undrifted_features_do_not_flag_after_correction() -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=(800, 50)), rng.normal(size=(800, 50))
    raw = np.asarray(ks(ref, cur).pvalue)
    assert not (adjust_pvalues(raw, "bh") < 0.01).any()


@pytest.mark.parametrize(
    ("kind", "n", "expected"),
    [
        ("numeric", 500, ("ks", 0.01)),
        ("numeric", 5_000, ("wasserstein", 0.1)),
        ("categorical", 500, ("chi2", 0.01)),
        ("categorical", 5_000, ("jensen_shannon", 0.1)),
    ],
)
def test_automatic_test_choice_follows_the_table(kind: str, n: int, expected: tuple) -> None:
    choice = choose_test(kind, n, n)  # type: ignore[arg-type]
    assert (choice.test, choice.threshold) == expected
    assert choice.uses_pvalue == (expected[0] in ("ks", "chi2"))


def test_overrides_and_invalid_overrides() -> None:
    assert choose_test("numeric", 10_000, 10_000, test="ks", threshold=0.05).test == "ks"
    with pytest.raises(ValueError, match="test: 'chi2' does not apply to a numeric feature"):
        choose_test("numeric", 100, 100, test="chi2")


@pytest.mark.parametrize(
    "module",
    ["ks", "wasserstein", "psi", "divergence", "chi2", "correction"],
)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"keel.monitoring.stats.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


def test_public_surface() -> None:
    assert set(stats.__all__) >= {
        "ks",
        "psi",
        "chi2",
        "wasserstein",
        "jensen_shannon",
        "kl_divergence",
    }
