"""``keel jobs`` and ``keel worker``: the job queue from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table

if TYPE_CHECKING:
    from keel.automation.job_models import Job, Schedule

jobs_app = typer.Typer(
    help="Queued and scheduled jobs: list, inspect, cancel.\n\nExample: keel jobs list --json",
    no_args_is_help=True,
)


@jobs_app.command("list")
def list_jobs(
    status: str | None = typer.Option(None, help="Only jobs in this status."),
    kind: str | None = typer.Option(None, help="Only jobs of this kind."),
    limit: int = typer.Option(50, help="Most jobs shown (1..1000)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Jobs, newest first.

    Example: keel jobs list --status failed
    """
    jobs: list[Job] = run_cli(
        lambda: make_client(server, token).list_jobs(status=status, kind=kind, limit=limit)
    )
    emit(
        [j.model_dump(mode="json") for j in jobs],
        as_json,
        lambda: table(
            "jobs",
            ["id", "kind", "status", "attempts", "created", "finished", "error"],
            [
                [
                    j.id,
                    j.kind,
                    j.status,
                    j.attempts,
                    fmt_ms(j.created_at_ms),
                    fmt_ms(j.finished_at_ms),
                    (j.error or "")[:60],
                ]
                for j in jobs
            ],
        ),
    )


@jobs_app.command("show")
def show_job(
    job_id: str = typer.Argument(..., help="The job's id."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """One job: status, attempts, result or error with its traceback, log lines.

    Example: keel jobs show 3f2a…
    """
    job: Job = run_cli(lambda: make_client(server, token).get_job(job_id))

    def human() -> None:
        for key in ("id", "kind", "key", "status", "attempts", "max_retries", "actor"):
            console.print(f"{key}: {getattr(job, key)}", soft_wrap=True)
        console.print(f"args: {job.args}", soft_wrap=True)
        console.print(
            f"created: {fmt_ms(job.created_at_ms)}  started: "
            f"{fmt_ms(job.started_at_ms)}  finished: {fmt_ms(job.finished_at_ms)}"
        )
        if job.result is not None:
            console.print(f"result: {job.result}", soft_wrap=True)
            if isinstance(job.result.get("stages"), dict):  # a retraining's R-CICD-12 stages
                from keel.automation.retrain.stages import stage_line

                console.print(f"stages: {stage_line(job.result['stages'])}", markup=False)
            if isinstance(job.result.get("data_validation"), dict):  # R-CICD-07's checks
                from keel.automation.retrain.validation_record import describe

                for text in describe(job.result["data_validation"]):
                    console.print(text, soft_wrap=True, markup=False)
        if job.error:
            console.print(f"error: {job.error}", soft_wrap=True, markup=False)
        if job.traceback:
            console.print(job.traceback, soft_wrap=True, markup=False)
        for line in job.logs:
            console.print(f"{fmt_ms(line.time_ms)} {line.level} {line.message}", markup=False)

    emit(job.model_dump(mode="json"), as_json, human)


@jobs_app.command("cancel")
def cancel_job(
    job_id: str = typer.Argument(..., help="The job's id."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Cancel a job that has not finished (a running attempt's outcome is discarded).

    Example: keel jobs cancel 3f2a…
    """
    job: Job = run_cli(lambda: make_client(server, token).cancel_job(job_id))
    emit(job.model_dump(mode="json"), as_json, lambda: console.print(f"{job.id} {job.status}"))


@jobs_app.command("schedules")
def list_schedules(
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Periodic schedules with their last and next firing (UTC).

    Example: keel jobs schedules --json
    """
    items: list[Schedule] = run_cli(lambda: make_client(server, token).list_schedules())
    rows: list[list[Any]] = [
        [s.name, s.kind, s.cron, s.enabled, fmt_ms(s.last_fired_at_ms), fmt_ms(s.next_fire_at_ms)]
        for s in items
    ]
    emit(
        [s.model_dump(mode="json") for s in items],
        as_json,
        lambda: table("schedules", ["name", "kind", "cron", "enabled", "last fired", "next"], rows),
    )


def worker(
    threads: int | None = typer.Option(None, help="Worker threads (default KEEL_JOBS_THREADS)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every job."),
) -> None:
    """Run queued and scheduled jobs until interrupted (any number of workers may run).

    Example: keel worker --threads 4
    """
    import logging

    from keel.automation.queue import queue_backend
    from keel.automation.worker import run_worker
    from keel.config import Settings
    from keel.services import open_services

    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # jobs log INFO into their record, not here
        handler.setLevel(level)
    settings = Settings()
    services = run_cli(lambda: open_services(settings))
    console.print(f"keel worker on the {queue_backend(settings)} queue (Ctrl-C stops)")
    try:
        run_worker(services.jobs, settings, threads)
    finally:
        services.close()


def schedule_monitor(
    name: str = typer.Argument(..., help="The monitor's name."),
    cron: str | None = typer.Option(
        None, help="5-field cron expression in UTC ('0 * * * *') or an alias ('@hourly')."
    ),
    off: bool = typer.Option(False, "--off", help="Stop running the monitor on a schedule."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Run a monitor on a cron schedule; each run is a job (`keel jobs list --kind monitor.run`).

    Without --cron, the default cadence of the monitor's fastest check (R-MON-14):
    every 15 min with feature views (freshness), else hourly (schema, outputs).

    Example: keel monitor schedule churn-weekly --cron "0 * * * *"
    """
    from keel.errors import InvalidInput

    def run() -> Schedule | None:
        if off and cron is not None:
            raise InvalidInput("give either --cron or --off", field="--cron")
        client = make_client(server, token)
        if off:
            client.unschedule_monitor(name)
            return None
        # no --cron: the default cadence of the monitor's fastest check (R-MON-14)
        return client.schedule_monitor(name, cron)

    result = run_cli(run)
    if result is None:
        emit({"monitor": name, "schedule": None}, as_json, lambda: console.print(f"{name}: off"))
        return
    emit(
        result.model_dump(mode="json"),
        as_json,
        lambda: console.print(
            f"{name}: {result.cron} (UTC), next run {fmt_ms(result.next_fire_at_ms)}"
        ),
    )
