"""Ownership of a model covers every write under it, and only its members may name owners.

Issue #15 item 2: an editor outside the owning team could archive a version, register
new versions into the model, and claim an unowned model or hand it to a team he is
not in. The matrix is generated from ``app.routes``: a write route added later under
``/v1/models/{name}`` must be listed in ``_bodies`` and gets checked for every caller.
"""

from __future__ import annotations

import io

import httpx
import pytest
from tests.security.conftest import AuthServer, register_versions

from keel.api import create_app
from keel.api.authz import iter_routes, rule_for
from keel.auth.models import Role
from keel.automation.gates.record import EXPERIMENT, REPORT_JSON
from keel.automation.gates.result import ValidationReport, judged
from keel.services import Services

_MODEL = "owned"


def _validation_run(services: Services) -> str:
    """A ``keel validate`` run of version 1 holding its report (what the SDK keeps)."""
    uri = f"models:/{_MODEL}/1"
    report = ValidationReport(uri, None, 10, "y", [judged("floor", True, "ok", 0.8, 0.5)])
    tracking = services.tracking
    run = tracking.create_run(EXPERIMENT, tags={"keel.validation.model": uri})
    tracking.log_artifact_stream(run.id, REPORT_JSON, io.BytesIO(report.to_json().encode()))
    tracking.end_run(run.id)
    return run.id


def _bodies(run_id: str, validation: str) -> dict[tuple[str, str], dict[str, object] | None]:
    """A valid body for each write under a model, in an order that lets each succeed."""
    return {
        ("PATCH", "/v1/models/{name}"): {"description": "changed"},
        ("POST", "/v1/models/{name}/versions"): {"run_id": run_id, "artifact_path": "m0"},
        ("PATCH", "/v1/models/{name}/versions/{version}"): {"status": "DEPRECATED"},
        ("PUT", "/v1/models/{name}/aliases/{alias}"): {"version": 1},
        ("DELETE", "/v1/models/{name}/aliases/{alias}"): None,
        # after the deletes: no champion left, so the version can be approved and rejected
        ("POST", "/v1/models/{name}/versions/{version}/approve"): {"reason": "checked"},
        ("POST", "/v1/models/{name}/versions/{version}/reject"): {"reason": "second look"},
        ("POST", "/v1/models/{name}/versions/{version}/validations"): {"run_id": validation},
        ("PUT", "/v1/models/{name}/signals"): {"watched": 1},
        ("PUT", "/v1/models/{name}/exploration"): {"share": 0.1, "action": 1},
        ("DELETE", "/v1/models/{name}/exploration"): None,
    }


def _path(template: str) -> str:
    return template.format(name=_MODEL, version=1, alias="champion")


@pytest.fixture
def owned(auth_server: AuthServer) -> dict[str, str]:
    """Model ``owned`` of team-growth with one version; tokens for a member and a stranger."""
    services = auth_server.services
    register_versions(services.settings, _MODEL, 1, owner="team-growth")
    services.auth.create_user("grower", Role.DEPLOYER, teams=["team-growth"])
    tokens = dict(auth_server.tokens, grower=services.auth.create_token("grower").token)
    return tokens


def test_every_write_under_a_model_needs_its_ownership(
    auth_server: AuthServer, owned: dict[str, str]
) -> None:
    services = auth_server.services
    run_id = services.registry.get_version(_MODEL, 1).run_id
    assert run_id is not None
    bodies = _bodies(run_id, _validation_run(services))
    writes = [
        (method, template)
        for method, _, template in iter_routes(create_app(services.settings).routes)
        if (rule := rule_for(method, template)) is not None and rule.owned == "name"
    ]
    assert sorted(writes) == sorted(bodies), "a write under a model needs a body here"
    wrong = []
    with httpx.Client(base_url=auth_server.url, timeout=30) as http:
        for method, template in bodies:  # in order: the alias is set before it is deleted
            rule = rule_for(method, template)
            assert rule is not None
            for who in ("viewer", "editor", "deployer", "grower", "admin"):
                role = Role.DEPLOYER if who == "grower" else Role(who)
                if not role.allows(rule.role):
                    expected = 403
                else:
                    expected = 403 if who in ("editor", "deployer") else 200
                if method == "DELETE":  # each caller finds an alias to delete
                    services.registry.set_alias(_MODEL, "champion", 1)
                response = http.request(
                    method,
                    _path(template),
                    json=bodies[(method, template)],
                    headers={"authorization": f"Bearer {owned[who]}"},
                )
                got = 200 if response.status_code in (200, 201) else response.status_code
                if got != expected:
                    wrong.append(f"{who} {method} {template}: {response.status_code}")
    assert wrong == []
    # nothing a stranger sent landed: the members' and the admin's writes did
    assert [v.version for v in services.registry.list_versions(_MODEL)] == [3, 2, 1]


