"""Tally a mutation run: stable mutant descriptions, reviewed equivalents, per-module counts.

mutmut numbers the mutants of a function (``x_fbp__mutmut_7``) in the order its mutation
operators visit the code, so the number of a mutant changes when the function is edited. The
reviewed list of equivalent mutants (``benchmarks/mutation_equivalent.toml``) is therefore keyed
by what the mutant changes: the module, the function, and the source lines the mutation
replaced and the lines it put in their place (whitespace-normalised). A reviewed entry that no
longer matches any mutant is reported as stale rather than silently ignored.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# mutmut's verdicts (mutmut.stats.status_by_exit_code) folded into the columns reported here.
KILLED = "killed"
SURVIVED = "survived"
TIMEOUT = "timeout"
NO_TESTS = "no tests"
EQUIVALENT = "equivalent"
NOT_RUN = "not run"  # the run was stopped (budget, Ctrl-C) before mutmut judged it
OTHER = "other"  # suspicious, segfault, skipped
_STATUS_COLUMN = {
    "killed": KILLED,
    "caught by type check": KILLED,
    "survived": SURVIVED,
    "timeout": TIMEOUT,
    "no tests": NO_TESTS,
    "not checked": NOT_RUN,
    "check was interrupted by user": NOT_RUN,
}
COLUMNS = (KILLED, SURVIVED, TIMEOUT, NO_TESTS, EQUIVALENT, NOT_RUN, OTHER)
TARGET_SCORE = 0.90


class TallyError(ValueError):
    """The reviewed equivalents file or a run's export is malformed."""


@dataclass(frozen=True)
class Mutant:
    """One mutant as mutmut reported it."""

    name: str  # mutmut's name, e.g. ``raw_data.filters.x_padded_length__mutmut_3``
    module: str  # source path, e.g. ``raw_data/filters.py``
    status: str  # mutmut's verdict, e.g. ``killed``, ``survived``, ``timeout``
    diff: str  # unified diff of the mutated function


def function_of(name: str) -> str:
    """Return the function a mutmut mutant name belongs to: ``fbp`` or ``Class.method``.

    mutmut names module-level functions ``<module>.x_<name>__mutmut_<n>`` and methods
    ``<module>.xǁ<Class>ǁ<method>__mutmut_<n>``.
    """
    mangled = name.partition("__mutmut_")[0].rpartition(".")[2]
    if "ǁ" in mangled:
        _, cls, method = mangled.split("ǁ", 2)
        return f"{cls}.{method}"
    if not mangled.startswith("x_"):
        raise TallyError(f"mutant name {name!r} has no x_<function> part; expected mutmut 3's naming")
    return mangled[2:]


def change_of(diff: str) -> str:
    """Describe a mutant by the lines it removes and adds, e.g. ``- return a * b | + return a / b``.

    Blank-only changes are dropped and inner whitespace is collapsed, so the description does
    not depend on formatting or on where in the file the function sits.
    """
    parts = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@")) or line[:1] not in ("-", "+"):
            continue
        text = " ".join(line[1:].split())
        if text:
            parts.append(f"{line[0]} {text}")
    return " | ".join(parts)


def stable_keys(mutants: list[Mutant]) -> dict[str, str]:
    """Map each mutant's mutmut name to a key that survives renumbering.

    The key is ``module::function::change``; when one function has two mutants with the same
    change (the same operator on two identical lines) the later ones get ``#2``, ``#3``.
    """
    seen: Counter[str] = Counter()
    keys: dict[str, str] = {}
    for mutant in sorted(mutants, key=lambda m: (m.module, _number(m.name))):
        base = f"{mutant.module}::{function_of(mutant.name)}::{change_of(mutant.diff)}"
        seen[base] += 1
        keys[mutant.name] = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return keys


def _number(name: str) -> int:
    try:
        return int(name.rpartition("__mutmut_")[2])
    except ValueError:
        return 0


@dataclass(frozen=True)
class Equivalent:
    """A reviewed survivor that no test can kill because it changes no observable behaviour."""

    key: str
    reason: str


def load_equivalents(path: Path) -> dict[str, Equivalent]:
    """Read the reviewed equivalents: ``[[equivalent]]`` tables with module, function, change, reason.

    Raises :class:`TallyError` naming the entry when a field is missing or a key repeats.
    """
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    found: dict[str, Equivalent] = {}
    for i, entry in enumerate(data.get("equivalent", []), start=1):
        missing = [f for f in ("module", "function", "change", "reason") if not str(entry.get(f, "")).strip()]
        if missing:
            raise TallyError(
                f"{path.name}: equivalent entry {i} lacks {', '.join(missing)}; every entry needs module, "
                "function, change (as printed in the survivors list) and the reason it is equivalent"
            )
        key = f"{entry['module']}::{entry['function']}::{entry['change']}"
        if key in found:
            raise TallyError(f"{path.name}: equivalent entry {i} repeats {key!r}; remove the duplicate")
        found[key] = Equivalent(key=key, reason=str(entry["reason"]).strip())
    return found


@dataclass
class ModuleTally:
    """Counts for one module."""

    module: str
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)  # stable keys of surviving mutants
    equivalents: dict[str, str] = field(default_factory=dict)  # stable key -> reason

    @property
    def total(self) -> int:
        """All mutants of the module, equivalent ones included."""
        return sum(self.counts.values())

    @property
    def score(self) -> float | None:
        """Share of the judged non-equivalent mutants that a test killed or that timed out (mutmut counts both).

        Mutants a stopped run never judged are left out of the share (and reported as not run).
        """
        judged = self.total - self.counts[EQUIVALENT] - self.counts[NOT_RUN]
        return (self.counts[KILLED] + self.counts[TIMEOUT]) / judged if judged else None

    def as_dict(self) -> dict[str, Any]:
        """The module's figures for the results file."""
        return {
            "module": self.module,
            "mutants": self.total,
            **{column: self.counts[column] for column in COLUMNS},
            "score": self.score,
            "target_met": None if self.score is None else self.score >= TARGET_SCORE,
            "survivors": sorted(self.survivors),
            "equivalent_reasons": dict(sorted(self.equivalents.items())),
        }


def tally(mutants: list[Mutant], equivalents: dict[str, Equivalent]) -> tuple[list[ModuleTally], list[str]]:
    """Count each module's mutants by verdict, moving reviewed equivalent survivors to their own column.

    Only a survivor (or a timeout, which no test decided) can be equivalent: a reviewed entry
    whose mutant a test killed is a mistake in the review and is returned as stale, as is one
    whose mutant no longer exists (entries for modules this run did not mutate are left alone).
    Returns the per-module tallies (sorted by module) and the stale equivalent keys.
    """
    keys = stable_keys(mutants)
    by_module: dict[str, ModuleTally] = {}
    used: set[str] = set()
    for mutant in mutants:
        entry = by_module.setdefault(mutant.module, ModuleTally(mutant.module))
        key = keys[mutant.name]
        column = _STATUS_COLUMN.get(mutant.status, OTHER)
        # A reviewed equivalent that timed out was not killed by a test: its run only went over the
        # CPU limit (on a loaded machine a test's polling can). It counts as equivalent, not killed.
        if column in (SURVIVED, TIMEOUT) and key in equivalents:
            column = EQUIVALENT
            entry.equivalents[key] = equivalents[key].reason
            used.add(key)
        elif column == SURVIVED:
            entry.survivors.append(key)
        entry.counts[column] += 1
    run_modules = set(by_module)
    stale = sorted(k for k in set(equivalents) - used if k.partition("::")[0] in run_modules)
    return [by_module[m] for m in sorted(by_module)], stale
