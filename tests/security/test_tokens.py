"""API tokens: random, shown once, stored as argon2 hashes, with expiry, revocation, cache."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from keel.auth.guard import VerificationGuard
from keel.auth.models import Role
from keel.auth.service import AuthService
from keel.auth.tokens import split_token
from keel.errors import (
    Conflict,
    InvalidInput,
    KeelError,
    NotFound,
    RateLimited,
    Unauthorized,
)
from keel.services import Services
from keel.store.sql.auth import AuthSql
from keel.store.sql.tables_auth import ApiTokenRow


def test_token_format_has_public_id_and_is_random(auth_services: Services) -> None:
    auth_services.auth.create_user("u", Role.EDITOR)
    first = auth_services.auth.create_token("u")
    second = auth_services.auth.create_token("u")
    assert first.token != second.token and first.id != second.id
    assert split_token(first.token) == (first.id, first.token.split("_", 2)[2])
    assert len(first.token.split("_", 2)[2]) == 43  # 256 random bits


def test_token_secret_is_stored_only_as_argon2_hash(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    created = auth_services.auth.create_token("u")
    secret = created.token.split("_", 2)[2]
    with auth_services.store.read() as s:
        stored = s.scalar(select(ApiTokenRow.secret_hash).where(ApiTokenRow.id == created.id))
    assert stored is not None and stored.startswith("$argon2id$") and secret not in stored
    assert all(not hasattr(t, "token") for t in auth_services.auth.list_tokens("u"))


def test_authenticate_returns_the_users_principal(auth_services: Services) -> None:
    auth_services.auth.create_user("dana", Role.DEPLOYER, teams=["growth"])
    created = auth_services.auth.create_token("dana")
    principal = auth_services.auth.authenticate(created.token)
    assert (principal.name, principal.role, principal.teams) == ("dana", Role.DEPLOYER, ["growth"])
    assert principal.token_id == created.id


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: "keel_0000000000000000_" + t.split("_", 2)[2],  # unknown id
        lambda t: "Bearer " + t,
        lambda t: "",
    ],
    ids=["wrong-secret", "unknown-id", "malformed", "empty"],
)
def test_authenticate_rejects_bad_tokens(auth_services: Services, mangle) -> None:  # type: ignore[no-untyped-def]
    auth_services.auth.create_user("u")
    token = auth_services.auth.create_token("u").token
    with pytest.raises(Unauthorized):
        auth_services.auth.authenticate(mangle(token))


def test_revoked_token_fails_at_once_in_this_process(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    created = auth_services.auth.create_token("u")
    auth_services.auth.authenticate(created.token)  # now cached
    auth_services.auth.revoke_token(created.id)
    with pytest.raises(Unauthorized, match="revoked"):
        auth_services.auth.authenticate(created.token)


def test_revocation_elsewhere_takes_effect_within_the_cache_ttl(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    created = auth_services.auth.create_token("u")
    replica = AuthService(AuthSql(auth_services.store.engine), enabled=True, cache_ttl_s=0.3)
    replica.authenticate(created.token)
    auth_services.auth.revoke_token(created.id)  # "another process"
    assert replica.authenticate(created.token).name == "u"  # the documented lag
    time.sleep(0.35)
    with pytest.raises(Unauthorized, match="revoked"):
        replica.authenticate(created.token)
    replica.close()


def test_expired_token_is_rejected(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    created = auth_services.auth.create_token("u", expires_in_days=1)
    assert created.expires_at_ms is not None
    with auth_services.store.write() as s:
        s.get(ApiTokenRow, created.id).expires_at_ms = 1  # type: ignore[union-attr]
    with pytest.raises(Unauthorized, match="expired"):
        auth_services.auth.authenticate(created.token)


def test_disabled_user_tokens_stop_working(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    token = auth_services.auth.create_token("u").token
    auth_services.auth.authenticate(token)
    auth_services.auth.set_active("u", False)
    with pytest.raises(Unauthorized, match="disabled"):
        auth_services.auth.authenticate(token)
    with pytest.raises(Conflict, match="disabled"):
        auth_services.auth.create_token("u")


def test_create_admin_only_bootstraps_once(auth_services: Services) -> None:
    first = auth_services.auth.create_admin("root")
    assert auth_services.auth.authenticate(first.token).role is Role.ADMIN
    with pytest.raises(Conflict, match="admin already exists"):
        auth_services.auth.create_admin("other")


def test_last_active_admin_cannot_be_disabled_or_demoted(auth_services: Services) -> None:
    auth_services.auth.create_admin("root")
    with pytest.raises(Conflict, match="last active admin"):
        auth_services.auth.set_active("root", False)
    with pytest.raises(Conflict, match="last active admin"):
        auth_services.auth.update_user("root", role=Role.EDITOR)
    auth_services.auth.create_user("second", Role.ADMIN)
    assert auth_services.auth.set_active("root", False).is_active is False


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda a: a.create_user("x", "superuser"), "role"),
        (lambda a: a.create_user("bad/name"), "name"),
        (lambda a: a.create_token("nobody"), "user"),
        (lambda a: a.create_token("admin", expires_in_days=0), "expires_in_days"),
    ],
)
def test_bad_input_names_the_field(auth_services: Services, call, field: str) -> None:  # type: ignore[no-untyped-def]
    auth_services.auth.create_user("admin", Role.ADMIN)
    with pytest.raises((InvalidInput, NotFound)) as caught:
        call(auth_services.auth)
    assert caught.value.field == field


# ---- bounds on failed checks (#15.3) ----------------------------------------------------


def _guarded(services: Services, **limits: Any) -> AuthService:
    return AuthService(services.auth.store, enabled=True, guard=VerificationGuard(**limits))


def _wrong(token: str) -> str:
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def test_failures_per_token_id_are_throttled_before_hashing(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    real = auth_services.auth.create_token("u").token
    auth = _guarded(auth_services, per_token="3/minute", per_client="1000/minute")
    assert auth.authenticate(real, "10.0.0.9").name == "u"  # its holder verified once
    for i in range(3):
        with pytest.raises(Unauthorized):
            auth.authenticate(f"{real[:-4]}x{i:03d}", f"10.0.0.{i}")
    with pytest.raises(RateLimited) as refused:
        auth.authenticate(f"{real[:-4]}zzzz", "10.0.0.7")
    assert refused.value.detail["retry_after_s"] >= 1
    auth.cache.drop()  # the success cache expired: the real secret still gets through
    assert auth.authenticate(real, "10.0.0.9").name == "u"
    other = auth_services.auth.create_token("u").token
    assert auth.authenticate(other, "10.0.0.7").name == "u"  # another id has its own budget


def test_failures_per_client_are_throttled(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    tokens = [auth_services.auth.create_token("u").token for _ in range(3)]
    auth = _guarded(auth_services, per_token="100/minute", per_client="2/minute")
    for token in tokens[:2]:
        with pytest.raises(Unauthorized):
            auth.authenticate(_wrong(token), "192.0.2.1")
    with pytest.raises(RateLimited):
        auth.authenticate(_wrong(tokens[2]), "192.0.2.1")
    with pytest.raises(Unauthorized):  # another client is not refused for it
        auth.authenticate(_wrong(tokens[2]), "192.0.2.2")


def test_a_repeated_wrong_token_is_not_hashed_again(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    wrong = _wrong(auth_services.auth.create_token("u").token)
    auth = _guarded(auth_services, per_token="100/minute", per_client="100/minute")
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        with pytest.raises(Unauthorized, match="invalid API token"):
            auth.authenticate(wrong, "192.0.2.1")
        timings.append(time.perf_counter() - start)
    # argon2 takes tens of ms; a cached failure takes microseconds
    assert max(timings[1:]) < timings[0] / 5, timings


def test_argon2_checks_run_a_bounded_number_at_once(auth_services: Services) -> None:
    auth_services.auth.create_user("u")
    tokens = [auth_services.auth.create_token("u").token for _ in range(12)]
    auth = _guarded(
        auth_services,
        per_token="100/minute",
        per_client="1000/minute",
        max_parallel=1,
        slot_wait_s=0.01,
    )
    outcomes: list[str] = []

    def attempt(token: str) -> None:
        try:
            auth.authenticate(_wrong(token), "192.0.2.1")
        except KeelError as error:
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=attempt, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # one check at a time and one waiting: the others are turned away with 503
    assert "Unavailable" in outcomes and set(outcomes) <= {"Unauthorized", "Unavailable"}
    auth.close()
