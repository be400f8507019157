"""``keel monitor``: drift checks from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.client import Client
    from keel.monitoring.drift import DriftReport
    from keel.monitoring.models import Monitor, MonitorRun
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
                    f"{option}: unknown feature {', '.join(map(repr, unknown))} "
                    f"(not in {among})",
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

    from keel.monitoring.models import MonitorSpec

    try:
        return MonitorSpec(**raw).model_dump(exclude={"name", "model"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise InvalidInput(f"{where}: {first['msg']}", field=where) from None


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
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create or replace a monitor; options override fields of --file.

    Example: keel monitor create churn-weekly --model churn --window 7d
    """

    def run() -> Monitor:
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
        return make_client(server, token).create_monitor(name, raw["model"], **fields)

    item = run_cli(run)
    emit(
        item, as_json, lambda: console.print(f"monitor {item.name} on {item.model}@{item.version}")
    )


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


def _print_run(run: MonitorRun) -> None:
    style = {"ok": "green", "alert": "bold red"}.get(run.status, "yellow")
    console.print(
        f"[{style}]{run.status}[/] {run.monitor} · {run.model} v{run.version or '*'} · "
        f"{run.n_current} predictions, {run.n_labelled} labelled · {run.seconds:.2f} s · "
        f"run {run.id}"
    )
    for key in ("drifted", "quality_errors", "reason"):
        if run.summary.get(key):
            console.print(f"  {key}: {run.summary[key]}")
    performance = run.results.get("performance") or {}
    estimated = run.results.get("estimated") or {}
    if performance.get("accuracy") is not None or estimated.get("accuracy") is not None:
        console.print(
            f"  accuracy realised {performance.get('accuracy')} · estimated "
            f"{estimated.get('accuracy')}"
        )


@monitor_app.command("run")
def run_monitor(
    name: str = typer.Argument(..., help="Monitor name."),
    window_end: str | None = typer.Option(
        None, "--window-end", help="Window end: ISO-8601 time or an age like 7d; default now."
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Count only labels received by then (ISO-8601 time or an age)."
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Evaluate a monitor over its window (ending now, or at --window-end) and store the
    result; exit 1 on alert.

    Example: keel monitor run churn-weekly --window-end 2026-11-30T00:00:00Z
    """
    result = run_cli(
        lambda: make_client(server, token).run_monitor(name, window_end=window_end, as_of=as_of)
    )
    emit(result, as_json, lambda: _print_run(result))
    if result.status == "alert":
        raise typer.Exit(1)


@monitor_app.command("runs")
def runs(
    name: str = typer.Argument(..., help="Monitor name."),
    limit: int = typer.Option(20, min=1, max=1000, help="How many, newest first."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List stored runs of a monitor.

    Example: keel monitor runs churn-weekly --limit 5
    """
    from keel.cli._output import fmt_ms

    items = run_cli(lambda: make_client(server, token).monitor_runs(name, limit))
    emit(
        items,
        as_json,
        lambda: table(
            f"runs of {name}",
            ["run", "status", "window end", "version", "current", "labelled", "drifted", "seconds"],
            [
                (
                    r.id,
                    r.status,
                    fmt_ms(r.window_end_ms),
                    r.version,
                    r.n_current,
                    r.n_labelled,
                    ", ".join(r.summary.get("drifted", [])) or "-",
                    f"{r.seconds:.2f}",
                )
                for r in items
            ],
        ),
    )


def _run_or_latest(client: Client, name: str, run_id: str | None) -> str:
    """``run_id``, or the id of the monitor's latest run."""
    if run_id is not None:
        return run_id
    latest = client.monitor_runs(name, 1)
    if not latest:
        raise InvalidInput(f"monitor {name} has no runs yet", field="run_id")
    return latest[0].id


@monitor_app.command("report")
def report(
    name: str = typer.Argument(..., help="Monitor name."),
    run_id: str | None = typer.Argument(None, help="Run id (default: the latest run)."),
    output: Path = typer.Option(Path("monitor-report.html"), "--output", "-o", help="HTML file."),
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Write a self-contained HTML report of a run (distribution plots, verdicts, metrics).

    Example: keel monitor report churn-weekly -o report.html
    """

    def run() -> str:
        client = make_client(server, token)
        return client.monitor_report(name, _run_or_latest(client, name, run_id))

    html = run_cli(run)
    output.write_text(html, encoding="utf-8")
    console.print(f"wrote {output}")


@monitor_app.command("feedback")
def feedback(
    path: Path = typer.Argument(
        ..., help="CSV/Parquet with label and request_id or entity_key + event_time columns."
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Upload ground-truth labels in bulk (idempotent; unknown request ids are counted).

    Example: keel monitor feedback labels.parquet
    """
    totals = run_cli(lambda: make_client(server, token).log_feedback_file(path))
    emit(
        totals,
        as_json,
        lambda: console.print(
            f"{totals['accepted']} labels stored, {totals['duplicates']} duplicates, "
            f"{totals['unknown']} for unknown request ids"
        ),
    )


@monitor_app.command("diagnose")
def diagnose(
    name: str = typer.Argument(..., help="Monitor name."),
    run_id: str | None = typer.Argument(None, help="Run id (default: the latest run)."),
    slice_by: list[str] = typer.Option([], "--slice-by", help="Column for worst segments."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Explain a bad window: data drift, concept drift, a data-quality break or a stale source.

    Example: keel monitor diagnose churn-weekly --slice-by contract
    """

    def run() -> dict[str, Any]:
        client = make_client(server, token)
        return client.diagnose_monitor_run(name, _run_or_latest(client, name, run_id), slice_by)

    result = run_cli(run)

    def render() -> None:
        scores = ", ".join(
            f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in result["scores"].items()
        )
        console.print(f"verdict: [bold]{result['verdict']}[/] ({scores})")
        for line in result["evidence"]:
            console.print(f"  · {line}")
        for item in result["attributions"][:5]:
            console.print(
                f"  SHAP {item['feature']}: {item['reference']:.4f} → {item['current']:.4f}"
            )
        for note in result["notes"]:
            console.print(f"  note: {note}")

    emit(result, as_json, render)


# Scheduling is the job queue's business: the command lives with `keel jobs` (R-MON-14).
from keel.cli.jobs import schedule_monitor  # noqa: E402

monitor_app.command("schedule")(schedule_monitor)
