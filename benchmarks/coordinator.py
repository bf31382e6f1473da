"""The coordinator service under load: read endpoints with 50 concurrent clients, and the consent relay.

Run: ``.venv/bin/python -m benchmarks.coordinator``. It starts Anvil, deploys the contracts,
sets up a patient with consents and published cohort proofs and a researcher with a study,
starts ``metai-coordinator serve`` (SQLite, its defaults otherwise) as a process of its own on
a loopback port, and then measures:

- **read endpoints** (a patient's consents, a patient's data uses, a study's status), each two ways
  with 50 connections, after a warm-up:
  - *throughput*: ``wrk`` (Debian's package, a C load generator, so the client's own cost stays
    small) sends as fast as answers come back for ``READ_SECONDS``; requests per second as wrk
    reports them, with its 99th percentile latency at that saturation recorded as information;
  - *latency at the target rate*: an open-loop generator (below, asyncio on raw sockets) sends
    ``READ_TARGET_RPS`` requests a second spread evenly over the 50 connections for
    ``READ_SECONDS``; each request's latency counts from when it was due, not from when it
    went out, so a request held up behind a slow one counts its wait too (no coordinated
    omission). Its 99th percentile is checked against the target.
  Any non-2xx answer counts as a failure;
- **consent relay**: ``RELAY_CONSENTS`` patients, signed in beforehand, each submit one signed
  grant through the API over ``RELAY_CLIENTS`` keep-alive connections (asyncio on raw sockets, so
  the client's own work stays small); the rate is consents mined per second from the first
  submission to the last consent seen mined on chain (the chain's logs counted as blocks come,
  then every event decoded once to check that each patient's grant was mined exactly once).
  The service runs its relay as it does by default, in a process of its own.

Targets (issue 13, on 2 cores): reads >= 1,000 requests/s, and p99 <= 50 ms at that rate; relay >= 200
consents/s sustained. Writes ``benchmarks/results/coordinator.json`` and the README table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.types import RPCEndpoint

from benchmarks.report import Measurement, write_results
from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.events import ConsentGranted, event_topic, read_events
from contracts.exchange import Exchange
from contracts.leaves import cohort_leaf
from contracts.manifest import write_manifest
from contracts.merkle import MerkleTree
from contracts.roles import Role
from contracts.studies import StudyRequest
from deploy.anvil import start_anvil, stop_anvil
from deploy.deployer import deploy_contracts
from deploy.process import free_port, spawn, tail, terminate

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "benchmark coordinator passphrase"
READ_SECONDS = 10
WARM_SECONDS = 2
CONNECTIONS = 50
RELAY_CONSENTS = 3000
RELAY_CLIENTS = 16
READ_TARGET_RPS = 1000
READ_TARGET_P99_MS = 50.0
RELAY_TARGET = 200.0
_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")


def _post(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    """POST, sent once more if the server closed the kept-alive connection as the request went out.

    uvicorn closes a connection idle for 5 s; a request sent on it at that moment meets a closed
    socket. Every POST here is safe to repeat: a signed consent submitted twice is one item.
    """
    try:
        return client.post(path, **kwargs)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return client.post(path, **kwargs)


def _sign_in(client: httpx.Client, account: LocalAccount) -> str:
    challenge = _post(client, "/v1/auth/challenge", json={"address": account.address})
    challenge.raise_for_status()
    message = challenge.json()["message"]
    signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    answer = _post(client, "/v1/auth/sign-in", json={"message": message, "signature": signature})
    if answer.is_error:
        raise RuntimeError(f"sign-in failed ({answer.status_code}): {answer.text}")
    return str(answer.json()["token"])


class World:
    """The chain, the service process and the accounts the measurements use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.anvil = start_anvil(root / "anvil")
        self.chain = Chain(self.anvil.rpc_url)
        admin = Account.from_key(self.anvil.dev_keys[0])
        self.admin = admin
        self.hospital, self.researcher, self.coordinator, self.relayer = (Account.create() for _ in range(4))
        self.patient = Account.create()
        for account in (self.hospital, self.researcher, self.coordinator, self.relayer, self.patient):
            self.chain.send_value(admin, account.address, 10**20)
        deployment = deploy_contracts(self.chain, admin, initial_roles=[
            (Role.HOSPITAL, self.hospital.address), (Role.RESEARCHER, self.researcher.address),
            (Role.COORDINATOR, self.coordinator.address)])
        self.exchange = Exchange(self.chain, deployment)
        self.manifest = root / "deployment.json"
        write_manifest(deployment, self.manifest)
        for name, account in (("coordinator", self.coordinator), ("relayer", self.relayer)):
            (root / f"{name}-key.json").write_text(json.dumps(Account.encrypt(account.key, PASSPHRASE)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def serve(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
        env.update({
            "PYTHONPATH": str(REPO), "METAI_COORDINATOR_RPC_URL": self.anvil.rpc_url,
            "METAI_COORDINATOR_MANIFEST": str(self.manifest),
            "METAI_COORDINATOR_KEY_FILE": str(self.root / "coordinator-key.json"),
            "METAI_COORDINATOR_RELAYER_KEY_FILE": str(self.root / "relayer-key.json"),
            "METAI_COORDINATOR_PASSPHRASE": PASSPHRASE, "METAI_COORDINATOR_PORT": str(self.port),
            "METAI_COORDINATOR_PUBLIC_URL": self.url, "METAI_COORDINATOR_MODEL_DIR": str(self.root / "models"),
            "METAI_COORDINATOR_DATABASE_URL": f"sqlite:///{self.root / 'coordinator.sqlite'}",
            # The load comes from one address: the limits protect a real service, not this measurement.
            "METAI_COORDINATOR_SIGN_IN_RATE": "1000000", "METAI_COORDINATOR_RELAY_RATE": "1000000",
            "METAI_COORDINATOR_LOG_JSON": "true",
        })
        self.proc = spawn([sys.executable, "-m", "coordinator.cli", "serve"], self.root / "coordinator.log", env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited:\n{tail(self.root / 'coordinator.log')}")
            try:
                health = httpx.get(f"{self.url}/v1/health", timeout=2)
                if health.status_code == 200 and health.json().get("warmed_up"):
                    return  # measured once warm: the first minutes of a service are not its steady state
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the service did not start:\n{tail(self.root / 'coordinator.log')}")

    def populate(self) -> int:
        """Consents and a 3-round study with published proofs for the patient; return the study id."""
        consent = self.exchange.consent
        for purpose, disease in ((Purpose.GRU, 0), (Purpose.HMB, 0), (Purpose.DS, 7)):
            consent.grant(self.patient, Scope(purpose=purpose, disease=disease), Kind.CT_SINOGRAM, NO_EXPIRY)
        studies = self.exchange.studies
        study_id, _ = studies.request(self.researcher, StudyRequest(
            purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(self.hospital.address,),
            task_code_hash=keccak(text="benchmark task"), rounds=3))
        studies.approve(self.hospital, study_id)
        studies.start(self.coordinator, study_id)
        client = httpx.Client(base_url=self.url, timeout=30)
        headers = {"Authorization": f"Bearer {_sign_in(client, self.hospital)}"}
        others = [Account.create().address for _ in range(39)]
        dataset, _ = self.exchange.datasets.register(self.hospital, keccak(text="benchmark records"), 120,
                                                     Kind.CT_SINOGRAM, "CT", synthetic=True)
        for round_ in (1, 2, 3):
            members = [(keccak(text=f"record {round_} {p}").hex(), p) for p in [self.patient.address, *others]]
            leaves = {m: cohort_leaf(m[0], int(Kind.CT_SINOGRAM), m[1]) for m in members}
            tree = MerkleTree(leaves.values())
            studies.contribute(self.hospital, study_id, round_, tree.root, len(members),
                               self.exchange.chain.block_number, [dataset], keccak(text=f"u{round_}"))
            proofs = [{"patient": p, "record_id": r, "kind": int(Kind.CT_SINOGRAM),
                       "proof": ["0x" + x.hex() for x in tree.proof(leaves[(r, p)])]} for r, p in members]
            client.post("/v1/cohort-proofs", headers=headers, json={
                "study_id": study_id, "round": round_, "cohort_root": "0x" + tree.root.hex(),
                "cohort_count": len(members), "proofs": proofs, "complete": True}).raise_for_status()
            studies.record_round(self.coordinator, study_id, round_, keccak(text=f"m{round_}"),
                                 [self.hospital.address])
        return int(study_id)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc.pid, 15)
        stop_anvil(self.anvil)


def wrk(url: str, token: str, seconds: int) -> dict[str, float]:
    """Run wrk against ``url``; requests/s, p99 latency in ms, and non-2xx answers."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True).stdout
    rps = float(_WRK_RPS.search(out).group(1))  # type: ignore[union-attr]
    value, unit = _WRK_P99.search(out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    bad = _WRK_NON2XX.search(out)
    total = int(_WRK_TOTAL.search(out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p99_ms": p99, "failed": float(bad.group(1)) if bad else 0.0, "requests": float(total)}


def paced(url: str, token: str, rate: float, seconds: float) -> dict[str, float]:
    """Send ``rate`` GETs a second to ``url`` over ``CONNECTIONS`` keep-alive connections for ``seconds``.

    Connection ``i`` is due to send its ``k``-th request at ``start + (k * CONNECTIONS + i) / rate``;
    it sends when due, or at once when its previous answer came late. Latency runs from the due
    time to the whole answer read. Returns requests/s achieved, p50/p90/p99/max in ms and failures.
    """
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    latencies: list[float] = []
    connected: list[int] = []
    failed = 0

    async def connection(i: int, opened: asyncio.Future[float]) -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, port)
        connected.append(i)
        if len(connected) == CONNECTIONS:
            opened.set_result(time.perf_counter() + 0.1)
        start = await opened  # the schedule starts once every connection is open
        k = 0
        while True:
            due = start + (k * CONNECTIONS + i) / rate
            if due >= start + seconds:
                break
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - due)
            failed += not 200 <= status < 300
            k += 1
        writer.close()

    async def run() -> float:
        opened: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        await asyncio.gather(*(connection(i, opened) for i in range(CONNECTIONS)))
        return time.perf_counter() - opened.result()

    elapsed = asyncio.run(run())
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"rps": len(ordered) / elapsed, "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99),
            "max_ms": ordered[-1] * 1000, "failed": float(failed), "requests": float(len(ordered))}


def post_all(url: str, posts: list[tuple[str, str, bytes]], connections: int) -> list[tuple[int, bytes]]:
    """POST each ``(path, bearer token, JSON body)`` once, over ``connections`` keep-alive connections.

    asyncio on raw sockets, so that the client's own work stays small beside the service's (16
    threads of httpx took this process about 1.2 ms of CPU a request, on the same 2 cores).
    Returns each request's status and body, in order. A connection the service closed is opened
    again and its request sent once more (submitting a signed consent twice is one consent).
    """
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    encoded = [(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
               for path, token, body in posts]
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(posts)
    todo = iter(range(len(posts)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for index in todo:
            for attempt in range(3):
                try:
                    writer.write(encoded[index])
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    answers[index] = (int(head.split(b" ", 2)[1]), await reader.readexactly(length))
                    if b"connection: close" in head.lower():
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    if attempt == 2:
                        raise
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        writer.close()

    async def run() -> None:
        await asyncio.gather(*(connection() for _ in range(connections)))

    asyncio.run(run())
    return answers


def measure_reads(world: World, study_id: int) -> list[Measurement]:
    client = httpx.Client(base_url=world.url, timeout=30)
    patient, researcher = _sign_in(client, world.patient), _sign_in(client, world.researcher)
    rows = []
    for name, path, token in (("my consents", "/v1/consents", patient),
                              ("who used my data", "/v1/me/data-uses", patient),
                              ("study status", f"/v1/studies/{study_id}", researcher)):
        check = client.get(path, headers={"Authorization": f"Bearer {token}"})
        check.raise_for_status()
        wrk(world.url + path, token, WARM_SECONDS)
        got = wrk(world.url + path, token, READ_SECONDS)
        steady = paced(world.url + path, token, READ_TARGET_RPS, READ_SECONDS)
        print(f"{name}: {got['rps']:.0f} requests/s at most (p99 {got['p99_ms']:.1f} ms there); at "
              f"{steady['rps']:.0f} requests/s p50 {steady['p50_ms']:.1f} ms, p99 {steady['p99_ms']:.1f} ms, "
              f"max {steady['max_ms']:.1f} ms; {got['failed'] + steady['failed']:.0f} failed")
        rows.append(Measurement(f"GET {path} ({name}): requests per second, {CONNECTIONS} clients", round(got["rps"]),
                                "requests/s", f">= {READ_TARGET_RPS:,}",
                                got["rps"] >= READ_TARGET_RPS and got["failed"] == 0,
                                f"wrk, as fast as answers come: {got['requests']:.0f} requests in {READ_SECONDS} s, "
                                f"{got['failed']:.0f} not 2xx; p99 at that saturation {got['p99_ms']:.1f} ms"))
        rows.append(Measurement(
            f"GET {path} ({name}): p99 latency at {READ_TARGET_RPS:,} requests/s, {CONNECTIONS} clients",
            round(steady["p99_ms"], 1), "ms", f"<= {READ_TARGET_P99_MS:g}",
            steady["p99_ms"] <= READ_TARGET_P99_MS and steady["failed"] == 0 and
            steady["rps"] >= 0.95 * READ_TARGET_RPS,
            f"open loop, latency from each request's due time: {steady['requests']:.0f} requests at "
            f"{steady['rps']:.0f}/s, p50 {steady['p50_ms']:.1f} ms, p90 {steady['p90_ms']:.1f} ms, "
            f"max {steady['max_ms']:.1f} ms, {steady['failed']:.0f} not 2xx"))
    return rows


def measure_relay(world: World) -> list[Measurement]:
    patients = [Account.create() for _ in range(RELAY_CONSENTS)]
    clients = [httpx.Client(base_url=world.url, timeout=60) for _ in range(RELAY_CLIENTS)]

    def prepare(i: int) -> tuple[str, dict[str, Any]]:
        client, patient = clients[i % RELAY_CLIENTS], patients[i]
        token = _sign_in(client, patient)
        typed = _post(client, "/v1/consents/typed-data", headers={"Authorization": f"Bearer {token}"}, json={
            "action": "grant", "scope": {"purpose": "GRU"}, "kinds": ["ct-sinogram"]}).json()["typed_data"]
        signature = patient.sign_message(encode_typed_data(full_message=typed)).signature.to_0x_hex()
        return token, {"typed_data": typed, "signature": signature}

    with ThreadPoolExecutor(RELAY_CLIENTS) as pool:
        prepared = list(pool.map(prepare, range(RELAY_CONSENTS)))
    for client in clients:
        client.close()
    before = world.chain.block_number
    posts = [("/v1/consents/signed", token, json.dumps(body).encode()) for token, body in prepared]
    started = time.perf_counter()
    answers = post_all(world.url, posts, RELAY_CLIENTS)
    submitted = time.perf_counter() - started
    errors = [f"{status} {body[:200]!r}" for status, body in answers if status != 202]
    topic = event_topic("ConsentRegistry", "ConsentGranted")
    # Counted while they are mined from the raw logs, a block range at a time (cheap: decoding
    # every event on each look took this process a second or more, which counted as relay time);
    # decoded and checked patient by patient once the count is complete.
    seen, next_block, mined = 0, before + 1, 0
    deadline = time.monotonic() + 600
    elapsed = 0.0
    while time.monotonic() < deadline:
        head = world.chain.block_number
        if head >= next_block:
            logs = world.chain.w3.provider.make_request(RPCEndpoint("eth_getLogs"), [{
                "address": world.exchange.consent.address, "topics": [topic],
                "fromBlock": hex(next_block), "toBlock": hex(head)}])["result"]
            seen += len(logs)
            next_block = head + 1
        elapsed = time.perf_counter() - started
        if seen >= RELAY_CONSENTS - len(errors):
            break
        time.sleep(0.05)
    granted = Counter(e.patient for e in read_events(world.chain, [world.exchange.consent.address],
                                                     from_block=before + 1, topics=[topic])
                      if isinstance(e, ConsentGranted))
    mined = sum(1 for p in patients if granted[p.address] == 1)
    if mined != RELAY_CONSENTS or sum(granted.values()) != RELAY_CONSENTS:
        errors.append(f"{mined} patients' grants mined once each, {sum(granted.values())} grants in all")
    rate = mined / elapsed
    print(f"relay: {RELAY_CONSENTS} submitted in {submitted:.1f} s, {mined} mined in {elapsed:.1f} s: "
          f"{rate:.0f} consents/s; {len(errors)} refused")
    return [
        Measurement(f"consent relay through the API, {RELAY_CONSENTS} patients, {RELAY_CLIENTS} clients", round(rate),
                    "consents/s", f">= {RELAY_TARGET:g}", rate >= RELAY_TARGET and not errors and
                    mined == RELAY_CONSENTS,
                    f"submitted in {submitted:.1f} s ({RELAY_CONSENTS / submitted:.0f}/s), all mined after "
                    f"{elapsed:.1f} s; {len(errors)} refused"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--quick", action="store_true", help="a short look (3 s reads, 300 consents); writes nothing")
    parser.add_argument("--only", choices=("reads", "relay"), help="measure only this part; writes nothing")
    args = parser.parse_args(argv)
    global READ_SECONDS, RELAY_CONSENTS
    if args.quick:
        READ_SECONDS, RELAY_CONSENTS = 3, 300
    if shutil.which("wrk") is None:
        print("wrk is not installed: make deps installs it (Debian package wrk)", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="metai-bench-coordinator-"))
    world = World(root)
    failed = True
    try:
        world.serve()
        study_id = world.populate()
        rows = ((measure_reads(world, study_id) if args.only != "relay" else [])
                + (measure_relay(world) if args.only != "reads" else []))
        failed = False
    finally:
        world.close()
        if failed or args.keep:
            print(f"the service's log and state are kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not args.quick and not args.only:
        write_results("coordinator", rows)
    return 0 if all(r.met is not False for r in rows) else 1




if __name__ == "__main__":
    raise SystemExit(main())
