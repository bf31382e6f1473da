"""Solidity mutation testing: does each one-token bug in the contracts fail a contract test?

Run: ``.venv/bin/python -m benchmarks.mutation_solidity`` (``--list`` shows the mutants
without running them; ``--only StudyRegistry`` or ``--limit 5`` run a subset). Writes
``benchmarks/results/mutation_solidity.json``.

The mutants are made by the project's own small generator over ``contracts/src/*.sol``, three
operators, each applied at one place at a time:

- ``remove-role-modifier``: drop an ``onlyRole(Roles.X)`` modifier from a function;
- ``remove-revert-condition``: replace the condition of ``if (cond) revert E(...)`` (or of a
  ``require``) by ``false`` (``true``), so the refusal never happens;
- ``flip-comparison``: move a comparison across its boundary (``<`` to ``<=``, ``<=`` to
  ``<``, ``>`` to ``>=``, ``>=`` to ``>``, ``==`` to ``!=``, ``!=`` to ``==``). The boundary
  move is the harder one to catch: negating a comparison usually breaks every call, moving
  its boundary breaks only the calls at the boundary.

Comments and string literals are never mutated. The repository is copied once into a
temporary directory (the working tree is never modified, so an interrupted run leaves
nothing to restore); for each mutant the copy's source file is replaced, the artifacts are
rebuilt there with ``python -m contracts.build``, and the contract tests run there with
``-x`` (the fast, refusal-focused files first). A mutant is *killed* when a test fails (the
first failing test is recorded), *survived* when all pass, *not compiled* when solc rejects
it. A survivor either shows a missing test or is equivalent to the original; equivalent
mutants are listed in ``EQUIVALENT`` below with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._cpu import ForeignCpu
from benchmarks.report import cpu, cpu_label

REPO = Path(__file__).resolve().parent.parent
SOURCES = Path("contracts/src")
RESULTS = REPO / "benchmarks" / "results" / "mutation_solidity.json"
#: Fast files first: with -x the run stops at the first failure, so most mutants die in seconds.
TEST_ORDER = (
    "test_custom_errors.py",
    "test_role_refusals.py",
    "test_time_boundaries.py",
    "test_roles.py",
    "test_datasets.py",
    "test_studies.py",
    "test_consent.py",
)
#: Per source file, the test files most likely to catch its mutants, run before TEST_ORDER.
FIRST_FOR = {
    "ConsentRegistry.sol": ("test_time_boundaries.py", "test_custom_errors.py", "test_consent.py"),
    "DatasetRegistry.sol": ("test_custom_errors.py", "test_datasets.py"),
    "StudyRegistry.sol": ("test_custom_errors.py", "test_role_refusals.py", "test_studies.py"),
}
BOUNDARY = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}

#: (file, original line stripped, mutated line stripped) -> why the mutant cannot change behaviour.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("contracts/src/ConsentRegistry.sol", "for (uint256 i = 0; i < _CANDIDATES; ++i) {",
     "for (uint256 i = 0; i <= _CANDIDATES; ++i) {"): (
        "the extra candidate i = 12 is never valid: _candidate climbs 12 / 4 = 3 purpose levels, and from any "
        "purpose (DS -> HMB -> GRU) the third step reaches the `else return (false, 0)` branch; so _permits and "
        "explain skip it and answer as before (only gas differs)"),
}


@dataclass(frozen=True)
class Mutant:
    """One change at one place of one source file."""

    file: str  # relative to the repository
    line: int
    operator: str
    start: int  # character offsets of the replaced text
    end: int
    replacement: str
    original: str  # the whole source line before and after
    mutated: str


@dataclass
class Outcome:
    """What the contract tests made of a mutant."""

    outcome: str  # killed | survived | equivalent | not compiled | timeout
    killer: str | None
    seconds: float
    reason: str | None = None


# ---------------------------------------------------------------------- the generator


def code_mask(text: str) -> list[bool]:
    """For each character, whether it is code (not inside a comment or a string literal)."""
    mask = [True] * len(text)
    i = 0
    while i < len(text):
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = len(text) if end < 0 else end + 2
        elif text[i] == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            end += 1
        else:
            i += 1
            continue
        for k in range(i, min(end, len(text))):
            mask[k] = False
        i = end
    return mask


def _closing_paren(text: str, open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "(":
            depth += 1
        elif text[k] == ")":
            depth -= 1
            if depth == 0:
                return k
    raise ValueError(f"unbalanced parenthesis at offset {open_at}")


def _line_of(text: str, offset: int) -> tuple[int, int, int]:
    """(1-based line number, start, end) of the line holding ``offset``."""
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text.count("\n", 0, offset) + 1, start, len(text) if end < 0 else end


def _mutant(path: str, text: str, operator: str, start: int, end: int, replacement: str) -> Mutant:
    line, ls, le = _line_of(text, start)
    mutated = text[:start] + replacement + text[end:]
    _, ms, me = _line_of(mutated, start)
    return Mutant(path, line, operator, start, end, replacement, text[ls:le].strip(), mutated[ms:me].strip())


_ROLE = re.compile(r"[ \t]*onlyRole\(Roles\.\w+\)")
_IF = re.compile(r"\b(if|require)\s*\(")
_COMPARISON = re.compile(r"<=|>=|==|!=|=>|<<|>>|<|>")


def mutants_of(path: str, text: str) -> list[Mutant]:
    """Every mutant of one source file, in source order."""
    mask = code_mask(text)
    found: list[Mutant] = []
    for m in _ROLE.finditer(text):
        if mask[m.end() - 1]:
            found.append(_mutant(path, text, "remove-role-modifier", m.start(), m.end(), ""))
    for m in _IF.finditer(text):
        if not mask[m.start()]:
            continue
        open_at = m.end() - 1
        close = _closing_paren(text, open_at)
        if m.group(1) == "if":
            after = text[close + 1 :].lstrip()
            after = after[1:].lstrip() if after.startswith("{") else after
            if not after.startswith("revert"):
                continue
            found.append(_mutant(path, text, "remove-revert-condition", open_at + 1, close, "false"))
        else:
            # require(cond, ...): replace the first argument only.
            depth, k = 0, open_at + 1
            while k < close and not (depth == 0 and text[k] == ","):
                depth += text[k] == "("
                depth -= text[k] == ")"
                k += 1
            found.append(_mutant(path, text, "remove-revert-condition", open_at + 1, k, "true"))
    for m in _COMPARISON.finditer(text):
        op = m.group()
        if op in BOUNDARY and mask[m.start()] and not text[_line_of(text, m.start())[1] :].startswith("pragma"):
            found.append(_mutant(path, text, "flip-comparison", m.start(), m.end(), BOUNDARY[op]))
    return sorted(found, key=lambda mu: (mu.start, mu.operator))


def all_mutants(root: Path, only: str | None = None) -> list[Mutant]:
    """The mutants of every ``contracts/src/*.sol`` under ``root`` (optionally of matching files)."""
    result: list[Mutant] = []
    for source in sorted((root / SOURCES).glob("*.sol")):
        rel = str(source.relative_to(root))
        if only and only not in rel:
            continue
        result += mutants_of(rel, source.read_text(encoding="utf-8"))
    return result


# ---------------------------------------------------------------------- the runner


def _copy_repo(dest: Path) -> None:
    """Copy the tracked and new (not ignored) files of the repository, and link the shared tools."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_symlink() or not src.is_file():
            continue  # node_modules and .venv are symlinks; linked below
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    for shared in ("node_modules", ".venv"):
        if (REPO / shared).exists():
            (dest / shared).symlink_to((REPO / shared).resolve())


def _test_files(root: Path, source: str | None = None) -> list[str]:
    present = sorted(p.name for p in (root / "tests" / "contracts").glob("test_*.py"))
    first = FIRST_FOR.get(Path(source).name, ()) if source else ()
    ordered = [name for name in (*first, *TEST_ORDER) if name in present]
    ordered = list(dict.fromkeys(ordered))  # each file once, first place wins
    return [f"tests/contracts/{name}" for name in ordered + [n for n in present if n not in ordered]]


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)  # the copy's packages, not the editable install's
    env.pop("PYTEST_ADDOPTS", None)
    return env


_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()
_INTERRUPTED = threading.Event()  # set on Ctrl-C: results of the mutants cut short are not kept


def _child_signals() -> None:
    # A job started in the background inherits SIGINT ignored; the child must see it, so that an
    # interrupted pytest still runs its fixtures' teardown (which stops its Anvil).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run(cmd: list[str], root: Path, timeout: float | None) -> tuple[int | None, str]:
    """Run ``cmd`` in ``root`` in a process group of its own; (None, output) if over ``timeout`` s."""
    proc = subprocess.Popen(cmd, cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=_child_signals, process_group=0)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        _stop(proc)
        return None, proc.communicate()[0]
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
        _kill_group(proc.pid)  # anything the run left behind (an Anvil whose fixture never finished)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is empty: nothing was left behind
        os.killpg(pgid, signal.SIGKILL)


def _stop(proc: subprocess.Popen[str]) -> None:
    """Interrupt ``proc`` like Ctrl-C (its teardown runs), then end whatever is left of its group."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid)


def _stop_all() -> None:
    """Interrupt every test or build run still going."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        _stop(proc)


def _build(root: Path) -> tuple[int | None, str]:
    return _run([sys.executable, "-m", "contracts.build"], root, None)


_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)  # test ids may hold spaces


def _run_tests(root: Path, timeout: float, source: str | None = None) -> tuple[int | None, str]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-rfE",
           "--no-header", "-o", "addopts=--import-mode=importlib --strict-markers", *_test_files(root, source)]
    return _run(cmd, root, timeout)


def run_mutant(root: Path, mutant: Mutant, timeout: float) -> Outcome:
    """Apply ``mutant`` in the copy at ``root``, rebuild, test, and put the original back."""
    source = root / mutant.file
    original = source.read_text(encoding="utf-8")
    began = time.monotonic()
    try:
        source.write_text(original[: mutant.start] + mutant.replacement + original[mutant.end :], encoding="utf-8")
        built, log = _build(root)
        if built != 0:
            return Outcome("not compiled", None, time.monotonic() - began, log.strip()[-300:])
        code, output = _run_tests(root, timeout, mutant.file)
    finally:
        source.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - began
    if code is None:
        return Outcome("timeout", None, seconds, f"tests ran over {timeout:g} s")
    if code == 0:
        reason = EQUIVALENT.get((mutant.file, mutant.original, mutant.mutated))
        return Outcome("equivalent" if reason else "survived", None, seconds, reason)
    failed = _FAILED.search(output)
    return Outcome("killed", failed.group(1) if failed else f"pytest exit {code}", seconds,
                   None if failed else output.strip()[-300:])


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {k: sum(r["outcome"] == k for r in rows)
              for k in ("killed", "timeout", "survived", "equivalent", "not compiled")}
    judged = counts["killed"] + counts["timeout"] + counts["survived"]
    counts["mutants"] = len(rows)
    counts["kill_rate_non_equivalent"] = round((counts["killed"] + counts["timeout"]) / judged, 4) if judged else None
    by_operator: dict[str, dict[str, int]] = {}
    for r in rows:
        by_operator.setdefault(r["operator"], {}).setdefault(r["outcome"], 0)
        by_operator[r["operator"]][r["outcome"]] += 1
    counts["by_operator"] = by_operator
    return counts


def _key(row: dict[str, Any]) -> tuple[str, int, str, str]:
    return (row["file"], row["line"], row["operator"], row["mutated"])


def write(rows: list[dict[str, Any]], *, seconds: float, foreign: float, complete: bool, tests: list[str],
          out: Path, jobs: int, earlier: dict[str, Any] | None = None) -> None:
    """Write the results file (also after an interrupted run, marked incomplete).

    With ``earlier`` (a previous results file whose survivors were re-run), its rows are kept,
    the re-run ones replaced (their first outcome kept as ``first_outcome``), and both runs'
    times recorded.
    """
    runs: list[dict[str, Any]] = [{
        "measured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "mutants_run": len(rows),
        "runtime_seconds": round(seconds, 1), "foreign_cpu_seconds": round(foreign, 1), "jobs": jobs,
        "complete": complete}]
    if earlier is not None:
        fresh = {_key(r): r for r in rows}
        merged = []
        for old in earlier["mutants"]:
            new = fresh.get(_key(old))
            merged.append(old if new is None else {**new, "first_outcome": old.get("first_outcome", old["outcome"])})
        rows = merged
        first = earlier.get("runs") or [{  # a results file from before runs were listed
            "measured_at": earlier["measured_at"], "mutants_run": len(earlier["mutants"]),
            "runtime_seconds": earlier["runtime_seconds"], "foreign_cpu_seconds": earlier["foreign_cpu_seconds"],
            "jobs": earlier["jobs"], "complete": earlier["complete"]}]
        runs = first + runs
    described = cpu()
    payload = {
        "benchmark": "mutation_solidity",
        "measured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "complete": all(r["complete"] for r in runs),
        "what": "one-token mutants of contracts/src/*.sol run against tests/contracts (pytest -x)",
        "operators": {
            "remove-role-modifier": "drop onlyRole(Roles.X) from a function",
            "remove-revert-condition": "if (cond) revert E(...) -> if (false) revert E(...)",
            "flip-comparison": "move a comparison across its boundary: " + ", ".join(
                f"{a} -> {b}" for a, b in BOUNDARY.items()),
        },
        "tests": tests,
        "tests_first_for_source": FIRST_FOR,
        "totals": _totals(rows),
        "runtime_seconds": round(sum(r["runtime_seconds"] for r in runs), 1),
        "runs": runs,
        "cpu": cpu_label(described),
        "machine": {"cpu": described, "cores": os.cpu_count()},
        "mutants": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Generate the mutants, run each against the contract tests, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--only", help="only mutants of source files whose path contains this")
    parser.add_argument("--limit", type=int, help="run at most this many mutants")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one mutant's tests")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run side by side (one repository copy each)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    parser.add_argument("--retry-survivors", action="store_true",
                        help="re-run only the mutants that survived in --out and update it")
    args = parser.parse_args(argv)

    mutants = all_mutants(REPO, args.only)[: args.limit]
    earlier: dict[str, Any] | None = None
    if args.retry_survivors:
        # After adding tests: re-run only what survived last time, and update that results file.
        earlier = json.loads(args.out.read_text(encoding="utf-8"))
        again = {_key(r) for r in earlier["mutants"] if r["outcome"] == "survived"}
        mutants = [mu for mu in mutants if _key(asdict(mu)) in again]
    if args.list:
        for mu in mutants:
            print(f"{mu.file}:{mu.line} {mu.operator}: {mu.original}  ->  {mu.mutated}")
        print(f"{len(mutants)} mutants")
        return 0
    # Ctrl-C and a plain kill both end the run the same way: results so far are written, marked
    # incomplete, and the repository copies are removed. The working tree is never touched.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    complete = False
    jobs = max(1, args.jobs)
    with tempfile.TemporaryDirectory(prefix="metai-solmut-") as tmp, ForeignCpu() as foreign:
        # One copy per job: each mutant rewrites its copy's source and artifacts.
        roots = [Path(tmp) / f"copy{j}" for j in range(jobs)]
        for root in roots:
            root.mkdir()
            _copy_repo(root)
        tests = _test_files(roots[0])
        print(f"{len(mutants)} mutants, {jobs} job(s); tests: {' '.join(tests)}", file=sys.stderr, flush=True)
        try:
            for root in roots:
                # The unmutated copy must build and pass, or every mutant would look killed.
                if _build(root)[0] != 0:
                    raise SystemExit("the unmutated contracts do not build in the copy; run python -m contracts.build")
            code, output = _run_tests(roots[0], args.timeout)
        except KeyboardInterrupt:
            _stop_all()
            raise SystemExit("interrupted during the unmutated run; no results written") from None
        if code != 0:
            raise SystemExit(f"the contract tests fail without any mutant (exit {code}):\n{output[-2000:]}")
        print(f"baseline: tests pass unmutated ({time.monotonic() - began:.0f} s)", file=sys.stderr, flush=True)
        free = list(roots)
        done = 0

        def one(mu: Mutant) -> dict[str, Any]:
            nonlocal done
            root = free.pop()  # list.pop/append are atomic under the GIL
            try:
                result = run_mutant(root, mu, args.timeout)
            finally:
                free.append(root)
            if _INTERRUPTED.is_set():
                return {}
            done += 1
            print(f"[{done}/{len(mutants)}] {mu.file.rsplit('/', 1)[-1]}:{mu.line} {mu.operator}: "
                  f"{result.outcome}{' by ' + result.killer if result.killer else ''} ({result.seconds:.0f} s)",
                  file=sys.stderr, flush=True)
            return {**{k: v for k, v in asdict(mu).items() if k not in ("start", "end", "replacement")},
                    "outcome": result.outcome, "killer": result.killer,
                    "seconds": round(result.seconds, 1), "reason": result.reason}

        pool = ThreadPoolExecutor(max_workers=jobs)
        futures = []
        try:
            futures = [pool.submit(one, mu) for mu in mutants]
            for future in futures:
                rows.append(future.result())
            complete = True
        finally:
            if not complete:
                _INTERRUPTED.set()
                print("interrupted: stopping the running tests", file=sys.stderr, flush=True)
                for future in futures:
                    future.cancel()
                _stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
            write(rows, seconds=time.monotonic() - began, foreign=foreign.seconds, complete=complete,
                  tests=tests, out=args.out, jobs=jobs, earlier=earlier)
    totals = _totals(json.loads(args.out.read_text(encoding="utf-8"))["mutants"])
    print(f"{totals['killed']} killed, {totals['timeout']} timed out, {totals['survived']} survived, "
          f"{totals['equivalent']} equivalent, {totals['not compiled']} not compiled; "
          f"{time.monotonic() - began:.0f} s; results in {args.out}", file=sys.stderr)
    return 0 if totals["survived"] == 0 else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(f"interrupted; results so far (marked incomplete) in {RESULTS} or --out") from None
