"""Mutation testing of the trust-critical Python modules with mutmut.

Run: ``.venv/bin/python -m benchmarks.mutation`` (or ``make mutation``); ``--only deid fbp``
runs some groups, ``--list`` shows them. Each group names the modules mutmut mutates and the
fast tests that judge them (no end-to-end federation runs). A group runs in its own sandbox,
``run/mutation/<group>/``: links to the repository's packages and tests and a
``pyproject.toml`` whose ``[tool.mutmut]`` section is the repository's plus the group's
``only_mutate`` and test selection. mutmut copies the packages into ``mutants/`` there,
rewrites every function of the chosen modules into a trampoline that can switch to any of
its mutants, records which tests reach each function, and then, per mutant, forks a worker
that runs only those tests.

After tests are added to a group's test files, ``--resume`` keeps the group's sandbox and
has mutmut judge again only the mutants that survived, timed out or were not judged; killed verdicts stand
(the mutated code is checked to be unchanged and the test files the same, so no test was taken
away; the sandbox's copies of the other modules are brought up to date first).

Survivors that change no observable behaviour are listed, with the reason, in
``benchmarks/mutation_equivalent.toml``, keyed by module, function and the change (see
:mod:`benchmarks._mutation_tally`). Writes ``benchmarks/results/mutation.json`` (per module:
killed, survived, timeout, equivalent, no tests, the score, every survivor) and the mutation
table in ``benchmarks/README.md``, which also shows the Solidity mutants of
``results/mutation_solidity.json`` when that file exists.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _mutation_tally as tally_mod
from benchmarks.report import README, RESULTS_DIR, Measurement, write_results

REPO = Path(__file__).resolve().parent.parent
SANDBOXES = REPO / "run" / "mutation"
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalent.toml"
# Every package a test may import: mutmut must copy them all into mutants/, or the tests
# would import the unmutated code through the editable install.
PACKAGES = ("contracts", "raw_data", "node", "coordinator", "deploy", "tasks")
# Read by tests or the code under test through paths relative to the repository root.
# (benchmarks: for the pytest plugin benchmarks._mutmut_inprocess named in [tool.mutmut].)
ROOT_LINKS = ("node_modules", "docs", "benchmarks")
WALL_TIME_FILE = "wall_time_s"  # a group's run time, kept in its sandbox for --tally-only
DIGEST_FILE = "modules_sha256"  # what the first pass mutated, checked before --resume
_MUTATION_START = "<!-- mutation:start -->"
_MUTATION_END = "<!-- mutation:end -->"


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the tests that judge them."""

    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    keyword: str = ""  # a pytest -k expression leaving out slow tests of those files
    weight: float = 1.0  # share of --budget-min: groups with many mutants or slow tests get more


# Tests are the fast ones that exercise each module; the federated end-to-end runs
# (tests/federated/test_study_*) are left out, they take minutes per mutant.
GROUPS = (
    Group("consent", ("contracts/consent.py",), ("tests/contracts/test_consent*.py", "tests/node/test_cohort*.py")),
    Group(
        "merkle",
        ("contracts/merkle.py",),
        ("tests/contracts/test_merkle*.py", "tests/node/test_cohort*.py", "tests/contracts/test_datasets.py"),
    ),
    Group("cohort", ("node/cohort.py",), ("tests/node/test_cohort*.py",)),
    Group("enrol", ("node/enrol.py",), ("tests/node/test_enrol*.py", "tests/node/test_cohort*.py")),
    Group(
        "deid",
        ("node/deid.py",),
        ("tests/node/test_deid*.py", "tests/node/test_dicom_file.py"),
        weight=3.0,
    ),
    # The coordinator's checks and aggregation (rounds.py) and its DP noise and accounting
    # (privacy.py); the study loop around them (federation.py) is judged by the end-to-end runs.
    Group(
        "coordinator",
        ("coordinator/rounds.py", "coordinator/privacy.py"),
        ("tests/coordinator/test_federation*.py", "tests/coordinator/test_privacy*.py"),
    ),
    Group("training", ("node/training.py",), ("tests/federated/test_node_round.py", "tests/node/test_training*.py")),
    Group("train", ("tasks/train.py",), ("tests/tasks/test_train*.py", "tests/tasks/test_batch*.py")),
    Group(
        "fbp",
        ("raw_data/filters.py", "raw_data/backprojection.py", "raw_data/filtered_backprojection.py"),
        ("tests/raw_data/test_fbp*.py", "tests/raw_data/test_backprojection*.py", "tests/raw_data/test_filter*.py"),
        # Gradient checks (45 s and 15 s; test_backprojection_derivatives_exact checks the same
        # derivatives exactly in a second) and the comparison with scikit-image's slow iradon; the
        # exact-sinogram and phantom tests judge the same arithmetic in well under a second each.
        keyword="not test_fbp_is_differentiable and not test_back_projection_has_first_and_second_derivatives"
        " and not skimage",
        weight=2.0,
    ),
)


