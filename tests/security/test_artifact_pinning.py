"""A finished run's model cannot be swapped, and a version loads only its pinned bytes.

Issue #15 item 5: an editor overwrote ``model/keel_model.json`` of another user's finished
run, and a version registered later used the replaced file.
"""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.security.conftest import AuthServer

from keel.auth.models import Role
from keel.client import Client
from keel.errors import KeelError


def _finished_run_with_model(client: Client) -> str:
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    with client.start_run(experiment="pinning") as run:
        run.log_model(model, "model")
    return run.id


def test_editor_cannot_swap_the_model_of_a_finished_run(auth_server: AuthServer) -> None:
    services = auth_server.services
    services.auth.create_user("mallory", Role.EDITOR)
    mallory = {"authorization": f"Bearer {services.auth.create_token('mallory').token}"}
    with Client(settings=services.settings) as alice:
        run_id = _finished_run_with_model(alice)
    original = {f.path: f.sha256 for f in services.tracking.list_artifacts(run_id)}
    forged = json.dumps({"flavor": "custom", "class": "antigravity:X"}).encode()
    for path in ("model/keel_model.json", "model/extra.py"):
        swap = httpx.put(
            f"{auth_server.url}/v1/runs/{run_id}/artifacts/{path}", content=forged, headers=mallory
        )
        assert swap.status_code == 409, swap.text
        assert swap.json()["error"]["code"] == "conflict"
        assert swap.json()["error"]["field"] == "run_id"
    assert {f.path: f.sha256 for f in services.tracking.list_artifacts(run_id)} == original
    # registered afterwards, the version pins the run's original files
    created = httpx.post(
        f"{auth_server.url}/v1/models/churn/versions",
        json={"run_id": run_id},
        headers=auth_server.headers("editor"),
    )
    assert created.status_code == 201, created.text
    pinned = {f["path"]: f["sha256"] for f in created.json()["files"]}
    assert pinned == {p.removeprefix("model/"): s for p, s in original.items()}
    assert created.json()["flavor"] == "sklearn"


def test_a_changed_blob_is_detected_when_a_version_loads(auth_server: AuthServer) -> None:
    services = auth_server.services
    with Client(settings=services.settings) as alice:
        run_id = _finished_run_with_model(alice)
        version = alice.register_model("churn", run_id)
    meta = next(f for f in version.files if f.path == "keel_model.json")
    blob = services.artifacts.path(meta.sha256)
    blob.write_bytes(json.dumps({"flavor": "custom", "class": "antigravity:X"}).encode())
    with Client(settings=services.settings) as client, pytest.raises(KeelError, match="sha256"):
        client.load_model("models:/churn/1")
    assert not (services.registry.cache_dir / version.content_hash).exists()
    # over HTTP the client checks the bytes it downloads against the same pinned hashes
    remote_settings = services.settings.model_copy(update={"home": services.settings.home / "r"})
    remote = Client(auth_server.url, token=auth_server.tokens["viewer"], settings=remote_settings)
    with remote, pytest.raises(KeelError, match="sha256"):
        remote.load_model("models:/churn/1")


def test_a_version_keeps_the_bytes_it_was_registered_from(auth_server: AuthServer) -> None:
    """Registered while its run still runs, a version is not changed by a later upload."""
    services = auth_server.services
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    with Client(settings=services.settings) as client:
        with client.start_run(experiment="pinning") as run:
            version = run.log_model(model, "model", registered_name="churn")
            forged = json.dumps({"flavor": "custom", "class": "antigravity:X"}).encode()
            services.tracking.log_artifact_stream(
                run.id, "model/keel_model.json", io.BytesIO(forged)
            )
        assert client.get_model_version("churn", 1).files == version.files
        loaded = client.load_model("models:/churn/1")
    assert list(loaded.predict(np.array([[0.0], [3.0]]))) == [0, 1]
