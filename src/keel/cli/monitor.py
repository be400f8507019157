"""``keel monitor``: drift checks from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.monitoring.drift import DriftReport
    from keel.monitoring.models import Monitor, SavedMonitor
    from keel.monitoring.vocabulary import Correction, TestName

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
        reference_frame = read_frame(reference, field="reference")
        current_frame = read_frame(current, field="current")
        # An override for a feature that is not compared would be dropped silently and
        # the run would pass with the default test/threshold (#15.21): refuse it.
        compared = list(feature) or [str(c) for c in reference_frame.columns]
        for option, named in (("--test", tests), ("--threshold", limits)):
            unknown = sorted(set(named) - set(compared))
            if unknown:
                among = "the --feature list" if feature else "the reference's columns"
                raise InvalidInput(
                    f"{option}: unknown feature {', '.join(map(repr, unknown))} (not in {among})",
                    field=option,
                )
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
            reference_frame,
            current_frame,
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


def _load_spec_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise InvalidInput(f"--file: no such file: {path}", field="--file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput(f"--file: not valid YAML/JSON: {exc}", field="--file") from exc
    if not isinstance(data, dict):
        raise InvalidInput("--file: expected a mapping of monitor fields", field="--file")
    return data


def _spec_fields(raw: dict[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError

    from keel._models import invalid_input
    from keel.monitoring.models import MonitorSpec

    try:
        return MonitorSpec(**raw).model_dump(exclude={"name", "model"})
    except ValidationError as exc:
        raise invalid_input(exc, whole="spec") from None


@monitor_app.command("create")
def create(
    name: str = typer.Argument(..., help="Monitor name."),
    model: str | None = typer.Option(None, "--model", "-m", help="Registered model name."),
    version: str | None = typer.Option(None, help="Alias, version number or * (default champion)."),
    reference: str | None = typer.Option(
        None, help="Dataset name[@version]; default: the served version's training data."
    ),
    window: str | None = typer.Option(None, help="Rolling window, e.g. 6h or 7d (default 7d)."),
    task: str | None = typer.Option(None, help="classification or regression (enables labels)."),
    label_column: str | None = typer.Option(None, help="Target column of the reference."),
    sampling_rate: float | None = typer.Option(None, help="Share of the window to check (0-1]."),
    spec_file: Path | None = typer.Option(
        None, "--file", "-f", help="YAML/JSON file with any MonitorSpec fields."
    ),
    drop_resolution_rules: bool = typer.Option(
        False,
        "--drop-resolution-rules",
        help="On a replace, drop the rules incident resolutions added that the new spec "
        "does not list (default: keep them).",
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create or replace a monitor; options override fields of --file.

    Replacing an existing monitor says "replaced" and names the fields it changed:
    a field not given takes its default, it is not kept from the old monitor, except
    the rules incident resolutions added (source "decision N"): those are kept unless
    --drop-resolution-rules is given or the new spec lists them, and the output names
    the resolution rules kept and dropped.

    Example: keel monitor create churn-weekly --model churn --window 7d

    Example: keel monitor create churn-weekly --model churn -f spec.yaml --drop-resolution-rules
    """
    before: list[Monitor] = []

    def run() -> SavedMonitor:
        raw = _load_spec_file(spec_file) if spec_file else {}
        options = {
            "model": model,
            "version": version,
            "reference": reference,
            "window": window,
            "task": task,
            "label_column": label_column,
            "sampling_rate": sampling_rate,
        }
        raw.update({k: v for k, v in options.items() if v is not None})
        raw["name"] = name
        if "model" not in raw:
            raise InvalidInput("--model: required (or give model in --file)", field="--model")
        fields = _spec_fields(raw)
        client = make_client(server, token)
        before.extend(m for m in client.list_monitors() if m.name == name)
        drop = drop_resolution_rules
        return client.create_monitor(name, raw["model"], drop_resolution_rules=drop, **fields)

    item = run_cli(run)
    emit(item, as_json, lambda: console.print(_created_line(item, before[0] if before else None)))


def _created_line(item: SavedMonitor, old: Monitor | None) -> str:
    """What ``create`` did: a new monitor, or a replaced one with the fields that changed
    and the resolution rules it kept or dropped."""
    line = f"monitor {item.name} on {item.model}@{item.version}"
    if old is None:
        return line
    skip = {"created_at_ms", "updated_at_ms", "created_by", "resolution_rules"}
    new_fields, old_fields = item.model_dump(exclude=skip), old.model_dump(exclude=skip)
    changed = sorted(k for k in new_fields if new_fields[k] != old_fields.get(k))
    lines = [f"replaced {line}; changed: {', '.join(changed) or 'nothing'}"]
    for what, rules in item.resolution_rules:
        if rules:
            named = "; ".join(f"{rule.text} ({rule.source})" for rule in rules)
            lines.append(f"{what} resolution rules: {named}")
    return "\n".join(lines)


@monitor_app.command("list")
def list_monitors(
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List monitors.

    Example: keel monitor list --json
    """
    items = run_cli(lambda: make_client(server, token).list_monitors())
    emit(
        items,
        as_json,
        lambda: table(
            "monitors",
            ["name", "model", "version", "window", "reference", "task", "sampling"],
            [
                (
                    m.name,
                    m.model,
                    m.version,
                    m.window,
                    m.reference or "training data",
                    m.task or "-",
                    m.sampling_rate,
                )
                for m in items
            ],
        ),
    )


@monitor_app.command("delete")
def delete(
    name: str = typer.Argument(..., help="Monitor name."),
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Delete a monitor and its stored runs.

    Example: keel monitor delete churn-weekly
    """
    run_cli(lambda: make_client(server, token).delete_monitor(name))
    console.print(f"deleted monitor {name}")


# Commands on stored runs live in monitor_runs.py; scheduling is the job queue's
# business: the command lives with `keel jobs` (R-MON-14).
from keel.cli.jobs import schedule_monitor  # noqa: E402
from keel.cli.monitor_runs import (  # noqa: E402
    diagnose,
    feedback,
    report,
    run_monitor,
    runs,
)

monitor_app.command("run")(run_monitor)
monitor_app.command("runs")(runs)
monitor_app.command("report")(report)
monitor_app.command("feedback")(feedback)
monitor_app.command("diagnose")(diagnose)
monitor_app.command("schedule")(schedule_monitor)
