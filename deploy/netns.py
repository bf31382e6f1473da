"""A consortium of hosts on one Linux machine: network namespaces joined by a bridge, for multi-host tests.

Each host is a network namespace with its own loopback and one interface (``eth0``) holding one
address in a private range that exists only inside those namespaces. The bridge lives in a
namespace of its own (the switch), and every veth pair is created there and its far end moved
straight into its host, so the machine's own namespace never holds any of the interfaces or
addresses, and no namespace has a route beyond the range: nothing sent inside can leave.

Processes run in a host with :meth:`Lab.spawn` / :meth:`Lab.run` (``ip netns exec``, which
execs the command, so the PID is the program's); the calling thread can work inside a host for a
while with :meth:`Lab.inside` (``setns(2)``: sockets opened there belong to that host).
:meth:`Lab.close` kills what still runs in the namespaces and deletes them, which removes their
interfaces; a lab left behind by a killed process is removed by the next :func:`sweep`.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and ``ip`` from iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.errors import DeployError

__all__ = ["PREFIX", "Host", "Lab", "NetnsError", "available", "sweep"]

#: Every namespace a lab makes is named ``PREFIX<pid of its maker>-<host>``.
PREFIX = "metai-lab"
#: The benchmarking range of RFC 2544: reserved for tests, never routed on the internet.
NETWORK = ipaddress.ip_network("198.18.77.0/24")
_CLONE_NEWNET = 0x40000000
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class NetnsError(DeployError, RuntimeError):
    """A namespace, interface or address could not be made or removed (the message quotes ``ip``)."""


@dataclass(frozen=True)
class Host:
    """One host of the lab: its name, namespace and address on the bridge."""

    name: str
    namespace: str
    address: str


@dataclass
class Lab:
    """Hosts made by :meth:`create`; close it (or use it as a context manager) to remove them."""

    switch: str
    hosts: dict[str, Host]
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, names: Sequence[str]) -> Lab:
        """Make one namespace per name, joined by a bridge, each with the next address of the range.

        Parameters:
            names: host names, 1-8 lowercase letters or digits, starting with a letter, unique.

        Raises:
            ValueError: a name is malformed or repeated.
            NetnsError: ``ip`` failed (everything made so far is removed again).
        """
        for name in names:
            if not _NAME.match(name):
                raise ValueError(f"host name {name!r}: expected 1-8 lowercase letters or digits, "
                                 "starting with a letter")
        if len(set(names)) != len(names):
            raise ValueError(f"host names repeat: {list(names)}")
        base = f"{PREFIX}{os.getpid()}-"
        lab = cls(switch=base + "switch", hosts={})
        addresses = iter(NETWORK.hosts())
        try:
            _ip("netns", "add", lab.switch)
            _ip("-n", lab.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", lab.switch, "link", "set", "br0", "up")
            for index, name in enumerate(names):
                host = Host(name=name, namespace=base + name, address=str(next(addresses)))
                _ip("netns", "add", host.namespace)
                lab.hosts[name] = host
                port = f"p{index}"
                # Both ends are born in the switch; the far end moves straight into its host.
                _ip("-n", lab.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", host.namespace)
                _ip("-n", lab.switch, "link", "set", port, "master", "br0", "up")
                _ip("-n", host.namespace, "link", "set", "lo", "up")
                _ip("-n", host.namespace, "addr", "add", f"{host.address}/{NETWORK.prefixlen}", "dev", "eth0")
                _ip("-n", host.namespace, "link", "set", "eth0", "up")
        except BaseException:
            lab.close()
            raise
        return lab

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """Return ``argv`` wrapped to run in ``host``'s namespace."""
        return ["ip", "netns", "exec", self.hosts[host].namespace, *argv]

    def spawn(self, host: str, argv: Sequence[str], log_file: Path, *,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``host``, its output appended to ``log_file``, in a session of its own.

        Returns once the process is inside the host's namespace (or has already ended): until
        ``ip netns exec`` has entered it, the namespace does not list the process, and a
        :meth:`close` in that moment would leave it running.
        """
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            proc = subprocess.Popen(self.command(host, argv), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=dict(env) if env is not None else None,
                                    start_new_session=True)
        inside = f"net:[{os.stat(f'/run/netns/{self.hosts[host].namespace}').st_ino}]"
        deadline = time.monotonic() + 30
        while proc.poll() is None:
            with contextlib.suppress(OSError):  # gone in the meantime: poll() says so next
                if os.readlink(f"/proc/{proc.pid}/ns/net") == inside:
                    return proc
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise NetnsError(f"{argv[0]} did not enter host {host!r} within 30 s")
            time.sleep(0.005)
        return proc

    def run(self, host: str, argv: Sequence[str], *, timeout: float = 60,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host`` to its end and return what it printed (it may fail: check returncode)."""
        return subprocess.run(self.command(host, argv), capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, check=False)

    @contextlib.contextmanager
    def inside(self, host: str) -> Iterator[Host]:
        """Move the calling thread into ``host``'s network namespace for the block, then back.

        Sockets opened in the block belong to ``host`` (and keep doing so after it); processes
        started from this thread in the block start there too.
        """
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.hosts[host].namespace}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield self.hosts[host]
            finally:
                _setns(home)
        finally:
            os.close(home)

    def listening(self, host: str) -> list[tuple[str, int]]:
        """Return the (address, port) of every TCP socket listening in ``host``."""
        found = []
        for line in self.run(host, ["ss", "-Hltn"]).stdout.splitlines():
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            found.append((address.strip("[]"), int(port)))
        return found

    def close(self) -> None:
        """Kill every process still in the lab's namespaces and delete them (twice is harmless)."""
        if self._closed:
            return
        self._closed = True
        namespaces = [h.namespace for h in self.hosts.values()] + [self.switch]
        first: BaseException | None = None
        for namespace in namespaces:
            try:
                _remove(namespace)
            except NetnsError as exc:  # go on removing the rest; report the first failure
                first = first or exc
        if first is not None:
            raise first


def available() -> str | None:
    """Return why labs cannot be made here, or None when they can (root and ``ip`` present)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        subprocess.run(["ip", "netns", "list"], capture_output=True, check=True, timeout=10)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"`ip netns` does not work here: {exc}"
    return None


def sweep() -> list[str]:
    """Remove the namespaces of labs whose maker is no longer running; return their names."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    removed = []
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        found = re.match(rf"^{PREFIX}(\d+)-", name)
        if found and not _alive(int(found.group(1))):
            _remove(name)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(namespace: str) -> None:
    if not Path(f"/run/netns/{namespace}").exists():
        return
    for _ in range(50):  # kill what runs there; a process may fork while we look
        pids = [pid for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                                              check=False).stdout.split() if int(pid) != os.getpid()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.1)
    _ip("netns", "delete", namespace)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(errno)}")
