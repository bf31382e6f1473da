"""Publish each round's cohort proofs to the coordinator, for the patients in it (``metai-node publish-proofs``).

For every round the node kept a cohort of (node/kept_cohort.py), each member's leaf values
(record id, kind, patient address) and Merkle proof go to the coordinator's
``POST /v1/cohort-proofs``, signed in with the hospital's key (Sign-In with Ethereum). The
coordinator checks each proof against the root this node anchored and shows it only to that
patient. Nothing else leaves the node: no path, label, pseudonym or local identifier. A round
is marked published (``round-<r>.published`` beside its kept cohort) only once the
coordinator confirms it has every member, so an interrupted publication is simply sent again
(the coordinator keeps one copy of each proof).

A node set to sealed proofs publishes through :mod:`node.sealed_publish` instead, with
:meth:`CoordinatorClient.publish_sealed`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from node.errors import NodeError
from node.kept_cohort import COHORTS_DIR, KeptCohort, kept_cohort_path, read_kept_cohort

#: Proofs per request (the coordinator takes at most 200).
CHUNK = 200
#: Sealed envelopes per request at most, and the bytes of their base64 at most (a single larger one goes
#: alone): the coordinator's default METAI_COORDINATOR_MAX_BODY is 64 KiB.
SEALED_CHUNK = 200
SEALED_CHUNK_BYTES = 48 * 1024
MARKER = ".published"


class PublishError(NodeError, RuntimeError):
    """The coordinator could not be reached, refused the sign-in, or refused a round's proofs."""


@dataclass(frozen=True)
class PublishedRound:
    """A round whose proofs the coordinator now holds in full."""

    study_id: int
    round: int
    records: int
    patients: int


def round_proofs(kept: KeptCohort) -> list[dict[str, Any]]:
    """Each member's leaf values and Merkle proof, as the coordinator takes them.

    Raises:
        PublishError: the kept members do not make the root the node anchored (the file was altered).
    """
    leaves = {m: cohort_leaf(m.record_id, m.kind, m.patient) for m in kept.members}
    tree = MerkleTree(leaves.values())
    if "0x" + tree.root.hex() != kept.root:
        raise PublishError(f"round {kept.round} of study {kept.study_id}: the kept cohort's members make root "
                           f"0x{tree.root.hex()}, not the anchored {kept.root}; the kept file was altered")
    return [{"patient": m.patient, "record_id": m.record_id, "kind": m.kind,
             "proof": ["0x" + p.hex() for p in tree.proof(leaf)]} for m, leaf in leaves.items()]


def kept_rounds(node_dir: Path, study_id: int | None = None) -> Iterator[tuple[int, int]]:
    """(study, round) of every cohort the node kept, in order."""
    root = node_dir / COHORTS_DIR
    for folder in sorted(root.glob("study-*"), key=lambda p: int(p.name.split("-", 1)[1])):
        study = int(folder.name.split("-", 1)[1])
        if study_id is not None and study != study_id:
            continue
        for path in sorted(folder.glob("round-*.json"), key=lambda p: int(p.stem.split("-", 1)[1])):
            yield study, int(path.stem.split("-", 1)[1])


def is_published(node_dir: Path, study_id: int, round_: int) -> bool:
    """Whether the coordinator confirmed it holds the round's proofs in full."""
    return kept_cohort_path(node_dir, study_id, round_).with_suffix(MARKER).exists()


class CoordinatorClient:
    """The coordinator's API as the hospital uses it, signed in with the hospital's key."""

    def __init__(self, url: str, account: LocalAccount, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.account = account
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._headers: dict[str, str] = {}

    def close(self) -> None:
        """Close the connection."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise PublishError(f"the coordinator at {self.url} cannot be reached ({exc}); check "
                               "METAI_NODE_COORDINATOR_URL and that the service runs") from exc
        if response.is_error:
            try:
                detail = response.json().get("detail", response.text)
            except (json.JSONDecodeError, AttributeError):
                detail = response.text[:300]
            if response.status_code == 413:  # one sealed envelope of a patient with many records can exceed it
                detail = f"{detail}; raise METAI_COORDINATOR_MAX_BODY on the coordinator"
            raise PublishError(f"the coordinator refused {method} {path} ({response.status_code}): {detail}")
        return response.json()

    def sign_in(self) -> None:
        """Sign in with the hospital's key (EIP-4361); later calls carry the session's bearer token."""
        message = self._call("POST", "/v1/auth/challenge", json={"address": self.account.address})["message"]
        signature = self.account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        token = self._call("POST", "/v1/auth/sign-in", json={"message": message, "signature": signature})["token"]
        self._headers = {"Authorization": f"Bearer {token}"}

    def publish(self, kept: KeptCohort) -> dict[str, Any]:
        """Send the round's proofs in parts; the last part marks the round complete. Returns the last answer."""
        proofs = round_proofs(kept)
        answer: dict[str, Any] = {}
        for start in range(0, len(proofs), CHUNK):
            part = proofs[start:start + CHUNK]
            answer = self._call("POST", "/v1/cohort-proofs", json={
                "study_id": kept.study_id, "round": kept.round, "cohort_root": kept.root,
                "cohort_count": kept.count, "proofs": part, "complete": start + CHUNK >= len(proofs)})
        return answer

    def publish_sealed(self, kept: KeptCohort, hospital_public_key: str, items: list[dict[str, str]]
                       ) -> dict[str, Any]:
        """Send the round's sealed envelopes (``{tag, ciphertext}``) in parts; the last part marks the round complete.

        Returns the last answer.
        """
        parts: list[list[dict[str, str]]] = [[]]
        size = 0
        for item in items:
            if parts[-1] and (len(parts[-1]) == SEALED_CHUNK or size + len(item["ciphertext"]) > SEALED_CHUNK_BYTES):
                parts.append([])
                size = 0
            parts[-1].append(item)
            size += len(item["ciphertext"])
        answer: dict[str, Any] = {}
        for n, part in enumerate(parts, 1):
            answer = self._call("POST", "/v1/sealed-proofs", json={
                "study_id": kept.study_id, "round": kept.round, "cohort_root": kept.root,
                "cohort_count": kept.count, "hospital_public_key": hospital_public_key, "items": part,
                "complete": n == len(parts)})
        return answer


def publish_kept(node_dir: Path, client: CoordinatorClient, study_id: int | None = None) -> list[PublishedRound]:
    """Publish every kept round not yet published (of ``study_id`` only, if given); return what was published.

    Raises:
        PublishError: the coordinator refused a round (rounds before it stay published).
    """
    done = []
    for study, round_ in kept_rounds(node_dir, study_id):
        if is_published(node_dir, study, round_):
            continue
        kept = read_kept_cohort(node_dir, study, round_)
        if not kept.members:
            continue
        answer = client.publish(kept)
        if not answer.get("complete"):
            raise PublishError(f"round {round_} of study {study}: the coordinator holds {answer.get('published')} "
                               f"of {kept.count} proofs after the last part")
        kept_cohort_path(node_dir, study, round_).with_suffix(MARKER).write_text(
            json.dumps(answer) + "\n", encoding="utf-8")
        done.append(PublishedRound(study, round_, kept.count, len({m.patient for m in kept.members})))
    return done
