"""What an audit found: every check made, and every mismatch named precisely.

A :class:`Report` counts the checks that passed under a short name (``cohort.consent``,
``update.hash``, ...) and lists each failure as a :class:`Finding` naming the check, where it
applies (study, round, hospital, record) and what was expected against what was found. It prints
for people (:meth:`Report.text`) and as JSON (:meth:`Report.to_json`); an audit with any finding
fails.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Finding", "Report"]


@dataclass(frozen=True)
class Finding:
    """One mismatch: the check that failed, where, and what it found."""

    check: str
    where: str
    message: str

    def line(self) -> str:
        """The finding as one line for people."""
        return f"[{self.check}] {self.where}: {self.message}"


@dataclass
class Report:
    """The outcome of auditing one study."""

    study_id: int
    chain_id: int
    block: int  # the chain was read up to this block
    passed: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.findings

    def check(self, name: str, ok: bool, where: str, message: str) -> bool:
        """Count check ``name`` as passed, or record ``message`` as a finding; return ``ok``."""
        if ok:
            self.passed[name] += 1
        else:
            self.findings.append(Finding(name, where, message))
        return ok

    def fail(self, name: str, where: str, message: str) -> None:
        """Record a finding that no passing count goes with (a check that could not even be made)."""
        self.findings.append(Finding(name, where, message))

    def note(self, text: str) -> None:
        """Say something an auditor should know that is not a mismatch (what could not be checked, and why)."""
        if text not in self.notes:
            self.notes.append(text)

    def to_json(self) -> str:
        """The report as JSON: ``ok``, counts of checks passed by name, findings, notes, summary."""
        return json.dumps({
            "study_id": self.study_id, "chain_id": self.chain_id, "block": self.block, "ok": self.ok,
            "checks_passed": dict(sorted(self.passed.items())),
            "findings": [{"check": f.check, "where": f.where, "message": f.message} for f in self.findings],
            "notes": self.notes, "summary": self.summary,
        }, indent=2)

    def text(self) -> str:
        """The report for people: the verdict, what was checked, every finding, the notes."""
        verdict = "PASSED" if self.ok else f"FAILED: {len(self.findings)} finding(s)"
        lines = [f"metai-audit: study {self.study_id} on chain {self.chain_id}, read up to block {self.block}: "
                 f"{verdict}"]
        for key, value in self.summary.items():
            lines.append(f"  {key}: {value}")
        lines.append(f"checks passed ({sum(self.passed.values())}):")
        lines += [f"  {name:<28} {count}" for name, count in sorted(self.passed.items())]
        if self.findings:
            lines.append("findings:")
            lines += ["  " + f.line() for f in self.findings]
        if self.notes:
            lines.append("notes:")
            lines += ["  " + n for n in self.notes]
        return "\n".join(lines)
