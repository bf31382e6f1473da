"""The task registry, and the hash that pins a task's code for a study.

A study anchors ``task_code_hash(code)`` on chain. A node recomputes it from the code it
runs before it trains; a node whose task code, model, training loop or raw-data readers
compute anything else gets another hash and refuses the round. The hash covers the code of
those modules in a canonical form (:func:`canonical_source`: no comments, docstrings or blank
lines), so that documenting the code, or editing a module the task does not reach, leaves
studies already approved valid.
"""

from __future__ import annotations

import ast
import hashlib
import io
import struct
import sys
import tokenize
from pathlib import Path
from types import ModuleType

from eth_utils.crypto import keccak

from tasks.base import Task
from tasks.ct_image import CtImageTask
from tasks.ct_sinogram import CtSinogramTask
from tasks.errors import TaskError, UnknownTaskError
from tasks.mr_kspace import MrKspaceTask

__all__ = ["TASKS", "canonical_source", "get_task", "task_code_hash", "task_modules"]

TASKS: dict[str, Task] = {task.spec.code: task for task in (CtSinogramTask(), CtImageTask(), MrKspaceTask())}
"""Every task, by code."""

_HASH_DOMAIN = b"metai-task-code/2\n"
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


def canonical_source(source: bytes) -> bytes:
    """Return the code of a module without what cannot change what it computes.

    Left out: comments, docstrings (the string a module, class or function body opens with,
    when it stands on lines of its own), trailing spaces and blank lines. Everything else, the
    layout within a line included, is kept line by line, so the result is the same for the
    same code on any Python version (it works from positions, not from the AST's shape).

    Raises:
        TaskError: the source is not UTF-8 Python.
    """
    try:
        text = source.decode("utf-8")
        tree = ast.parse(text)
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (UnicodeDecodeError, SyntaxError, tokenize.TokenError) as exc:
        raise TaskError(f"cannot read the source to hash: {exc}") from None
    lines = text.splitlines()
    dropped: set[int] = set()  # 0-based line numbers
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str) and first.end_lineno is not None
                    and first.end_col_offset is not None
                    and not lines[first.lineno - 1][:first.col_offset].strip()
                    and not lines[first.end_lineno - 1][first.end_col_offset:].split("#", 1)[0].strip()):
                dropped.update(range(first.lineno - 1, first.end_lineno))
    for token in tokens:
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    kept = [line.rstrip() for index, line in enumerate(lines) if index not in dropped]
    return "\n".join(line for line in kept if line).encode("utf-8") + b"\n"


_CANONICAL: dict[bytes, bytes] = {}  # sha256 of a source file's bytes -> its canonical form


def _canonical_file(path: Path) -> bytes:
    """:func:`canonical_source` of ``path``, worked out once per content in this process (a node checks
    the hash every round)."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).digest()
    if digest not in _CANONICAL:
        _CANONICAL[digest] = canonical_source(raw)
    return _CANONICAL[digest]


def task_code_hash(code: str) -> bytes:
    """Return the 32-byte keccak256 (Ethereum's, not NIST SHA3-256) of a task's code.

    The digest covers the task code string and, in the canonical form of
    :func:`canonical_source`, the source of every module in :func:`task_modules`::

        b"metai-task-code/2\\n" + uint64 LE len(code) + code (UTF-8)
        then per module, sorted by name:
            uint64 LE len(name) + name (UTF-8) + uint64 LE len(canonical) + canonical source

    A comment or docstring edit, or any edit of a module outside :func:`task_modules`, leaves
    it unchanged; a change to a statement of the task, its model, its loss or training loop,
    or the raw-data code it calls changes it.

    Raises:
        UnknownTaskError: no such task.
        TaskError: a module's source cannot be read.
    """
    encoded = code.encode("utf-8")
    parts = [_HASH_DOMAIN, struct.pack("<Q", len(encoded)), encoded]
    for name in task_modules(code):
        source_file = sys.modules[name].__file__
        if source_file is None:
            raise TaskError(f"module {name} of task {code!r} has no source file to hash")
        source = _canonical_file(Path(source_file))
        parts += [struct.pack("<Q", len(name.encode())), name.encode(), struct.pack("<Q", len(source)), source]
    return bytes(keccak(b"".join(parts)))
