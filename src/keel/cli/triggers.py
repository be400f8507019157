"""``keel triggers``: apply, list, show and evaluate retraining triggers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table

if TYPE_CHECKING:
    from keel.automation.triggers.models import Trigger

triggers_app = typer.Typer(
    help="Retraining triggers: when to retrain a model, and what each evaluation saw.\n\n"
    "Example: keel triggers apply -f churn-triggers.yaml",
    no_args_is_help=True,
)


@triggers_app.command("apply")
def apply_trigger(
    file: Path = typer.Option(..., "-f", "--file", help="The trigger's YAML or JSON file."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create or replace a trigger from a YAML/JSON file (exit 2 naming a bad key).

    Example: keel triggers apply -f churn-triggers.yaml
    """

    def read() -> str:
        from keel.errors import InvalidInput

        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(
                f"--file: cannot read {file}: {exc.strerror}", field="file"
            ) from None

    trigger: Trigger = run_cli(lambda: make_client(server, token).apply_trigger(read()))
    emit(
        trigger.model_dump(mode="json"),
        as_json,
        lambda: console.print(f"trigger {trigger.name} applied (model {trigger.model})"),
    )


@triggers_app.command("list")
def list_triggers(
    model: str | None = typer.Option(None, help="Only this model's triggers."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Triggers with their last evaluation and firing.

    Example: keel triggers list --model churn
    """
    items: list[Trigger] = run_cli(lambda: make_client(server, token).list_triggers(model))
    rows: list[list[Any]] = [
        [
            t.name,
            t.model,
            f"{t.combine} of {len(t.conditions)}",
            t.cooldown,
            t.enabled,
            fmt_ms(t.last_evaluated_at_ms),
            fmt_ms(t.last_fired_at_ms),
        ]
        for t in items
    ]
    columns = ["name", "model", "conditions", "cooldown", "enabled", "evaluated", "fired"]
    emit(
        [t.model_dump(mode="json") for t in items],
        as_json,
        lambda: table("triggers", columns, rows),
    )


@triggers_app.command("show")
def show_trigger(
    name: str = typer.Argument(..., help="The trigger's name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """One trigger: its conditions, cooldown, prerequisites, last evaluation and firing.

    Example: keel triggers show churn-retrain
    """
    trigger: Trigger = run_cli(lambda: make_client(server, token).get_trigger(name))

    def human() -> None:
        console.print(f"{trigger.name} (model {trigger.model}, version {trigger.version})")
        console.print(f"fires on {trigger.combine} of:")
        for path, cond in trigger.leaves():
            keys = cond.model_dump(exclude_none=True, exclude={"min_labels", "min_samples"})
            console.print(f"  {path}: {keys}", soft_wrap=True, markup=False)
        console.print(f"cooldown {trigger.cooldown}, min_interval {trigger.min_interval}")
        needs = trigger.prerequisites.model_dump(exclude_none=True)
        console.print(f"prerequisites: {needs}", soft_wrap=True, markup=False)
        if trigger.timing is not None:
            timing = trigger.timing.model_dump(exclude_none=True)
            console.print(f"timing: {timing}", soft_wrap=True, markup=False)
        console.print(
            f"last evaluated {fmt_ms(trigger.last_evaluated_at_ms)}, "
            f"last fired {fmt_ms(trigger.last_fired_at_ms)} (job {trigger.last_job_id or '-'})"
        )

    emit(trigger.model_dump(mode="json"), as_json, human)


@triggers_app.command("evaluate")
def evaluate_trigger(
    name: str = typer.Argument(..., help="The trigger's name."),
    manual: bool = typer.Option(False, "--manual", help="Make its `manual` condition true."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Evaluate a trigger now; the evaluation is recorded in the decision log.

    Example: keel triggers evaluate churn-retrain --json
    """
    result: dict[str, Any] = run_cli(
        lambda: make_client(server, token).evaluate_trigger(name, manual=manual)
    )

    def human() -> None:
        rows = [
            [c["path"], c["metric"], c["value"], c["threshold"], c["met"], c["reason"]]
            for c in result["conditions"]
        ]
        table(name, ["condition", "metric", "value", "threshold", "met", "reason"], rows)
        console.print(result["reason"], markup=False)
        if result.get("job_id"):
            console.print(f"job {result['job_id']}")

    emit(result, as_json, human)


@triggers_app.command("fire")
def fire_trigger(
    name: str = typer.Argument(..., help="The trigger's name."),
    commit: str | None = typer.Option(None, "--commit", help="The commit CI built (hex)."),
    actor: str | None = typer.Option(None, "--actor", help="Who asks (default: the caller)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Fire from CI on a commit: manual conditions are met, code conditions compare the
    commit; recorded on the evaluation and the retraining run (exit 2 on a bad commit).

    Example: keel triggers fire churn-ci --commit 3fb19f3 --actor ci --json
    """
    result: dict[str, Any] = run_cli(
        lambda: make_client(server, token).fire_trigger(name, commit=commit, actor=actor)
    )

    def human() -> None:
        console.print(result["reason"], markup=False)
        if result.get("job_id"):
            console.print(f"job {result['job_id']}")

    emit(result, as_json, human)


def _register_presets() -> None:
    # the presets live in their own module (R-TRN-07/08 data, no client needed)
    from keel.cli.trigger_presets import preset_app

    triggers_app.add_typer(preset_app, name="preset")


_register_presets()