def _toml_value(value: Any) -> str:
    """Write a TOML value: strings, numbers, booleans and lists of them (JSON spells these alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | list):
        return json.dumps(value)
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML; use a string, number or list")


def base_config(pyproject: Path = REPO / "pyproject.toml") -> dict[str, Any]:
    """Return the repository's ``[tool.mutmut]`` section (the settings every group shares)."""
    return dict(tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("mutmut", {}))


def expand_tests(patterns: Sequence[str], root: Path = REPO) -> list[str]:
    """Return the test files the group's patterns match, sorted; patterns that match nothing are dropped.

    Patterns such as ``tests/coordinator/test_check*.py`` name test files other engineers are
    adding, so a group picks them up once they are on the branch.
    """
    found: set[str] = set()
    for pattern in patterns:
        found.update(str(p.relative_to(root)) for p in root.glob(pattern) if p.is_file())
    return sorted(found)


def group_pyproject(group: Group, tests: list[str], pyproject: Path = REPO / "pyproject.toml") -> str:
    """Return the sandbox's pyproject.toml: the repository's, its [tool.mutmut] narrowed to the group."""
    text = pyproject.read_text(encoding="utf-8")
    config = base_config(pyproject)
    config["source_paths"] = list(PACKAGES)
    config["only_mutate"] = list(group.modules)
    config["pytest_add_cli_args_test_selection"] = tests + (["-k", group.keyword] if group.keyword else [])
    kept, skipping = [], False
    for line in text.splitlines():
        if line.strip().startswith("["):
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            kept.append(line)
    section = ["[tool.mutmut]", *(f"{key} = {_toml_value(value)}" for key, value in config.items())]
    return "\n".join([*kept, "", *section, ""])


def modules_digest(group: Group, root: Path = REPO) -> str:
    """SHA-256 over the group's module sources: a resumed run must mutate the code the first pass mutated."""
    digest = hashlib.sha256()
    for module in group.modules:
        digest.update(module.encode() + b"\0" + (root / module).read_bytes() + b"\0")
    return digest.hexdigest()


class ResumeError(RuntimeError):
    """A group's sandbox cannot be resumed (none yet, other code, or another test selection)."""


def check_resumable(group: Group, tests: list[str], sandbox: Path, root: Path = REPO) -> None:
    """Raise :class:`ResumeError` unless ``sandbox`` holds a finished pass over the same code and test files.

    Resuming keeps the killed verdicts of the earlier pass. That is sound only when the mutated
    modules are byte for byte the ones it mutated and tests were added, not removed: the test files
    must be the same (new tests go into them), or mutmut would judge against another selection.
    """
    if not (sandbox / "mutants").is_dir() or not (sandbox / DIGEST_FILE).exists():
        raise ResumeError(f"group {group.name}: no earlier pass in {sandbox} to resume; run it without --resume")
    if (sandbox / DIGEST_FILE).read_text(encoding="utf-8").strip() != modules_digest(group, root):
        raise ResumeError(f"group {group.name}: {', '.join(group.modules)} changed since the earlier pass; "
                          "its verdicts no longer apply, run it without --resume")
    expected = group_pyproject(group, tests, root / "pyproject.toml")
    if (sandbox / "pyproject.toml").read_text(encoding="utf-8") != expected:
        raise ResumeError(f"group {group.name}: its test files or settings changed since the earlier pass "
                          "(add new tests to the group's existing files, or run it without --resume)")


