"""``keel deploy``: deployments (create from a policy file, show, list, promote, roll back,
pause, resume, replay, decisions); ``keel decisions`` (:mod:`keel.cli.decisions`) shares
the decision table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.decisions.models import Decision
    from keel.deploy.models import Deployment

deploy_app = typer.Typer(
    help="Deployments: shadow, canary, A/B and blue-green rollouts with automatic rollback.\n\n"
    "Example: keel deploy create -f policy.yaml",
    no_args_is_help=True,
)


def _weights(d: Deployment) -> str:
    return ", ".join(f"{arm}={w:g}%" for arm, w in d.weights.items())


def _versions(d: Deployment) -> str:
    return ", ".join(f"{arm}=v{v}" for arm, v in d.versions.items())


def _step(d: Deployment) -> str:
    rollouts = d.state.get("rollouts", {})
    return ", ".join(f"{arm}: {r['phase']} step {r['step']}" for arm, r in rollouts.items())


def _show(d: Deployment) -> None:
    console.print(f"[bold]{d.name}[/] {d.strategy} over model {d.model}: {d.status}")
    console.print(f"  arms: {_versions(d)}")
    console.print(f"  weights: {_weights(d)}")
    console.print(f"  rollout: {_step(d)}")
    from keel.deploy.rollout_steps import describe_plan

    rollout = next(iter(d.state.get("rollouts", {}).values()), None)
    if plan := describe_plan(d.policy, rollout):  # R-DEP-02: each step with its dwell
        console.print(f"  plan: {escape(plan)}", soft_wrap=True)
    from keel.deploy.plan import describe as describe_samples

    for line in describe_samples(d.state.get("plan")):  # R-DEP-04: samples per step
        console.print(f"  {escape(line)}", soft_wrap=True)
    from keel._models import now_ms
    from keel.deploy.progress import describe as describe_progress

    for line in describe_progress(d.progress, now_ms()):  # what each step waits for
        console.print(f"  {escape(line)}", soft_wrap=True)
    console.print(f"  state version {d.version}, updated {fmt_ms(d.updated_at_ms)}")
    if d.replicas:
        done = "complete" if d.complete else "not complete"
        console.print(f"  replicas ({done}):")
        for r in d.replicas:
            console.print(f"    {r.replica}: state {r.state_version} at {fmt_ms(r.reported_at_ms)}")
    for arm, c in (d.shadow_comparison or {}).items():
        console.print(f"  shadow {arm}: {_shadow_line(c)}")
    from keel.deploy.timing import describe as describe_timing  # loads numpy: on use only

    if timing := describe_timing(d.state.get("timing"), d.policy):  # R-TRN-21
        console.print(f"  timing: {timing}")


def _shadow_line(c: dict[str, Any]) -> str:
    """One shadow arm's comparison with the primary (keel.deploy.shadowcompare)."""
    if "error" in c:
        return f"comparison unavailable: {c['error']}; {c['drops']['total']} dropped"
    if not c.get("pairs"):
        return f"no compared requests yet; {c['drops']['total']} dropped"
    shift, latency = c["distribution"], c["latency_ms"]
    ratio = latency["p99_ratio"]
    return (
        f"agreement {c['agreement']:.3f} over {c['pairs']} rows, PSI {shift['psi']:.4f}, "
        f"KS {shift['ks'] if shift['ks'] is None else format(shift['ks'], '.4f')}, "
        f"p99 {latency['shadow']['p99']:.1f} vs {latency['primary']['p99']:.1f} ms"
        + (f" ({ratio:.2f}x)" if ratio is not None else "")
        + f", {c['errors']} errors, {c['drops']['total']} dropped"
    )


