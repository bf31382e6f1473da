"""What a response reports is committed before the client gets it: the next request sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from eth_account.messages import encode_defunct
from sqlalchemy.orm import Session

from tests.conftest import Actors
from tests.coordinator.conftest import LiveService


def test_the_next_request_sees_what_the_last_response_reported(live_service: LiveService, actors: Actors,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    db = live_service.services.db
    commit_now = db.session

    @contextmanager
    def slow_commit() -> Iterator[Session]:
        with commit_now() as session:
            yield session
            time.sleep(0.5)  # the commit follows, as the block ends: a client must not be answered before it

    monkeypatch.setattr(db, "session", slow_commit)
    patient = actors.patients[0]
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        message = client.post("/v1/auth/challenge", json={"address": patient.address}).json()["message"]
        signature = patient.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        session = client.post("/v1/auth/sign-in", json={"message": message, "signature": signature})
        assert session.status_code == 201, session.text  # the challenge's nonce was committed
        me = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {session.json()['token']}"})
    assert me.status_code == 200, me.text  # so was the session