def refresh_unmutated(group: Group, sandbox: Path, root: Path = REPO) -> list[str]:
    """Bring the sandbox's copies of the packages up to date, except the group's mutated modules.

    mutmut copies the packages into ``mutants/`` once and never overwrites a file there, so code
    changed since the earlier pass (a helper the tests call, a validation added elsewhere) would
    not be seen by the resumed pass. The mutated modules stay as mutmut generated them (their
    source is checked unchanged); files gone from the repository are removed. Returns the
    relative paths written or removed.
    """
    mutated = set(group.modules)
    changed = []
    for package in PACKAGES:
        source, copy = root / package, sandbox / "mutants" / package
        wanted = {p.relative_to(root).as_posix() for p in source.rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts}
        for rel in sorted(wanted - mutated):
            target = sandbox / "mutants" / rel
            if not target.exists() or target.read_bytes() != (root / rel).read_bytes():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, target)
                changed.append(rel)
        for old in sorted(copy.rglob("*.py")) if copy.is_dir() else []:
            rel = old.relative_to(sandbox / "mutants").as_posix()
            if rel not in wanted and rel not in mutated and "__pycache__" not in old.parts:
                old.unlink()
                changed.append(rel)
    return changed


def reset_survivors(sandbox: Path) -> int:
    """Clear the verdict of every surviving or timed-out mutant in ``sandbox`` so mutmut judges it again.

    Returns how many were cleared.
    """
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._mutmut_export", "--reset-survivors"],
        cwd=sandbox, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True, text=True,
    )
    return int(done.stdout.strip())


def prepare_sandbox(group: Group, tests: list[str]) -> Path:
    """Create a fresh ``run/mutation/<group>/`` and return it."""
    sandbox = SANDBOXES / group.name
    if sandbox.exists():
        shutil.rmtree(sandbox)
    (sandbox / "mutants").mkdir(parents=True)
    for name in (*PACKAGES, "tests"):
        (sandbox / name).symlink_to(REPO / name, target_is_directory=True)
    # mutmut copies only the packages and tests; the rest the tests reach by path is linked.
    for name in ROOT_LINKS:
        if (REPO / name).exists():
            (sandbox / "mutants" / name).symlink_to((REPO / name).resolve(), target_is_directory=True)
    (sandbox / "pyproject.toml").write_text(group_pyproject(group, tests), encoding="utf-8")
    (sandbox / DIGEST_FILE).write_text(modules_digest(group) + "\n", encoding="utf-8")
    return sandbox


def run_group(group: Group, max_children: int, budget_s: float | None = None, resume: bool = False,
              ) -> tuple[list[tally_mod.Mutant], float, list[str]]:
    """Run mutmut over one group; return its mutants, the wall time in seconds and the tests used.

    With ``budget_s`` mutmut is interrupted after that many seconds; mutants it had not judged
    by then are counted as not run. With ``resume`` the earlier pass's sandbox is kept: only its
    survivors and the mutants it had not judged are run again, and the returned wall time is the
    sum of both passes.
    """
    tests = expand_tests(group.tests)
    if not tests:
        raise FileNotFoundError(f"group {group.name}: no test file matches {group.tests}; fix GROUPS")
    earlier_s = 0.0
    if resume:
        sandbox = SANDBOXES / group.name
        check_resumable(group, tests, sandbox)
        timed = sandbox / WALL_TIME_FILE
        earlier_s = float(timed.read_text(encoding="utf-8")) if timed.exists() else 0.0
        refreshed = refresh_unmutated(group, sandbox)
        print(f"\n== {group.name}: resuming; {len(refreshed)} unmutated files brought up to date; "
              f"{reset_survivors(sandbox)} survivors and timeouts to judge again", flush=True)
    else:
        sandbox = prepare_sandbox(group, tests)
    print(f"\n== {group.name}: mutating {', '.join(group.modules)} against {len(tests)} test files", flush=True)
    env = {**os.environ, "PYTHONPATH": "", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())",
         "run", "--max-children", str(max_children)],
        cwd=sandbox, env=env, start_new_session=True,  # its own process group, to stop all of it
    )
    try:
        returncode = proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        # mutmut stops its workers on Ctrl-C and keeps every verdict reached so far (the rest are
        # reported as not run); its fork server and the test session's Anvil go with the group.
        print(f"\n== {group.name}: budget of {budget_s:.0f} s spent, stopping mutmut", flush=True)
        os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        returncode = 0
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        stop_leftovers(sandbox)
    elapsed = earlier_s + time.monotonic() - start
    if returncode != 0:
        raise RuntimeError(
            f"group {group.name}: mutmut exited with {returncode} after {elapsed:.0f} s; its output is above "
            f"and its files in {sandbox}"
        )
    (sandbox / WALL_TIME_FILE).write_text(f"{elapsed:.1f}\n", encoding="utf-8")
    return export_sandbox(sandbox), elapsed, tests


