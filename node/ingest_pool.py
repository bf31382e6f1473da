"""Worker processes for an ingest: files are read, parsed, de-identified and stored in parallel.

Workers are forked from the ingest process after its heavy imports, so they start in
milliseconds and share the loaded libraries; each gets the node's secrets at start and
never asks the catalog writer anything (pseudonyms and date shifts are derived from the
node's lookup secret). Outcomes come back in the order of the tasks, with a bounded number
of tasks in flight, so memory stays flat whatever the number of files.

A worker that dies (a decoder crashing on a damaged file, the kernel's OOM killer) costs
only the file it was reading: that file gets an outcome saying so, and a new worker takes
over the rest. Workers die with the ingest process (``PR_SET_PDEATHSIG`` on Linux): a
killed ingest leaves no process writing into the node.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from node.ingest_work import Crashed, FileTask, Outcome, WorkContext, process_file
from node.redact import describe

#: Tasks queued at each worker, so it never waits for the next one.
PREFETCH = 2
#: At most this many tasks past the oldest unfinished one are handed out (bounds the reordering buffer).
AHEAD = 256


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def outcomes(tasks: Sequence[FileTask], ctx: WorkContext, *, workers: int,
             before_fork: Callable[[], None]) -> Iterator[Outcome]:
    """The outcome of every task, in task order.

    Parameters:
        tasks: the files, with ``index`` equal to their position.
        ctx: what the workers need.
        workers: worker processes; 1 (or a single task) works in this process.
        before_fork: called before each worker is forked (the caller closes its database
            connections: a child must not inherit them).
    """
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            try:
                yield process_file(task, ctx)
            except Exception as exc:  # a bug outside the per-file handling still costs only this file
                yield Crashed(task.index, f"unexpected error: {describe(exc)}")
        return
    pool = _Pool(ctx, min(workers, len(tasks)), before_fork)
    try:
        yield from pool.run(tasks)
    finally:
        pool.close()


class _Worker:
    def __init__(self, ctx: WorkContext) -> None:
        mp = multiprocessing.get_context("fork")
        self.conn, child = mp.Pipe(duplex=True)
        self.process = mp.Process(target=_serve, args=(child, ctx, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.pending: deque[FileTask] = deque()

    def send(self, task: FileTask) -> bool:
        try:
            self.conn.send(task)
        except OSError:  # it died: the caller notices through its sentinel
            return False
        self.pending.append(task)
        return True


class _Pool:
    def __init__(self, ctx: WorkContext, size: int, before_fork: Callable[[], None]) -> None:
        self.ctx = ctx
        self.before_fork = before_fork
        before_fork()
        self.workers = [_Worker(ctx) for _ in range(size)]

    def run(self, tasks: Sequence[FileTask]) -> Iterator[Outcome]:
        queue = deque(tasks)
        done: dict[int, Outcome] = {}
        position = 0  # the next outcome to hand out
        while position < len(tasks):
            for worker in self.workers:
                while len(worker.pending) < PREFETCH and queue and queue[0].index < position + AHEAD:
                    if not worker.send(queue[0]):
                        break
                    queue.popleft()
            waiting: list[Any] = [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]
            mpc.wait(waiting)
            for slot, worker in enumerate(self.workers):
                self._collect(worker, done)
                if not worker.process.is_alive():
                    self._bury(worker, done, queue)
                    self.before_fork()
                    self.workers[slot] = _Worker(self.ctx)
            while position in done:
                yield done.pop(position)
                position += 1

    @staticmethod
    def _collect(worker: _Worker, done: dict[int, Outcome]) -> None:
        while worker.pending and worker.conn.poll():
            try:
                outcome: Outcome = worker.conn.recv()
            except (EOFError, OSError):
                return
            task = worker.pending.popleft()
            done[task.index] = outcome

    @staticmethod
    def _bury(worker: _Worker, done: dict[int, Outcome], queue: deque[FileTask]) -> None:
        worker.process.join()
        worker.conn.close()
        if not worker.pending:
            return
        task = worker.pending.popleft()  # the file it was working on
        code = worker.process.exitcode or 0
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        done[task.index] = Crashed(task.index, f"the process reading it {how}")
        queue.extendleft(reversed(worker.pending))  # sent but never started: to the front, in order

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            worker.conn.close()
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()


def _serve(conn: mpc.Connection, ctx: WorkContext, parent: int) -> None:
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the ingest process's to handle
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)  # as torch's DataLoader workers: no thread pool after fork
    try:
        while (task := conn.recv()) is not None:
            try:
                outcome = process_file(task, ctx)
            except Exception as exc:  # a bug outside the per-file handling still costs only this file
                outcome = Crashed(task.index, f"unexpected error: {describe(exc)}")
            conn.send(outcome)
    except (EOFError, OSError):
        pass  # the ingest process is gone
    finally:
        ctx.close()


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the request above took effect
        os._exit(0)
