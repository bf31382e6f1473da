"""The resident ClientApp worker of a SuperNode: one long-lived process handles every message.

Flower 1.41 runs each message in a new ``flwr-clientapp`` process (``flower-superexec`` starts
one per task, in both isolation modes) that handles that one message and exits, so every round
pays for starting Python, importing the app with torch, and opening the node again. This worker
does what such a process does, in a loop, with Flower's own functions for each step:

1. wait until the SuperNode signals that it stored a message and its objects (a byte on the
   ``--wake-fd`` pipe; it repeats it while it waits for the reply, for a worker started since);
2. claim the task with ``AcquireTask`` on the SuperNode's Runtime API (loopback), signed with
   the SuperNode's SuperExec secret (``--isolation process`` with a secret: no other local
   process can claim its tasks);
3. with that task's token, as ``flwr-clientapp`` does: send task heartbeats, pull the run's
   context, the FAB and the message, run the ClientApp, push the reply and the context, finish
   the task (a ClientApp that raises gets the error reply Flower gives);
4. the ClientApp is imported from the installed FAB once and kept, and with it torch, the
   task code and whatever the app keeps (node/client_app.py keeps the opened node); a task of
   another FAB (other code), or a change to the files of the installed FAB since they were
   loaded (a task's code hash is read from them each round), makes the worker replace itself
   (``exec``) with a fresh one that handles that task first, so the code that runs is the code
   on disk and versions never mix; a FAB that fails to load leaves a fresh worker behind too.

Per run, nothing is kept here: each task's context (``context.state`` included) comes from the
SuperNode, which keeps it per run series, and goes back to it. The worker prints one line per
message (its PID, the run, the top-level packages the message imported for the first time).

It is started, and restarted when it dies, by node/federated/worker_supervisor.py inside the
SuperNode; it exits when that parent is gone. It runs as a file with ``-P`` (``python -P
.../node/federated/worker.py``), never with ``-m``: importing this repository's packages before
the FAB's would run their installed copies instead of the FAB's, and ``-P`` keeps this file's
folder off ``sys.path``. It reads the SuperExec secret (hex, first line) and, after a
replacement, the claimed task's token (second line) from stdin.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import select
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from logging import ERROR, INFO
from pathlib import Path

from flwr.app import Error, Message
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import ClientApp, LoadClientAppError
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest
from flwr.supercore import log
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

#: What the worker tells the Runtime API it is (the version check of Flower's apps).
COMPONENT = "flwr-clientapp"
_ACQUIRE = "/flwr.proto.Runtime/AcquireTask"


@dataclass
class LoadedApp:
    """The ClientApp this worker imported, the FAB (SHA-256, hex) it came from, and that FAB's
    installed folder with the size and modification time of each of its files when it was loaded."""

    fab_hash: str
    app: ClientApp
    folder: Path
    files: dict[str, tuple[int, int]]


def fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file under ``folder``, by relative path."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            info = path.stat()
            found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


class Worker:
    """Claims and handles the SuperNode's ClientApp tasks one after the other.

    Parameters:
        address: the SuperNode's Runtime API, ``host:port`` (plain HTTP on loopback).
        secret: the SuperNode's SuperExec auth secret.
        wake_fd: read end of the SuperNode's wake-up pipe.
    """

    def __init__(self, address: str, secret: bytes, wake_fd: int) -> None:
        self.address = address
        self.secret = secret
        self.wake_fd = wake_fd
        self.loaded: LoadedApp | None = None
        self.handled = 0
        self._claims = RuntimeHttpClient.from_server_address(
            server_address=address, insecure=True, root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name=COMPONENT),
                          SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods={_ACQUIRE})],
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def serve(self, claimed: str | None = None) -> None:
        """Handle tasks until the process is stopped; ``claimed``: a task token to handle first.

        A task is claimed only when the SuperNode says it stored a message, never on a timer:
        Flower creates the task before it has pulled the message's objects from the SuperLink,
        and a ClientApp that asks for an object not yet there waits 1 s, then 2 s more (Flower's
        pull back-off). The first claim is for a task a worker before this one left pending.
        """
        if claimed:
            self.handle(claimed)
        while True:
            if (token := self.claim()) is not None:
                self.handle(token)
            self.wait()

    def claim(self) -> str | None:
        """Claim the oldest pending ClientApp task; return its token, None if there is none.

        A task of another FAB than the loaded one replaces this process (:meth:`replace`).
        """
        response = self._claims.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
        if not (response.HasField("task") and response.token):
            return None
        if self.loaded is not None and response.task.fab_hash != self.loaded.fab_hash:
            log(INFO, "ClientApp worker %d: run %d brings other code (FAB %s, loaded %s); starting a fresh worker",
                os.getpid(), response.task.run_id, response.task.fab_hash[:12], self.loaded.fab_hash[:12])
            self.replace(response.token)
        if self.loaded is not None and fingerprint(self.loaded.folder) != self.loaded.files:
            # The code this process runs is no longer what is on disk (and what a task's code hash reads).
            log(INFO, "ClientApp worker %d: files of the installed app %s changed since it was loaded; starting a "
                "fresh worker", os.getpid(), self.loaded.folder)
            self.replace(response.token)
        return str(response.token)

    def wait(self) -> None:
        """Wait for the SuperNode's wake-up, and take every wake-up byte waiting (one claim answers them all)."""
        select.select([self.wake_fd], [], [])
        os.read(self.wake_fd, 4096)

    def handle(self, token: str) -> None:
        """Run the task of ``token`` to its end, as one ``flwr-clientapp`` process would."""
        started = time.perf_counter()
        before = _top_level_packages()
        client = RuntimeHttpClient.from_server_address(
            server_address=self.address, insecure=True, root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name=COMPONENT), RuntimeTokenHttpInterceptor(token)],
            retry_invoker=make_simple_http_retry_invoker(),
        )
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        message = reply = context = None
        status, details, fresh_needed, run_id = SubStatus.FAILED, "ClientApp task failed", False, -1
        marks = {"start": started}  # where a message's time goes: pull, app, push
        try:
            message, context, run, fab = pull_task_input(client)
            run_id = run.run_id
            app = self.app_for(run.fab_id, run.fab_version, fab.hash_str, fab.content)
            marks["pull"] = time.perf_counter()
            reply = app(message=message, context=context)
            marks["app"] = time.perf_counter()
            status, details = SubStatus.COMPLETED, ""
        except Exception as exc:  # the ClientApp's failure becomes the reply's error, as in flwr-clientapp
            code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            details = f"{type(exc)}:<'{exc}'>"
            if isinstance(exc, (LoadClientAppError, ImportError)):
                code = ErrorCode.LOAD_CLIENT_APP_EXCEPTION
                details = f"the ClientApp could not be loaded: {exc}"
                fresh_needed = True  # a half-imported app must not serve the next message
            log(ERROR, "ClientApp raised an exception", exc_info=exc)
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
            finally:
                heartbeat.stop()  # before the task is finished: a heartbeat after it would stop this process
                push_task_output(client=client, context=context, sub_status=status, details=details)
                client.close()
        self.handled += 1
        marks["push"] = time.perf_counter()
        times = list(marks.values())
        steps = ", ".join(f"{name} {b - a:.2f}" for name, a, b in zip(list(marks)[1:], times[:-1], times[1:],
                                                                        strict=True))
        new = sorted(_top_level_packages() - before)
        log(INFO, "ClientApp worker %d: message %d (run %d) %s in %.2f s (%s); first imported: %s", os.getpid(),
            self.handled, run_id, status, marks["push"] - started, steps, ", ".join(new) if new else "nothing")
        if fresh_needed:
            self.replace(None)

    def app_for(self, fab_id: str, fab_version: str, fab_hash: str, content: bytes) -> ClientApp:
        """The ClientApp of this FAB: imported from its installed copy the first time, then the same object.

        Raises:
            LoadClientAppError: the FAB's content does not match its hash, or its ClientApp cannot load.
        """
        if hashlib.sha256(content).hexdigest() != fab_hash:
            raise LoadClientAppError(f"FAB content does not hash to {fab_hash}")
        if self.loaded is None:
            folder = install_from_fab(content, skip_prompt=True)
            files = fingerprint(folder)
            load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
            self.loaded = LoadedApp(fab_hash, load(fab_id, fab_version, fab_hash), folder, files)
        elif self.loaded.fab_hash != fab_hash:  # claim() replaces the process first; never run other code
            raise LoadClientAppError(f"FAB {fab_hash} is not the loaded {self.loaded.fab_hash}")
        return self.loaded.app

    def replace(self, token: str | None) -> None:
        """Replace this process by a fresh worker (same PID), which handles ``token`` first."""
        read_end, write_end = os.pipe()
        os.write(write_end, (self.secret.hex() + "\n" + (token or "") + "\n").encode())
        os.close(write_end)
        os.dup2(read_end, 0)
        os.close(read_end)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-P", os.path.abspath(__file__), *sys.argv[1:]])


def _top_level_packages() -> set[str]:
    return {name.partition(".")[0] for name in list(sys.modules)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The worker's command line (the SuperExec secret and a claimed token come on stdin)."""
    parser = argparse.ArgumentParser(prog="worker.py", description="A SuperNode's resident ClientApp worker")
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's Runtime API, host:port")
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the SuperNode) is gone")
    parser.add_argument("--wake-fd", type=int, required=True, help="read end of the SuperNode's wake-up pipe")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the worker until its SuperNode is gone or it is stopped."""
    args = parse_args(argv)
    lines = sys.stdin.read().splitlines()
    if not lines or not lines[0].strip():
        sys.exit("worker.py: no SuperExec secret on stdin; it is started by node/federated/run_supernode.py")
    secret = bytes.fromhex(lines[0].strip())
    claimed = lines[1].strip() if len(lines) > 1 else ""
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    log(INFO, "ClientApp worker %d: serving the Runtime API at %s", os.getpid(), args.runtime_api_address)
    Worker(args.runtime_api_address, secret, args.wake_fd).serve(claimed or None)


if __name__ == "__main__":
    main()
