"""A record's label is sent to the federation in a refusal's text.

``node.training.label_of`` refuses a round when a member's label is not a known class, with
``StudyRefused(f"record ... has label {raw!r}; ...")``. The ClientApp does not catch it, and Flower
sends an exception raised in a ClientApp to the SuperLink and the ServerApp as the reply's error
reason (``str(type(ex)) + ":<'" + str(ex) + "'>"``, flwr/supernode/runtime/run_clientapp.py). A label
comes from the hospital's sidecar CSV; on a bad day its column holds what another column should
(a name), and that name leaves the hospital. Data never leave the hospital host (DESIGN.md); no text
of a record should either. The ClientApp is called in-process as in tests/federated/test_client_app.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from flwr.app import Message

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from node.client_app import app
from node.datasets import register_drafts
from node.enrol import enrol, issue_challenge
from node.ingest import Ingestor, read_sidecar
from tests.conftest import NODE_PASSPHRASE
from tests.federated.conftest import TASK, Hospital, running_study
from tests.federated.test_client_app import (
    context_for,
    initial_weights,
    task_identity,  # noqa: F401  (autouse: Flower's identity)
    train_message,
)

NAME = "DOE^JOHN MRKZQX"  # a patient name where the sidecar's label belongs


@pytest.fixture
def hospital(make_node, tmp_path: Path, exchange, actors):  # type: ignore[no-untyped-def]
    from tasks import get_task

    node = make_node("Label Hospital")
    folder = tmp_path / "data"
    ids = [f"REVIEW2-LBL-{i:02d}" for i in range(4)]
    written = get_task(TASK).write_synthetic_records(folder, len(ids), 7, ids)
    labels = [NAME] + ["lesion" if y else "normal" for _, y in written[1:]]
    sidecar = tmp_path / "labels.csv"
    sidecar.write_text("file,label\n" + "".join(f"{p.name},{label}\n" for (p, _), label in zip(written, labels,
                                                                                                  strict=True)))
    report = Ingestor(node, sidecar=read_sidecar(sidecar)).run([folder])
    assert len(report.ingested) == len(ids), report.quarantined
    register_drafts(node)
    for pid in ids:
        key = Account.create()
        text = issue_challenge(node, pid).text
        enrol(node, pid, key.address, key.sign_message(encode_defunct(text=text)).signature.hex())
        exchange.consent.relay(actors.coordinator, exchange.consent.sign_grant(
            key, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY))
    return node


def _reason(reply_or_exc: Message | Exception) -> str:
    if isinstance(reply_or_exc, Exception):  # what Flower's SuperNode makes of an exception the ClientApp raises
        return str(type(reply_or_exc)) + ":<'" + str(reply_or_exc) + "'>"
    assert reply_or_exc.has_error()
    return reply_or_exc.error.reason


def test_a_refused_round_sends_no_label_text_to_the_federation(
    hospital, exchange, actors, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    study_id = running_study(exchange, actors, [Hospital(hospital, {})], rounds=1)
    secret = tmp_path / "passphrase"
    secret.write_text(NODE_PASSPHRASE, encoding="utf-8")
    try:
        outcome: Message | Exception = app(train_message(study_id, initial_weights(), None),
                                           context_for(hospital.dir, secret))
    except Exception as exc:  # Flower turns it into the error reply
        outcome = exc
    reason = _reason(outcome)
    assert "label" in reason  # the round was refused for the label
    assert [word for word in ("DOE", "MRKZQX") if word in reason] == [], f"sent to the SuperLink: {reason}"
