"""torch threads per hospital node: the machine's CPUs shared among the nodes it runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deploy.threads import ThreadSettingError, thread_env, threads_per_node


@pytest.mark.parametrize(("nodes", "cpus", "expected"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4), (3, 8, 2)])
def test_each_node_gets_its_share_of_the_cpus_and_at_least_one(nodes: int, cpus: int, expected: int) -> None:
    assert threads_per_node(nodes, cpus) == expected


def test_a_configured_count_wins() -> None:
    assert threads_per_node(2, 2, configured=3) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": 0, "cpus": 2}, "nodes is 0; give the number of SuperNodes"),
        ({"nodes": 2, "cpus": 2, "configured": -1}, "torch threads per node is -1; set METAI_TORCH_THREADS"),
        ({"nodes": 2, "cpus": 0}, "cpus is 0; expected at least 1"),
    ],
)
def test_unusable_counts_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ThreadSettingError, match=message):
        threads_per_node(**kwargs)


def test_thread_env_refuses_zero() -> None:
    with pytest.raises(ThreadSettingError, match="threads is 0; a node needs at least 1"):
        thread_env(0)


def test_torch_in_a_child_process_uses_one_thread_when_told() -> None:
    # What a SuperNode's ClientApp process does: inherit the environment, import torch. (torch
    # never starts more threads than cores, so 1 is the count every machine can show.)
    env = {**os.environ, **thread_env(1)}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "1"
