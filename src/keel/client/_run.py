"""``ActiveRun``: the handle ``Client.start_run`` returns, usable as a context manager."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError
from keel.tracking.models import ArtifactFile, Run, RunStatus

if TYPE_CHECKING:
    from keel.client._client import Client
    from keel.registry.models import ModelVersion

__all__ = ["ActiveRun", "active_run"]

_ACTIVE: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar("keel_run", default=None)


def active_run() -> ActiveRun:
    """The run of the innermost ``with client.start_run(...)`` block."""
    run = _ACTIVE.get()
    if run is None:
        raise KeelError("no active run: use `with client.start_run(...) as run:`")
    return run


class ActiveRun:
    """A running run. Leaving its ``with`` block ends it: FINISHED, or FAILED on an
    exception, or KILLED on Ctrl-C."""

    def __init__(self, client: Client, run: Run) -> None:
        self.client = client
        self.id = run.id
        self._initial = run
        self._token: contextvars.Token[ActiveRun | None] | None = None

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r})"

    @property
    def info(self) -> Run:
        """The run as stored now (params, latest metrics, tags, inputs)."""
        return self.client.get_run(self.id)

    def reproducibility(self) -> dict[str, Any]:
        """``{"reproducible", "missing", "key"}`` of the run as stored now (see ``Run``)."""
        return self.info.reproducibility()

    def __enter__(self) -> ActiveRun:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        self.client.transport.finish_run(self.id, status.value)

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        """End the run (FINISHED, FAILED or KILLED)."""
        return self.client.end_run(self.id, status)

    def log_param(self, key: str, value: object) -> None:
        """Log one param (immutable: a different value later raises Conflict)."""
        self.client.log_params(self.id, {key: value})

    def log_params(self, params: Mapping[str, object]) -> None:
        """Log several params in one call."""
        self.client.log_params(self.id, params)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Log one metric value."""
        self.client.log_metric(self.id, key, value, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log several metrics at one step in one transaction."""
        self.client.log_metrics(self.id, metrics, step=step)

    def set_tag(self, key: str, value: str) -> None:
        """Set one tag (tags may change)."""
        self.client.set_tags(self.id, {key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set several tags."""
        self.client.set_tags(self.id, tags)

    def log_artifact(
        self, local_path: str | Path, artifact_path: str | None = None
    ) -> list[ArtifactFile]:
        """Store a file or a directory under the run."""
        return self.client.log_artifact(self.id, local_path, artifact_path)

    def log_input(self, data: Any, name: str, context: str = "training", **kwargs: Any) -> Run:
        """Record the dataset (DataFrame or file) this run read; see :meth:`Client.log_input`."""
        return self.client.log_input(self.id, data, name, context=context, **kwargs)

    def log_model(
        self,
        model: object,
        artifact_path: str = "model",
        *,
        registered_name: str | None = None,
        input_example: Any = None,
        signature: dict[str, Any] | None = None,
        flavor: str | None = None,
        description: str | None = None,
        parents: Sequence[str] = (),
    ) -> ModelVersion | list[ArtifactFile]:
        """Save the model under the run; register a new version when ``registered_name`` is set."""
        return self.client.log_model(
            self.id,
            model,
            artifact_path,
            registered_name=registered_name,
            input_example=input_example,
            signature=signature,
            flavor=flavor,
            description=description,
            parents=parents,
        )
