"""``keel deploy replay``: re-score a deployment's logged requests (and, with ``--synthetic``,
generated rows) with candidate versions before any live traffic is risked (R-TRK-11).
Registered on ``keel deploy`` by :func:`register`."""

from __future__ import annotations

from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, as_option, console, emit, run_cli, table
from keel.cli._synthetic_output import synthetic_table
from keel.errors import InvalidInput

__all__ = ["register"]


def _version_list(text: str) -> list[int]:
    """``3,4`` as [3, 4]; InvalidInput naming ``--versions`` otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise InvalidInput(
            f"--versions: expected version numbers separated by commas (3,4); got {text!r}",
            field="--versions",
        )
    return [int(p) for p in parts]


#: SDK argument → the option that sets it, so an error names what the user typed.
_OPTIONS = {name: f"--{name}" for name in ("versions", "since", "limit", "synthetic", "seed")}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _replay_table(report: dict[str, Any]) -> None:
    console.print(
        f"[bold]{report['deployment']}[/] replayed {report['rows']} logged requests of model "
        f"{report['model']} since {report['since']} ({report['labelled']} labelled)"
    )
    ambiguous = report.get("ambiguous_labels") or {}
    if ambiguous.get("requests"):  # rows of one request whose labels cannot be told apart
        console.print(
            f"  {ambiguous['rows']} rows of {ambiguous['requests']} requests left unlabelled: "
            f"their labels differ and the log cannot tell their rows apart "
            f"(e.g. {', '.join(ambiguous['examples'][:3])})"
        )
    table(
        "replay",
        ["version", "agreement", "psi", "ks", "p50 ms", "p99 ms", "metrics"],
        [
            (
                f"v{v['version']}",
                _fmt(v["agreement"]),
                _fmt(v["psi"]),
                _fmt(v["ks"]),
                _fmt(v["latency_ms"]["p50"]),
                _fmt(v["latency_ms"]["p99"]),
                ", ".join(f"{k}={m:.3f}" for k, m in v["metrics"].items()) or "no labels",
            )
            for v in report["versions"]
        ],
    )
    if "synthetic" in report:
        synthetic_table(report["synthetic"])


def replay(
    name: str = typer.Argument(..., help="Deployment name."),
    versions: str = typer.Option(..., "--versions", help="Candidate versions, e.g. 3,4."),
    since: str = typer.Option(
        "7d", help="Logged requests newer than 30m / 2h / 7d / a date / epoch ms."
    ),
    limit: int | None = typer.Option(None, min=1, help="Newest N logged requests at most."),
    synthetic: int | None = typer.Option(None, help="Also N generated rows per case kind."),
    seed: int = typer.Option(0, help="Seed of the synthetic rows."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Re-score the deployment's logged requests with candidate versions (changes nothing):
    agreement, PSI/KS of the scores, latency p50/p99, metrics where labels exist. With
    --synthetic N, every version also scores N generated rows per case kind (marginal
    samples, edge values, missing, out-of-range, unseen category): errors, agreement, PSI/KS.

    Example: keel deploy replay churn-live --versions 3,4 --since 7d --synthetic 500
    """

    def run() -> dict[str, Any]:
        chosen = _version_list(versions)
        start: str | int = int(since) if since.isdigit() else since  # epoch ms
        try:
            return make_client(server, token).replay_deployment(
                name, chosen, start, limit, synthetic, seed
            )
        except InvalidInput as error:
            raise as_option(error, _OPTIONS) from None

    report = run_cli(run)
    emit(report, as_json, lambda: _replay_table(report))


def register(app: typer.Typer) -> None:
    """Add ``replay`` to ``keel deploy``."""
    app.command("replay")(replay)
