"""Start and stop a local PostgreSQL server, and make throwaway databases on it.

Debian's server programs (package ``postgresql``) are run directly: ``initdb`` once into a fresh
data directory, then ``postgres`` itself rather than ``pg_ctl`` (which forks it), so the PID we
hold is the server's and stopping it is exact. It listens on 127.0.0.1 only, on a free port, with
its unix socket in a private directory. The data directory outlives a stop (or a kill): the next
start on the same ``directory`` uses it again.

PostgreSQL refuses to run as root. Started by root, the server runs as Debian's ``postgres``
system user, with that user's groups and none of root's; started by anyone else, as that user.
Its files must then be reachable by it: when ``directory`` is not (pytest's
``/tmp/pytest-of-root`` is 0700), they go to a private directory in the system's temp directory,
linked from ``directory/server``, which ``stop_postgres(..., delete_data=True)`` removes. A
caller may ask for that anyway, on a faster file system (``scratch``): ``CREATE DATABASE`` writes
some 600 files, which took 240 ms on the ext4 disk of the machine this was written on and 16 ms
on its /dev/shm (tmpfs).

Logins: the superuser (the server's own account name) only through the unix socket, whose
directory is reachable by that account and root alone (``trust``); over TCP only roles with a
password (``scram-sha-256``). The application's role gets a fresh random password at each start,
owns the application database and may create more (:func:`create_database`).

It is a server for tests and local runs: ``fsync`` is off, so a killed server loses nothing
(the kernel holds its writes) but a machine that crashes may.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from sqlalchemy import URL

from deploy.errors import ServiceStartError, ToolMissing
from deploy.process import HOST, as_user, free_port, read_log, spawn, start_time, stop_tree, tail, tail_text

__all__ = [
    "PostgresServer",
    "create_database",
    "drop_database",
    "server_binaries",
    "start_postgres",
    "stop_postgres",
]

DEBIAN_ROOT = Path("/usr/lib/postgresql")  # one <major>/bin per installed server version
SERVER_USER = "postgres"  # Debian's system account for the server, used when we are root
APP_ROLE = "metai"  # the application's role and database
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
_IN_USE = "Address already in use"
# After a kill, the old server's helper processes hold its shared memory until they notice and exit.
_OLD_MEMORY = "pre-existing shared memory block"


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server: its PID, address, application login and files."""

    pid: int
    port: int
    url: str = field(repr=False)  # SQLAlchemy URL of the application database; holds the password
    database: str
    user: str
    password: str = field(repr=False)  # kept out of pytest's failure output
    directory: Path  # what start_postgres was given: the log, and data_dir or a link to it
    data_dir: Path
    socket_dir: Path
    log_file: Path
    os_user: str  # the account the server runs as, and the name of its superuser role
    start_time: int | None = None  # of ``pid``, in clock ticks since boot: a reused PID is not stopped

    def url_of(self, database: str) -> str:
        """Return the SQLAlchemy URL of ``database`` on this server, with the application's login."""
        return _url(self.user, self.password, self.port, database)


def server_binaries() -> Path:
    """Return the ``bin`` directory of the newest PostgreSQL server installed by Debian.

    Raises:
        ToolMissing: no server is installed.
    """
    found = [p.parent for p in DEBIAN_ROOT.glob("*/bin/postgres") if p.parent.parent.name.isdigit()]
    if not found:
        raise ToolMissing(
            f"no PostgreSQL server under {DEBIAN_ROOT}/<major>/bin: install the Debian package `postgresql` "
            "(`bash deploy/install-system-deps.sh` as root, which `make test` runs)"
        )
    return max(found, key=lambda bin_dir: int(bin_dir.parent.name))


