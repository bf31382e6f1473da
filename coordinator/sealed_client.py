"""A patient's view of the use of their data in a deployment that seals cohort proofs, from a script.

:func:`sealed_data_uses` does what the portal's page does in the browser: it lists the rounds
published sealed, derives the patient's tag for each with their own key, looks the tags up
without signing in, opens the envelopes found and checks each proof against the round's root.
It returns the shape ``GET /v1/me/data-uses`` has in plain mode. Nothing it sends names the
patient; docs/coordinator.md says what the coordinator can still learn from the lookup.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from contracts.leaves import cohort_leaf
from contracts.merkle import verify
from contracts.sealing import SealedContent, SealingError, address_of, open_envelope, sealed_tag
from coordinator.errors import CoordinatorError
from coordinator.models.proofs import DataUsePublic, RecordUse, RoundUse
from coordinator.models.sealed import MAX_TAGS, SealedRoundPublic, SealedRoundsPublic

__all__ = ["SealedLookupError", "sealed_data_uses"]


class SealedLookupError(CoordinatorError, RuntimeError):
    """The coordinator could not be reached or refused, or what it served does not hold up."""


def _call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise SealedLookupError(f"the coordinator at {http.base_url} cannot be reached ({exc})") from exc
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except (json.JSONDecodeError, AttributeError):
            detail = response.text[:300]
        raise SealedLookupError(f"the coordinator refused {method} {path} ({response.status_code}): {detail}")
    return response.json()


def _opened(account: LocalAccount, tag: bytes, ciphertext: str, listed: SealedRoundPublic) -> list[RecordUse]:
    """The records of the envelope, each proof checked against the round's root from the leaf of my own address."""
    where = f"round {listed.round} of study {listed.study_id} at hospital {listed.hospital}"
    try:
        content = open_envelope(bytes(account.key), tag, base64.b64decode(ciphertext))
    except (SealingError, ValueError) as exc:
        raise SealedLookupError(f"the envelope under my tag for {where} does not open: {exc}") from None
    expected = SealedContent(listed.study_id, listed.round, listed.hospital, listed.cohort_root, content.records)
    if content != expected:
        raise SealedLookupError(f"the envelope under my tag for {where} is about study {content.study_id} round "
                                f"{content.round} at {content.hospital} with root {content.cohort_root}")
    root = bytes.fromhex(listed.cohort_root[2:])
    records = []
    for record in content.records:
        leaf = cohort_leaf(record.record_id, record.kind, account.address)
        if not verify(root, leaf, [bytes.fromhex(p[2:]) for p in record.proof]):
            raise SealedLookupError(f"the proof of record {record.record_id} in {where} does not lead to the "
                                    f"anchored root {listed.cohort_root} from my address's leaf")
        records.append(RecordUse(record_id=record.record_id, kind=record.kind, leaf="0x" + leaf.hex(),
                                 proof=list(record.proof)))
    return records


def sealed_data_uses(account: LocalAccount, url: str, *, timeout: float = 30.0,
                     transport: httpx.BaseTransport | None = None) -> list[DataUsePublic]:
    """Every study and hospital whose anchored cohorts held one of ``account``'s records, round by round.

    Parameters:
        account: the patient's key (the one they enrolled with at the hospitals).
        url: the coordinator's URL.

    Returns:
        As ``GET /v1/me/data-uses``: per (study, hospital) with a round that held my records, every round
        the hospital published, included (with records and proofs), not included (published in full
        without me) or unknown (``None``: not yet published in full).

    Raises:
        SealedLookupError: the coordinator cannot be reached or refused (e.g. it runs in plain mode), or an
            envelope under my tag does not open or holds a proof that does not lead to the round's root.
    """
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport) as http:
        listing = SealedRoundsPublic.model_validate(_call(http, "GET", "/v1/sealed-proofs/rounds"))
        tags: dict[str, tuple[bytes, SealedRoundPublic]] = {}
        for listed in listing.rounds:
            public_key = bytes.fromhex(listed.hospital_public_key[2:])
            if address_of(public_key) != listed.hospital:  # a key not the hospital's would make a tag nobody used
                raise SealedLookupError(f"the public key listed for hospital {listed.hospital} is of "
                                        f"{address_of(public_key)}")
            tag = sealed_tag(bytes(account.key), public_key, chain_id=listing.chain_id,
                             study_registry=listing.study_registry, study_id=listed.study_id, round_=listed.round)
            tags["0x" + tag.hex()] = (tag, listed)
        found: dict[str, str] = {}
        names = sorted(tags)
        for start in range(0, len(names), MAX_TAGS):
            answer = _call(http, "POST", "/v1/sealed-proofs/lookup", json={"tags": names[start:start + MAX_TAGS]})
            found.update({item["tag"]: item["ciphertext"] for item in answer["found"] if item["tag"] in tags})
    mine: defaultdict[tuple[int, str], dict[int, list[RecordUse]]] = defaultdict(dict)
    for name, ciphertext in found.items():
        tag, listed = tags[name]
        mine[(listed.study_id, listed.hospital)][listed.round] = _opened(account, tag, ciphertext, listed)
    out = []
    for (study_id, hospital), rounds in sorted(mine.items()):
        listed_rounds = [r for r in listing.rounds if (r.study_id, r.hospital) == (study_id, hospital)]
        uses = []
        for listed in listed_rounds:
            records = rounds.get(listed.round, [])
            uses.append(RoundUse(round=listed.round, included=True if records else (False if listed.complete else None),
                                 block=listed.block, contribution_tx=listed.contribution_tx,
                                 cohort_root=listed.cohort_root, cohort_count=listed.cohort_count, records=records))
        first = listed_rounds[0]
        out.append(DataUsePublic(study_id=study_id, purpose_words=first.purpose_words, researcher=first.researcher,
                                 hospital=hospital, rounds=uses, check=listing.check,
                                 study_registry=listing.study_registry))
    return out
