"""`make mutation` stops what a timed-out mutant's test session left running from its sandbox, and nothing else."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from benchmarks.mutation import stop_leftovers


def test_processes_running_a_program_of_the_sandbox_are_stopped_others_are_not(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    sandbox = tmp_path / "run" / "mutation" / "deid"
    inside = sandbox / "mutants" / "node_modules" / "bin" / "sleep"
    beside = tmp_path / "run" / "mutation" / "deid-other" / "sleep"  # a sibling whose name starts alike
    for copy in (inside, beside):
        copy.parent.mkdir(parents=True)
        shutil.copy(sleep, copy)
    orphan = subprocess.Popen([str(inside), "60"], start_new_session=True)
    bystander = subprocess.Popen([str(beside), "60"], start_new_session=True)
    try:
        assert stop_leftovers(sandbox) == [orphan.pid]
        assert orphan.wait(timeout=10) == -9
        assert bystander.poll() is None
    finally:
        for proc in (orphan, bystander):
            proc.kill()
            proc.wait()