@deploy_app.command("create")
def create(
    file: Path = typer.Option(..., "--file", "-f", help="Policy file (YAML or JSON)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create a deployment from a policy file; bad keys, weights or versions exit 2.

    Example: keel deploy create -f churn-canary.yaml
    """

    def run() -> Deployment:
        try:
            text = file.read_text()
        except OSError as exc:
            raise InvalidInput(f"--file: cannot read {file}: {exc}", field="--file") from None
        return make_client(server, token).create_deployment(text)

    created = run_cli(run)
    emit(created, as_json, lambda: _show(created))


@deploy_app.command("show")
def show(
    name: str = typer.Argument(..., help="Deployment name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a deployment: arms, weights, rollout step, replicas.

    Example: keel deploy show churn-live --json
    """
    found = run_cli(lambda: make_client(server, token).get_deployment(name))
    emit(found, as_json, lambda: _show(found))


@deploy_app.command("list")
def list_deployments(
    model: str | None = typer.Option(None, help="Only this model's deployments."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List deployments.

    Example: keel deploy list --model churn
    """
    items = run_cli(lambda: make_client(server, token).list_deployments(model))
    emit(
        items,
        as_json,
        lambda: table(
            "deployments",
            ["name", "model", "strategy", "status", "weights", "rollout", "updated"],
            [
                (
                    d.name,
                    d.model,
                    d.strategy,
                    d.status,
                    _weights(d),
                    _step(d),
                    fmt_ms(d.updated_at_ms),
                )
                for d in items
            ],
        ),
    )


def _action(
    name: str,
    action: str,
    reason: str | None,
    server: str | None,
    token: str | None,
    as_json: bool,
    arm: str | None = None,
) -> None:
    def run() -> Deployment:
        client = make_client(server, token)
        if action == "promote":
            return client.promote_deployment(name, arm=arm, reason=reason)
        if action == "rollback":
            return client.rollback_deployment(name, reason)
        if action == "pause":
            return client.pause_deployment(name, reason)
        if action == "switch":
            return client.switch_deployment(name, reason)
        return client.resume_deployment(name, reason)

    changed = run_cli(run)
    emit(changed, as_json, lambda: _show(changed))


ReasonOption = typer.Option(None, "--reason", help="Why (kept in the decision log).")


@deploy_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Deployment name."),
    arm: str | None = typer.Option(
        None, help="Which challenger of an A/B (default: the only one)."
    ),
    reason: str | None = ReasonOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Give the candidate all traffic and move the model's champion alias to it.

    Example: keel deploy promote churn-live --reason "AUC +3 points"
    """
    _action(name, "promote", reason, server, token, as_json, arm)


@deploy_app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="Deployment name."),
    reason: str | None = ReasonOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Send all traffic back to the primary now.

    Example: keel deploy rollback churn-live --reason "complaints from support"
    """
    _action(name, "rollback", reason, server, token, as_json)


@deploy_app.command("pause")
def pause(
    name: str = typer.Argument(..., help="Deployment name."),
    reason: str | None = ReasonOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Freeze the weights; the controller leaves the deployment alone.

    Example: keel deploy pause churn-live
    """
    _action(name, "pause", reason, server, token, as_json)


@deploy_app.command("resume")
def resume(
    name: str = typer.Argument(..., help="Deployment name."),
    reason: str | None = ReasonOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Let the controller evaluate a paused deployment again.

    Example: keel deploy resume churn-live
    """
    _action(name, "resume", reason, server, token, as_json)


@deploy_app.command("switch")
def switch(
    name: str = typer.Argument(..., help="Deployment name."),
    reason: str | None = ReasonOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Blue-green: send all traffic to green now; verify then runs (switch back on a breach).

    Example: keel deploy switch churn-bg --reason "release window"
    """
    _action(name, "switch", reason, server, token, as_json)


def _records(items: list[Decision]) -> list[dict[str, object]]:
    """JSON records, each with a readable UTC ``time`` beside ``at_ms``."""
    from datetime import UTC, datetime

    return [
        {
            "time": datetime.fromtimestamp(d.at_ms / 1000, tz=UTC).isoformat(),
            **d.model_dump(mode="json"),
        }
        for d in items
    ]


def _decision_table(title: str, items: list[Decision]) -> None:
    table(
        title,
        ["time", "model", "deployment", "kind", "actor", "summary"],
        [(fmt_ms(d.at_ms), d.model, d.deployment, d.kind, d.actor, d.summary) for d in items],
    )


@deploy_app.command("decisions")
def deployment_decisions(
    name: str = typer.Argument(..., help="Deployment name."),
    limit: int = typer.Option(50, min=1, max=10_000, help="How many, newest first."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """A deployment's decision records: every evaluation, step, promotion and rollback.

    Example: keel deploy decisions churn-live --json
    """
    items = run_cli(lambda: make_client(server, token).deployment_decisions(name, limit))
    emit(_records(items), as_json, lambda: _decision_table(f"decisions of {name}", items))


def _register_checks() -> None:
    # recommend, drill, debug, holdout, replay, report: their own modules (< 400 lines)
    from keel.cli.deploy_checks import register
    from keel.cli.deploy_replay import register as register_replay
    from keel.cli.deploy_report import register as register_report

    register(deploy_app)
    register_replay(deploy_app)
    register_report(deploy_app)


_register_checks()
