"""`metai-node backup` and `restore`: what a backup holds, that it comes back byte for byte with its modes, and
that a damaged, truncated, altered or foreign archive, a wrong passphrase or a non-empty target leave nothing."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sqlite3
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from node.catalog import CATALOG_FILE
from node.cli import app
from node.enrol import enrol, issue_challenge
from node.federation_key import federation_key
from node.ingest import Ingestor
from node.kept_cohort import KeptCohort, KeptMember, kept_cohort_path
from node.kept_reply import KeptReply, keep_reply
from node.lineage import keep_sent_manifest
from node.node import Node
from tests.conftest import NODE_PASSPHRASE

LOCAL_ID = "1CT1"  # the PatientID of pydicom's public CT_small.dcm
#: What every backup of the node below holds besides its store.
KEPT = ("node.json", "deployment.json", "hospital-key.json", "secrets.json", "federation/supernode.key",
        "federation/supernode.pub", "cohorts/study-1/manifest-1.json", "cohorts/study-1/round-1.json",
        "replies/study-1.npz")


@dataclass
class Backed:
    node: Node
    patient: str  # the enrolled patient's address
    archive: Path
    env: dict[str, str]


def cli(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def backed(make_node, tmp_path: Path, chain) -> Backed:  # type: ignore[no-untyped-def]
    """A node with two records, a quarantined file, an enrolled patient, a SuperNode key, a kept round and a
    passphrase file someone left in it; backed up through the command line."""
    node = make_node("Backup Hospital")
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(str(get_testdata_file(name)), inbox)
    (inbox / "junk.bin").write_bytes(b"not an image")
    Ingestor(node).run([inbox])
    patient = Account.create()
    text = issue_challenge(node, LOCAL_ID).text
    enrol(node, LOCAL_ID, patient.address, patient.sign_message(encode_defunct(text=text)).signature.hex())
    federation_key(node.dir)
    keep_sent_manifest(node.dir, 1, 1, '{"format":"metai-cohort/1"}')
    kept = KeptCohort(1, 1, 5, "0x" + "ab" * 32, 1, (KeptMember("cd" * 32, 1, patient.address, 1),), (1,))
    kept_cohort_path(node.dir, 1, 1).write_text(json.dumps(kept.to_json()))
    keep_reply(node.dir, KeptReply(1, 1, "0x" + "ef" * 32, [np.arange(3, dtype=np.float32)], {"train-seconds": 1.0},
                                   {"hospital": node.address, "update-hash": "0x" + "12" * 32}))
    (node.dir / "passphrase").write_text(NODE_PASSPHRASE)
    env = {"METAI_NODE_DIR": str(node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
           "METAI_NODE_RPC_URL": chain.rpc_url}
    archive = tmp_path / "backups" / "node.tar"
    archive.parent.mkdir()
    result = cli(env, "backup", "--out", str(archive))
    assert result.exit_code == 0, result.output
    return Backed(node, patient.address, archive, env)


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def _restore(backed: Backed, target: Path, *extra: str, archive: Path | None = None):  # type: ignore[no-untyped-def]
    return cli(backed.env, "restore", str(archive or backed.archive), "--dir", str(target), *extra)


def _nothing_left(target: Path) -> bool:
    return not target.exists() and not [p for p in target.parent.iterdir() if ".restore-" in p.name]


def test_a_restored_node_holds_every_kept_file_byte_for_byte_with_its_mode(backed: Backed, tmp_path: Path) -> None:
    target = tmp_path / "restored" / "node"
    result = _restore(backed, target)
    assert result.exit_code == 0, result.output
    stored = [p.relative_to(backed.node.dir).as_posix() for p in (backed.node.dir / "store").rglob("*") if p.is_file()]
    assert len(stored) == 2
    for rel in (*KEPT, *stored):
        original, copy = backed.node.dir / rel, target / rel
        assert copy.read_bytes() == original.read_bytes(), rel
        assert stat.S_IMODE(copy.stat().st_mode) == stat.S_IMODE(original.stat().st_mode), rel
    assert stat.S_IMODE((target / "federation" / "supernode.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((target / "store").stat().st_mode) == 0o700
    assert _dump(target / CATALOG_FILE) == _dump(backed.node.dir / CATALOG_FILE)


def test_the_restored_pseudonym_map_and_key_open_with_the_passphrase(backed: Backed, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    assert _restore(backed, target).exit_code == 0
    restored = Node(target, NODE_PASSPHRASE)
    with restored.sessions() as session:
        entry = restored.vault.find(session, LOCAL_ID)
    with backed.node.sessions() as session:
        original = backed.node.vault.find(session, LOCAL_ID)
    assert entry == original
    assert entry is not None
    assert entry.address == backed.patient
    assert restored.account.address == backed.node.address


def test_status_of_the_restored_node_shows_the_same_hospital(backed: Backed, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    assert _restore(backed, target).exit_code == 0
    status = cli({**backed.env, "METAI_NODE_DIR": str(target)}, "status")
    assert status.exit_code == 0, status.output
    assert f"node {target}: Backup Hospital ({backed.node.address})" in status.stdout
    assert "records: IMAGE: 2; patients: 2 (1 enrolled)" in status.stdout
    assert "HOSPITAL role held" in status.stdout


def test_the_quarantine_and_unknown_files_are_left_out_and_named(backed: Backed) -> None:
    with tarfile.open(backed.archive) as tar:
        files = [m.name.removeprefix("node/") for m in tar.getmembers() if m.isfile() and m.name.startswith("node/")]
        manifest = json.loads(tar.extractfile("metai-backup.json").read())  # type: ignore[union-attr]
    assert sorted(f for f in files if not f.startswith("store/")) == sorted((*KEPT, CATALOG_FILE))
    left_out = {x["path"]: x["reason"] for x in manifest["left_out"]}
    assert sorted(left_out) == ["ingest.lock", "passphrase", "quarantine/", "tmp/"]
    assert left_out["quarantine/"].startswith("untouched originals of files that failed ingest")
    assert left_out["passphrase"].startswith("not part of a node's state")


def test_keys_and_the_archive_are_private(backed: Backed) -> None:
    assert stat.S_IMODE(backed.archive.stat().st_mode) == 0o600
    with tarfile.open(backed.archive) as tar:
        modes = {m.name: stat.S_IMODE(m.mode) for m in tar.getmembers()}
    for rel in ("hospital-key.json", "secrets.json", "federation/supernode.key", CATALOG_FILE):
        assert modes[f"node/{rel}"] == 0o600, rel
    assert modes["node/federation"] == 0o700


def test_the_manifest_names_the_hospital_chain_and_every_hash(backed: Backed, chain) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    with tarfile.open(backed.archive) as tar:
        assert tar.getnames()[0] == "metai-backup.json"
        manifest = json.loads(tar.extractfile("metai-backup.json").read())  # type: ignore[union-attr]
        for entry in manifest["files"]:
            data = tar.extractfile(f"node/{entry['path']}").read()  # type: ignore[union-attr]
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry["sha256"], entry["size"]), entry["path"]
    assert (manifest["format"], manifest["version"]) == ("metai-node-backup", 1)
    assert (manifest["hospital_address"], manifest["chain_id"]) == (backed.node.address, chain.chain_id)
    assert manifest["catalog"] == {"records": 2, "patients": 2, "enrolled": 1, "datasets": 0}


def _member(archive: Path, name: str) -> tarfile.TarInfo:
    with tarfile.open(archive) as tar:
        return tar.getmember(name)


def test_a_damaged_file_is_refused_and_nothing_is_written(backed: Backed, tmp_path: Path) -> None:
    member = _member(backed.archive, "node/secrets.json")
    data = bytearray(backed.archive.read_bytes())
    data[member.offset_data + 20] ^= 0x01
    backed.archive.write_bytes(bytes(data))
    target = tmp_path / "restored"
    result = _restore(backed, target)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: backup {backed.archive}: secrets.json is damaged (size {member.size}, "
                                    "SHA-256 ")
    assert result.stderr.strip().endswith("nothing was restored: use another copy of the backup")
    assert _nothing_left(target)


@pytest.mark.parametrize("where", ["in the manifest", "in a file", "between files"])
def test_a_truncated_archive_is_refused_and_nothing_is_written(backed: Backed, tmp_path: Path, where: str) -> None:
    with tarfile.open(backed.archive) as tar:
        members = tar.getmembers()
    last = members[-1]
    files = len([m for m in members if m.isfile()]) - 1  # the manifest is not one of the node's files
    cut = {"in the manifest": members[0].offset_data + 100, "in a file": last.offset_data + last.size // 2,
           "between files": last.offset}[where]
    with open(backed.archive, "r+b") as fh:
        fh.truncate(cut)
    target = tmp_path / "restored"
    result = _restore(backed, target)
    assert result.exit_code == 1
    expected = {
        "in the manifest": f"error: backup {backed.archive} is truncated or damaged (unexpected end of data)",
        "in a file": f"error: backup {backed.archive} is truncated or damaged (unexpected end of data)",
        "between files": f"error: backup {backed.archive} is truncated: it ends after {files - 1} of its {files} "
                         f"files (the first missing is {last.name.removeprefix('node/')}); nothing was restored",
    }[where]
    assert result.stderr.startswith(expected), result.stderr
    assert _nothing_left(target)


def _with_extra_member(archive: Path, name: str, data: bytes) -> None:
    with tarfile.open(archive) as tar:
        tar.getmembers()
        end = tar.offset  # where the end-of-archive blocks begin
    info = tarfile.TarInfo(name)
    info.size = len(data)
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(archive.read_bytes()[:end] + extra.getvalue())


@pytest.mark.parametrize(("name", "said"), [
    ("node/evil.sh", "holds 'evil.sh', a file its manifest does not list"),
    ("node/../escaped", "the path '../escaped' would not stay inside the node directory"),
    ("elsewhere.txt", "holds 'elsewhere.txt', outside its node/ folder"),
])
def test_a_member_the_manifest_does_not_list_is_refused(backed: Backed, tmp_path: Path, name: str, said: str) -> None:
    _with_extra_member(backed.archive, name, b"echo hello\n")
    target = tmp_path / "restored"
    result = _restore(backed, target)
    assert result.exit_code == 1
    assert said in result.stderr
    assert _nothing_left(target)
    assert not (tmp_path / "escaped").exists()


def test_an_archive_that_is_not_a_node_backup_is_refused(backed: Backed, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        tar.add(str(get_testdata_file("CT_small.dcm")), arcname="CT_small.dcm")
    target = tmp_path / "restored"
    result = _restore(backed, target, archive=foreign)
    assert result.exit_code == 1
    assert result.stderr == (f"error: {foreign} is not a node backup: its first member is 'CT_small.dcm', not "
                             "metai-backup.json; give a file `metai-node backup` wrote\n")
    assert _nothing_left(target)


def test_a_compressed_copy_restores(backed: Backed, tmp_path: Path) -> None:
    packed = tmp_path / "node.tar.gz"
    packed.write_bytes(gzip.compress(backed.archive.read_bytes()))
    target = tmp_path / "restored"
    assert _restore(backed, target, archive=packed).exit_code == 0
    assert (target / "hospital-key.json").read_bytes() == (backed.node.dir / "hospital-key.json").read_bytes()


def test_restore_refuses_a_directory_that_is_not_empty(backed: Backed, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = _restore(backed, target)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: --dir {target} is not empty; restore into a new or empty directory")
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_restore_into_an_empty_directory(backed: Backed, tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert _restore(backed, target).exit_code == 0
    assert (target / "node.json").is_file()


def test_a_wrong_passphrase_is_refused_before_anything_is_written(backed: Backed, tmp_path: Path) -> None:
    target = tmp_path / "restored"
    result = cli({**backed.env, "METAI_NODE_PASSPHRASE": "a wrong passphrase, long enough"}, "restore",
                 str(backed.archive), "--dir", str(target), "--check-passphrase")
    assert result.exit_code == 1
    assert result.stderr == (f"error: the passphrase does not unlock the hospital key and node secrets of backup "
                             f"{backed.archive} (wrong passphrase); nothing was restored; set METAI_NODE_PASSPHRASE to "
                             "the passphrase given to `metai-node init`\n")
    assert _nothing_left(target)


def test_the_right_passphrase_is_confirmed(backed: Backed, tmp_path: Path) -> None:
    result = _restore(backed, tmp_path / "restored", "--check-passphrase")
    assert result.exit_code == 0, result.output
    assert "the passphrase unlocks the hospital key and the node secrets" in result.stdout


def test_backup_never_overwrites_a_file(backed: Backed) -> None:
    before = backed.archive.read_bytes()
    result = cli(backed.env, "backup", "--out", str(backed.archive))
    assert result.exit_code == 1
    assert result.stderr == (f"error: --out {backed.archive} exists; give a new file name (a backup never overwrites "
                             "a file)\n")
    assert backed.archive.read_bytes() == before


def test_a_damaged_record_is_named_and_the_rest_backed_up(backed: Backed, tmp_path: Path) -> None:
    record = sorted((backed.node.dir / "store").rglob("*.dcm"))[0]
    record.write_bytes(record.read_bytes()[:-1] + b"\0")
    archive = tmp_path / "again.tar"
    result = cli(backed.env, "backup", "--out", str(archive))
    assert result.exit_code == 2
    rel = record.relative_to(backed.node.dir).as_posix()
    assert f"not backed up: {rel}: damaged: its SHA-256 is " in result.stderr
    assert f"not its record id {record.stem}; run `metai-node verify`" in result.stderr
    target = tmp_path / "restored"
    assert _restore(backed, target, archive=archive).exit_code == 0
    assert not (target / rel).exists()
    assert (target / "secrets.json").is_file()


def test_a_round_being_anchored_is_noted(backed: Backed, tmp_path: Path) -> None:
    keep_sent_manifest(backed.node.dir, 1, 2, '{"format":"metai-cohort/1"}')
    result = cli(backed.env, "backup", "--out", str(tmp_path / "again.tar"))
    assert result.exit_code == 0
    assert ("note: cohorts/study-1/manifest-2.json: round 2 of study-1 has no kept cohort yet (it was being anchored, "
            "or its anchoring failed); back up again once the round is over") in result.stderr


def test_the_names_left_out_are_the_node_s_own() -> None:
    from node.backup import LEFT_OUT
    from node.ingest_recovery import LOCK_FILE
    from node.ingest_work import TMP_DIR
    from node.pacs import INBOX_DIR
    from node.quarantine import QUARANTINE_DIR

    assert set(LEFT_OUT) == {QUARANTINE_DIR, INBOX_DIR, TMP_DIR, LOCK_FILE}


#: Another process writing the catalog: three rows committed (kept in the WAL only: no checkpoint), then a
#: transaction holding the write lock with a fourth row, until a line arrives on stdin; then it rolls back.
_WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
row = "INSERT INTO quarantine (source_path, source_sha256, quarantine_path, reason, at) VALUES (?, ?, ?, ?, 0)"
for i in range(3):
    db.execute(row, (f"/in/{i}", f"{i:064x}", f"quarantine/{i}", f"committed {i}"))
db.execute("BEGIN IMMEDIATE")
db.execute(row, ("/in/x", "f" * 64, "quarantine/x", "uncommitted"))
print("holding", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
print("rolled back", flush=True)
"""


def _reasons(catalog: Path) -> list[str]:
    with sqlite3.connect(catalog) as db:
        return sorted(r for (r,) in db.execute("SELECT reason FROM quarantine WHERE reason LIKE '%committed%'"))


def test_a_backup_taken_while_a_writer_holds_the_catalog_has_exactly_what_was_committed(
        backed: Backed, tmp_path: Path) -> None:
    import subprocess
    import sys

    catalog = backed.node.dir / CATALOG_FILE
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(catalog)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdin is not None
        assert writer.stdout.readline() == "holding\n"
        copied = tmp_path / "file-copy.sqlite"
        shutil.copyfile(catalog, copied)  # what copying the file alone would keep: not the WAL's transactions
        assert _reasons(copied) == []
        result = cli(backed.env, "backup", "--out", str(tmp_path / "busy.tar"))
        assert result.exit_code == 0, result.output
        assert writer.poll() is None  # the writer still holds its transaction
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.stdout.readline() == "rolled back\n"
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    target = tmp_path / "restored"
    assert _restore(backed, target, archive=tmp_path / "busy.tar").exit_code == 0
    assert _reasons(target / CATALOG_FILE) == ["committed 0", "committed 1", "committed 2"]
