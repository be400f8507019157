"""``keel features``: apply and diff definitions, materialise, look up, check skew and freshness.

Every command goes through the SDK (``keel.Client``): embedded (the store named by
``KEEL_*`` settings) or, with ``--server``, the REST routes under ``/v1/features``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fail, fmt_ms, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    # The feature store (DuckDB, pandas, SQLAlchemy) loads when a command needs it, not
    # for `keel features --help` (#15.14).
    from keel.client import Client
    from keel.features import Plan

features_app = typer.Typer(
    help="Feature store: definitions, materialisation, online lookups, skew, freshness.\n\n"
    "Example: keel features apply -f features.yaml",
    no_args_is_help=True,
)

FileOption = typer.Option(..., "--file", "-f", help="YAML definition file.")
PruneOption = typer.Option(
    True, "--prune/--no-prune", help="Remove live definitions missing from the file."
)


def _client(server: str | None, token: str | None) -> Client:
    return run_cli(lambda: make_client(server, token))


def _render_plan(plan: Plan, applied: bool) -> None:
    marks = {"add": "[green]+[/]", "change": "[yellow]~[/]", "remove": "[red]-[/]"}
    changed = [i for i in plan.items if i.action != "unchanged"]
    for item in changed:
        version = f"v{item.to_version}" if item.to_version else f"(was v{item.from_version})"
        console.print(f"{marks[item.action]} {item.kind} [bold]{item.name}[/] {version}")
        for line in item.changes:
            console.print(f"    {line}", markup=False)
    unchanged = len(plan.items) - len(changed)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
    verb = "applied" if applied else "to apply"
    console.print(f"{len(changed)} change(s) {verb}, {unchanged} unchanged")


@features_app.command("plan")
def plan(
    file: Path = FileOption,
    prune: bool = PruneOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show what apply would add, change and remove, without changing anything.

    Example: keel features plan -f features.yaml
    """
    client = _client(server, token)
    result = run_cli(lambda: client.plan_features(file, prune=prune))
    emit(result, as_json, lambda: _render_plan(result, applied=False))


@features_app.command("apply")
def apply(
    file: Path = FileOption,
    prune: bool = PruneOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Store new and changed definitions as new versions (one transaction).

    Example: keel features apply -f features.yaml --server http://127.0.0.1:8080
    """
    client = _client(server, token)
    result = run_cli(lambda: client.apply_features(file, prune=prune))
    emit(result, as_json, lambda: _render_plan(result, applied=True))


@features_app.command("list")
def list_definitions(
    kind: str | None = typer.Option(None, help="entity, feature_view or feature_service."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List live entities, feature views and feature services.

    Example: keel features list --kind feature_view
    """
    client = _client(server, token)
    items = run_cli(lambda: client.list_feature_definitions(kind))
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
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a definition: its versions, spec, dependent models and freshness.

    Example: keel features show customer_account
    """
    client = _client(server, token)
    history = run_cli(lambda: client.feature_history(name))
    latest = history[-1]
    info: dict[str, Any] = {"definition": latest, "versions": [h.version for h in history]}
    if latest.kind == "feature_view" and latest.removed_at_ms is None:
        info["dependent_models"] = run_cli(lambda: client.feature_dependent_models(name))
        info["freshness"] = run_cli(lambda: client.feature_freshness([name]))[0]

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
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Copy the latest value per entity into the online store (rows written per view).

    Example: keel features materialize 2026-01-31T00:00:00 --start 2026-01-01
    """
    client = _client(server, token)
    views = view or None
    with console.status("materialising…", spinner="dots") if not as_json else _nothing():
        written = run_cli(
            lambda: (
                client.materialize_features(start, end, views)
                if start
                else client.materialize_features_incremental(end, views)
            )
        )
    emit(
        written,
        as_json,
        lambda: table("materialised", ["view", "rows"], sorted(written.items())),
    )


@contextmanager
def _nothing() -> Iterator[None]:
    yield


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
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Look up online feature values for entities.

    Example: keel features get churn_v1 customer_id=7 customer_id=8
    """
    refs: str | list[str] = features.split(",") if ":" in features else features
    parsed = run_cli(lambda: [_parse_entity(e) for e in entities])
    client = _client(server, token)
    rows = run_cli(lambda: client.get_online_features(parsed, refs, full_names=full_names))
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
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Compare training and served distributions per feature (KS, PSI); exit 1 when skewed.

    Example: keel features skew --offline train.parquet --served served.parquet
    """
    if (served is None) == (model is None):
        fail(InvalidInput("give exactly one of --served or --model", field="served"))
    client = _client(server, token)

    def run() -> dict[str, Any]:
        left = _read_frame(offline, "offline")
        right = None if served is None else _read_frame(served, "served")
        return client.check_feature_skew(
            left,
            right,
            model=model,
            version=version,
            start=start,
            end=end,
            features=features.split(",") if features else None,
            ks_threshold=ks_threshold,
            psi_threshold=psi_threshold,
        )

    report = run_cli(run)

    def render() -> None:
        table(
            "training-serving skew",
            ["feature", "kind", "ks", "psi", "null off/served", "skewed", "why"],
            [
                (
                    f["feature"],
                    f["kind"],
                    "-" if f["ks"] is None else f"{f['ks']:.3f}",
                    f"{f['psi']:.3f}",
                    f"{f['null_rate_offline']:.2f}/{f['null_rate_served']:.2f}",
                    "yes" if f["is_skewed"] else "no",
                    "; ".join(f["reasons"]),
                )
                for f in report["features"]
            ],
        )
        skewed = ", ".join(report["skewed"])
        console.print("passed" if report["passed"] else f"skewed: {skewed}")

    emit(report, as_json, render)
    if not report["passed"]:
        raise typer.Exit(1)


@features_app.command("freshness")
def freshness(
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Per view: materialised until, last write, age against the freshness SLA.

    Example: keel features freshness --json
    """
    client = _client(server, token)
    items = run_cli(lambda: client.feature_freshness())
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
    days: int | None = typer.Option(None, min=1, help="Unused for this many days (default 90)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List features nobody read offline or online within the window, with dependent models.

    Example: keel features deprecated --days 90
    """
    client = _client(server, token)
    items = run_cli(lambda: client.unused_features(days))
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