def start_postgres(
    directory: Path, *, port: int | None = None, scratch: Path | None = None, timeout: float = 30.0
) -> PostgresServer:
    """Start PostgreSQL on 127.0.0.1, make its data directory first if needed, and wait until it answers.

    Parameters:
        directory: holds the server's log (``postgres.log``) and its data (``server/``, or a link
            of that name to a private directory elsewhere); created if needed. A directory that
            holds data from an earlier start is used again, wherever that data is.
        port: TCP port; a free one if None (and another if that one is taken before the bind).
        scratch: make new data in a private directory under this one (e.g. a tmpfs), linked from
            ``directory/server``. None: in ``directory``, or in the system's temp directory when
            the server's account cannot reach ``directory``.
        timeout: seconds for ``initdb``, and again for the server to accept connections.

    Raises:
        ToolMissing: PostgreSQL is not installed, or (as root) the ``postgres`` account is missing.
        ServiceStartError: ``initdb`` or the server failed or did not answer in time (the log is quoted).
    """
    bin_dir = server_binaries()
    account = _server_account()
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / "postgres.log"
    files = _server_files(directory, account, scratch)
    data_dir, socket_dir = files / "data", files / "socket"
    superuser = account or pwd.getpwuid(os.geteuid()).pw_name
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bin_dir, data_dir, superuser, account, log_file, timeout)
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    if account is not None:
        shutil.chown(socket_dir, account, account)
    deadline = time.monotonic() + timeout
    port_clashes = 0
    while True:
        chosen = port or free_port()
        log_start = log_file.stat().st_size if log_file.exists() else 0
        # In our session: a Ctrl-C that stops the tests also stops the server (SIGINT: fast shutdown).
        proc = spawn(_server_command(bin_dir, data_dir, socket_dir, chosen), log_file, user=account, own_session=False)
        admin = _wait_ready(proc, socket_dir, chosen, superuser, deadline, log_file)
        if admin is not None:
            break
        log = read_log(log_file, log_start)
        if _OLD_MEMORY in log and time.monotonic() < deadline:
            time.sleep(0.1)  # a killed server's helpers are still exiting
            continue
        port_clashes += _IN_USE in log
        if _IN_USE not in log or port is not None or port_clashes == _START_ATTEMPTS:
            raise ServiceStartError(f"postgres exited with {proc.returncode}:\n{tail_text(log, 20)}")
    password = secrets.token_hex(16)
    try:
        with admin:
            _create_login(admin, password)
        with _connect(chosen, APP_ROLE, password, APP_ROLE) as check:  # the URL we hand out works over TCP
            check.execute("SELECT 1")
    except BaseException:
        stop_tree(proc.pid, timeout=5.0)
        raise
    server = PostgresServer(
        pid=proc.pid,
        port=chosen,
        url=_url(APP_ROLE, password, chosen, APP_ROLE),
        database=APP_ROLE,
        user=APP_ROLE,
        password=password,
        directory=directory,
        data_dir=data_dir,
        socket_dir=socket_dir,
        log_file=log_file,
        os_user=superuser,
        start_time=start_time(proc.pid),
    )
    return server


def stop_postgres(server: PostgresServer, timeout: float = 30.0, *, delete_data: bool = False) -> None:
    """Stop ``server`` by its PID: SIGTERM, SIGKILL after ``timeout`` seconds; then reap it.

    SIGTERM is PostgreSQL's "smart" shutdown: it waits for open sessions to end, so dispose of
    engines first (the per-test databases of :func:`drop_database` end theirs). Stopping twice
    is harmless: a PID that now belongs to a process started at another time is left alone.

    Parameters:
        server: what :func:`start_postgres` returned.
        timeout: seconds before SIGKILL.
        delete_data: also delete its data directory and socket directory (and the private temp
            directory with them, when there is one).
    """
    stop_tree(server.pid, (), timeout, server.start_time)
    if delete_data:
        files, link = server.data_dir.parent, server.directory / "server"
        if files.exists():
            shutil.rmtree(files)
        if link.is_symlink():
            link.unlink()


def create_database(server: PostgresServer, name: str) -> str:
    """Create the empty database ``name``, owned by the application's role; return its SQLAlchemy URL."""
    with _connect(server.port, server.user, server.password, server.database) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url_of(name)


def drop_database(server: PostgresServer, name: str) -> None:
    """Drop the database ``name`` if it exists, ending the sessions still connected to it."""
    with _connect(server.port, server.user, server.password, server.database) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _url(user: str, password: str, port: int, database: str) -> str:
    return URL.create("postgresql+psycopg", user, password, HOST, port, database).render_as_string(hide_password=False)


def _connect(port: int, user: str, password: str, database: str) -> psycopg.Connection[TupleRow]:
    """An autocommit connection over TCP."""
    return psycopg.connect(
        host=HOST, port=port, user=user, password=password, dbname=database, connect_timeout=10, autocommit=True
    )


