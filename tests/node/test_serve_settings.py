"""`metai-node serve` honours its settings: the chain URL (signing agent and node config), the SuperNode key and
port, the log directory with its rotation, the runtime directory; and a chain it cannot reach stops it in one line."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import tomllib
from pathlib import Path

from node.procs import start_time
from tests.conftest import NODE_PASSPHRASE
from tests.node.serve_fixture import SecureLink, Serve, serve_env


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_serve_runs_with_every_setting_it_is_given(  # type: ignore[no-untyped-def]
        make_node, chain, secure_link: SecureLink, short_dir: Path, start_serve, tmp_path: Path) -> None:
    node = make_node("Settings Hospital")
    secure_link.register(node.dir, "settings-hospital")
    moved_key = tmp_path / "keys" / "supernode.key"  # METAI_NODE_SUPERNODE_KEY: the key kept elsewhere
    moved_key.parent.mkdir(mode=0o700)
    (node.dir / "federation" / "supernode.key").rename(moved_key)
    alias = chain.rpc_url.replace("127.0.0.1", "localhost")  # the same chain under another URL than node.json's
    assert node.info.rpc_url == chain.rpc_url != alias
    logs = tmp_path / "var-log"
    env = serve_env(node.dir, secure_link, short_dir, rpc_url=alias, supernode_key=str(moved_key),
                    log_dir=str(logs), log_max_bytes="1024", log_backups="2")
    serve = start_serve(env)
    body = serve.wait_health(200)
    supernode = body["children"]["supernode"]

    # METAI_NODE_RPC_URL: what the signing agent uses, what the node config hands the ClientApps, and in the
    # environment the SuperNode passes on to them.
    assert f"on chain {alias} (id {chain.chain_id}) listening on {short_dir}/signer/agent.sock" in \
        (logs / "signer.log").read_text()
    config = tomllib.loads((short_dir / "node-config.toml").read_text())
    assert config == {"node-dir": str(node.dir.resolve()), "signer-socket": f"{short_dir}/signer/agent.sock",
                      "rpc-url": alias}
    assert _environ(supernode["pid"])["METAI_NODE_RPC_URL"] == alias
    # METAI_NODE_SUPERNODE_KEY and METAI_NODE_SUPERNODE_PORT: the SuperNode's command line and its listening port.
    cmdline = Path(f"/proc/{supernode['pid']}/cmdline").read_bytes().split(b"\0")
    assert cmdline[cmdline.index(b"--auth-supernode-private-key") + 1] == str(moved_key).encode()
    assert _listens(int(env["METAI_NODE_SUPERNODE_PORT"]))
    # METAI_NODE_RUNTIME_DIR: lock, state, node config, FLWR_HOME and socket there, nothing in the node directory.
    assert {p.name for p in short_dir.iterdir()} >= {"serve.lock", "serve.json", "node-config.toml", "flwr-home",
                                                     "signer"}
    assert not (node.dir / "run").exists()

    # METAI_NODE_LOG_DIR with rotation at 1 KiB, two backups: a restart of the SuperNode writes more than that.
    os.kill(supernode["pid"], signal.SIGKILL)
    serve.wait_health(200, restarted=lambda b: b["children"]["supernode"]["restarts"] == 1)
    assert not (node.dir / "logs").exists()
    assert (logs / "supernode.log.1").exists()
    assert not (logs / "supernode.log.3").exists()
    for path in logs.iterdir():
        assert path.stat().st_size <= 1024, path
        assert all(line[:4].isdigit() for line in path.read_text().splitlines()), path  # each line whole, stamped
    os.kill(serve.proc.pid, signal.SIGTERM)
    assert serve.wait_exit() == 0
    assert json.loads((short_dir / "serve.json").read_text())["clean"] is True


def test_a_chain_the_signing_agent_cannot_reach_stops_serve_in_one_line(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    node = make_node("Offline Hospital")
    secure_link.register(node.dir, "offline-hospital")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    serve = start_serve(serve_env(node.dir, secure_link, short_dir, rpc_url=closed))
    assert serve.wait_exit() == 1
    assert serve.stderr().startswith(f"error: cannot reach the chain at {closed} (connection refused)")
    assert len(serve.stderr().splitlines()) == 1
    state = json.loads((short_dir / "serve.json").read_text())
    assert state["clean"] is True
    assert all(start_time(pid) != started for pid, started in state["children"].values())
    assert not (short_dir / "signer").exists()


def test_run_by_hand_serve_asks_for_the_passphrase_once_and_hands_it_to_its_children(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, tmp_path: Path) -> None:
    node = make_node("Terminal Hospital")
    secure_link.register(node.dir, "terminal-hospital")
    env = serve_env(node.dir, secure_link, short_dir)
    del env["METAI_NODE_PASSPHRASE"]
    master, terminal = pty.openpty()
    err = tmp_path / "serve.err"

    def own_terminal() -> None:  # a session whose controlling terminal is the pty, as in a shell
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    with open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "node.cli", "serve"], env=env, cwd=tmp_path, stdin=terminal,
                                stdout=terminal, stderr=stderr, start_new_session=True, preexec_fn=own_terminal)
    os.close(terminal)
    serve = Serve(proc, env, tmp_path / "none", err, short_dir, node.dir / "logs", int(env["METAI_NODE_HEALTH_PORT"]))
    try:
        shown = b""
        deadline = time.monotonic() + 60
        while b"Node passphrase:" not in shown and time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 1.0)[0]:
                shown += os.read(master, 1024)
        assert b"Node passphrase:" in shown, (shown, err.read_text())
        os.write(master, NODE_PASSPHRASE.encode() + b"\n")
        body = serve.wait_health(200)
        assert body["children"]["signer"]["answering"] is True
        assert _environ(body["children"]["supernode"]["pid"])["METAI_NODE_PASSPHRASE"] == NODE_PASSPHRASE
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        os.close(master)
    assert code == 0, err.read_text()


def test_serve_reaches_a_loopback_superlink_without_tls_when_told_to(  # type: ignore[no-untyped-def]
        make_node, short_dir: Path, start_serve, tmp_path: Path) -> None:
    from deploy.flower import start_superlink, stop

    node = make_node("Lab Hospital")  # no SuperNode key: without TLS the SuperNode registers itself
    superlink = start_superlink(tmp_path / "plain-link")
    try:
        env = serve_env(node.dir, None, short_dir, superlink_address=superlink.fleet_address,
                        superlink_insecure="true")
        serve = start_serve(env)
        supernode = serve.wait_health(200)["children"]["supernode"]
        cmdline = Path(f"/proc/{supernode['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"--insecure" in cmdline
        assert b"--auth-supernode-private-key" not in cmdline
        assert not (node.dir / "federation").exists()
        os.kill(serve.proc.pid, signal.SIGTERM)
        assert serve.wait_exit() == 0
    finally:
        stop(superlink)
