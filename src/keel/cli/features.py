"""``keel features``: apply and diff definitions, materialise, look up, check skew and freshness.

These commands run embedded (the store named by ``KEEL_*`` settings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keel.cli._output import JsonOption, console, emit, fail, fmt_ms, run_cli, table
from keel.config import Settings
from keel.errors import InvalidInput

if TYPE_CHECKING:
    # The feature store (DuckDB, pandas, SQLAlchemy) loads when a command opens it, not
    # for `keel features --help` (#15.14).
    from keel.features import FeatureStore, Plan

features_app = typer.Typer(
    help="Feature store: definitions, materialisation, online lookups, skew, freshness.\n\n"
    "Example: keel features apply -f features.yaml",
    no_args_is_help=True,
)

FileOption = typer.Option(..., "--file", "-f", help="YAML definition file.")
PruneOption = typer.Option(
    True, "--prune/--no-prune", help="Remove live definitions missing from the file."
)


@contextmanager
def _store() -> Iterator[FeatureStore]:
    from keel.features import FeatureStore

    store = run_cli(lambda: FeatureStore(Settings()))
    try:
        yield store
    finally:
        store.close()


def _render_plan(plan: Plan, applied: bool) -> None:
    marks = {"add": "[green]+[/]", "change": "[yellow]~[/]", "remove": "[red]-[/]"}
    changed = [i for i in plan.items if i.action != "unchanged"]
    for item in changed:
        version = f"v{item.to_version}" if item.to_version else f"(was v{item.from_version})"
        console.print(f"{marks[item.action]} {item.kind} [bold]{item.name}[/] {version}")
        for line in item.changes:
            console.print(f"    {line}", markup=False)
    unchanged = len(plan.items) - len(changed)
    verb = "applied" if applied else "to apply"
    console.print(f"{len(changed)} change(s) {verb}, {unchanged} unchanged")


@features_app.command("plan")
def plan(file: Path = FileOption, prune: bool = PruneOption, as_json: bool = JsonOption) -> None:
    """Show what apply would add, change and remove, without changing anything.

    Example: keel features plan -f features.yaml
    """
    with _store() as store:
        result = run_cli(lambda: store.plan(file, prune=prune))
    emit(result, as_json, lambda: _render_plan(result, applied=False))


@features_app.command("apply")
def apply(file: Path = FileOption, prune: bool = PruneOption, as_json: bool = JsonOption) -> None:
    """Store new and changed definitions as new versions (one transaction).

    Example: keel features apply -f features.yaml
    """
    with _store() as store:
        result = run_cli(lambda: store.apply(file, prune=prune))
    emit(result, as_json, lambda: _render_plan(result, applied=True))


@features_app.command("list")
def list_definitions(
    kind: str | None = typer.Option(None, help="entity, feature_view or feature_service."),
    as_json: bool = JsonOption,
) -> None:
    """List live entities, feature views and feature services.

    Example: keel features list --kind feature_view
    """
    with _store() as store:
        items = run_cli(lambda: store.list_definitions(kind))
    emit(
        items,
        as_json,
        lambda: table(
            "feature definitions",
            ["kind", "name", "version", "owner", "features", "applied"],
            [
                (
                    d.kind,
                    d.name,
                    d.version,
                    d.spec.get("owner"),
                    len(d.spec.get("features", [])) or None,
                    fmt_ms(d.created_at_ms),
                )
                for d in items
            ],
        ),
    )


@features_app.command("show")
def show(
    name: str = typer.Argument(..., help="Entity, feature view or feature service name."),
    as_json: bool = JsonOption,
) -> None:
    """Show a definition: its versions, spec, dependent models and freshness.

    Example: keel features show customer_account
    """
    with _store() as store:
        history = run_cli(lambda: store.history(name))
        latest = history[-1]
        info: dict[str, Any] = {"definition": latest, "versions": [h.version for h in history]}
        if latest.kind == "feature_view" and latest.removed_at_ms is None:
            info["dependent_models"] = store.dependent_models(name)
            info["freshness"] = run_cli(lambda: store.freshness([name]))[0]

    def render() -> None:
        removed = " (removed)" if latest.removed_at_ms else ""
        console.print(f"[bold]{latest.kind} {latest.name}[/] v{latest.version}{removed}")
        console.print(f"versions: {', '.join(map(str, info['versions']))}")
        console.print_json(json.dumps(latest.spec))
        if "dependent_models" in info:
            console.print(f"models: {', '.join(info['dependent_models']) or '-'}")

    emit(info, as_json, render)


@features_app.command("materialize")
def materialize(
    end: str = typer.Argument(..., help="Window end, ISO time (naive = UTC)."),
    start: str | None = typer.Option(
        None, help="Window start; without it, continue from where the last run ended."
    ),
    view: list[str] | None = typer.Option(None, "--view", "-v", help="Only these views."),
    as_json: bool = JsonOption,
) -> None:
    """Copy the latest value per entity into the online store, with a progress bar.

    Example: keel features materialize 2026-01-31T00:00:00 --start 2026-01-01
    """
    with (
        _store() as store,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=as_json,
        ) as bar,
    ):
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        views = view or None
        written = run_cli(
            lambda: (
                store.materialize(start, end, views, progress=progress)
                if start
                else store.materialize_incremental(end, views, progress=progress)
            )
        )
    emit(
        written,
        as_json,
        lambda: table("materialised", ["view", "rows"], sorted(written.items())),
    )


def _parse_entity(text: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise InvalidInput(f"entity {text!r} is not key=value[,key=value]", field="entity")
        row[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value
    return row


@features_app.command("get")
def get(
    features: str = typer.Argument(
        ..., help="A feature service name, or view:feature[,view:feature…]."
    ),
    entities: list[str] = typer.Argument(..., help="Entity rows: customer_id=7 (k=v,k=v)."),
    full_names: bool = typer.Option(False, help="Name columns view__feature."),
    as_json: bool = JsonOption,
) -> None:
    """Look up online feature values for entities.

    Example: keel features get churn_v1 customer_id=7 customer_id=8
    """
    refs: str | list[str] = features.split(",") if ":" in features else features
    with _store() as store:
        rows = run_cli(
            lambda: store.get_online_features(
                [_parse_entity(e) for e in entities], refs, full_names=full_names
            )
        )
    columns = list(rows[0]) if rows else []
    emit(rows, as_json, lambda: table("online features", columns, [list(r.values()) for r in rows]))


def _read_frame(path: Path, field: str) -> Any:
    import pandas as pd

    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field=field) from exc


@features_app.command("skew")
def skew(
    offline: Path = typer.Option(..., help="Training values (Parquet or CSV)."),
    served: Path | None = typer.Option(None, help="Served values (Parquet or CSV)."),
    model: str | None = typer.Option(None, help="Read served values of this model's log."),
    version: int | None = typer.Option(None, help="Model version (with --model)."),
    start: str | None = typer.Option(None, help="Prediction-log window start (with --model)."),
    end: str | None = typer.Option(None, help="Prediction-log window end (with --model)."),
    features: str | None = typer.Option(None, help="Comma-separated features (default: shared)."),
    ks_threshold: float | None = typer.Option(
        None, help="Default KEEL_FEATURES_SKEW_KS_THRESHOLD."
    ),
    psi_threshold: float | None = typer.Option(
        None, help="Default KEEL_FEATURES_SKEW_PSI_THRESHOLD."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Compare training and served distributions per feature (KS, PSI); exit 1 when skewed.

    Example: keel features skew --offline train.parquet --served served.parquet
    """
    if (served is None) == (model is None):
        fail(InvalidInput("give exactly one of --served or --model", field="served"))
    with _store() as store:

        def run() -> Any:
            left = _read_frame(offline, "offline")
            if served is not None:
                right = _read_frame(served, "served")
            else:
                right = store.served_features(str(model), version, start, end)
            names = features.split(",") if features else None
            return store.check_skew(
                left, right, names, ks_threshold=ks_threshold, psi_threshold=psi_threshold
            )

        report = run_cli(run)

    def render() -> None:
        table(
            "training-serving skew",
            ["feature", "kind", "ks", "psi", "null off/served", "skewed", "why"],
            [
                (
                    f.feature,
                    f.kind,
                    "-" if f.ks is None else f"{f.ks:.3f}",
                    f"{f.psi:.3f}",
                    f"{f.null_rate_offline:.2f}/{f.null_rate_served:.2f}",
                    "yes" if f.is_skewed else "no",
                    "; ".join(f.reasons),
                )
                for f in report.features
            ],
        )
        console.print("passed" if report.passed else f"skewed: {', '.join(report.skewed)}")

    emit(report.to_dict(), as_json, render)
    if not report.passed:
        raise typer.Exit(1)


