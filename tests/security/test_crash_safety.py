"""kill -9 the server mid-burst of alias moves, token creations and feedback.

Every acknowledged alias move and token must be stored after the restart, each
with its audit entry (same transaction), and nothing may be half-written: no
alias event without its audit entry, no token without its audit entry, and each
alias points where its last stored move says.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.conftest import server_process
from tests.security.conftest import register_versions

from keel.auth.models import AuditQuery, Role
from keel.config import Settings
from keel.services import open_services

pytestmark = pytest.mark.slow

ALIASES = ("champion", "challenger", "shadow")


@dataclass
class Node:
    url: str
    process: subprocess.Popen[bytes]
    home: Path
    deployer: str
    admin: str


@dataclass
class Acked:
    moves: list[tuple[str, int, str]] = field(default_factory=list)  # alias, version, reason
    tokens: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    home = tmp_path / "keel"
    settings = Settings(home=home, auth="on")
    register_versions(settings, "m", 3)
    services = open_services(settings)
    admin = services.auth.create_admin("root").token
    services.auth.create_user("dep", Role.DEPLOYER)
    deployer = services.auth.create_token("dep").token
    services.close()
    with server_process(tmp_path, KEEL_HOME=str(home), KEEL_AUTH="on") as (url, process):
        yield Node(url, process, home, deployer, admin)


def _mover(node: Node, alias: str, acked: Acked, stop: threading.Event) -> None:
    headers = {"authorization": f"Bearer {node.deployer}"}
    with httpx.Client(base_url=node.url, headers=headers, timeout=10) as http:
        for i in itertools.count():
            if stop.is_set():
                return
            version, reason = i % 3 + 1, f"{alias}-{i}"
            try:
                response = http.put(
                    f"/v1/models/m/aliases/{alias}", json={"version": version, "reason": reason}
                )
            except httpx.TransportError as exc:
                acked.cut.append(type(exc).__name__)
                return
            response.raise_for_status()
            acked.moves.append((alias, version, reason))


def _minter(node: Node, acked: Acked, stop: threading.Event) -> None:
    headers = {"authorization": f"Bearer {node.admin}"}
    with httpx.Client(base_url=node.url, headers=headers, timeout=10) as http:
        for i in itertools.count():
            if stop.is_set():
                return
            try:
                response = http.post("/v1/users/dep/tokens", json={"name": f"t{i}"})
            except httpx.TransportError as exc:
                acked.cut.append(type(exc).__name__)
                return
            response.raise_for_status()
            acked.tokens.append(response.json()["token"])


def test_alias_moves_and_tokens_survive_kill_9_mid_burst(node: Node) -> None:
    acked, stop = Acked(), threading.Event()
    threads = [threading.Thread(target=_mover, args=(node, a, acked, stop)) for a in ALIASES]
    threads.append(threading.Thread(target=_minter, args=(node, acked, stop)))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while (len(acked.moves) < 150 or len(acked.tokens) < 10) and time.monotonic() < deadline:
        time.sleep(0.005)
    node.process.kill()  # the writers are mid-request
    assert node.process.wait(timeout=10) == -9
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    print(
        f"\nacknowledged: {len(acked.moves)} alias moves, {len(acked.tokens)} tokens; "
        f"cut: {acked.cut}"
    )
    assert len(acked.moves) >= 100 and len(acked.tokens) >= 5
    assert any(name != "ConnectError" for name in acked.cut)  # killed with requests in flight

    services = open_services(Settings(home=node.home, auth="on"))
    try:
        history = services.registry.alias_history("m")
        stored = {(e.alias, e.to_version, e.reason) for e in history}
        assert set(acked.moves) <= stored  # every acknowledged move survived
        audits = services.auth.audit(AuditQuery(action="alias.set", limit=10_000))
        assert sorted((a.target, a.after["reason"]) for a in audits if a.after) == sorted(
            (f"models:/m@{e.alias}", e.reason) for e in history
        )  # one audit entry per stored move, none without its move
        model = services.registry.get_model("m")
        for alias in ALIASES:
            last = [e for e in history if e.alias == alias][-1]
            assert model.aliases[alias] == last.to_version

        for token in acked.tokens:  # every acknowledged token works after the restart
            assert services.auth.authenticate(token).name == "dep"
        token_ids = {t.id for t in services.auth.list_tokens("dep")}
        created = services.auth.audit(AuditQuery(action="token.create", limit=10_000))
        assert {e.target for e in created} >= {f"token:{i}" for i in token_ids}
        assert len(token_ids) - 1 <= len(acked.tokens) + 1  # at most one unacknowledged
    finally:
        services.close()


def _labeller(
    node: Node, worker: int, acked: list[str], cut: list[str], stop: threading.Event
) -> None:
    headers = {"authorization": f"Bearer {node.admin}"}
    with httpx.Client(base_url=node.url, headers=headers, timeout=10) as http:
        for i in itertools.count():
            if stop.is_set():
                return
            ids = [f"w{worker}-{i}-{j}" for j in range(5)]
            try:
                response = http.post(
                    "/v1/feedback", json={"items": [{"request_id": r, "label": 1} for r in ids]}
                )
            except httpx.TransportError as exc:
                cut.append(type(exc).__name__)
                return
            response.raise_for_status()
            acked.extend(ids)


def test_feedback_survives_kill_9_mid_burst(node: Node) -> None:
    acked: list[str] = []
    cut: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_labeller, args=(node, w, acked, cut, stop)) for w in range(3)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.005)
    node.process.kill()
    assert node.process.wait(timeout=10) == -9
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert len(acked) >= 100, (len(acked), cut)

    services = open_services(Settings(home=node.home, auth="on"))
    try:
        stored = services.feedback.labels()
        assert set(acked) <= set(stored["request_id"])  # every acknowledged label survived
        assert not stored["request_id"].duplicated().any()  # no batch stored twice
        # A batch is one segment: a cut request left all five labels or none.
        batches = stored["request_id"].str.rsplit("-", n=1).str[0].value_counts()
        assert (batches == 5).all()
    finally:
        services.close()
