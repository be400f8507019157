"""``keel deploy recommend|drill|debug|holdout``: choose shadow or canary (R-DEP-05), drill a
rollback (R-DEP-09), debug a canary per step × slice (R-DEP-21), measure a holdout's lift
(R-DEP-18). Registered on ``keel deploy`` by :func:`register`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, as_option, console, emit, fmt_ms, run_cli, table
from keel.errors import InvalidInput, KeelError

__all__ = ["register"]


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def recommend(
    error_rate: float = typer.Option(..., help="Share of users a bad model would harm (0-1)."),
    users: float = typer.Option(..., help="Users the rollout reaches."),
    impact: float = typer.Option(..., help="Cost of one harmed user (any currency)."),
    requests: float = typer.Option(..., help="Requests served over the shadow period."),
    cost_per_prediction: float = typer.Option(..., help="Compute cost of one prediction."),
    overhead: float = typer.Option(0.15, help="Shadow's extra compute share (seed: 0.10-0.20)."),
    first_step: float = typer.Option(5.0, help="First canary step, percent of traffic."),
    as_json: bool = JsonOption,
) -> None:
    """Recommend a shadow phase or a canary first, with the numbers behind it.

    Shadow when a bad rollout (error rate x users x impact) would cost more than shadow's
    extra compute (overhead x requests x cost per prediction), else canary.

    Example: keel deploy recommend --error-rate 0.02 --users 10000 --impact 5
    --requests 1000000 --cost-per-prediction 0.0001
    """
    from keel.deploy.recommend import recommend_strategy

    names = {
        "error_rate": "--error-rate",
        "users": "--users",
        "impact_per_error": "--impact",
        "requests": "--requests",
        "cost_per_prediction": "--cost-per-prediction",
        "overhead_share": "--overhead",
        "first_canary_share": "--first-step",
    }

    def run() -> dict[str, Any]:
        try:
            found = recommend_strategy(
                error_rate=error_rate,
                users=users,
                impact_per_error=impact,
                requests=requests,
                cost_per_prediction=cost_per_prediction,
                overhead_share=overhead,
                first_canary_share=first_step,
            )
        except KeelError as error:
            raise as_option(error, names) from None
        return found.to_dict()

    found = run_cli(run)

    def render() -> None:
        console.print(f"[bold]recommended: {found['strategy']}[/]")
        table(
            "numbers",
            ["bad-rollout cost", "shadow overhead", "canary first-step exposure", "break-even"],
            [
                (
                    f"{found['bad_rollout_cost']:,.2f}",
                    f"{found['shadow_overhead']:,.2f}",
                    f"{found['canary_exposure_cost']:,.2f}",
                    _num(found["break_even_error_rate"]),
                )
            ],
        )
        console.print(found["reason"], highlight=False)

    emit(found, as_json, render)


def drill(
    name: str = typer.Argument(..., help="Deployment name."),
    probe_rows: int = typer.Option(20, help="Probe with the newest N logged requests."),
    instances: Path | None = typer.Option(
        None, "--instances", help="Probe set instead: a JSON file with a list of rows."
    ),
    restore: bool = typer.Option(True, "--restore/--no-restore", help="Put the state back."),
    timeout: float = typer.Option(60.0, help="Seconds the replicas may take to agree."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Rollback drill: roll back, verify, time, record and restore.

    Verifies replicas, probe predictions and the cache; times the rollback against the
    R-DEP-07 tiers; restores the prior state unless --no-restore. Exit 1 when a check
    fails, 2 on bad input.

    Example: keel deploy drill churn-live --probe-rows 50
    """
    names = {"instances": "--instances", "probe_rows": "--probe-rows", "timeout_s": "--timeout"}

    def run() -> dict[str, Any]:
        rows = None
        if instances is not None:
            try:
                rows = json.loads(instances.read_text())
            except (OSError, ValueError) as exc:
                raise InvalidInput(f"--instances: cannot read {instances}: {exc}") from None
            if not isinstance(rows, list):
                raise InvalidInput("--instances: expected a JSON list of rows", field="--instances")
        try:
            return make_client(server, token).drill_deployment(
                name, instances=rows, probe_rows=probe_rows, restore=restore, timeout_s=timeout
            )
        except KeelError as error:
            raise as_option(error, names) from None

    report = run_cli(run)

    def render() -> None:
        verdict = "[green]passed[/]" if report["passed"] else "[red]FAILED[/]"
        console.print(
            f"[bold]{report['deployment']}[/] drill {verdict}: consistent after "
            f"{report['consistent_s']:.2f}s ({report['tier']}); "
            f"restored: {'yes' if report['restored'] else 'no'}"
        )
        table(
            "checks",
            ["check", "ok", "details"],
            [
                (key, "yes" if check["ok"] else "NO", _details(check))
                for key, check in report["checks"].items()
            ],
        )

    emit(report, as_json, render)
    if not report["passed"]:
        raise typer.Exit(1)


