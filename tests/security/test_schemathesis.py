"""Fuzz the live API from its own OpenAPI document (schemathesis 4, bounded examples).

Every operation gets generated requests; the response must never be a 5xx and
must match the documented status codes, content types and schemas. The server
runs with ``KEEL_AUTH=on`` and an admin token, so authentication, authorization
and audit are on the fuzzed path too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.conftest import postgres_schema, serve_in_thread

from keel.api import create_app
from keel.config import Settings
from keel.services import open_services

pytestmark = pytest.mark.slow

#: Examples per operation; ~40 operations × this stays under a minute on 2 cores.
EXAMPLES = int(os.environ.get("KEEL_TEST_FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A live server over each backend: PostgreSQL's 32-bit INTEGER columns refuse numbers
    SQLite stores, so an unbounded input is a 5xx there only (issue: version 2**40)."""
    home = tmp_path_factory.mktemp("fuzz") / "keel"
    with ExitStack() as stack:
        database_url = None
        if request.param == "postgres":
            postgres_url = request.getfixturevalue("postgres_url")
            database_url = stack.enter_context(postgres_schema(postgres_url))
        services = open_services(Settings(home=home, auth="on", database_url=database_url))
        stack.callback(services.close)
        token = services.auth.create_admin("fuzzer").token
        yield stack.enter_context(serve_in_thread(create_app(services=services))), token


def test_api_survives_schemathesis(fuzz_target: tuple[str, str]) -> None:
    url, token = fuzz_target
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"authorization": f"Bearer {token}"}
    failures: list[str] = []
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)

        try:
            run()
        except (
            Exception,
            BaseExceptionGroup,
        ) as error:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {str(error)[:1500]}")
    print(f"\nschemathesis: {len(operations)} operations, {time.monotonic() - started:.1f} s")
    assert failures == [], "\n\n".join(failures)
