"""``keel triggers preset list|show``: ready trigger YAML per domain and workload
(R-TRN-07, R-TRN-08; data in :mod:`keel.automation.triggers.presets`)."""

from __future__ import annotations

import typer

from keel.cli._output import JsonOption, emit, run_cli, table

preset_app = typer.Typer(
    help="Ready triggers per domain (fraud, ad-click, ...) and workload (churn, recommender, "
    "...) to edit and apply.\n\nExample: keel triggers preset show fraud --model fraud > t.yaml",
    no_args_is_help=True,
)


@preset_app.command("list")
def list_presets(as_json: bool = JsonOption) -> None:
    """The presets: name, domain or workload, source requirement, what they fire on.

    Example: keel triggers preset list
    """
    from keel.automation.triggers.presets import PRESETS

    rows = [
        {"name": p.name, "kind": p.kind, "source": p.source, "summary": p.summary}
        for p in PRESETS.values()
    ]
    emit(
        rows,
        as_json,
        lambda: table(
            "trigger presets",
            ["name", "kind", "source", "summary"],
            [tuple(r.values()) for r in rows],
        ),
    )


@preset_app.command("show")
def show_preset(
    name: str = typer.Argument(..., help="The preset's name (keel triggers preset list)."),
    model: str | None = typer.Option(None, help="The model to name instead of my-model."),
    train: str | None = typer.Option(
        None, help="The train function, 'package.module:function' (retrain.train)."
    ),
    label: str | None = typer.Option(None, help="The label column (retrain.label)."),
    as_json: bool = JsonOption,
) -> None:
    """Print a preset as trigger YAML (or JSON) ready for `keel triggers apply -f`.

    Example: keel triggers preset show churn --model churn --train mypkg.train:train
    --label churn > churn-triggers.yaml
    """
    from keel.automation.triggers.presets import get_preset, preset_yaml

    body = run_cli(lambda: get_preset(name, model, train, label))
    emit(body, as_json, lambda: typer.echo(preset_yaml(name, model, train, label), nl=False))
