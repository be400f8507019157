"""``keel economics``: the optimal retraining interval from cost, volume, value and decay."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.automation.economics import IntervalReport

__all__ = ["economics_app"]

EXAMPLE = (
    "keel economics interval --retrain-cost 5000 --queries-per-day 1000000 "
    "--value-per-point 0.5 --a0 0.95 --decay 0.02 --manual-deploy-days 7"
)

economics_app = typer.Typer(
    help=f"Retraining economics: how often retraining pays for itself.\n\nExample: {EXAMPLE}",
    no_args_is_help=True,
)

# Domain field → the option that carries it, so errors name what the user typed.
_OPTIONS = {
    "retrain_cost": "--retrain-cost",
    "queries_per_day": "--queries-per-day",
    "value_per_point": "--value-per-point",
    "a0": "--a0",
    "decay_per_day": "--decay",
    "manual_deploy_days": "--manual-deploy-days",
    "change_pct": "--change-pct",
}


@economics_app.callback()
def _group() -> None:
    # A callback keeps `interval` a named subcommand (Typer would otherwise collapse a
    # one-command app into that command), leaving room for `economics fit` etc.
    pass


def _report(
    retrain_cost: float,
    queries_per_day: float,
    value_per_point: float,
    a0: float,
    decay: float,
    manual_deploy_days: float | None,
    change_pct: float,
) -> IntervalReport:
    # Imported here: the economics module pulls in scipy (~0.5 s), which `keel --help`
    # and every other command must not pay for.
    from keel.automation.economics import EconomicsInputs, interval_report

    try:
        inputs = EconomicsInputs(retrain_cost, queries_per_day, value_per_point, a0, decay)
        return interval_report(inputs, manual_deploy_days=manual_deploy_days, change_pct=change_pct)
    except InvalidInput as error:
        # The message names the option itself; no "(field: …)" suffix repeating it.
        option = _OPTIONS.get(error.field or "", error.field or "")
        message = error.message.replace(error.field or "", option, 1)
        raise InvalidInput(message, **error.detail) from error


def _days(value: float | None) -> str:
    return "none (no finite optimum)" if value is None else f"{value:.3f}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _render(report: IntervalReport) -> None:
    automate = {True: "yes: T* < manual deploy time", False: "no", None: "-"}[report.automate]
    table(
        "retraining interval",
        ["quantity", "value"],
        [
            ("T* (exact), days", _days(report.t_star_days)),
            ("T* (square-root law), days", f"{report.t_star_sqrt_law_days:.3f}"),
            ("half-life, days", f"{report.half_life_days:.2f}"),
            ("cost per day at T*", _money(report.daily_cost_at_t_star)),
            ("staleness cost per interval at T*", _money(report.staleness_cost_at_t_star)),
            ("manual deploy time, days", report.manual_deploy_days),
            ("automate", automate),
        ],
    )
    table(
        "sensitivity of T*",
        ["input", "value", "low → T* days", "high → T* days", "elasticity"],
        [
            (
                s.parameter,
                f"{s.value:g}",
                f"{s.value_low:g} → {_days(s.t_star_low_days)}",
                f"{s.value_high:g} → {_days(s.t_star_high_days)}",
                "-" if s.elasticity is None else f"{s.elasticity:+.3f}",
            )
            for s in report.sensitivity
        ],
    )
    console.print("Assumptions:", highlight=False)
    for note in report.assumptions:
        console.print(f"  • {note}", highlight=False, markup=False)


@economics_app.command("interval")
def interval(
    retrain_cost: float = typer.Option(
        ..., help="C: cost of one retraining (compute + validation + deployment + risk)."
    ),
    queries_per_day: float = typer.Option(..., help="Q: predictions served per day."),
    value_per_point: float = typer.Option(
        ..., help="V: value per query of one unit of accuracy (accuracy as a fraction)."
    ),
    a0: float = typer.Option(..., "--a0", help="A0: accuracy right after retraining, in (0, 1]."),
    decay: float = typer.Option(..., help="λ: accuracy decay rate per day, A(t) = A0·e^(−λt)."),
    manual_deploy_days: float | None = typer.Option(
        None, help="Days the team needs to retrain and deploy by hand (sets the automate flag)."
    ),
    change_pct: float = typer.Option(
        20.0, help="Move each input down and up by this percentage for the sensitivity table."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Optimal retraining interval T* (exact and square-root law), half-life, sensitivity.

    Seed 001's fraud reference gives T* ≈ 1.03 days: retrain daily.

    Example: keel economics interval --retrain-cost 5000 --queries-per-day 1000000
    --value-per-point 0.5 --a0 0.95 --decay 0.02 --manual-deploy-days 7 --json
    """
    report = run_cli(
        lambda: _report(
            retrain_cost,
            queries_per_day,
            value_per_point,
            a0,
            decay,
            manual_deploy_days,
            change_pct,
        )
    )
    emit(asdict(report), as_json, lambda: _render(report))
