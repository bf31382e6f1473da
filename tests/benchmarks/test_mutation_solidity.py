"""The Solidity mutant generator: which places it mutates and how, on a small hand-written source."""

from __future__ import annotations

from benchmarks.mutation_solidity import code_mask, mutants_of

SOURCE = """// a < b in a comment is not code
contract C {
    mapping(address => uint256) private _m; /* x >= y */
    string private constant S = "p != q";
    function f(uint256 a) external onlyRole(Roles.HOSPITAL) {
        if (a == 0) revert CZero();
        if (check(a, 1)) {
            revert CBad(a);
        }
        if (a > 3) return;
        require(a <= 9, "too big");
        uint256 b = a << 2;
    }
}
"""


def test_comments_and_strings_are_not_code() -> None:
    """Characters inside //, /* */ and string literals are masked out."""
    mask = code_mask(SOURCE)
    assert not mask[SOURCE.index("a < b")]
    assert not mask[SOURCE.index("x >= y")]
    assert not mask[SOURCE.index("p != q")]
    assert mask[SOURCE.index("a == 0")]


def test_each_operator_mutates_exactly_the_places_it_names() -> None:
    """One mutant per role modifier, per if-revert/require condition, per comparison in code."""
    found = [(m.line, m.operator, m.mutated) for m in mutants_of("C.sol", SOURCE)]
    assert found == [
        (5, "remove-role-modifier", "function f(uint256 a) external {"),
        (6, "remove-revert-condition", "if (false) revert CZero();"),
        (6, "flip-comparison", "if (a != 0) revert CZero();"),
        (7, "remove-revert-condition", "if (false) {"),
        (10, "flip-comparison", "if (a >= 3) return;"),
        (11, "remove-revert-condition", 'require(true, "too big");'),
        (11, "flip-comparison", 'require(a < 9, "too big");'),
    ]


def test_retrying_survivors_updates_only_their_rows(tmp_path) -> None:
    """A re-run replaces the re-run rows, keeps their first outcome, and adds up both runs' time."""
    import json

    from benchmarks.mutation_solidity import write

    def row(line: int, outcome: str) -> dict[str, object]:
        return {"file": "C.sol", "line": line, "operator": "flip-comparison", "original": "a", "mutated": "b",
                "outcome": outcome, "killer": None, "seconds": 1.0, "reason": None}

    out = tmp_path / "m.json"
    write([row(1, "killed"), row(2, "survived")], seconds=10.0, foreign=0.0, complete=True, tests=[], out=out,
          jobs=1)
    first = json.loads(out.read_text())
    write([{**row(2, "killed"), "killer": "t::x"}], seconds=3.0, foreign=0.0, complete=True, tests=[], out=out,
          jobs=1, earlier=first)
    merged = json.loads(out.read_text())
    assert [(r["line"], r["outcome"], r.get("first_outcome")) for r in merged["mutants"]] == [
        (1, "killed", None), (2, "killed", "survived")]
    assert (merged["totals"]["survived"], merged["totals"]["killed"]) == (0, 2)
    assert (merged["runtime_seconds"], len(merged["runs"])) == (13.0, 2)
