"""What serve's health check answers (:mod:`node.health` has the format): serve's phase and each child's state.

A child is well when it runs, has said it is ready, and passes its probe (the signing agent
answers on its socket for this hospital; the SuperLink accepts a TLS connection). The probes
run when the check is asked, each at most :data:`PROBE_TIMEOUT` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.service_children import ServePlan
    from node.supervisor import Supervisor

__all__ = ["PROBE_TIMEOUT", "Report"]

PROBE_TIMEOUT = 8.0


class Report:
    """Builds the health answer of a serve; ``phase`` is ``starting``, ``running`` or ``stopping``."""

    def __init__(self, plan: ServePlan, supervisor: Supervisor) -> None:
        self.plan = plan
        self.supervisor = supervisor
        self.phase = "starting"

    def __call__(self) -> dict[str, Any]:
        """The health answer: ``status`` ``ok`` only while running with every child well."""
        phase = self.phase
        children = self.supervisor.snapshot()
        problems = [] if phase == "running" else [f"serve is {phase}"]
        probes = {}
        for name, child in children.items():
            if not child["running"]:
                last = child["last_exit"]
                problems.append(f"{name} is not running" + (f" (it exited: {last['reason']})" if last else ""))
            elif not child["ready"]:
                problems.append(f"{name} is not ready yet")
            elif (check := self.supervisor.check(name)) is not None:
                probes[name] = _Probe(check)
        deadline = time.monotonic() + PROBE_TIMEOUT  # the probes run side by side: one wait for all
        for name, probe in probes.items():
            facts, problem = probe.result(deadline)
            children[name].update(facts)
            if problem is not None:
                problems.append(f"{name}: {problem}")
        return {
            "status": "ok" if not problems else "unhealthy",
            "phase": phase,
            "node_dir": str(self.plan.node_dir),
            "hospital": self.plan.hospital,
            "superlink": self.plan.route.address,
            "problems": problems,
            "children": children,
        }


class _Probe:
    """A child's probe, running in a thread of its own from its creation."""

    def __init__(self, check: Any) -> None:
        self._result: list[tuple[dict[str, Any], str | None]] = []
        self._thread = threading.Thread(target=lambda: self._result.append(check()), name="health-probe",
                                        daemon=True)
        self._thread.start()

    def result(self, deadline: float) -> tuple[dict[str, Any], str | None]:
        """Its facts and problem, or a problem of its own if it has not answered by ``deadline`` (monotonic)."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._result:
            return {}, f"its probe did not answer within {PROBE_TIMEOUT:g} s"
        return self._result[0]