def stop_leftovers(sandbox: Path) -> list[int]:
    """SIGKILL every process still running a program from ``sandbox``; return their PIDs.

    A mutant that times out has its worker killed by mutmut, but the Anvil its test session
    started runs in a session of its own and outlives it. Such processes run the sandbox's own
    copy of the tools (``mutants/node_modules/...``), so their command line names the sandbox.
    """
    marker = str(sandbox) + os.sep
    stopped = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if argv and argv[0].decode(errors="replace").startswith(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                stopped.append(int(entry.name))
    return stopped


def export_sandbox(sandbox: Path) -> list[tally_mod.Mutant]:
    """Read the mutants and verdicts mutmut left in ``sandbox`` (its own readers, in a child process)."""
    exported = subprocess.run(
        [sys.executable, "-m", "benchmarks._mutmut_export"],
        cwd=sandbox, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True, text=True,
    )
    return [tally_mod.Mutant(**m) for m in json.loads(exported.stdout)]


def _solidity_rows() -> list[str]:
    """Table rows for the Solidity mutants, one per contract, from results/mutation_solidity.json if it exists."""
    path = RESULTS_DIR / "mutation_solidity.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    by_file: dict[str, dict[str, Any]] = {}
    for mutant in data.get("mutants", []):
        entry = by_file.setdefault(mutant["file"], {
            "module": mutant["file"], "mutants": 0, "killed": 0, "survived": 0, "timeout": 0, "equivalent": 0,
            "no tests": 0, "not run": 0, "measured_at": data.get("measured_at", ""), "commit": data.get("commit", "")})
        entry["mutants"] += 1
        outcome = mutant.get("outcome", "not run")
        entry[outcome if outcome in entry else "not run"] += 1
    rows = []
    for entry in sorted(by_file.values(), key=lambda e: e["module"]):
        judged = entry["mutants"] - entry["equivalent"] - entry["not run"]
        entry["score"] = (entry["killed"] + entry["timeout"]) / judged if judged else None
        entry["target_met"] = None if entry["score"] is None else entry["score"] == 1.0  # all killed, the issue says
        rows.append(_row(entry, kind="Solidity"))
    return rows


def _row(entry: dict[str, Any], kind: str = "Python") -> str:
    score = entry.get("score")
    shown = "n/a" if score is None else f"{100 * score:.1f} %"
    if entry.get("target_met") is False:
        shown = f"**{shown}**"
    cells = [kind, f"`{entry['module']}`", entry.get("mutants", ""), entry.get("killed", ""),
             entry.get("survived", ""), entry.get("timeout", ""), entry.get("equivalent", ""),
             entry.get("no tests", ""), entry.get("not run", ""), shown,
             " ".join(filter(None, [entry.get("measured_at", "")[:16].replace("T", " "),
                                    f"`{entry['commit']}`" if entry.get("commit") else ""]))]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render_mutation_table(modules: list[dict[str, Any]], runtime_s: float, measured_at: str) -> str:
    """Render the README's mutation table: one row per module, Python then Solidity."""
    lines = [
        f"Last run {measured_at}; the groups took {runtime_s / 60:.1f} min in all. Each row says when it was"
        " measured and at which commit of its module (`+modified`: with uncommitted changes);"
        " Score = (killed + timeout) / (mutants - equivalent);"
        f" target >= {100 * tally_mod.TARGET_SCORE:.0f} % per module. Survivors are listed in"
        " `results/mutation.json`, equivalent mutants with their reasons in `mutation_equivalent.toml`.",
        "",
        "| language | module | mutants | killed | survived | timeout | equivalent | no tests | not run | score |"
        " measured (code) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(m) for m in modules),
        *_solidity_rows(),
    ]
    return "\n".join(lines)


def update_readme_table(table: str, readme: Path = README) -> None:
    """Replace the text between the mutation markers in benchmarks/README.md."""
    text = readme.read_text(encoding="utf-8")
    try:
        start, end = text.index(_MUTATION_START), text.index(_MUTATION_END)
    except ValueError:
        raise tally_mod.TallyError(
            f"{readme} lacks the {_MUTATION_START} / {_MUTATION_END} markers; add them where the table belongs"
        ) from None
    readme.write_text(text[: start + len(_MUTATION_START)] + "\n" + table + "\n" + text[end:], encoding="utf-8")


def _merge_previous(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the previous figures of modules this run did not mutate (``--only``).

    Only modules some group still mutates are kept: a module dropped from GROUPS (or moved out of
    the one that named it) leaves no stale row behind.
    """
    path = RESULTS_DIR / "mutation.json"
    if not path.exists():
        return modules
    fresh = {m["module"] for m in modules}
    current = {module for group in GROUPS for module in group.modules}
    previous = json.loads(path.read_text(encoding="utf-8"))
    old = [m for m in previous.get("extra", {}).get("modules", [])
           if m["module"] not in fresh and m["module"] in current]
    for m in old:  # rows from before the columns existed: measured when that file was written, commit unknown
        m.setdefault("measured_at", previous.get("measured_at", ""))
        m.setdefault("commit", "unknown")
    return sorted(modules + old, key=lambda m: m["module"])


def verdicts_time(sandbox: Path) -> str:
    """When mutmut last wrote a verdict in ``sandbox`` (its newest .meta file), UTC, ISO 8601."""
    stamps = [meta.stat().st_mtime for meta in (sandbox / "mutants").rglob("*.meta")]
    if not stamps:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(max(stamps)))


def code_version(modules: Sequence[str], root: Path = REPO) -> str:
    """The last commit that changed ``modules``, ``+modified`` if the working tree changes them (else "unknown")."""
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%h", "--abbrev=12", "--", *modules], cwd=root,
                              capture_output=True, text=True, check=True).stdout.strip() or "uncommitted"
        changed = subprocess.run(["git", "status", "--porcelain", "--", *modules], cwd=root, capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+modified" if changed else "")


def _previous_groups(chosen: list[Group]) -> dict[str, Any]:
    """The previous run's record of groups this run did not repeat."""
    path = RESULTS_DIR / "mutation.json"
    if not path.exists():
        return {}
    again = {g.name for g in chosen}
    current = {g.name for g in GROUPS}
    groups = json.loads(path.read_text(encoding="utf-8")).get("extra", {}).get("groups", {})
    return {name: g for name, g in groups.items() if name not in again and name in current}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen groups, write results/mutation.json and the README table; 1 if a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="GROUP", help="run these groups only (see --list)")
    parser.add_argument("--list", action="store_true", help="list the groups, their modules and tests, and exit")
    parser.add_argument("--budget-min", type=float, default=None,
                        help="stop each group after this many minutes (times its weight); "
                        "mutants not judged by then count as not run")
    parser.add_argument("--resume", action="store_true",
                        help="keep each group's earlier sandbox and judge again only its survivors and unjudged "
                        "mutants (after adding tests to the group's test files; refused if the code changed)")
    parser.add_argument("--tally-only", action="store_true",
                        help="run nothing: re-read the verdicts left in run/mutation/<group>/ (after an interruption)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutmut workers (default: CPUs)")
    args = parser.parse_args(argv)
    names = {g.name: g for g in GROUPS}
    if args.list:
        for g in GROUPS:
            print(f"{g.name}: {' '.join(g.modules)}\n    tests: {' '.join(expand_tests(g.tests))}")
        return 0
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    chosen = [names[n] for n in args.only] if args.only else list(GROUPS)
    equivalents = tally_mod.load_equivalents(EQUIVALENTS)

    mutants: list[tally_mod.Mutant] = []
    runtimes: dict[str, float] = {}
    tests_by_group: dict[str, list[str]] = {}
    start = time.monotonic()
    for i, group in enumerate(chosen, start=1):
        if args.tally_only:
            sandbox = SANDBOXES / group.name
            mutants += export_sandbox(sandbox)
            timed = sandbox / WALL_TIME_FILE
            runtimes[group.name] = float(timed.read_text(encoding="utf-8")) if timed.exists() else 0.0
            tests_by_group[group.name] = expand_tests(group.tests)
            continue
        print(f"\n[{i}/{len(chosen)}] group {group.name}", flush=True)
        found, runtimes[group.name], tests_by_group[group.name] = run_group(
            group, args.max_children, None if args.budget_min is None else 60 * args.budget_min * group.weight,
            resume=args.resume)
        mutants += found
        print(f"== {group.name}: {len(found)} mutants in {runtimes[group.name]:.0f} s", flush=True)
    total_s = time.monotonic() - start

    tallies, stale = tally_mod.tally(mutants, equivalents)
    module_group = {module: g.name for g in chosen for module in g.modules}
    fresh = [{**t.as_dict(), "measured_at": verdicts_time(SANDBOXES / module_group[t.module]),
              "commit": code_version([t.module])} for t in tallies]
    modules = _merge_previous(fresh)
    measurements = [
        Measurement(
            metric=f"mutants killed, {m['module']}",
            value=round(100 * m["score"], 1) if m["score"] is not None else 0.0,
            unit="%",
            target=f">= {100 * tally_mod.TARGET_SCORE:.0f}",
            met=m["target_met"],
            note=f"{m['killed']} killed + {m['timeout']} timeout of {m['mutants'] - m['equivalent']} "
                 f"non-equivalent; {m['survived']} survived, {m['equivalent']} equivalent, {m['no tests']} no tests, "
                 f"{m['not run']} not run",
        )
        for m in modules
    ]
    groups = {**_previous_groups(chosen), **{
        g.name: {"modules": list(g.modules), "tests": tests_by_group[g.name], "keyword": g.keyword,
                 "runtime_s": round(runtimes[g.name], 1), "resumed": args.resume} for g in chosen}}
    all_s = sum(g["runtime_s"] for g in groups.values())
    measurements.append(Measurement(
        "mutation run wall time, sum over groups", round(all_s / 60, 1), "min",
        note=", ".join(f"{name} {g['runtime_s'] / 60:.1f}" for name, g in sorted(groups.items()))))
    path = write_results("mutation", measurements, extra={
        "tool": "mutmut 3.8.1", "groups": groups, "modules": modules, "stale_equivalents": stale,
    })
    data = json.loads(path.read_text(encoding="utf-8"))
    update_readme_table(render_mutation_table(modules, all_s, data["measured_at"]))
    for m in modules:
        score = "n/a" if m["score"] is None else f"{100 * m['score']:.1f} %"
        print(f"{m['module']:40} {m['mutants']:5} mutants  {m['killed']:5} killed  {m['survived']:4} survived  "
              f"{m['timeout']:3} timeout  {m['equivalent']:3} equivalent  {m['no tests']:3} no tests  "
              f"{m['not run']:4} not run  {score}")
        for key in m["survivors"]:
            print(f"    survived: {key}")
    for key in stale:
        print(f"stale entry in {EQUIVALENTS.name} (its mutant no longer survives or exists): {key}")
    print(f"wrote {path}; {total_s / 60:.1f} min")
    return 0 if all(m["target_met"] is not False for m in modules) and not stale else 1


if __name__ == "__main__":
    raise SystemExit(main())
