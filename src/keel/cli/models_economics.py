"""``keel models economics NAME``: the retraining interval fitted to a model's own history,
next to its configured schedules (registered on ``keel models`` by keel.cli.models)."""

from __future__ import annotations

from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fail, fmt_ms, run_cli, table
from keel.errors import InvalidInput, NotFound

__all__ = ["economics"]


def economics(
    name: str = typer.Argument(..., help="Model name (its champion, else newest version)."),
    retrain_cost: float = typer.Option(
        ..., help="C: cost of one retraining (compute + validation + deployment + risk)."
    ),
    value_per_point: float = typer.Option(
        ..., help="V: value per query of one unit of the metric (a fraction)."
    ),
    queries_per_day: float | None = typer.Option(
        None, help="Q: predictions per day; default: measured from the prediction log."
    ),
    manual_deploy_days: float | None = typer.Option(
        None, help="Days the team needs to retrain and deploy by hand (sets the automate flag)."
    ),
    metric: str = typer.Option("accuracy", help="accuracy, roc_auc, precision, recall or f1."),
    window: str = typer.Option("90d", help="How much history to read."),
    bucket: str = typer.Option("1d", help="One performance point per bucket of this length."),
    min_rows: int = typer.Option(30, help="Labelled predictions a bucket needs to count."),
    change_pct: float = typer.Option(20.0, help="± percentage for the sensitivity table."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Fit λ to the model's performance per day since training; print T*, half-life, S(T),
    sensitivity, automate flag and assumptions next to its retraining schedules.

    Example: keel models economics churn --retrain-cost 5000 --value-per-point 0.5
    --manual-deploy-days 7
    """
    client = run_cli(lambda: make_client(server, token))
    try:
        result = client.model_economics(
            name,
            retrain_cost=retrain_cost,
            value_per_point=value_per_point,
            queries_per_day=queries_per_day,
            manual_deploy_days=manual_deploy_days,
            metric=metric,
            window=window,
            bucket=bucket,
            min_rows=min_rows,
            change_pct=change_pct,
        )
    except NotFound as error:  # a name the user typed that does not exist: bad input, exit 2
        fail(InvalidInput(error.message, field="name"))
        raise
    except InvalidInput as error:
        fail(error)
        raise
    emit(result, as_json, lambda: _render(result))


def _render(result: dict[str, Any]) -> None:
    from keel.automation.economics import IntervalReport
    from keel.cli.economics import _render as render_interval

    fit = result["fit"]
    console.print(
        f"[bold]{result['model']}[/] v{result['version']}: {result['metric']} since "
        f"{fmt_ms(result['trained_at_ms'])}, {len(result['history'])} points",
        highlight=False,
    )
    table(
        "performance history",
        ["day", "from", result["metric"], "labelled rows"],
        [
            (f"{p['day']:.1f}", fmt_ms(p["start_ms"]), f"{p['value']:.4f}", p["rows"])
            for p in result["history"]
        ],
    )
    ci = fit["decay_ci95"]
    table(
        "fitted decay A(t) = A0·e^(−λt)",
        ["quantity", "value"],
        [
            ("λ per day", f"{fit['decay_per_day']:.5f}"),
            ("λ 95% interval", "-" if ci is None else f"{ci[0]:.5f} … {ci[1]:.5f}"),
            ("A0", f"{fit['a0']:.4f}"),
            ("half-life, days", _num(fit["half_life_days"], ".1f")),
            ("rmse of the fit", f"{fit['rmse']:.4f}"),
            ("Q per day", f"{result['queries_per_day']:,.1f}"
             + (" (measured)" if result["queries_measured"] else " (given)")),
        ],
    )  # fmt: skip
    if result["report"] is not None:
        render_interval(_report(IntervalReport, result["report"]))
    schedules = result["schedules"]
    table(
        "configured retraining schedules",
        ["trigger", "cron", "enabled", "every, days", "cost per day", "vs T*"],
        [
            (
                s["trigger"],
                s["cron"],
                s["enabled"],
                f"{s['interval_days']:.2f}",
                _num(s["daily_cost"], ",.2f"),
                s["vs_t_star"],
            )
            for s in schedules
        ]
        or [("none", "-", "-", "-", "-", "no trigger of this model has a schedule")],
    )
    for note in [*result["notes"], *fit["assumptions"]]:
        console.print(f"  • {note}", highlight=False, markup=False)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _report(cls: Any, data: dict[str, Any]) -> Any:
    """The IntervalReport back from its plain form (over --server it arrives as JSON)."""
    from keel.automation.economics import EconomicsInputs, Sensitivity

    fields = dict(data)
    fields["inputs"] = EconomicsInputs(**data["inputs"])
    fields["sensitivity"] = [Sensitivity(**s) for s in data["sensitivity"]]
    fields["assumptions"] = tuple(data["assumptions"])
    return cls(**fields)