def _details(check: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in check.items() if k != "ok")


def debug(
    name: str = typer.Argument(..., help="Deployment name."),
    arm: str | None = typer.Option(None, help="Candidate arm (default: the first)."),
    slices: list[str] | None = typer.Option(
        None, "--slice", help="Input column to slice by (repeat; default: the policy's)."
    ),
    metric: str | None = typer.Option(None, help="Metric (default: the policy's)."),
    alpha: float = typer.Option(0.05, help="Significance after Holm's adjustment."),
    flagged_only: bool = typer.Option(False, "--flagged", help="Only flagged rows."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Canary vs primary per traffic step x slice, flagging where the canary is worse.

    Requests, error rates and the metric per step and slice, p99 latency per step; slices
    significantly worse (Holm-adjusted) are flagged with the step they first appeared at;
    the features that explain the canary's bad rows are ranked (PSI/KS, permutation).

    Example: keel deploy debug churn-live --slice contract --flagged
    """
    names = {"arm": "--arm", "slices": "--slice", "metric": "--metric", "alpha": "--alpha"}

    def run() -> dict[str, Any]:
        try:
            return make_client(server, token).debug_deployment(
                name, arm=arm, slices=slices, metric=metric, alpha=alpha
            )
        except KeelError as error:
            raise as_option(error, names) from None

    report = run_cli(run)
    emit(report, as_json, lambda: _debug_table(report, flagged_only))


def _rate(side: dict[str, Any]) -> str:
    return f"{_num(side['error_rate'], 3)} ({side['n']})"


def _metric(side: dict[str, Any]) -> str:
    return _num(side["metric"]["value"], 3) if side["metric"] else "-"


def _debug_table(report: dict[str, Any], flagged_only: bool) -> None:
    console.print(
        f"[bold]{report['deployment']}[/] {report['candidate']} vs {report['primary']}, "
        f"metric {report['metric'] or 'none'}, Holm-adjusted at alpha {report['alpha']}"
    )
    for sliced in report.get("slice_columns") or []:
        how = "default segment" if sliced["default"] else "named"
        bins = sliced.get("bins")
        edges = f", bins at {', '.join(_num(b, 4) for b in bins)}" if bins else ""
        console.print(f"sliced by {sliced['column']} ({how}{edges})", highlight=False)
    table(
        "steps",
        ["step", "share %", "from", "to", "p99 primary", "p99 candidate", "ratio"],
        [
            (s["step"], s["share"], fmt_ms(s["from_ms"]), fmt_ms(s["to_ms"]),
             _num(lat["primary_p99_ms"]), _num(lat["candidate_p99_ms"]), _num(lat["ratio"], 3))
            for s, lat in zip(report["steps"], report["latency"], strict=False)
        ],
    )  # fmt: skip
    rows = [r for r in report["rows"] if r["flagged"] or not flagged_only]
    table(
        "step x slice",
        ["step", "slice", "err primary (n)", "err candidate (n)", "metric p", "metric c", "flag"],
        [
            (r["step"], r["slice"], _rate(r["primary"]), _rate(r["candidate"]),
             _metric(r["primary"]), _metric(r["candidate"]), "; ".join(r["reasons"]) or "")
            for r in rows
        ],
    )  # fmt: skip
    for finding in report["findings"]:
        console.print(
            f"[red]{finding['slice']}[/]: first flagged at step {finding['first_flagged_step']} "
            f"({finding['share']:g}%), clean at {finding['clean_at_earlier_steps'] or 'no'} "
            "earlier shares",
            highlight=False,
        )
    _attribution_tables(report.get("attribution") or {})


def _ranked(title: str, entries: list[dict[str, Any]]) -> None:
    table(
        title,
        ["feature", "kind", "psi", "ks", "ks p", "where"],
        [
            (e["feature"], e["kind"], _num(e["psi"], 3), _num(e["ks"], 3), _num(e["ks_pvalue"], 3),
             f"mean {_num(e['mean']['reference'], 4)} -> {_num(e['mean']['current'], 4)}"
             if e["kind"] == "numeric" else f"more {e['over_represented']['value']}")
            for e in entries
        ],
    )  # fmt: skip


def _attribution_tables(found: dict[str, Any]) -> None:
    """R-DEP-21's feature attribution: bad vs good rows, step vs earlier, permutation."""
    if "skipped" in found or not found:
        console.print(f"feature attribution: {found.get('skipped', 'none')}", highlight=False)
        return
    if not found["rows"]["candidate"]:
        console.print("feature attribution: no candidate requests in the window", highlight=False)
        return
    bad = found["bad_rows"]
    _ranked(
        f"features: candidate's bad rows ({bad['bad']}: {bad['errors']} errors, "
        f"{bad['high_loss']} {bad['loss']} > {_num(bad['threshold'], 3)}) vs good ({bad['good']})",
        found["bad_vs_good"],
    )
    steps = found["step_vs_earlier"]
    if steps:
        rate = steps["bad_rate"]
        _ranked(
            f"features: step {steps['step']} ({steps['share']:g}%) vs step "
            f"{steps['earlier_step']} ({steps['earlier_share']:g}%), bad rate "
            f"{_num(rate['earlier'], 3)} -> {_num(rate['step'], 3)}",
            steps["input_shift"],
        )
    permutation = found["permutation"]
    if "skipped" in permutation:
        console.print(f"permutation importance: {permutation['skipped']}", highlight=False)
        return
    table(
        f"permutation importance of the {permutation['loss']} gap "
        f"{_num(permutation['gap'], 4)} ({permutation['rows']} rows)",
        ["feature", "importance", "std"],
        [(e["feature"], _num(e["importance"], 4), _num(e["std"], 4))
         for e in permutation["features"]],
    )  # fmt: skip


def holdout(
    name: str = typer.Argument(..., help="Deployment name."),
    holdout_arm: str = typer.Option("holdout", help="The holdout group's arm."),
    champion_arm: str | None = typer.Option(None, help="Default: the primary arm."),
    metric: str | None = typer.Option(None, help="Metric (default: the policy's or roc_auc)."),
    since: str | None = typer.Option(None, help="From 30d / an ISO time / epoch ms."),
    alpha: float = typer.Option(0.05, help="1 - confidence of the interval."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """The champion's ongoing lift over a persistent holdout group, with its CI.

    Example: keel deploy holdout churn-holdout --since 30d
    """
    names = {
        "holdout_arm": "--holdout-arm",
        "champion_arm": "--champion-arm",
        "metric": "--metric",
        "since": "--since",
        "alpha": "--alpha",
    }
    start: str | int | None = int(since) if since is not None and since.isdigit() else since

    def run() -> dict[str, Any]:
        try:
            return make_client(server, token).holdout_lift(
                name,
                holdout_arm=holdout_arm,
                champion_arm=champion_arm,
                metric=metric,
                since=start,
                alpha=alpha,
            )
        except KeelError as error:
            raise as_option(error, names) from None

    report = run_cli(run)

    def render() -> None:
        lift = report["lift"]
        champ, base = report["champion"], report["holdout"]
        table(
            f"{report['deployment']}: {report['metric']} since {fmt_ms(report['from_ms'])}",
            ["group", "version", "requests", "error rate", report["metric"]],
            [
                (g["arm"], f"v{g['version']}", g["n"], _num(g["error_rate"], 3), _metric(g))
                for g in (champ, base)
            ],
        )
        if lift is None:
            console.print("lift: not enough labelled requests yet")
            return
        console.print(
            f"lift {lift['difference']:+.4g} [{lift['ci_low']:+.4g}, {lift['ci_high']:+.4g}] "
            f"(relative {_num(report['relative_lift'], 3)}, p={lift['pvalue']:.3g})",
            highlight=False,
        )

    emit(report, as_json, render)


def register(app: typer.Typer) -> None:
    """Add the commands to ``keel deploy``."""
    app.command("recommend")(recommend)
    app.command("drill")(drill)
    app.command("debug")(debug)
    app.command("holdout")(holdout)
    # rank, clicks, interleaving: their own module (keel deploy's command list is here)
    from keel.cli.deploy_interleave import register as register_interleave

    register_interleave(app)
