"""De-identifying a raw file writes nothing to disk: no unscrubbed copy can outlive a crash.

The node's ``deidentify`` runs in a child process under ``strace``; every file system call that
could leave bytes behind (an open for writing, create, rename, link, mkdir, truncate) is recorded.
A SIGKILL at any instant can only leave what was written, and nothing is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node.raw_deid_planted import Plant, planted_ismrmrd, planted_sinogram

ROOT = Path(__file__).resolve().parents[2]
_CHILD = """
import sys
from pathlib import Path
from node.deid import DeidPolicy, PatientContext, UidMapper
from node.formats import deidentify, parse
source, tmp = Path(sys.argv[1]), Path(sys.argv[2])
parsed = parse(source, source.read_bytes())
out = deidentify(parsed, PatientContext("MTP-0123456789", -40), UidMapper(b"k" * 32), DeidPolicy())
print(len(out.content))
"""
_CALLS = "open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,mkdir,mkdirat,truncate"
_CALL = re.compile(r'^\d+\s+(\w+)\((?:AT_FDCWD|\d+), "([^"]*)"(?:, ([A-Z_|]+))?.*= (-?\d+)')
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


def traced(source: Path, tmp_path: Path) -> tuple[list[tuple[str, str, str]], str]:
    """Run the node's deidentify on ``source`` under strace; return (call, path, flags) of successful calls."""
    strace = shutil.which("strace")
    assert strace is not None, "deploy/install-system-deps.sh installs strace"
    log = tmp_path / "strace.log"
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [strace, "-f", "-qq", "-e", f"trace={_CALLS}", "-o", str(log), sys.executable, "-c", _CHILD,
         str(source), str(tmp_path / "node-tmp")],
        cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = []
    for line in log.read_text().splitlines():
        match = _CALL.match(line)
        if match and int(match[4]) >= 0:
            calls.append((match[1], match[2], match[3] or ""))
    return calls, done.stdout


@pytest.mark.parametrize("fmt", ["sinogram", "ismrmrd"])
def test_deidentification_opens_the_source_read_only_and_writes_no_file(fmt: str, tmp_path: Path) -> None:
    source = tmp_path / "export" / f"{fmt}.h5"
    source.parent.mkdir()
    plant = Plant("D")
    if fmt == "sinogram":
        planted_sinogram(source, plant, "LOCAL-1")
    else:
        planted_ismrmrd(source, plant, "LOCAL-1")
    calls, stdout = traced(source, tmp_path)
    assert int(stdout) > 0  # it did produce the stored bytes
    source_opens = [flags for call, path, flags in calls if Path(path) == source]
    assert source_opens
    assert all("O_RDONLY" in flags and not any(f in flags for f in _WRITE_FLAGS) for flags in source_opens)
    written = sorted({path for call, path, flags in calls
                      if (call.startswith("open") and any(f in flags for f in _WRITE_FLAGS))
                      or not call.startswith("open")} - {"/dev/null"})
    assert written == []
    assert not (tmp_path / "node-tmp").exists()