@features_app.command("freshness")
def freshness(as_json: bool = JsonOption) -> None:
    """Per view: materialised until, last write, age against the freshness SLA.

    Example: keel features freshness --json
    """
    with _store() as store:
        items = run_cli(lambda: store.freshness())
    emit(
        items,
        as_json,
        lambda: table(
            "feature freshness",
            ["view", "cadence", "until", "last push", "age s", "sla s", "stale"],
            [
                (
                    f.view,
                    f.cadence,
                    fmt_ms(f.materialized_until_ms),
                    fmt_ms(f.last_push_at_ms),
                    None if f.age_s is None else round(f.age_s),
                    f.sla_s,
                    {True: "STALE", False: "ok", None: "-"}[f.is_stale],
                )
                for f in items
            ],
        ),
    )


@features_app.command("deprecated")
def deprecated(
    days: int | None = typer.Option(None, help="Unused for this many days (default 90)."),
    as_json: bool = JsonOption,
) -> None:
    """List features nobody read offline or online within the window, with dependent models.

    Example: keel features deprecated --days 90
    """
    with _store() as store:
        items = run_cli(lambda: store.unused_features(days=days))
    emit(
        items,
        as_json,
        lambda: table(
            "unused features",
            ["view", "feature", "last used", "defined", "models"],
            [
                (
                    u.view,
                    u.feature,
                    fmt_ms(u.last_used_ms),
                    fmt_ms(u.defined_at_ms),
                    ", ".join(u.dependent_models),
                )
                for u in items
            ],
        ),
    )
