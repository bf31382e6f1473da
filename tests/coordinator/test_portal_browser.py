"""The portal in a real browser: Debian's Chromium, headless, driven by Playwright, against the real service.

A patient imports a funded key into the browser, signs in, grants consent (mined on chain through
the relay), is in round 1 of a study, revokes, cancels outstanding signatures from their own address,
is left out of round 2, and checks the round-1 proof on chain from the browser. A researcher with
an injected (EIP-1193) wallet then follows the study live and downloads its model. In a deployment
that seals proofs, the browser finds and opens the patient's envelopes with the key it keeps, and a
patient with an injected wallet is told it cannot. Any console
error, page error, CSP violation or request beyond 127.0.0.1 fails the test. Screenshots go to the
folder the test prints (docs/images/portal-*.png are copies).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from playwright.sync_api import Page, expect, sync_playwright

from contracts.datause import Kind, Purpose, Scope, Use
from contracts.exchange import Exchange
from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from contracts.sealing import public_key_of
from contracts.studies import StudyRequest
from coordinator.study_log import HeldOut, RoundRecord, StudyLog, final_model, study_folder
from node.kept_cohort import KeptCohort, KeptMember
from node.sealed_publish import Sealer
from tasks import save_weights, task_code_hash, weights_hash
from tests.chain_steps import contribute
from tests.conftest import Actors
from tests.coordinator.conftest import LiveService, serve_live, sign_typed

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
#: Headless, and quiet: no update checks, sync, QUIC or other traffic of Chromium's own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSPHRASE = "a passphrase for the browser key"
SINOGRAM = int(Kind.CT_SINOGRAM)
TASK = "ct-sinogram-lesion-v1"
#: Reports CSP violations as console errors, which the test collects with the rest.
REPORT_CSP = """document.addEventListener("securitypolicyviolation", (e) =>
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline code"}`));"""
#: An injected wallet (EIP-1193) whose key is held by the test, in Python.
INJECTED_WALLET = """window.ethereum = { isMetaMask: false, request: async ({ method, params }) =>
  JSON.parse(await window.__testWallet(method, JSON.stringify(params || []))) };"""


@dataclass
class Watch:
    """What the browser did that the test forbids: console errors, page errors, requests beyond loopback."""

    errors: list[str] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)

    def request(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss"):
            self.hosts.add(parts.hostname or "")


class InjectedWallet:
    """The Python side of the injected wallet: it signs as ``account`` once the test puts one in it."""

    def __init__(self, chain_id: int) -> None:
        self.account: LocalAccount | None = None
        self.chain_id = chain_id
        self.calls: list[str] = []

    def __call__(self, method: str, params_json: str) -> str:
        params = json.loads(params_json)
        self.calls.append(method)
        account = self.account
        if method in ("eth_requestAccounts", "eth_accounts"):
            return json.dumps([account.address] if account else [])
        if method == "eth_chainId":
            return json.dumps(hex(self.chain_id))
        assert account is not None, f"the wallet holds no key for {method}"
        if method == "personal_sign":
            return json.dumps(account.sign_message(encode_defunct(hexstr=params[0])).signature.to_0x_hex())
        if method == "eth_signTypedData_v4":
            return json.dumps(sign_typed(account, json.loads(params[1])))
        raise AssertionError(f"the portal asked the wallet for {method}")


@pytest.fixture
def portal(exchange: Exchange, actors: Actors, tmp_path: Path) -> Iterator[LiveService]:
    """The real service on a loopback port, its relay sending in the background."""
    with serve_live(exchange, actors, tmp_path, run_relay=True) as live:
        yield live


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("portal-screenshots")
    print(f"portal screenshots: {folder}")  # where to look at them (pytest -s)
    return folder


@contextmanager
def open_browser(portal: LiveService, tmp_path: Path) -> Iterator[tuple[Page, Watch, InjectedWallet]]:
    """A page of headless Chromium with a fresh profile, watched; and the injected wallet it carries."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run deploy/install-system-deps.sh (Debian's chromium)"
    watch = Watch()
    wallet = InjectedWallet(portal.services.exchange.chain.chain_id)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900}, accept_downloads=True, locale="en-GB", timezone_id="UTC")
        try:
            context.set_default_timeout(20_000)
            expect.set_options(timeout=20_000)
            context.expose_function("__testWallet", wallet)
            context.add_init_script(REPORT_CSP + INJECTED_WALLET)
            context.on("request", lambda request: watch.request(request.url))
            page = context.pages[0] if context.pages else context.new_page()
            page.on("console", lambda m: watch.errors.append(f"{m.text} ({m.location.get('url')})")
                    if m.type == "error" else None)
            page.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))
            yield page, watch, wallet
        finally:
            context.close()
    assert watch.errors == [], "the browser reported errors"
    assert watch.hosts <= {"127.0.0.1"}, f"the browser reached beyond loopback: {sorted(watch.hosts)}"


@pytest.fixture
def browser(portal: LiveService, tmp_path: Path) -> Iterator[tuple[Page, Watch, InjectedWallet]]:
    """A page of headless Chromium on the portal."""
    with open_browser(portal, tmp_path) as opened:
        yield opened


@dataclass
class Study:
    study_id: int
    records: dict[str, str]  # patient address -> record id


def _record(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _start_study(exchange: Exchange, actors: Actors) -> Study:
    studies = exchange.studies
    study_id, _ = studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=task_code_hash(TASK), rounds=3))
    for hospital in (actors.hospital, actors.hospital2):
        studies.approve(hospital, study_id)
    studies.start(actors.coordinator, study_id)
    return Study(study_id, {p.address: _record(f"record of {p.address}") for p in actors.patients[:4]})


def _round(live: LiveService, actors: Actors, study: Study, round_: int, members: list[str], *,
           other_count: int, metrics: dict[str, float], log: StudyLog) -> None:
    """Both hospitals contribute to round ``round_`` (``members`` at the first, who publishes their proofs),
    the coordinator records it and logs its held-out metrics."""
    exchange, harness = live.services.exchange, live.harness
    leaves = {m: cohort_leaf(study.records[m], SINOGRAM, m) for m in members}
    tree = MerkleTree(leaves.values())
    contribute(exchange, actors.hospital, study.study_id, round_, tree.root, len(members),
                                keccak(text=f"update {round_}"))
    contribute(exchange, actors.hospital2, study.study_id, round_, keccak(text=f"other {round_}"), other_count,
                                keccak(text=f"other update {round_}"))
    body = {"study_id": study.study_id, "round": round_, "cohort_root": "0x" + tree.root.hex(),
            "cohort_count": len(members), "complete": True,
            "proofs": [{"patient": m, "record_id": study.records[m], "kind": SINOGRAM,
                        "proof": ["0x" + p.hex() for p in tree.proof(leaves[m])]} for m in members]}
    published = harness.client.post("/v1/cohort-proofs", json=body, headers=harness.bearer(actors.hospital))
    assert published.status_code == 201, published.text
    hospitals = [actors.hospital.address, actors.hospital2.address]
    exchange.studies.record_round(actors.coordinator, study.study_id, round_, keccak(text=f"model {round_}"),
                                  hospitals)
    log.rounds.append(RoundRecord(round=round_, contributors=hospitals, cohort_counts=[len(members), other_count],
                                  refused=[], synthetic_counts={}, model_hash="0x", block=None, privacy=None,
                                  seconds=1.0, server_seconds={}, node_seconds={}, eval=metrics))
    folder = study_folder(live.services.settings.model_dir, study.study_id)
    folder.mkdir(parents=True, exist_ok=True)
    log.write(folder)


def test_a_patient_grants_revokes_and_checks_on_chain_and_a_researcher_follows_the_study(
        portal: LiveService, browser: tuple[Page, Watch, InjectedWallet], actors: Actors, shots: Path) -> None:
    page, watch, wallet = browser
    exchange = portal.services.exchange
    patient = actors.patients[0]
    hmb_use = Use(actors.hospital.address, Kind.CT_SINOGRAM, Purpose.HMB)

    # --- a patient without a wallet: a key imported into the browser, encrypted with a passphrase
    page.goto(portal.url + "/consents")
    expect(page).to_have_url(portal.url + "/sign-in?next=%2Fconsents")
    page.get_by_text("Import a key you already have").click()
    page.locator("#import-private-key").fill(patient.key.hex())
    page.locator("#import-passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Import the key and sign in").click()
    try:  # encrypting the key (scrypt, as wallets do) takes seconds, more on a busy machine
        expect(page).to_have_url(portal.url + "/consents", timeout=60_000)
    except AssertionError as exc:
        raise AssertionError(f"sign-in stopped at: {page.locator('#sign-in-status').text_content()!r}") from exc
    expect(page.locator(".who")).to_contain_text(patient.address[:6])
    stored = page.evaluate("() => Object.keys(JSON.parse(localStorage.getItem('metai.keys')))")
    assert stored == [patient.address]
    assert patient.key.hex() not in page.evaluate("() => localStorage.getItem('metai.keys')")

    # --- grant one disease's research at one hospital until a date, then health/medical research anywhere
    form = page.locator("#grant-form")
    form.get_by_label("Research on one disease only").check()
    form.get_by_label("Disease code").fill("7")
    form.get_by_label("Images (CT, MRI pictures)").uncheck()
    form.get_by_label("Raw CT scanner data (sinograms)").uncheck()
    form.get_by_label("Raw MRI scanner data (k-space)").check()
    form.get_by_label("Hospital").fill(actors.hospital2.address)
    form.get_by_label("Until").fill("2031-12-31")
    form.get_by_role("button", name="Sign and allow").click()
    expect(page.locator("#consents-status")).to_contain_text("Your consent is on the chain")
    ds = Scope(hospital=actors.hospital2.address, purpose=Purpose.DS, disease=7)
    assert exchange.consent.consent_of(patient.address, ds).kinds == Kind.MR_KSPACE
    form.get_by_label("Health, medical or biomedical research only").check()
    form.get_by_label("Images (CT, MRI pictures)").uncheck()
    form.get_by_role("button", name="Sign and allow").click()
    expect(page.locator("#consents-status")).to_contain_text("Your consent is on the chain")
    hmb = page.locator("li.consent").filter(has_text="health, medical or biomedical research")
    expect(hmb.locator(".badge")).to_have_text("in force")
    expect(page.locator("li.consent").filter(has_text="disease code 7")).to_contain_text("until 2031-12-31")
    assert exchange.consent.permits(patient.address, hmb_use)
    assert exchange.consent.consent_of(patient.address, Scope(purpose=Purpose.HMB)).kinds == Kind.CT_SINOGRAM

    # --- round 1 of a study uses the patient's record
    study = _start_study(exchange, actors)
    log = StudyLog(study_id=study.study_id, task=TASK, held_out=HeldOut(examples=64, seed=1))
    members = list(study.records)
    _round(portal, actors, study, 1, members, other_count=9, metrics={"loss": 0.69, "accuracy": 0.56}, log=log)

    # --- revoke; round 2 leaves the patient out
    hmb.get_by_role("button", name="Withdraw this consent").click()
    expect(page.locator("#consents-status")).to_contain_text("Your consent is withdrawn on the chain")
    expect(hmb.locator(".badge")).to_have_text("revoked")
    assert not exchange.consent.permits(patient.address, hmb_use)
    page.screenshot(path=shots / "portal-consents.png", full_page=True)

    # --- cancel outstanding signatures: a transaction from the patient's own address, the key unlocked anew
    page.evaluate("() => sessionStorage.removeItem('metai.unlocked')")  # as in a new tab
    next_nonce = exchange.consent.nonce(patient.address)
    page.get_by_role("button", name="Cancel my outstanding signatures").click()
    dialog = page.locator("#unlock-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Passphrase").fill(PASSPHRASE)
    dialog.get_by_role("button", name="Unlock").click()
    expect(page.locator("#cancel-status")).to_contain_text(f"numbered below {next_nonce + 1} is void")
    assert exchange.consent.nonce(patient.address) == next_nonce + 1
    _round(portal, actors, study, 2, members[1:], other_count=10, metrics={"loss": 0.51, "accuracy": 0.71}, log=log)

    # --- who used my data: round 1 with a proof the browser checks on chain, round 2 without me
    page.get_by_role("link", name="Who used my data").click()
    used = page.locator('tr.included[data-round="1"]')
    expect(used).to_contain_text(f"used: record {study.records[patient.address][:12]}… (ct-sinogram data)")
    expect(page.locator('tr.excluded[data-round="2"]')).to_contain_text("not used")
    used.get_by_role("button", name="Check on chain").click()
    expect(used.locator(".check-result")).to_contain_text("Verified on chain at block")
    page.screenshot(path=shots / "portal-data-uses.png", full_page=True)

    # --- the printable receipt, then sign out
    page.get_by_role("link", name="My receipt").click()
    expect(page.locator("h1")).to_have_text("Your MeTAI exchange receipt")
    page.go_back()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(portal.url + "/sign-in")
    assert page.evaluate("() => sessionStorage.getItem('metai.unlocked')") is None

    # --- a researcher with an injected wallet follows the study live and downloads the model
    wallet.account = actors.researcher
    page.get_by_role("button", name="Sign in with your wallet").click()
    expect(page).to_have_url(portal.url + "/studies")
    assert {"eth_requestAccounts", "personal_sign"} <= set(wallet.calls)
    page.get_by_role("link", name=f"Study {study.study_id}", exact=True).click()
    expect(page.locator("#rounds h2")).to_have_text("Rounds: 2 of 3 completed")
    expect(page.locator("#live")).to_contain_text("following live")
    expect(page.locator("#cohort-chart rect.bar")).to_have_count(4)
    _round(portal, actors, study, 3, members[1:], other_count=10, metrics={"loss": 0.40, "accuracy": 0.78}, log=log)
    weights = [np.ones((2, 3), dtype=np.float32)]
    save_weights(final_model(study_folder(portal.services.settings.model_dir, study.study_id)), weights)
    exchange.studies.complete(actors.coordinator, study.study_id, weights_hash(weights), keccak(text="lineage bundle"))
    expect(page.locator("#rounds h2")).to_have_text("Rounds: 3 of 3 completed")  # no reload: the event stream
    expect(page.locator("#study-status")).to_have_text("completed")
    expect(page.locator("#cohort-chart rect.bar")).to_have_count(6)
    page.screenshot(path=shots / "portal-study.png", full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the model").click()
    saved = Path(download.value.path())
    assert saved.read_bytes() == final_model(study_folder(portal.services.settings.model_dir,
                                                          study.study_id)).read_bytes()
    assert watch.errors == []


@pytest.fixture
def sealed_portal(exchange: Exchange, actors: Actors, tmp_path: Path) -> Iterator[LiveService]:
    """The real service on a loopback port, in sealed proof mode."""
    with serve_live(exchange, actors, tmp_path, proof_mode="sealed") as live:
        yield live


def _sealed_round(live: LiveService, actors: Actors, study: Study, round_: int, members: list[str]) -> None:
    """The first hospital contributes round ``round_`` (``members``' records) and publishes it sealed as its node
    does; the second contributes too, and the coordinator records the round."""
    exchange, harness = live.services.exchange, live.harness
    kept = KeptCohort(study.study_id, round_, 0, "", 0, tuple(KeptMember(study.records[m], SINOGRAM, m)
                                                              for m in members))
    tree = MerkleTree(cohort_leaf(m.record_id, m.kind, m.patient) for m in kept.members)
    contribute(exchange, actors.hospital, study.study_id, round_, tree.root, len(members),
                                keccak(text=f"update {round_}"))
    contribute(exchange, actors.hospital2, study.study_id, round_, keccak(text=f"other {round_}"), 5,
                                keccak(text=f"other update {round_}"))
    kept = KeptCohort(study.study_id, round_, 0, "0x" + tree.root.hex(), len(members), kept.members)
    patients = {p.address: public_key_of(p.key) for p in actors.patients}
    sealer = Sealer(bytes(actors.hospital.key), exchange.chain.chain_id, exchange.studies.address, patients)
    published = harness.client.post("/v1/sealed-proofs", headers=harness.bearer(actors.hospital), json={
        "study_id": study.study_id, "round": round_, "cohort_root": kept.root, "cohort_count": kept.count,
        "hospital_public_key": sealer.hospital_public_key, "items": sealer.items(kept), "complete": True})
    assert published.status_code == 201, published.text
    exchange.studies.record_round(actors.coordinator, study.study_id, round_, keccak(text=f"model {round_}"),
                                  [actors.hospital.address, actors.hospital2.address])


def test_in_a_sealed_deployment_the_browser_opens_the_patients_proofs_and_a_wallet_is_told_it_cannot(
        sealed_portal: LiveService, actors: Actors, tmp_path: Path) -> None:
    exchange = sealed_portal.services.exchange
    patient = actors.patients[0]
    study = _start_study(exchange, actors)
    members = list(study.records)
    _sealed_round(sealed_portal, actors, study, 1, members)
    _sealed_round(sealed_portal, actors, study, 2, members[1:])  # patient 0 left out of round 2
    with open_browser(sealed_portal, tmp_path) as (page, watch, wallet):
        lookups = []
        page.on("request", lambda r: lookups.append(r) if "/v1/sealed-proofs/" in r.url else None)
        # --- a key kept in the browser opens the envelopes sealed to it, and checks the proof on chain
        page.goto(sealed_portal.url + "/data-uses")
        page.get_by_text("Import a key you already have").click()
        page.locator("#import-private-key").fill(patient.key.hex())
        page.locator("#import-passphrase").fill(PASSPHRASE)
        page.get_by_role("button", name="Import the key and sign in").click()
        expect(page).to_have_url(sealed_portal.url + "/data-uses", timeout=60_000)
        expect(page.locator("#no-uses")).to_have_count(0)  # the page does not claim no use: it cannot know
        page.get_by_role("button", name="Find and open my proofs").click()
        expect(page.locator("#sealed-status")).to_have_text("Opened your proofs for 1 round of 2 published.")
        used = page.locator('#sealed-uses tr.included[data-round="1"]')
        expect(used).to_contain_text(f"used: record {study.records[patient.address][:12]}… (ct-sinogram data)")
        expect(page.locator('#sealed-uses tr.excluded[data-round="2"]')).to_contain_text("not used")
        used.get_by_role("button", name="Check on chain").click()
        expect(used.locator(".check-result")).to_contain_text("Verified on chain at block")
        assert {urlsplit(r.url).path for r in lookups} == {"/v1/sealed-proofs/rounds", "/v1/sealed-proofs/lookup"}
        assert all("cookie" not in r.all_headers() for r in lookups), "a lookup carried the session cookie"

        # --- a browser wallet is told, in plain words, that it cannot open sealed proofs
        page.get_by_role("button", name="Sign out").click()
        wallet.account = actors.patients[1]
        page.get_by_role("button", name="Sign in with your wallet").click()
        expect(page).to_have_url(sealed_portal.url + "/consents")
        page.get_by_role("link", name="Who used my data").click()
        expect(page.locator("#sealed-wallet-note")).to_be_visible()
        expect(page.locator("#sealed-wallet-note")).to_contain_text("cannot open messages encrypted to your key")
        expect(page.get_by_role("button", name="Find and open my proofs")).to_be_disabled()
        assert watch.errors == []
