"""The mutation benchmark's bookkeeping: stable mutant keys, reviewed equivalents, per-module scores."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from benchmarks import _mutation_tally as tally
from benchmarks import mutation

DIFF_SCALE = """--- raw_data/filters.py
+++ raw_data/filters.py
@@ -1,3 +1,3 @@
 def padded_length(n_detectors):
-    return   2 * n_detectors
+    return 3 * n_detectors
"""
DIFF_MSG = """--- node/deid.py
+++ node/deid.py
@@ -1,2 +1,2 @@
 def check(x):
-    raise DeidError("bad tag")
+    raise DeidError("XXbad tagXX")
"""


def _m(name: str, module: str, status: str, diff: str) -> tally.Mutant:
    return tally.Mutant(name=name, module=module, status=status, diff=diff)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("raw_data.filters.x_padded_length__mutmut_3", "padded_length"),
        ("node.deid.xǁDeidEngineǁapply__mutmut_12", "DeidEngine.apply"),
    ],
)
def test_function_is_read_from_mutmut_names(name: str, expected: str) -> None:
    assert tally.function_of(name) == expected


def test_a_name_without_mutmut_3_naming_is_refused() -> None:
    with pytest.raises(tally.TallyError, match=r"'node\.deid\.apply__mutmut_1' has no x_<function> part"):
        tally.function_of("node.deid.apply__mutmut_1")


def test_change_ignores_headers_context_and_spacing() -> None:
    assert tally.change_of(DIFF_SCALE) == "- return 2 * n_detectors | + return 3 * n_detectors"


def test_keys_do_not_depend_on_mutmut_numbering_and_repeats_are_numbered() -> None:
    first = [
        _m("raw_data.filters.x_padded_length__mutmut_1", "raw_data/filters.py", "killed", DIFF_SCALE),
        _m("raw_data.filters.x_padded_length__mutmut_2", "raw_data/filters.py", "killed", DIFF_SCALE),
    ]
    renumbered = [
        _m("raw_data.filters.x_padded_length__mutmut_7", "raw_data/filters.py", "killed", DIFF_SCALE),
        _m("raw_data.filters.x_padded_length__mutmut_9", "raw_data/filters.py", "killed", DIFF_SCALE),
    ]
    base = "raw_data/filters.py::padded_length::- return 2 * n_detectors | + return 3 * n_detectors"
    assert sorted(tally.stable_keys(first).values()) == [base, base + "#2"]
    assert sorted(tally.stable_keys(renumbered).values()) == [base, base + "#2"]


def _equivalents(tmp_path: Path, body: str) -> dict[str, tally.Equivalent]:
    path = tmp_path / "mutation_equivalent.toml"
    path.write_text(body, encoding="utf-8")
    return tally.load_equivalents(path)


MSG_ENTRY = """
[[equivalent]]
module = "node/deid.py"
function = "check"
change = '- raise DeidError("bad tag") | + raise DeidError("XXbad tagXX")'
reason = "the message text is shown to a person, no caller parses it"
"""


def test_reviewed_survivor_counts_as_equivalent_and_leaves_the_score(tmp_path: Path) -> None:
    equivalents = _equivalents(tmp_path, MSG_ENTRY)
    mutants = [
        _m("node.deid.x_check__mutmut_1", "node/deid.py", "survived", DIFF_MSG),
        *(_m(f"node.deid.x_other__mutmut_{i}", "node/deid.py", "killed", f"-a{i}\n+b{i}") for i in range(8)),
        _m("node.deid.x_other__mutmut_8", "node/deid.py", "timeout", "-t\n+u"),
        _m("node.deid.x_other__mutmut_9", "node/deid.py", "survived", "-s\n+v"),
        _m("node.deid.x_other__mutmut_10", "node/deid.py", "not checked", "-n\n+o"),
    ]
    (module,), stale = tally.tally(mutants, equivalents)
    counts = module.as_dict()
    assert (counts["mutants"], counts["killed"], counts["timeout"], counts["survived"]) == (12, 8, 1, 1)
    assert (counts["equivalent"], counts["not run"]) == (1, 1)
    # (8 killed + 1 timeout) / (12 - 1 equivalent - 1 not run) = 0.9
    assert counts["score"] == pytest.approx(0.9)
    assert counts["target_met"] is True
    assert counts["survivors"] == ["node/deid.py::other::- s | + v"]
    assert stale == []


def test_an_equivalent_entry_whose_mutant_was_killed_is_stale(tmp_path: Path) -> None:
    equivalents = _equivalents(tmp_path, MSG_ENTRY)
    (module,), stale = tally.tally([_m("node.deid.x_check__mutmut_1", "node/deid.py", "killed", DIFF_MSG)], equivalents)
    assert module.counts[tally.EQUIVALENT] == 0
    assert stale == ['node/deid.py::check::- raise DeidError("bad tag") | + raise DeidError("XXbad tagXX")']


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    with pytest.raises(tally.TallyError, match=r"entry 1 lacks reason"):
        _equivalents(tmp_path, MSG_ENTRY.replace("the message text is shown to a person, no caller parses it", " "))


def test_group_pyproject_narrows_the_repository_mutmut_section(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n\n[tool.mutmut]\ndebug = false\nonly_mutate = ["x.py"]\n'
        '\n[tool.ruff]\nline-length = 120\n',
        encoding="utf-8",
    )
    group = mutation.Group("g", ("node/deid.py",), ("tests/node/test_deid*.py",), keyword="not slowest")
    text = mutation.group_pyproject(group, ["tests/node/test_deid.py"], pyproject)
    data = tomllib.loads(text)
    assert data["tool"]["mutmut"]["only_mutate"] == ["node/deid.py"]
    assert data["tool"]["mutmut"]["debug"] is False
    assert data["tool"]["mutmut"]["pytest_add_cli_args_test_selection"] == [
        "tests/node/test_deid.py", "-k", "not slowest"]
    assert data["tool"]["ruff"]["line-length"] == 120
    assert data["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]


def test_a_reviewed_equivalent_that_timed_out_counts_as_equivalent_not_killed(tmp_path: Path) -> None:
    equivalents = _equivalents(tmp_path, MSG_ENTRY)
    mutants = [_m("node.deid.x_check__mutmut_1", "node/deid.py", "timeout", DIFF_MSG),
               _m("node.deid.x_other__mutmut_1", "node/deid.py", "killed", "-a\n+b")]
    (module,), stale = tally.tally(mutants, equivalents)
    counts = module.as_dict()
    assert (counts["killed"], counts["timeout"], counts["equivalent"]) == (1, 0, 1)
    assert stale == []
