"""`make mutation --resume` judges survivors again and keeps killed verdicts only while that is sound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import mutation
from benchmarks.mutation import Group, ResumeError, check_resumable, reset_survivors

# mutmut's exit codes: 1 killed, 0 survived, 33 no tests, 36 timeout, None not yet judged.
VERDICTS = {"pkg.mod.x_f__mutmut_1": 1, "pkg.mod.x_f__mutmut_2": 0, "pkg.mod.x_f__mutmut_3": 33,
            "pkg.mod.x_g__mutmut_1": 0, "pkg.mod.x_g__mutmut_2": None, "pkg.mod.x_g__mutmut_3": 36}


def _sandbox(tmp_path: Path) -> Path:
    """A sandbox holding the meta file mutmut leaves after a pass over pkg/mod.py."""
    sandbox = tmp_path / "sandbox"
    (sandbox / "pkg").mkdir(parents=True)
    (sandbox / "pkg" / "mod.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    (sandbox / "pyproject.toml").write_text('[tool.mutmut]\nsource_paths = ["pkg"]\nonly_mutate = ["pkg/mod.py"]\n')
    meta = sandbox / "mutants" / "pkg" / "mod.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": VERDICTS, "hash_by_function_name": {},
                                "type_check_error_by_key": {}, "durations_by_key": {},
                                "estimated_durations_by_key": {}}))
    return sandbox


def test_only_survivors_and_timeouts_lose_their_verdict(tmp_path: Path) -> None:
    sandbox = _sandbox(tmp_path)
    assert reset_survivors(sandbox) == 3
    after = json.loads((sandbox / "mutants" / "pkg" / "mod.py.meta").read_text())["exit_code_by_key"]
    expected = dict(VERDICTS, **{"pkg.mod.x_f__mutmut_2": None, "pkg.mod.x_g__mutmut_1": None,
                                 "pkg.mod.x_g__mutmut_3": None})
    assert after == expected


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Group, Path, list[str], Path]:
    """A repository with one module and one test file, and the sandbox a first pass left for it."""
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_mod.py").write_text("def test_f():\n    pass\n")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.mutmut]\nsource_paths = ["pkg"]\n')
    group = Group("g", ("pkg/mod.py",), ("tests/test_mod*.py",))
    tests = mutation.expand_tests(group.tests, root)
    sandbox = root / "run" / "mutation" / group.name
    (sandbox / "mutants").mkdir(parents=True)
    (sandbox / "pyproject.toml").write_text(mutation.group_pyproject(group, tests, root / "pyproject.toml"))
    (sandbox / mutation.DIGEST_FILE).write_text(mutation.modules_digest(group, root) + "\n")
    return group, sandbox, tests, root


def test_the_same_code_and_tests_can_be_resumed(repo: tuple[Group, Path, list[str], Path]) -> None:
    group, sandbox, tests, root = repo
    check_resumable(group, tests, sandbox, root)


def test_changed_code_is_refused(repo: tuple[Group, Path, list[str], Path]) -> None:
    group, sandbox, tests, root = repo
    module = root / "pkg" / "mod.py"
    module.write_text(module.read_text().replace("return 1", "return 2"))
    with pytest.raises(ResumeError, match=r"pkg/mod\.py changed since the earlier pass"):
        check_resumable(group, tests, sandbox, root)


def test_another_test_selection_is_refused(repo: tuple[Group, Path, list[str], Path]) -> None:
    group, sandbox, _, root = repo
    (root / "tests" / "test_mod_more.py").write_text("def test_more():\n    pass\n")
    with pytest.raises(ResumeError, match="test files or settings changed"):
        check_resumable(group, mutation.expand_tests(group.tests, root), sandbox, root)


def test_a_group_never_run_is_refused(repo: tuple[Group, Path, list[str], Path]) -> None:
    group, sandbox, tests, root = repo
    (sandbox / mutation.DIGEST_FILE).unlink()
    with pytest.raises(ResumeError, match="no earlier pass"):
        check_resumable(group, tests, sandbox, root)


def test_an_earlier_run_keeps_only_modules_a_group_still_mutates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  ) -> None:
    monkeypatch.setattr(mutation, "RESULTS_DIR", tmp_path)
    previous = {"extra": {
        "modules": [{"module": "coordinator/federation.py", "score": 0.12},  # mutated by no group any more
                    {"module": "node/enrol.py", "score": 0.99}, {"module": "node/deid.py", "score": 0.5}],
        "groups": {"federation": {"runtime_s": 60.0}, "enrol": {"runtime_s": 90.0}, "deid": {"runtime_s": 9.0}},
    }}
    previous["measured_at"] = "2026-11-30T21:49:10+00:00"
    (tmp_path / "mutation.json").write_text(json.dumps(previous))
    merged = mutation._merge_previous([{"module": "node/deid.py", "score": 0.95}])
    # a row kept from the earlier file says when that file measured it; its commit was not recorded then
    assert merged == [{"module": "node/deid.py", "score": 0.95},
                      {"module": "node/enrol.py", "score": 0.99, "measured_at": "2026-11-30T21:49:10+00:00",
                       "commit": "unknown"}]
    deid = next(g for g in mutation.GROUPS if g.name == "deid")
    assert mutation._previous_groups([deid]) == {"enrol": {"runtime_s": 90.0}}


def test_resuming_brings_the_unmutated_copies_up_to_date_and_leaves_the_mutated_one(
        repo: tuple[Group, Path, list[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    group, sandbox, _, root = repo
    monkeypatch.setattr(mutation, "PACKAGES", ("pkg",))
    (root / "pkg" / "helper.py").write_text("LIMIT = 2\n")
    (root / "pkg" / "data").mkdir()
    (root / "pkg" / "data" / "table.json").write_text("[1]")
    copies = sandbox / "mutants" / "pkg"
    copies.mkdir(parents=True)
    (copies / "mod.py").write_text("# mutmut's trampolines\n")
    (copies / "helper.py").write_text("LIMIT = 1\n")  # as it was at the first pass
    (copies / "gone.py").write_text("X = 1\n")  # deleted from the repository since
    changed = mutation.refresh_unmutated(group, sandbox, root)
    assert sorted(changed) == ["pkg/data/table.json", "pkg/gone.py", "pkg/helper.py"]
    assert (copies / "helper.py").read_text() == "LIMIT = 2\n"
    assert (copies / "data" / "table.json").read_text() == "[1]"
    assert not (copies / "gone.py").exists()
    assert (copies / "mod.py").read_text() == "# mutmut's trampolines\n"
    assert mutation.refresh_unmutated(group, sandbox, root) == []


def test_the_solidity_rows_count_each_contracts_mutants_by_outcome(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mutation, "RESULTS_DIR", tmp_path)
    outcomes = {"A.sol": ["killed", "killed", "equivalent"], "B.sol": ["killed", "survived"]}
    mutants = [{"file": f"contracts/src/{name}", "outcome": o} for name, os_ in outcomes.items() for o in os_]
    (tmp_path / "mutation_solidity.json").write_text(json.dumps(
        {"measured_at": "2026-11-30T21:38:40+00:00", "mutants": mutants}))
    assert mutation._solidity_rows() == [
        "| Solidity | `contracts/src/A.sol` | 3 | 2 | 0 | 0 | 1 | 0 | 0 | 100.0 % | 2026-11-30 21:38 |",
        "| Solidity | `contracts/src/B.sol` | 2 | 1 | 1 | 0 | 0 | 0 | 0 | **50.0 %** | 2026-11-30 21:38 |",
    ]


def test_the_code_version_names_the_modules_last_commit_and_uncommitted_changes(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "m.py").write_text("X = 1\n")
    git("add", "m.py")
    git("commit", "-qm", "m")
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout.strip()
    (tmp_path / "other.py").write_text("Y = 1\n")
    git("add", "other.py")
    git("commit", "-qm", "other")  # a later commit that leaves m.py alone
    assert mutation.code_version(["m.py"], tmp_path) == head
    (tmp_path / "m.py").write_text("X = 2\n")
    assert mutation.code_version(["m.py"], tmp_path) == head + "+modified"
    assert mutation.code_version(["m.py"], tmp_path / "absent") == "unknown"


def test_the_verdicts_time_is_that_of_the_newest_verdict_file(tmp_path: Path) -> None:
    import os

    sandbox = _sandbox(tmp_path)
    meta = sandbox / "mutants" / "pkg" / "mod.py.meta"
    os.utime(meta, (1_800_000_000, 1_800_000_000))
    assert mutation.verdicts_time(sandbox) == "2027-01-15T08:00:00+00:00"
    assert mutation.verdicts_time(tmp_path / "none") == ""
