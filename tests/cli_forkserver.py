"""Run command lines as ``python -m MODULE ARGS...`` would, in processes forked from one that has the libraries loaded.

tests/test_cli_errors.py runs close to two hundred command lines, each under one bad condition. As
fresh interpreters each paid about a second of CPU, most of it importing the same libraries (web3,
eth_account, pydantic, SQLAlchemy, rich ...). This server imports those third-party libraries once
and forks a child per command line. The child is a process of its own, in a session of its own,
with the case's environment, working directory, argument vector and standard streams (stdin from
/dev/null; stdout and stderr to the files named), and it runs the module as ``python -m`` does
(:func:`runpy.run_module` as ``__main__``, the working directory first on ``sys.path``). No module
of this repository is imported before the fork: each command's own code loads under the case's
environment, as in a fresh interpreter, including whatever reads the environment at import.
An exception that escapes is printed by ``sys.excepthook`` (a traceback, as Python prints it) and
exits 1; ``SystemExit`` exits as Python's would; ``atexit`` handlers run.

Protocol (one JSON object per line): requests on stdin ``{"id", "module", "argv", "env", "cwd",
"stdout", "stderr"}``; on stdout, ``{"id", "pid"}`` once the child is forked and
``{"pid", "exit"}`` when it ended (``exit`` as :attr:`subprocess.Popen.returncode`: negative for
a signal). The server ends when stdin closes, after the children it forked have ended.

    python tests/cli_forkserver.py        (with the repository on PYTHONPATH)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Third-party libraries the command lines load; never a module of this repository. torch is left
#: out: it starts thread pools that a fork does not carry over, and no failing case gets to it.
PRELOAD = (
    "click", "typer", "rich.console", "rich.table", "pydantic", "pydantic_settings", "eth_utils", "eth_account",
    "web3", "sqlalchemy", "sqlalchemy.orm", "httpx", "numpy", "h5py", "pydicom", "cryptography.x509",
    "cryptography.hazmat.primitives.serialization", "yaml", "grpc",
)


def _exit_code(stop: SystemExit) -> int:
    """The status Python exits with for ``stop``, printing its message as Python does."""
    code = stop.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(request: dict[str, object], control: tuple[int, ...]) -> None:
    """Become the command line of ``request``; never returns."""
    import atexit
    import runpy

    status = 1
    try:
        os.setsid()
        for fd in control:
            os.close(fd)
        streams = (os.open(os.devnull, os.O_RDONLY),
                   os.open(str(request["stdout"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                   os.open(str(request["stderr"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        for target, fd in enumerate(streams):
            os.dup2(fd, target)
            os.close(fd)
        cwd = str(request["cwd"])
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
        sys.path[0] = cwd
        sys.argv = [str(request["module"]), *[str(a) for a in request["argv"]]]  # type: ignore[attr-defined]
        try:
            runpy.run_module(str(request["module"]), run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as stop:
            status = _exit_code(stop)
        except BaseException:  # what the interpreter would print a traceback for
            sys.excepthook(*sys.exc_info())
            status = 1
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def main() -> None:
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    requests = os.dup(0)
    replies = os.dup(1)
    forked = threading.Event()
    done = threading.Event()

    def say(message: dict[str, object]) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                if done.is_set():
                    return
                forked.wait(0.5)
                forked.clear()
                continue
            say({"pid": pid, "exit": os.waitstatus_to_exitcode(status)})

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    with os.fdopen(requests, "rb", buffering=0) as incoming:
        for line in iter(incoming.readline, b""):
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request, (requests, replies))
            forked.set()
            say({"id": request["id"], "pid": pid})
    done.set()
    forked.set()
    reaper.join()


class ForkServer:
    """The test's side: start the server, run command lines through it, stop it."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=dict(env), start_new_session=True)
        self._sending = threading.Lock()
        self._news = threading.Condition()
        self._pids: dict[int, int] = {}
        self._exits: dict[int, int] = {}
        self._ids = 0
        self._closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._news:
                if "id" in message:
                    self._pids[message["id"]] = message["pid"]
                else:
                    self._exits[message["pid"]] = message["exit"]
                self._news.notify_all()
        with self._news:
            self._closed = True
            self._news.notify_all()

    def run(self, module: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, stdout: Path,
            stderr: Path, timeout: float) -> int | None:
        """Run ``python -m module argv...``; its exit status, or None if it ran past ``timeout`` (then killed)."""
        with self._news:
            self._ids += 1
            ident = self._ids
        request = {"id": ident, "module": module, "argv": list(argv), "env": dict(env), "cwd": str(cwd),
                   "stdout": str(stdout), "stderr": str(stderr)}
        with self._sending:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        with self._news:
            if not self._news.wait_for(lambda: ident in self._pids or self._closed, timeout=60) or self._closed:
                raise RuntimeError(f"the fork server did not start {module} {list(argv)} (exit {self.proc.poll()})")
            pid = self._pids.pop(ident)
            ended = self._news.wait_for(lambda: pid in self._exits, timeout=timeout)
        if not ended:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with self._news:
            self._news.wait_for(lambda: pid in self._exits, timeout=60)
            status = self._exits.pop(pid)
        return status if ended else None

    def close(self) -> None:
        """Stop the server once the children it forked have ended."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


if __name__ == "__main__":
    main()
