"""Real SIGKILLs of `metai-node ingest` at seeded points, then reruns: nothing lost, doubled or left behind."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from node.exit_codes import ExitCode
from node.node import Node
from tests.conftest import NODE_PASSPHRASE
from tests.node.ingest_corpus import (
    catalog,
    files_containing,
    kill,
    mixed_corpus,
    node_files,
    run_ingest,
    sha,
    start_ingest,
    write_sinogram,
)

KILL_POINTS = 20
SEED = 20_240_305


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("kill") / "corpus"
    kinds = mixed_corpus(folder, dicoms=200, sinograms=24, kspaces=10)
    return folder, kinds


def _progress(node_dir: Path) -> int:
    """Files in the store and the quarantine: counted, not listed (it is polled every few milliseconds
    while an ingest runs, and listing a few hundred files each time kept a core busy)."""
    return sum(len(files) for folder in ("store", "quarantine") for _, _, files in os.walk(node_dir / folder))


def _kill_at(node_dir: Path, target: int | float, *args: str) -> str:
    """Start an ingest and SIGKILL it after ``target`` new files (int) or seconds (float)."""
    before = _progress(node_dir)
    proc = start_ingest(node_dir, *args)
    start = time.monotonic()
    while proc.poll() is None:
        if isinstance(target, float) and time.monotonic() - start >= target:
            break
        if isinstance(target, int) and _progress(node_dir) - before >= target:
            break
        time.sleep(0.005)  # files land about 10 ms apart or more: a kill still lands within a file of its point
    if proc.poll() is not None:
        proc.communicate()
        return "finished"
    kill(proc)
    return "killed"


def _check_accounted(node, source: Path, originals: dict[str, tuple[str, bytes]]) -> None:  # type: ignore[no-untyped-def]
    records, rows = catalog(node)
    # Catalog rows = store files, both ways, and no doubles.
    assert sorted(node_files(node.dir, "store")) == sorted(r.path for r in records)
    assert len({r.record_id for r in records}) == len(records)
    assert len({r.source_sha256 for r in records}) == len(records)
    # Quarantine rows = quarantine copies (each with its reason file), no doubles.
    copies = {p for p in node_files(node.dir, "quarantine") if not p.endswith(".reason.txt")}
    assert copies == {q.quarantine_path for q in rows}
    assert len({(q.source_sha256, q.reason) for q in rows}) == len(rows)
    for q in rows:
        assert sha(node.dir / q.quarantine_path) == q.source_sha256
        assert q.reason in (node.dir / (q.quarantine_path + ".reason.txt")).read_text()
    # Nothing temporary survives.
    assert not list((node.dir / "tmp").iterdir())
    assert [p for p in node.dir.rglob(".tmp-*")] == []
    # Every source file accounted for exactly once.
    ingested = {r.source_sha256 for r in records}
    quarantined = {q.source_sha256 for q in rows}
    for name, (kind, data) in originals.items():
        digest = sha(data)
        if kind == "good":
            assert digest in ingested, name
            assert digest not in quarantined, name
            assert (source / name).read_bytes() == data, f"{name}: a good source must stay untouched"
        else:
            assert digest in quarantined, name
            assert digest not in ingested, name
            assert not (source / name).exists(), f"{name}: a quarantined source is moved out"
    assert len(records) == sum(kind == "good" for kind, _ in originals.values())


@pytest.mark.slow  # 21 fresh nodes, about 46 ingest processes: a minute or two on two cores
def test_sigkill_at_seeded_points_then_rerun_accounts_for_every_file(make_node, corpus, tmp_path: Path) -> None:
    template, kinds = corpus
    total = len(kinds)
    originals = {name: (kind, (template / name).read_bytes()) for name, kind in kinds.items()}
    rng = random.Random(SEED)
    outcomes = []
    # Every point starts from a fresh, empty node: a copy of one `metai-node init` made (an init
    # spends most of a second of CPU on the keystore's scrypt, which an ingest never uses).
    blank = make_node("kill-blank", role=False)
    blank.sessions.kw["bind"].dispose()  # the empty catalog whole in its file, no WAL to copy

    def fresh(name: str) -> tuple[Node, Path]:
        source = tmp_path / f"source-{name}"
        shutil.copytree(template, source)
        return Node(shutil.copytree(blank.dir, tmp_path / f"node-{name}"), NODE_PASSPHRASE), source

    # One uninterrupted ingest first: kill points are drawn within its duration and output on this
    # machine (a fixed range of seconds would land after the end of every run on a fast machine).
    node, source = fresh("uninterrupted")
    started = time.monotonic()
    full = run_ingest(node.dir, str(source))
    seconds, written = time.monotonic() - started, _progress(node.dir)
    assert full.returncode == ExitCode.PARTIAL, full.stdout + full.stderr
    _check_accounted(node, source, originals)
    for point in range(KILL_POINTS):
        node, source = fresh(f"kill-{point}")
        # Half the points are counted in files the run has written, half in seconds since start
        # (which also lands in start-up, discovery and recovery).
        first: int | float = rng.randint(0, total) if point % 2 == 0 else rng.uniform(0.0, 0.9 * seconds)
        outcomes.append(_kill_at(node.dir, first, str(source)))
        if point % 4 == 1:  # kill the rerun as well: recovery itself must survive a kill
            left = written - _progress(node.dir)  # files the rerun still has to write
            outcomes.append(_kill_at(node.dir, rng.randint(0, max(0, left - 1)), str(source)))
        final = run_ingest(node.dir, str(source))
        # 2 while bad files were still there to quarantine; 0 if a killed run had finished that.
        assert final.returncode in (ExitCode.OK, ExitCode.PARTIAL), final.stdout + final.stderr
        assert "Traceback" not in final.stderr
        _check_accounted(node, source, originals)
    # Most kills must land while the ingest was at work (a run may end before its kill point).
    assert outcomes.count("killed") >= 0.75 * len(outcomes), outcomes


def test_sigkill_while_a_temporary_file_exists_leaves_nothing_identifying(make_node, tmp_path: Path) -> None:
    """Raw files pass through the node's tmp/ while they are scrubbed: a kill there must not leave them."""
    marker = b"MARK-0007-ZQX"
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(12):  # about 4 MB each, like the file of the report
        write_sinogram(folder / f"scan-{i:02d}.h5", f"MARK-0007-ZQX-{i}", views=720, detectors=1400, seed=i,
                       extra={"patient_name": marker.decode(), "referring": f"{marker.decode()} clinic"})
    node = make_node("Temp Kill", role=False)
    proc = start_ingest(node.dir, "--workers", "1", str(folder))
    tmp = node.dir / "tmp"
    # Kill the moment a scrubbing copy exists in tmp/; should the node write none (de-identifying
    # in memory), kill half way through instead: what is checked afterwards holds either way.
    seen: list[Path] = []
    while proc.poll() is None and not seen and len(node_files(node.dir, "store")) < 6:
        seen = [p for p in tmp.iterdir() if p.stat().st_size > 0] if tmp.is_dir() else []
    assert proc.poll() is None, "the ingest ended before it could be killed"
    kill(proc)
    # Until the next ingest starts, a kill leaves only what was in the node's private tmp/.
    for leftover in files_containing(node.dir, marker, exclude=node.dir / "quarantine"):
        assert leftover.parent == tmp, leftover
        assert leftover.stat().st_mode & 0o777 == 0o600
    assert tmp.stat().st_mode & 0o777 == 0o700
    rerun = run_ingest(node.dir, str(folder))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert files_containing(node.dir, marker, exclude=node.dir / "quarantine") == []
    assert list(tmp.iterdir()) == []
    records, _ = catalog(node)
    assert len(records) == 12
