"""Who may apply and evaluate triggers: deployer, and a member of the model's owning team
(a firing starts a retraining that may roll out, as a deployment does)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.automation.triggerdata import recording_retrain_kind
from tests.security.conftest import AuthServer, register_versions

from keel.auth.models import Role

SPEC = {"name": "owned-hand", "model": "owned", "any": [{"metric": "manual"}]}


@pytest.fixture
def tokens(auth_server: AuthServer) -> Iterator[dict[str, str]]:
    services = auth_server.services
    with recording_retrain_kind():  # authorization, not the retrain section, is under test here
        register_versions(services.settings, "owned", 1, owner="team-growth")
        services.auth.create_user("grower", Role.DEPLOYER, teams=["team-growth"])
        yield dict(auth_server.tokens, grower=services.auth.create_token("grower").token)


@pytest.mark.parametrize(
    ("who", "status"),
    [("viewer", 403), ("editor", 403), ("deployer", 403), ("grower", 200), ("admin", 200)],
)
def test_apply_needs_deployer_and_ownership(
    auth_server: AuthServer, tokens: dict[str, str], who: str, status: int
) -> None:
    headers = {"authorization": f"Bearer {tokens[who]}"}
    answer = httpx.post(f"{auth_server.url}/v1/triggers", json=SPEC, headers=headers)
    assert answer.status_code == status, answer.text
    stored = auth_server.services.triggers.list_triggers()
    assert len(stored) == (1 if status == 200 else 0)


@pytest.mark.parametrize(("who", "status"), [("deployer", 403), ("grower", 200), ("viewer", 403)])
def test_evaluate_needs_ownership_of_the_triggers_model(
    auth_server: AuthServer, tokens: dict[str, str], who: str, status: int
) -> None:
    auth_server.services.triggers.apply(SPEC)
    headers = {"authorization": f"Bearer {tokens[who]}"}
    url = f"{auth_server.url}/v1/triggers/owned-hand/evaluate"
    answer = httpx.post(url, json={"manual": False}, headers=headers)
    assert answer.status_code == status, answer.text
    listed = httpx.get(f"{auth_server.url}/v1/triggers", headers=headers)
    assert listed.status_code == 200  # reading is a viewer's right
