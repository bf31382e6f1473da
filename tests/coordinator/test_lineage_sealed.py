"""Sealed mode in the lineage bundle: a manifest whose node sent only its hash is listed in the index by that
hash (so the anchor covers it) but never stored or served by the coordinator; the auditor gets it from the
hospital and the audit then reads it like any other."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from audit.bundle import open_bundle
from audit.report import Report
from coordinator.lineage import begin_bundle, finish_bundle, write_round
from coordinator.lineage_archive import bundle_members
from coordinator.rounds import Contribution, RoundOutcome

PLAIN, SEALED, NONE = "0x" + "1a" * 20, "0x" + "2b" * 20, "0x" + "3c" * 20
WEIGHTS = [np.arange(4, dtype=np.float32)]
SEALED_TEXT = '{"format":"metai-cohort/1","members":[]}'


def _bundle(folder: Path) -> bytes:
    begin_bundle(folder, {"task": "t", "dp": None}, 1, WEIGHTS)
    accepted = [Contribution(PLAIN, WEIGHTS, 2, {}, manifest='{"plain": true}'),
                Contribution(SEALED, WEIGHTS, 3, {}, manifest_sha256=hashlib.sha256(SEALED_TEXT.encode()).hexdigest()),
                Contribution(NONE, WEIGHTS, 1, {})]
    write_round(folder, 1, RoundOutcome(WEIGHTS, accepted, [], 0.0, [2 / 6, 3 / 6, 1 / 6]), b"\x01" * 32)
    return finish_bundle(folder, WEIGHTS, b"\x02" * 32, chain_id=31337, registry="0x" + "00" * 20, study_id=4,
                         rounds=1)


def test_a_sealed_manifest_is_listed_by_its_hash_and_held_by_its_hospital(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    lineage_hash = _bundle(folder)
    aggregation = json.loads((folder / "rounds/1/aggregation.json").read_bytes())
    digest = hashlib.sha256(SEALED_TEXT.encode()).hexdigest()
    assert aggregation["manifests_held"] == {SEALED: digest}
    assert aggregation["manifests_missing"] == [NONE]
    index = json.loads((folder / "bundle.json").read_bytes())
    assert index["files"][f"rounds/1/cohorts/{SEALED}.json"] == digest
    assert not (folder / f"rounds/1/cohorts/{SEALED}.json").exists()
    assert f"rounds/1/cohorts/{NONE}.json" not in index["files"]
    # The archive served to auditors holds everything else, the plain manifest included.
    members = bundle_members(folder, lineage_hash)
    assert f"rounds/1/cohorts/{PLAIN}.json" in members
    assert f"rounds/1/cohorts/{SEALED}.json" not in members
    assert sorted(members[1:]) == sorted(n for n in index["files"] if n != f"rounds/1/cohorts/{SEALED}.json")


def test_the_audit_names_the_held_manifest_until_the_hospital_s_copy_is_put_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    _bundle(folder)
    name = f"rounds/1/cohorts/{SEALED}.json"
    before = Report(4, 31337, 0)
    assert open_bundle(folder, before) is not None
    (finding,) = before.findings
    assert (finding.check, finding.where) == ("bundle.file", name)
    assert f"get it from hospital {SEALED}, `metai-node cohort-manifest --study 4 --round 1" in finding.message
    (folder / name).write_text(SEALED_TEXT.replace("[]", "[ ]"), encoding="utf-8")  # other bytes: refused
    altered = Report(4, 31337, 0)
    opened = open_bundle(folder, altered)
    assert opened is not None
    assert not opened.has(name)
    assert [f.check for f in altered.findings] == ["bundle.file"]
    (folder / name).write_text(SEALED_TEXT, encoding="utf-8")  # the hospital's own bytes
    after = Report(4, 31337, 0)
    opened = open_bundle(folder, after)
    assert opened is not None
    assert after.ok
    assert opened.has(name)
