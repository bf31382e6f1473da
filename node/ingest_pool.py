"""Worker processes for an ingest: files are read, parsed, de-identified and stored in parallel.

Workers are forked from the ingest process after its heavy imports, so they start in
milliseconds and share the loaded libraries; each gets the node's secrets and a snapshot of
what the catalog knows at start, and never asks the catalog writer anything (pseudonyms and
date shifts are derived from the node's lookup secret) nor opens the catalog. Outcomes come
back in the order of the tasks, with a bounded number of tasks in flight, so memory stays
flat whatever the number of files.

A worker that dies (a decoder crashing on a damaged file, the kernel's OOM killer) or
takes longer than the file's time limit (a damaged HDF5 file can send the HDF5 library into
an endless loop) costs only the file it was reading: that file gets an outcome saying so,
the worker is killed if need be, and a new worker takes over the rest. With a single
worker the work is done in the ingest's own process, where neither can be caught: that mode
is for debugging. Workers die with the ingest process (``PR_SET_PDEATHSIG`` on Linux): a
killed ingest leaves no process writing into the node.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from node.ingest_work import Crashed, FileTask, Outcome, WorkContext, process_file
from node.redact import describe, value_free

#: Tasks queued at each worker, so it never waits for the next one.
PREFETCH = 2
#: At most this many tasks past the oldest unfinished one are handed out (bounds the reordering buffer).
AHEAD = 256
#: Time limit of one file: this many seconds, plus :data:`SECONDS_PER_MB` per MB of the file.
FILE_SECONDS = 60.0
SECONDS_PER_MB = 1.0


def time_limit(size: int, base: float = FILE_SECONDS) -> float:
    """Seconds a worker may spend on a file of ``size`` bytes before it is stopped."""
    return base + SECONDS_PER_MB * size / 1e6


def default_workers() -> int:
    """The number of CPUs this process may run on, at least 2 (so that hangs and crashes stay isolated)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(2, cpus)


def outcomes(tasks: Sequence[FileTask], ctx: WorkContext, *, workers: int,
             file_seconds: float = FILE_SECONDS) -> Generator[Outcome, None, None]:
    """The outcome of every task, in task order.

    Parameters:
        tasks: the files, with ``index`` equal to their position.
        ctx: what the workers need.
        workers: worker processes; 1 works in this process (no time limit, no crash isolation).
        file_seconds: the base of each file's time limit (:func:`time_limit`).
    """
    if workers <= 1:
        for task in tasks:
            try:
                yield process_file(task, ctx)
            except Exception as exc:  # a bug outside the per-file handling still costs only this file
                yield Crashed(task.index, f"unexpected error: {describe(exc)}")
        return
    if not tasks:
        return
    pool = _Pool(ctx, min(workers, len(tasks)), file_seconds)
    try:
        yield from pool.run(tasks)
    finally:
        pool.close()


class _Worker:
    def __init__(self, ctx: WorkContext) -> None:
        mp = multiprocessing.get_context("fork")
        self.conn, child = mp.Pipe(duplex=True)
        # What the worker's libraries print (a C decoder's complaint, glibc's last words before
        # an abort) goes to a pipe read here, never to the terminal.
        self.output, write_end = os.pipe()
        os.set_blocking(self.output, False)
        self.process = mp.Process(target=_serve, args=(child, ctx, os.getpid(), write_end, self.output), daemon=True)
        # Frozen objects are left alone by the child's garbage collector, which would otherwise
        # write into (and so copy) every page of the inherited heap on its first full pass.
        gc.freeze()
        try:
            self.process.start()
        finally:
            gc.unfreeze()
        child.close()
        os.close(write_end)
        self.said = b""
        self.pending: deque[FileTask] = deque()
        self.started = 0.0  # when it began the file at the head of ``pending``

    def drain(self) -> None:
        """Read what the worker printed (keeping the end), so that it never blocks on a full pipe."""
        with contextlib.suppress(BlockingIOError, OSError):
            while block := os.read(self.output, 65536):
                self.said = (self.said + block)[-4096:]

    def last_words(self) -> str:
        """The last line the worker printed, without quoted values, or ""."""
        self.drain()
        lines = self.said.decode("utf-8", "replace").strip().splitlines()
        return value_free(lines[-1])[:200] if lines else ""

    def close(self) -> None:
        """Close the parent's ends of the worker's pipes."""
        self.conn.close()
        with contextlib.suppress(OSError):
            os.close(self.output)

    def send(self, task: FileTask) -> bool:
        try:
            self.conn.send(task)
        except OSError:  # it died: the caller notices through its sentinel
            return False
        if not self.pending:
            self.started = time.monotonic()
        self.pending.append(task)
        return True


class _Pool:
    def __init__(self, ctx: WorkContext, size: int, file_seconds: float) -> None:
        self.ctx = ctx
        self.file_seconds = file_seconds
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
            mpc.wait(waiting + [w.output for w in self.workers], timeout=self._next_deadline())
            for slot, worker in enumerate(self.workers):
                worker.drain()
                self._collect(worker, done)
                overdue = self._overdue(worker)
                if overdue is not None:
                    worker.process.kill()
                if overdue is not None or not worker.process.is_alive():
                    self._bury(worker, done, queue, overdue)
                    self.workers[slot] = _Worker(self.ctx)
            while position in done:
                yield done.pop(position)
                position += 1

    def _limit(self, task: FileTask) -> float:
        return time_limit(task.size, self.file_seconds)

    def _next_deadline(self) -> float:
        now = time.monotonic()
        waits = [w.started + self._limit(w.pending[0]) - now for w in self.workers if w.pending]
        return max(0.0, min(waits, default=1.0))

    def _overdue(self, worker: _Worker) -> str | None:
        if worker.pending and time.monotonic() - worker.started > self._limit(worker.pending[0]):
            limit = self._limit(worker.pending[0])
            return f"reading it took longer than {limit:.0f} s, so it was stopped (damage can make a reader loop)"
        return None

    @staticmethod
    def _collect(worker: _Worker, done: dict[int, Outcome]) -> None:
        while worker.pending and worker.conn.poll():
            try:
                outcome: Outcome = worker.conn.recv()
            except (EOFError, OSError):
                return
            task = worker.pending.popleft()
            done[task.index] = outcome
            worker.started = time.monotonic()

    @staticmethod
    def _bury(worker: _Worker, done: dict[int, Outcome], queue: deque[FileTask], reason: str | None) -> None:
        worker.process.join()
        words = worker.last_words()
        worker.close()
        if not worker.pending:
            return
        task = worker.pending.popleft()  # the file it was working on
        if reason is None:
            code = worker.process.exitcode or 0
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            reason = f"the process reading it {how}" + (f" after printing: {words}" if words else "")
        done[task.index] = Crashed(task.index, reason)
        queue.extendleft(reversed(worker.pending))  # sent but never started: to the front, in order

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.close()


def _serve(conn: mpc.Connection, ctx: WorkContext, parent: int, output: int, parents_end: int) -> None:
    _die_with(parent)
    os.close(parents_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
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


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the request above took effect
        os._exit(0)
