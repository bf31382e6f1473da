"""The task registry, and the hash that pins a task's code for a study.

A study anchors ``task_code_hash(code)`` on chain. A node recomputes it from the code it
runs before it trains; a node whose task code, training loop or raw-data readers differ in
any byte computes another hash and can refuse the round.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from types import ModuleType

from eth_utils.crypto import keccak

from tasks.base import Task
from tasks.ct_image import CtImageTask
from tasks.ct_sinogram import CtSinogramTask
from tasks.errors import TaskError, UnknownTaskError
from tasks.mr_kspace import MrKspaceTask

__all__ = ["TASKS", "get_task", "task_code_hash", "task_modules"]

TASKS: dict[str, Task] = {task.spec.code: task for task in (CtSinogramTask(), CtImageTask(), MrKspaceTask())}
"""Every task, by code."""

_HASH_DOMAIN = b"metai-task-code/1\n"
# Packages whose code decides what a task computes: the tasks themselves and the raw-data
# readers, reconstructions and phantoms they call.
_OWN_PACKAGES = ("tasks", "raw_data")
# Training is not imported by the task modules but decides the updates a node sends.
_ALWAYS = ("tasks.train",)


def get_task(code: str) -> Task:
    """Return the task registered under ``code``.

    Raises:
        UnknownTaskError: no such task; the message lists the known codes.
    """
    try:
        return TASKS[code]
    except KeyError:
        raise UnknownTaskError(f"no task {code!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def _module_of(value: object) -> str | None:
    name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
    if isinstance(name, str) and name.split(".")[0] in _OWN_PACKAGES and name in sys.modules:
        return name
    return None


def task_modules(code: str) -> tuple[str, ...]:
    """Return, sorted, the modules whose source :func:`task_code_hash` covers for ``code``.

    These are the task's own module, :mod:`tasks.train`, and every module of ``tasks`` or
    ``raw_data`` reachable from them through the names they import (functions, classes,
    constants and modules), followed transitively.

    Raises:
        UnknownTaskError: no such task.
    """
    task = get_task(code)
    pending = [type(task).__module__, *_ALWAYS]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for value in vars(sys.modules[name]).values():
            dependency = _module_of(value)
            if dependency is not None and dependency not in seen:
                pending.append(dependency)
    return tuple(sorted(seen))


def task_code_hash(code: str) -> bytes:
    """Return the 32-byte keccak256 (Ethereum's, not NIST SHA3-256) of a task's code.

    The digest covers the task code string and the exact source bytes of every module in
    :func:`task_modules`::

        b"metai-task-code/1\\n" + uint64 LE len(code) + code (UTF-8)
        then per module, sorted by name:
            uint64 LE len(name) + name (UTF-8) + uint64 LE len(source) + source bytes

    Raises:
        UnknownTaskError: no such task.
    """
    encoded = code.encode("utf-8")
    parts = [_HASH_DOMAIN, struct.pack("<Q", len(encoded)), encoded]
    for name in task_modules(code):
        source_file = sys.modules[name].__file__
        if source_file is None:
            raise TaskError(f"module {name} of task {code!r} has no source file to hash")
        source = Path(source_file).read_bytes()
        parts += [struct.pack("<Q", len(name.encode())), name.encode(), struct.pack("<Q", len(source)), source]
    return bytes(keccak(b"".join(parts)))
