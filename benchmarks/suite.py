"""How long `make test` takes on a clean clone: the whole of what CI runs, install included.

Clones the repository's committed HEAD into a scratch folder (nothing untracked, no venv, no
node_modules, no caches), runs `make test` there once and times it, phase by phase from the
commands make echoes: Debian packages, the Python venv, `npm ci`, ruff, mypy (cold cache), the
import rules, the contract build check and pytest. The CPU it ran on and the CPU time the whole tree of
processes used are recorded with the figures. Targets: CI's budget, under 30 minutes on 2 cores,
and issue 11's older 15 minutes, each with 10 % to spare for another machine of the same kind (CI
has run ~10 % slower than this machine kind).

    python -m benchmarks.suite [--keep] [--workdir DIR]

Writes ``benchmarks/results/suite.json`` and the table in ``benchmarks/README.md``; the
full output of `make test` stays in the scratch folder with ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._cpu import ForeignCpu
from benchmarks.report import Measurement, write_results

REPO = Path(__file__).resolve().parent.parent
# Issue 11's target, set when the suite had no federated end-to-end or multi-host tests; kept as a row.
TARGET_MINUTES = 15.0
# The budget CI holds the whole suite to (the project's brief: under 30 minutes on 2 cores).
CI_BUDGET_MINUTES = 30.0
# CI ran stop 22's commit in 1011 s where this machine kind measured about 925 s: another machine of
# the same kind can be ~10 % slower, so the target counts as met only with that margin to spare.
MARGIN = 0.10
_CHECKS = "ruff, import rules, contract build check; mypy (cold cache) beside them"
# What make echoes when a phase starts (the Makefile's recipes), in the order they run.
PHASES = (
    ("bash deploy/install-system-deps.sh", "Debian packages"),
    # make runs these two side by side (two jobs): one phase, from the first to start
    ("test -x .venv/bin/python", "venv (pip) and npm ci, side by side"),
    ("npm ci", "venv (pip) and npm ci, side by side"),
    # then two jobs again (Makefile): the quick checks one after the other, then pytest; mypy beside them
    (".venv/bin/ruff check", _CHECKS),
    (".venv/bin/mypy", _CHECKS),
    (".venv/bin/python -m tests.import_rules", _CHECKS),
    (".venv/bin/python -m contracts.build --check", _CHECKS),
    ("env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest", "pytest, mypy finishing beside it"),
)
_SUMMARY = re.compile(r"(\d+) passed(?:, (\d+) skipped)?.* in ([\d.]+)s")


def _clean_env(repo: Path) -> dict[str, str]:
    """This environment without this checkout's venv on PATH or as VIRTUAL_ENV."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not Path(p).resolve().is_relative_to(repo))
    return env


def _clone(repo: Path, into: Path) -> str:
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty:
        print(f"note: {repo} has uncommitted changes; the clone measures the last commit only")
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(into)], check=True)
    return subprocess.run(["git", "-C", str(into), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def run_make_test(checkout: Path, log_file: Path) -> tuple[int, list[tuple[float, str]], float]:
    """Run `make test` in ``checkout``; return its exit code, (seconds since start, line) of each
    output line, and the wall time. Phase starts are echoed as they are reached."""
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    with open(log_file, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(["make", "test"], cwd=checkout, env=_clean_env(REPO), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            at = time.monotonic() - started
            lines.append((at, line.rstrip("\n")))
            log.write(f"{at:8.1f} {line}")
            for marker, name in PHASES:
                if line.startswith(marker):
                    print(f"{at:7.1f} s  {name}: {line.strip()[:80]}", flush=True)
        code = proc.wait()
    return code, lines, time.monotonic() - started


def phase_times(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds from each phase's first echoed command to the next phase's (the last one to the end)."""
    starts: list[tuple[float, str]] = []
    for at, line in lines:
        for marker, name in PHASES:
            if line.startswith(marker) and name not in {n for _, n in starts}:
                starts.append((at, name))
    times = {"before the first phase": starts[0][0] if starts else total}
    for (at, name), nxt in zip(starts, [*starts[1:], (total, "")], strict=True):
        times[name] = nxt[0] - at
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="scratch folder to clone into (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its make-test.log")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="metai-suite-"))
    checkout = workdir / "metai-exchange"
    if checkout.exists():
        parser.error(f"{checkout} already exists; give another --workdir")
    commit = _clone(REPO, checkout)
    log_file = workdir / "make-test.log"
    print(f"make test on a clean clone of {commit[:12]} in {checkout} (log {log_file})", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with ForeignCpu() as foreign:
        code, lines, wall = run_make_test(checkout, log_file)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    phases = phase_times(lines, wall)
    summary = next((found for _, line in reversed(lines) if (found := _SUMMARY.search(line))), None)
    cpu_user, cpu_sys = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    minutes = wall / 60
    rows = [
        Measurement("`make test` on a clean clone, install included", round(minutes, 2), "min",
                    f"< {TARGET_MINUTES:g} with {MARGIN:.0%} to spare (< {TARGET_MINUTES * (1 - MARGIN):g})",
                    code == 0 and minutes < TARGET_MINUTES * (1 - MARGIN),
                    note=f"exit {code}; {os.cpu_count()} CPUs"),
        Measurement("`make test` within CI's budget, install included", round(minutes, 2), "min",
                    f"< {CI_BUDGET_MINUTES:g} with {MARGIN:.0%} to spare (< {CI_BUDGET_MINUTES * (1 - MARGIN):g})",
                    code == 0 and minutes < CI_BUDGET_MINUTES * (1 - MARGIN),
                    note=f"exit {code}; {os.cpu_count()} CPUs"),
        *[Measurement(f"phase: {name}", round(seconds, 1), "s") for name, seconds in phases.items()],
        Measurement("CPU time of the whole run (user + system)", round(cpu_user + cpu_sys, 1), "s",
                    note=f"user {cpu_user:.0f} s, system {cpu_sys:.0f} s"),
        Measurement("CPU used by other processes meanwhile", round(foreign.seconds, 1), "s",
                    note="a lower bound; 0 on a quiet machine"),
    ]
    if summary is not None:
        rows.append(Measurement("tests passed", int(summary.group(1)), "tests",
                                note=f"pytest's own time {float(summary.group(3)):.0f} s"))
    path = write_results("suite", rows, {"commit": commit, "exit_code": code, "wall_seconds": round(wall, 1),
                                         "phases": {k: round(v, 1) for k, v in phases.items()},
                                         "tail": [line for _, line in lines[-5:]]})
    for m in rows:
        print(f"{m.metric:<55} {m.value:>10} {m.unit} {m.target} {'' if m.met is None else m.met}")
    print(f"results in {path}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
