"""Build and start the gateway of a process (called by the API's lifespan)."""

from __future__ import annotations

import logging

from keel.config import Settings
from keel.registry.service import RegistryService
from keel.serving.deployroutes import DeploymentReader
from keel.serving.enrich import OnlineFeatureSource
from keel.serving.gateway import Gateway, PredictionSink

__all__ = ["open_prediction_log", "start_gateway"]

log = logging.getLogger("keel.serving")


def open_prediction_log(settings: Settings) -> PredictionSink | None:
    """The durable prediction log of ``settings`` (None if it cannot be opened, logged)."""
    from keel.serving.predlog import PredictionLog

    try:
        return PredictionLog.from_settings(settings)
    except Exception as exc:  # serving goes on without the log; the operator sees why
        log.error("prediction log unavailable, predictions are not logged: %r", exc)
        return None


async def start_gateway(
    settings: Settings,
    registry: RegistryService,
    *,
    prediction_log: PredictionSink | None = None,
    features: OnlineFeatureSource | None = None,
    deployments: DeploymentReader | None = None,
) -> Gateway:
    """A started gateway: preloaded, warmed up and ready; the log defaults to the settings'.

    ``features`` (a :class:`keel.features.FeatureStore`) feeds online features to the
    models its feature services name (see :mod:`keel.serving.enrich`); ``deployments``
    (the deployment service) gives the routes of ``/v1/deployments/{name}/predict``.
    """
    sink = prediction_log if prediction_log is not None else open_prediction_log(settings)
    gateway = Gateway(
        settings, registry, prediction_log=sink, features=features, deployments=deployments
    )
    await gateway.start()
    return gateway
