"""The consent batch view answers every patient right wherever the chunk boundaries fall.

``permits_batch`` splits a long list of patients into one ``eth_call`` per chunk. These tests
place consenting, revoked and expired patients deterministically before, at and after the chunk
boundaries (8 patients in chunks of 3: positions 0-2 | 3-5 | 6-7, the last chunk partial) and
compare the answers with the ones the test derives from the scenario alone.
"""

from __future__ import annotations

import pytest

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope, Use
from contracts.errors import ChainError
from contracts.exchange import Exchange
from deploy.anvil import advance_time

# One scenario per disease code: a consent scoped to disease d is invisible to a use for any
# other disease, so every scenario shares one deployment and one set of patients.
# Per position: G granted and in force, R granted then revoked, E granted with a short expiry
# that has passed when the view is read, . never granted.
SCENARIOS = {
    "first chunk only": "GG......",
    "later chunks only": "...GG.GG",
    "at the boundary (2 and 3)": "..GG....",
    "at the second boundary (5 and 6)": ".....GG.",
    "last partial chunk only": "......GG",
    "last patient only": ".......G",
    "none": "........",
    "all": "GGGGGGGG",
    "revoked everywhere but the last": "RRRRRRRG",
    "expired everywhere but position 3": "EEEGEEEE",
    "revoked and expired alternating": "REREREER",
    "expired and revoked alternating": "ERERERRE",
    "granted among revoked and expired": "RGEGREGR",
    "revoked at the boundaries": "GGRRGRRG",
}
CHUNK = 3
SHORT_EXPIRY = 300  # seconds; the clock then moves past it


def _disease(name: str) -> int:
    return list(SCENARIOS).index(name) + 1


def _use(hospital: str, name: str) -> Use:
    return Use(hospital=hospital, kinds=Kind.CT_SINOGRAM, purpose=Purpose.DS, disease=_disease(name))


@pytest.fixture
def scenarios(exchange: Exchange, actors, anvil, now):  # type: ignore[no-untyped-def]
    """Grant, revoke and let expire as SCENARIOS says; return the block before and after expiry."""
    patients = actors.patients
    assert len(patients) == len(next(iter(SCENARIOS.values())))
    c = exchange.consent
    for name, states in SCENARIOS.items():
        scope = Scope(purpose=Purpose.DS, disease=_disease(name))
        for patient, state in zip(patients, states, strict=True):
            if state == ".":
                continue
            c.grant(patient, scope, Kind.CT_SINOGRAM, now + SHORT_EXPIRY if state == "E" else NO_EXPIRY)
            if state == "R":
                c.revoke(patient, scope)
    before_expiry = exchange.chain.block_number
    advance_time(anvil.rpc_url, 2 * SHORT_EXPIRY)
    return [p.address for p in patients], before_expiry, exchange.chain.block_number


def test_batch_view_across_chunk_boundaries(exchange: Exchange, actors, scenarios) -> None:
    addresses, _, after_expiry = scenarios
    hospital = actors.hospital.address
    got = {name: exchange.consent.permits_batch(addresses, _use(hospital, name), block=after_expiry, chunk=CHUNK)
           for name in SCENARIOS}
    want = {name: [s == "G" for s in states] for name, states in SCENARIOS.items()}
    assert got == want
    # Other chunkings move the boundaries; None is the default size, one call for all 8.
    sizes = (1, 2, 4, 5, 7, 8, 9, None)
    got_sizes = {(name, chunk): exchange.consent.permits_batch(addresses, _use(hospital, name), block=after_expiry,
                                                               chunk=chunk)
                 for name in SCENARIOS for chunk in sizes}
    assert got_sizes == {(name, chunk): want[name] for name in SCENARIOS for chunk in sizes}


def test_batch_view_at_a_past_block_sees_consents_not_yet_expired(exchange: Exchange, actors, scenarios) -> None:
    addresses, before_expiry, _ = scenarios
    hospital = actors.hospital.address
    got = {name: exchange.consent.permits_batch(addresses, _use(hospital, name), block=before_expiry, chunk=CHUNK)
           for name in SCENARIOS}
    want = {name: [s in "GE" for s in states] for name, states in SCENARIOS.items()}
    assert got == want


def test_empty_list_needs_no_call(exchange: Exchange, actors) -> None:
    use = Use(hospital=actors.hospital.address, kinds=Kind.IMAGE, purpose=Purpose.GRU)
    assert exchange.consent.permits_batch([], use, chunk=CHUNK) == []


@pytest.mark.parametrize("chunk", [0, -1, -3])
def test_chunk_below_one_is_refused(exchange: Exchange, actors, chunk: int) -> None:
    use = Use(hospital=actors.hospital.address, kinds=Kind.IMAGE, purpose=Purpose.GRU)
    with pytest.raises(ChainError, match=f"chunk of {chunk} patients per call; expected at least 1"):
        exchange.consent.permits_batch([p.address for p in actors.patients], use, chunk=chunk)
    with pytest.raises(ValueError, match="expected at least 1"):
        exchange.consent.permits_batch([p.address for p in actors.patients], use, chunk=chunk)


def test_every_chunk_reads_the_block_of_the_first(exchange: Exchange, actors, monkeypatch: pytest.MonkeyPatch) -> None:
    # A revocation and a grant are mined while the view is between its first and second chunk.
    patients = actors.patients[:6]
    scope = Scope(purpose=Purpose.DS, disease=500)
    for patient in patients[:5]:
        exchange.consent.grant(patient, scope, Kind.CT_SINOGRAM, NO_EXPIRY)
    real_call = exchange.chain.call_raw
    calls = []

    def call_while_blocks_are_mined(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("block"))
        answer = real_call(*args, **kwargs)
        if len(calls) == 1:
            exchange.consent.revoke(patients[4], scope)
            exchange.consent.grant(patients[5], scope, Kind.CT_SINOGRAM, NO_EXPIRY)
        return answer

    monkeypatch.setattr(exchange.chain, "call_raw", call_while_blocks_are_mined)
    use = Use(hospital=actors.hospital.address, kinds=Kind.CT_SINOGRAM, purpose=Purpose.DS, disease=500)
    addresses = [p.address for p in patients]
    assert exchange.consent.permits_batch(addresses, use, chunk=CHUNK) == [True] * 5 + [False]
    assert len(calls) == 2
    assert len(set(calls)) == 1
    monkeypatch.undo()
    assert exchange.consent.permits_batch(addresses, use, chunk=CHUNK) == [True] * 4 + [False, True]
