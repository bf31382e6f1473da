"""Schemathesis against the service's own OpenAPI schema: no request it can make gets a 5xx, and every
response matches the schema (status, content type, body), for an anonymous caller and a signed-in one.

The examples are bounded (``MAX_EXAMPLES`` per operation and caller, derandomized) so that the run
takes a few tens of seconds. Each operation's cases come from Schemathesis' Hypothesis strategy for
it and are sent to the app in process; every check Schemathesis runs by default applies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from contracts.exchange import Exchange
from coordinator.main import create_app
from tests.conftest import Actors
from tests.coordinator.conftest import PUBLIC_URL, Harness, make_service

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzzed(module_exchange: Exchange, actors: Actors, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One service for the module: the cases change only what a bad request can change."""
    root = tmp_path_factory.mktemp("fuzz")
    services, settings_ = make_service(module_exchange, actors, root / "service", f"sqlite:///{root / 'fuzz.sqlite'}",
                                      sign_in_rate=1_000_000, relay_rate=1_000_000)  # the cases, not the limits
    with TestClient(create_app(services, run_relay=False), base_url=PUBLIC_URL) as client:
        yield Harness(services, client, module_exchange, settings_)
    services.close()


def _operations(fuzzed: Harness) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", fuzzed.client.app)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(fuzzed: Harness, headers: dict[str, str]) -> list[str]:
    """Run every operation's bounded cases; return the operations checked."""
    checked = []
    for operation in _operations(fuzzed):
        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers)

        run()
        checked.append(operation.label)
    return checked


def test_an_anonymous_caller_never_gets_a_server_error_and_every_answer_matches_the_schema(fuzzed: Harness) -> None:
    checked = _fuzz(fuzzed, {})
    assert "POST /v1/consents/signed" in checked
    assert len(checked) >= 20


def test_a_signed_in_researcher_never_gets_a_server_error_and_every_answer_matches_the_schema(
        fuzzed: Harness, actors: Actors) -> None:
    checked = _fuzz(fuzzed, fuzzed.bearer(actors.researcher))
    assert "POST /v1/studies/prepare" in checked
