"""How much CPU other work on the machine took while a benchmark ran (Linux, ``/proc``).

Wall-clock benchmarks on a shared machine are only as good as the machine was quiet. This
samples every process once a second and adds up the CPU time of those that are not this
process or its descendants, so a result can say how busy the rest of the machine was. A
process that starts and ends between two samples is missed: the figure is a lower bound.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[tuple[int, int], tuple[int, float]]:
    """(pid, start time) -> (parent pid, CPU seconds used by the process itself) of every process."""
    found: dict[tuple[int, int], tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": [0] state, [1] ppid, ...
        found[(int(entry.name), int(fields[19]))] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return found


class ForeignCpu:
    """Context manager: ``seconds`` of CPU used by processes outside this process tree while inside."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.seconds = 0.0
        self._seen: dict[tuple[int, int], float] = {}
        self._ours: set[tuple[int, int]] = set()  # ours once, ours for good (orphans move to init)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ForeignCpu:
        self._seen = self._foreign()  # the baseline
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for key, cpu in self._foreign().items():
            self.seconds += cpu - self._seen.get(key, 0.0)  # a new process counts from zero
            self._seen[key] = cpu

    def _foreign(self) -> dict[tuple[int, int], float]:
        table = _processes()
        parent = {pid: ppid for (pid, _), (ppid, _) in table.items()}
        ours = os.getpid()

        def mine(pid: int) -> bool:
            while pid > 1:
                if pid == ours:
                    return True
                pid = parent.get(pid, 0)
            return False

        self._ours.update(key for key in table if mine(key[0]))
        return {key: cpu for key, (_, cpu) in table.items() if key not in self._ours}


def wait_for_quiet(share: float, max_wait: float, window: float = 3.0) -> tuple[float, float]:
    """Wait until other processes take less than ``share`` of all CPUs over ``window`` seconds.

    Gives up after ``max_wait`` seconds. Returns the seconds waited and the last share measured.
    """
    cpus = os.cpu_count() or 1
    started = time.monotonic()
    while True:
        with ForeignCpu(interval=0.5) as others:
            time.sleep(window)
        measured = others.seconds / (window * cpus)
        waited = time.monotonic() - started
        if measured < share or waited >= max_wait:
            return waited, measured