def test_strangers_cannot_archive_or_register_into_an_owned_model(
    auth_server: AuthServer, owned: dict[str, str]
) -> None:
    run_id = auth_server.services.registry.get_version(_MODEL, 1).run_id
    editor = auth_server.headers("editor")
    archive = httpx.patch(
        f"{auth_server.url}/v1/models/{_MODEL}/versions/1",
        json={"status": "ARCHIVED"},
        headers=editor,
    )
    register = httpx.post(
        f"{auth_server.url}/v1/models/{_MODEL}/versions",
        json={"run_id": run_id, "artifact_path": "m0"},
        headers=editor,
    )
    assert archive.status_code == register.status_code == 403
    assert "owned by 'team-growth'" in archive.json()["error"]["message"]
    assert auth_server.services.registry.get_version(_MODEL, 1).status.value == "ACTIVE"
    assert len(auth_server.services.registry.list_versions(_MODEL)) == 1


@pytest.mark.parametrize(
    ("who", "owner", "status"),
    [
        ("editor", "team-growth", 403),  # a team he is not in
        ("editor", "someone-else", 403),
        ("editor", "team-editor", 201),  # his own team
        ("editor", "editor", 201),  # himself
        ("admin", "team-growth", 201),
    ],
)
def test_only_members_or_admins_create_a_model_with_an_owner(
    auth_server: AuthServer, who: str, owner: str, status: int
) -> None:
    response = httpx.post(
        f"{auth_server.url}/v1/models",
        json={"name": "fresh", "owner": owner},
        headers=auth_server.headers(who),
    )
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["field"] == "owner"
        with pytest.raises(Exception, match="fresh"):
            auth_server.services.registry.get_model("fresh")


def test_an_editor_cannot_claim_an_unowned_model(auth_server: AuthServer) -> None:
    auth_server.services.registry.create_model("shared")
    url = f"{auth_server.url}/v1/models/shared"
    claim = httpx.patch(url, json={"owner": "editor"}, headers=auth_server.headers("editor"))
    assert claim.status_code == 403, claim.text
    assert "only an admin" in claim.json()["error"]["message"]
    assert auth_server.services.registry.get_model("shared").owner is None
    # other changes of an unowned model stay open to editors; an admin assigns owners
    edit = httpx.patch(url, json={"description": "d"}, headers=auth_server.headers("editor"))
    assert edit.status_code == 200
    assign = httpx.patch(url, json={"owner": "team-x"}, headers=auth_server.headers("admin"))
    assert assign.status_code == 200 and assign.json()["owner"] == "team-x"


def test_an_owner_hands_a_model_only_to_a_team_he_is_in(
    auth_server: AuthServer, owned: dict[str, str]
) -> None:
    url = f"{auth_server.url}/v1/models/{_MODEL}"
    grower = {"authorization": f"Bearer {owned['grower']}"}
    away = httpx.patch(url, json={"owner": "team-editor"}, headers=grower)
    assert away.status_code == 403 and away.json()["error"]["field"] == "owner"
    same = httpx.patch(url, json={"owner": "team-growth"}, headers=grower)
    assert same.status_code == 200
    to_self = httpx.patch(url, json={"owner": "grower"}, headers=grower)
    assert to_self.status_code == 200 and to_self.json()["owner"] == "grower"
