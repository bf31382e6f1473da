"""benchmarks/suite.py splits a `make test` run into phases by the commands make echoes."""

from __future__ import annotations

import pytest

from benchmarks.suite import _CHECKS, _SUMMARY, phase_times


def test_each_phase_runs_from_its_first_command_to_the_next_phase() -> None:
    lines = [
        (0.5, "bash deploy/install-system-deps.sh"),
        (2.0, "test -x .venv/bin/python || python3 -m venv .venv"),
        (2.1, ".venv/bin/python -m pip install --quiet --no-compile torch==2.13.0"),
        (70.0, "npm ci --no-audit --no-fund"),
        (90.0, ".venv/bin/mypy contracts deploy benchmarks raw_data node coordinator tasks"),
        (90.1, ".venv/bin/ruff check ."),
        (91.0, ".venv/bin/python -m tests.import_rules"),
        (93.0, ".venv/bin/python -m contracts.build --check"),
        (99.0, "env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest"),
        (130.0, "Success: no issues found in 312 source files"),
        (700.0, "2485 passed, 21 warnings in 577.10s (0:09:37)"),
    ]
    times = phase_times(lines, 701.0)
    # mypy and the quick checks start together (two jobs); pytest starts when the checks are done
    assert times == pytest.approx({
        "before the first phase": 0.5, "Debian packages": 1.5, "venv (pip) and npm ci, side by side": 88.0,
        _CHECKS: 9.0, "pytest, mypy finishing beside it": 602.0})


def test_a_phase_make_skips_is_absent_and_a_repeated_command_does_not_restart_it() -> None:
    pytest_line = "env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest"
    lines = [(1.0, ".venv/bin/ruff check ."), (2.0, pytest_line), (3.0, ".venv/bin/ruff check ."), (5.0, pytest_line)]
    assert phase_times(lines, 9.0) == pytest.approx({"before the first phase": 1.0, _CHECKS: 1.0,
                                                      "pytest, mypy finishing beside it": 7.0})


def test_the_pytest_summary_gives_the_passed_count_and_seconds() -> None:
    found = _SUMMARY.search("==== 2485 passed, 3 skipped, 21 warnings in 577.10s (0:09:37) ====")
    assert found is not None
    assert (found.group(1), found.group(2), found.group(3)) == ("2485", "3", "577.10")
