"""Validation half of :class:`keel.Client`: run the gates on a challenger, keep the report.

The gates run here, in the caller's process, on models loaded with ``load_model`` — not on
the server: the holdout is a file on the CI runner (often too big or too private to upload),
the latency gate should time the model where it was loaded, and every existing transport
call (resolve, load, runs, artifacts, version tags) already works over both transports.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from keel.automation.gates import GatePolicy, ValidationReport
    from keel.client._client import Client
    from keel.client._transport import Transport
    from keel.registry.models import ModelVersion

__all__ = ["ValidationMixin"]


def _frame(value: pd.DataFrame | str | Path, field: str) -> pd.DataFrame:
    import pandas as pd

    from keel.monitoring.frames import read_frame

    if isinstance(value, pd.DataFrame):
        return value
    return read_frame(Path(value), field=field)


def _policy(value: GatePolicy | Mapping[str, Any] | str | Path | None) -> GatePolicy:
    from keel.automation.gates import GatePolicy, load_policy, parse_policy

    if value is None or isinstance(value, GatePolicy):
        return value or GatePolicy()
    if isinstance(value, Mapping):
        return parse_policy(value)
    return load_policy(value)


class ValidationMixin:
    """``validate_model``; mixed into :class:`keel.Client`."""

    transport: Transport

    def _client(self) -> Client:
        from keel.client._client import Client

        assert isinstance(self, Client)
        return self

    def validate_model(
        self,
        model: str,
        holdout: pd.DataFrame | str | Path,
        label: str,
        *,
        against: str | None = None,
        policy: GatePolicy | Mapping[str, Any] | str | Path | None = None,
        training: pd.DataFrame | str | Path | None = None,
        positive: Any = 1,
        record: bool = True,
    ) -> ValidationReport:
        """Run the validation gates of ``policy`` on ``model`` against ``against`` (usually
        ``models:/NAME@champion``) over ``holdout`` (a frame, or a CSV/Parquet path).

        ``training`` (features + label) enables the train/holdout gap and the skew gate.
        With ``record`` the report is stored: a run in the ``keel-validations`` experiment
        holds ``validation/report.json`` and ``.md`` and each gate's number as a metric; the
        version gets ``keel.validation.*`` tags (status, run id, failed gates); and a
        ``gate`` decision goes to the decision log. Bad input raises InvalidInput naming
        ``model``, ``against``, ``holdout``, ``label``, ``training`` or the policy key.
        """
        from keel.automation.gates import run_gates
        from keel.decisions.prevention import with_prevention

        client = self._client()
        given = _policy(policy)
        challenger_version = client.resolve(model)
        # the given policy plus the gate rules of the model's resolved incidents (R-CICD-13)
        resolutions = client.decisions(
            model=challenger_version.name, kind="resolution", limit=10_000
        )
        gate_policy = with_prevention(given, resolutions)
        champion_version = None
        if against is not None:
            try:
                champion_version = client.resolve(against)
            except InvalidInput as exc:
                raise InvalidInput(
                    exc.message.replace("model", "against", 1), field="against"
                ) from None
        frame = _frame(holdout, "holdout")
        train = None if training is None else _frame(training, "training")
        challenger = client.load_model(challenger_version.uri)
        champion = None if champion_version is None else client.load_model(champion_version.uri)
        report = run_gates(
            challenger,
            frame,
            label,
            gate_policy,
            champion=champion,
            training=train,
            challenger_name=challenger_version.uri,
            champion_name=None if champion_version is None else champion_version.uri,
            size_bytes=sum(f.size_bytes for f in challenger_version.files),
            signature=challenger_version.signature,
            positive=positive,
        )
        if record:
            self._keep_report(report, challenger_version)
        return report

    def _keep_report(self, report: ValidationReport, version: ModelVersion) -> None:
        from keel.automation.gates import to_markdown
        from keel.automation.gates.record import (
            EXPERIMENT,
            REPORT_JSON,
            REPORT_MD,
            run_metrics,
            version_tags,
        )

        tags = {
            "keel.validation.model": version.uri,
            "keel.validation.against": report.champion or "",
            "keel.validation.status": "passed" if report.passed else "failed",
        }
        client = self._client()
        run = client.start_run(
            EXPERIMENT, name=f"validate {version.uri}", tags=tags, capture_env=False
        )
        with run:
            run.log_metrics(run_metrics(report))
            with tempfile.TemporaryDirectory(prefix="keel-validation-") as tmp:
                folder = Path(tmp) / "validation"
                folder.mkdir()
                (folder / Path(REPORT_JSON).name).write_text(report.to_json(), encoding="utf-8")
                (folder / Path(REPORT_MD).name).write_text(to_markdown(report), encoding="utf-8")
                self.transport.upload_artifacts(run.id, Path(tmp), "")
        current = client.get_model_version(version.name, version.version)
        client.update_model_version(
            version.name, version.version, tags={**current.tags, **version_tags(report, run.id)}
        )
        # the decision is written where the report is read back: the server over HTTP
        self.transport.record_gate_decision(version.name, version.version, run.id)
