"""Fixtures of the security suite: a live server with KEEL_AUTH=on and one token per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.auth.models import Role
from keel.config import Settings
from keel.services import Services, open_services


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    """The ``settings`` fixture (SQLite and PostgreSQL) with authentication on."""
    return settings.model_copy(update={"auth": "on"})


@pytest.fixture
def auth_services(auth_settings: Settings) -> Iterator[Services]:
    svc = open_services(auth_settings)
    yield svc
    svc.close()


@dataclass
class AuthServer:
    url: str
    services: Services
    tokens: dict[str, str]  # role name (and "owner", "stranger") -> bearer token

    def headers(self, who: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[who]}"} if who else {}


@pytest.fixture
def auth_server(auth_services: Services) -> Iterator[AuthServer]:
    """A live server with auth on; users ``viewer``/``editor``/``deployer``/``admin``."""
    tokens = {"admin": auth_services.auth.create_admin("admin").token}
    for role in (Role.VIEWER, Role.EDITOR, Role.DEPLOYER):
        auth_services.auth.create_user(role.value, role, teams=[f"team-{role.value}"])
        tokens[role.value] = auth_services.auth.create_token(role.value).token
    with serve_in_thread(create_app(services=auth_services)) as url:
        yield AuthServer(url, auth_services, tokens)


def register_versions(settings: Settings, name: str, count: int, owner: str | None = None) -> None:
    """Register ``count`` versions of a tiny scikit-learn model as ``name`` (embedded SDK)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from keel.client import Client

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    with Client(settings=settings) as client:
        client.create_model(name, owner=owner)
        with client.start_run(experiment="security") as run:
            for n in range(count):
                run.log_model(model, f"m{n}", registered_name=name)
