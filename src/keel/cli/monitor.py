"""``keel monitor``: drift checks from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.monitoring.drift import DriftReport
    from keel.monitoring.stats.choice import TestName
    from keel.monitoring.stats.correction import Correction

monitor_app = typer.Typer(
    help="Monitoring: drift, data quality, performance.\n\n"
    "Example: keel monitor drift reference.parquet current.parquet",
    no_args_is_help=True,
)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        feature, sep, setting = value.partition("=")
        if not sep or not feature or not setting:
            raise InvalidInput(f"{option}: expected FEATURE=VALUE, got {value!r}", field=option)
        out[feature] = setting
    return out


@monitor_app.command("drift")
def drift(
    reference: Path = typer.Argument(..., help="Reference sample (.parquet or .csv)."),
    current: Path = typer.Argument(..., help="Current window (.parquet or .csv)."),
    feature: list[str] = typer.Option([], "--feature", "-f", help="Only these features."),
    test: list[str] = typer.Option(
        [], "--test", help="Override the test of a feature: FEATURE=ks|wasserstein|chi2|..."
    ),
    threshold: list[str] = typer.Option(
        [], "--threshold", help="Override a feature's threshold: FEATURE=0.05"
    ),
    correction: str = typer.Option("bh", help="Multiple-testing correction: bh, bonferroni, none."),
    as_json: bool = JsonOption,
) -> None:
    """Compare two samples feature by feature; exit 1 if any feature drifted.

    Example: keel monitor drift train.parquet last_week.parquet --test tenure=ks
    """
    from keel.monitoring.drift import FeatureOverride, detect_drift
    from keel.monitoring.frames import read_frame

    def run() -> DriftReport:
        if correction not in ("bh", "bonferroni", "none"):
            raise InvalidInput(
                f"correction: expected bh, bonferroni or none, got {correction!r}",
                field="correction",
            )
        tests = _pairs(test, "--test")
        limits = _pairs(threshold, "--threshold")
        overrides: dict[str, FeatureOverride] = {}
        for name in set(tests) | set(limits):
            try:
                limit = float(limits[name]) if name in limits else None
            except ValueError:
                raise InvalidInput(
                    f"--threshold: {limits[name]!r} is not a number", field="--threshold"
                ) from None
            test_name = cast("TestName | None", tests.get(name))
            overrides[name] = FeatureOverride(test=test_name, threshold=limit)
        return detect_drift(
            read_frame(reference, field="reference"),
            read_frame(current, field="current"),
            features=feature or None,
            overrides=overrides,
            correction=cast("Correction", correction),
        )

    report = run_cli(run)
    rows = [item.as_dict() for item in report.features]
    emit(
        {"drifted": report.drifted, "seconds": report.seconds, "features": rows},
        as_json,
        lambda: table(
            "drift (worst first)",
            ["feature", "verdict", "test", "statistic", "p-value (adj.)", "threshold", "n ref/cur"],
            [
                (
                    r["feature"],
                    r["verdict"],
                    r["test"] or "-",
                    "-" if r["statistic"] is None else f"{r['statistic']:.4g}",
                    "-" if r["adjusted_pvalue"] is None else f"{r['adjusted_pvalue']:.3g}",
                    "-" if r["threshold"] is None else r["threshold"],
                    f"{r['n_reference']}/{r['n_current']}",
                )
                for r in rows
            ],
        ),
    )
    if not as_json:
        console.print(f"{len(report.drifted)} of {len(rows)} features drifted")
    if report.drifted:
        raise typer.Exit(1)
