"""Running job consumers: ``keel worker`` (in the foreground) and the one ``keel server``
runs in a thread."""

from __future__ import annotations

import logging

from keel.automation.jobs import JobService
from keel.automation.queue import EmbeddedConsumer, queue_backend
from keel.config import Settings

__all__ = ["run_worker", "start_embedded_worker"]

log = logging.getLogger("keel.jobs")


def start_embedded_worker(jobs: JobService, settings: Settings) -> EmbeddedConsumer | None:
    """Start a consumer in background threads unless ``KEEL_WORKER=off``; None then."""
    if settings.worker == "off":
        return None
    consumer = jobs.queue.consumer(settings.jobs_threads, embedded=True)
    assert isinstance(consumer, EmbeddedConsumer)
    consumer.start_in_background()
    log.info("job consumer started in-process (%s queue)", queue_backend(settings))
    return consumer


def run_worker(jobs: JobService, settings: Settings, threads: int | None = None) -> None:
    """Consume jobs until SIGINT/SIGTERM (graceful: running jobs finish first)."""
    consumer = jobs.queue.consumer(threads or settings.jobs_threads)
    consumer.run()