def _server_account() -> str | None:
    """The account the server must run as: ``postgres`` if we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ToolMissing(
            f"PostgreSQL refuses to run as root and there is no `{SERVER_USER}` account to run it as: "
            "install the Debian package `postgresql`, which creates it"
        ) from None
    return SERVER_USER


def _server_files(directory: Path, account: str | None, scratch: Path | None) -> Path:
    """The directory for the data and the socket, owned by the server's account (made if needed).

    ``directory/server``; or a private directory under ``scratch`` (the system's temp directory
    when ``account`` cannot reach ``directory``) with ``directory/server`` linking to it.
    """
    link = directory / "server"
    if link.is_dir():  # an earlier start's (a link is followed)
        return link.resolve()
    if link.is_symlink():  # to a temp directory deleted since
        link.unlink()
    if scratch is None and (account is None or _reaches(account, directory)):
        link.mkdir(mode=0o700)
        files = link
    else:
        files = Path(tempfile.mkdtemp(prefix="metai-postgres-", dir=scratch))  # 0700
        link.symlink_to(files)
    if account is not None:
        shutil.chown(files, account, account)
    return files


def _reaches(account: str, directory: Path) -> bool:
    """Whether ``account`` may enter ``directory`` (asked of the kernel, as that account)."""
    return subprocess.run(["test", "-x", str(directory)], check=False, **as_user(account)).returncode == 0


def _initdb(bin_dir: Path, data_dir: Path, superuser: str, account: str | None, log_file: Path, timeout: float) -> None:
    cmd = [
        str(bin_dir / "initdb"),
        "--pgdata", str(data_dir),
        "--username", superuser,
        "--auth-local", "trust",  # the socket's directory is the server account's and root's alone
        "--auth-host", "scram-sha-256",
        "--encoding", "UTF8",
        "--no-locale",  # the C locale exists everywhere
        "--no-sync",
    ]
    with open(log_file, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            done = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout, check=False,
                **(as_user(account) if account is not None else {}),
            )
        except subprocess.TimeoutExpired:  # run() has killed it
            raise ServiceStartError(f"initdb did not finish within {timeout} s:\n{tail(log_file, 20)}") from None
    if done.returncode != 0:
        raise ServiceStartError(f"initdb exited with {done.returncode}:\n{tail(log_file, 20)}")


def _server_command(bin_dir: Path, data_dir: Path, socket_dir: Path, port: int) -> list[str]:
    return [
        str(bin_dir / "postgres"),
        "-D", str(data_dir),
        "-c", f"listen_addresses={HOST}",
        "-c", f"port={port}",
        "-c", f"unix_socket_directories={socket_dir}",
        "-c", "unix_socket_permissions=0700",
        "-c", "fsync=off",  # see the module's docstring
    ]


def _wait_ready(
    proc: subprocess.Popen[bytes], socket_dir: Path, port: int, superuser: str, deadline: float, log_file: Path
) -> psycopg.Connection[TupleRow] | None:
    """A superuser connection once the server accepts one; None if it exits first.

    Raises:
        ServiceStartError: it still does not accept connections at ``deadline`` (it is stopped).
    """
    while proc.poll() is None:
        with contextlib.suppress(psycopg.OperationalError):
            return psycopg.connect(
                host=str(socket_dir), port=port, user=superuser, dbname="postgres", connect_timeout=2, autocommit=True
            )
        if time.monotonic() > deadline:
            stop_tree(proc.pid, timeout=5.0)
            raise ServiceStartError(
                f"postgres did not accept connections on {HOST}:{port} in time:\n{tail(log_file, 20)}"
            )
        time.sleep(0.05)
    return None


def _create_login(admin: psycopg.Connection[TupleRow], password: str) -> None:
    """Give the application's role ``password`` (creating it if new) and make sure its database exists."""
    role = sql.Identifier(APP_ROLE)
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
    verb = sql.SQL("ALTER" if exists else "CREATE")
    # A utility statement takes no bound parameters: the password goes in as a quoted literal.
    admin.execute(sql.SQL("{} ROLE {} LOGIN CREATEDB PASSWORD {}").format(verb, role, sql.Literal(password)))
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_ROLE,)).fetchone():
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
