"""How many CPU threads torch may use in each hospital node's ClientApp on one machine.

torch starts one intra-op thread per core. Two SuperNodes on a 2-core machine then run four
busy threads on two cores, and OpenMP's worker threads spin while they wait for each other:
in the demo a node took 47-64 s a round for what one thread does in about 1 s. Each node
started here therefore gets ``cores // nodes`` threads (at least 1), through the environment
its ClientApp processes inherit (torch reads ``OMP_NUM_THREADS`` when it starts).
"""

from __future__ import annotations

import os

from deploy.errors import DeployError

__all__ = ["ThreadSettingError", "thread_env", "threads_per_node"]


class ThreadSettingError(DeployError, ValueError):
    """A thread count or node count that cannot be used; the message says which and why."""


def threads_per_node(nodes: int, cpus: int | None = None, configured: int = 0) -> int:
    """Return torch's intra-op thread count for each of ``nodes`` nodes sharing this machine.

    Parameters:
        nodes: SuperNodes (hospital nodes) started on this machine, >= 1.
        cpus: CPUs this process may use; None: as the operating system says (affinity).
        configured: an explicit count (``METAI_TORCH_THREADS``); 0 chooses
            ``max(1, cpus // nodes)``.

    Raises:
        ThreadSettingError: ``nodes`` < 1, ``configured`` < 0 or ``cpus`` < 1.
    """
    if nodes < 1:
        raise ThreadSettingError(f"nodes is {nodes}; give the number of SuperNodes on this machine (>= 1)")
    if configured < 0:
        raise ThreadSettingError(
            f"torch threads per node is {configured}; set METAI_TORCH_THREADS to 0 (automatic) or a count >= 1"
        )
    if configured:
        return configured
    available = _cpus() if cpus is None else cpus
    if available < 1:
        raise ThreadSettingError(f"cpus is {available}; expected at least 1")
    return max(1, available // nodes)


def thread_env(threads: int) -> dict[str, str]:
    """Return the environment variables that cap torch (OpenMP, MKL) at ``threads`` threads.

    Raises:
        ThreadSettingError: ``threads`` < 1.
    """
    if threads < 1:
        raise ThreadSettingError(f"threads is {threads}; a node needs at least 1")
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
