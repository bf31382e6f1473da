"""The demo's client of the coordinator's HTTP API (docs/coordinator.md), as a patient's or researcher's script uses it.

:meth:`Coordinator.sign_in` proves an account holds its key (EIP-4361 message signed with
``personal_sign``) and returns a :class:`Session` that sends the session's bearer token. A
session signs consents as a wallet does (``eth_signTypedData_v4`` on the typed data the API
returns), follows studies (server-sent events) and downloads what the researcher may. Every
refusal raises :class:`ApiError` with the problem's status, type and ``detail``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts.chain import Chain
from contracts.events import StudyRequested
from deploy.errors import DeployError

JSON = dict[str, Any]


class ApiError(DeployError, RuntimeError):
    """The coordinator refused a request (an RFC 9457 problem) or could not be reached."""

    def __init__(self, method: str, path: str, status: int, problem: str, detail: str) -> None:
        super().__init__(f"{method} {path}: {status} {problem}: {detail}")
        self.status = status
        self.problem = problem  # the last part of the problem's type, e.g. nonce-used
        self.detail = detail


class Coordinator:
    """The coordinator service at ``url``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """Send one request; return the response.

        Raises:
            ApiError: the service cannot be reached, or answered with an error.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(method, path, 0, "unreachable", f"the coordinator at {self.url} did not answer: {exc}") \
                from exc
        _check(response, method, path)
        return response

    def health(self) -> JSON:
        """``GET /v1/health``."""
        result: JSON = self.call("GET", "/v1/health").json()
        return result

    def sign_in(self, account: LocalAccount) -> Session:
        """Sign in as ``account`` (EIP-4361 message, personal_sign); return its session."""
        message = self.call("POST", "/v1/auth/challenge", json={"address": account.address}).json()["message"]
        signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        token = self.call("POST", "/v1/auth/sign-in", json={"message": message, "signature": signature}).json()
        return Session(self, account, str(token["token"]))

    def wait_relayed(self, timeout: float = 120.0) -> None:
        """Wait until the relay's outbox is empty: every accepted consent mined or refused.

        Raises:
            ApiError: the outbox did not empty within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while (depth := self.health()["outbox_depth"]) != 0:
            if time.monotonic() > deadline:
                raise ApiError("GET", "/v1/health", 200, "relay-slow", f"{depth} consents still wait after {timeout} s")
            time.sleep(0.1)


class Session:
    """A signed-in account's calls."""

    def __init__(self, coordinator: Coordinator, account: LocalAccount, token: str) -> None:
        self.coordinator = coordinator
        self.account = account
        self._token = token

    def get(self, path: str) -> Any:
        """``GET path``, its JSON."""
        return self.coordinator.call("GET", path, self._token).json()

    def post(self, path: str, body: JSON | None = None, *, timeout: float | None = None) -> Any:
        """``POST path`` with a JSON body, its JSON; ``timeout`` seconds instead of the client's own."""
        extra = {} if timeout is None else {"timeout": timeout}
        return self.coordinator.call("POST", path, self._token, json=body, **extra).json()

    # ------------------------------------------------------------------ patients

    def sign_consent(self, request: JSON) -> tuple[JSON, str]:
        """Ask for the typed data of a grant or revocation and sign it as eth_signTypedData_v4 does.

        Returns:
            The typed data and the signature (hex), ready for :meth:`submit`.
        """
        typed: JSON = self.post("/v1/consents/typed-data", request)["typed_data"]
        return typed, self.account.sign_message(encode_typed_data(full_message=typed)).signature.to_0x_hex()

    def submit(self, typed: JSON, signature: str) -> JSON:
        """Hand a signed consent to the relay; return its relay item (``pending``)."""
        item: JSON = self.post("/v1/consents/signed", {"typed_data": typed, "signature": signature})
        return item

    def relay_item(self, item_id: str) -> JSON:
        """Where a signed consent of mine is."""
        item: JSON = self.get(f"/v1/consents/relay/{item_id}")
        return item

    def wait_mined(self, item_id: str, timeout: float = 60.0) -> JSON:
        """Wait until the relay item is mined; return it.

        Raises:
            ApiError: the chain refused it (the contract's error), or it was not mined within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while (item := self.relay_item(item_id))["state"] not in ("mined", "failed"):
            if time.monotonic() > deadline:
                raise ApiError("GET", f"/v1/consents/relay/{item_id}", 200, "relay-slow",
                               f"still {item['state']} after {timeout} s")
            time.sleep(0.05)
        if item["state"] == "failed":
            raise ApiError("GET", f"/v1/consents/relay/{item_id}", 200, str(item["error"]), str(item["error_detail"]))
        return item

    def receipt(self) -> JSON:
        """My receipt (format metai-patient-receipt 1)."""
        receipt: JSON = self.get("/v1/me/receipt")
        return receipt

    # ------------------------------------------------------------------ researchers and the operator

    def study(self, study_id: int) -> JSON:
        """``GET /v1/studies/{id}``."""
        study: JSON = self.get(f"/v1/studies/{study_id}")
        return study

    def follow(self, study_id: int, timeout: float = 900.0) -> Iterator[JSON]:
        """Each new state of the study, from its server-sent events, until it is completed or declined."""
        path = f"/v1/studies/{study_id}/events"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "text/event-stream"}
        limits = httpx.Timeout(30.0, read=60.0)  # the stream sends a keep-alive every 15 s
        deadline = time.monotonic() + timeout
        try:
            with self.coordinator.http.stream("GET", path, headers=headers, timeout=limits) as response:
                if response.is_error:
                    response.read()
                    _check(response, "GET", path)
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.removeprefix("event:").strip()
                    elif line.startswith("data:") and event == "study":
                        yield json.loads(line.removeprefix("data:"))
                    if time.monotonic() > deadline:
                        raise ApiError("GET", path, 200, "too-slow", f"study {study_id} did not end within {timeout} s")
        except httpx.HTTPError as exc:
            raise ApiError("GET", path, 0, "stream-broken", f"the event stream ended: {exc}") from exc

    def download_lineage(self, study_id: int, to: Path) -> tuple[Path, str]:
        """Unpack the study's lineage bundle (a tar of one top folder) into the new folder ``to``.

        Returns the bundle's folder (the tar's top folder, inside ``to``) and ``X-Lineage-Hash``.
        """
        import io
        import tarfile

        response = self.coordinator.call("GET", f"/v1/studies/{study_id}/lineage/bundle", self._token)
        to.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
            archive.extractall(to, filter="data")  # refuses absolute paths, links and paths leaving ``to``
        [top] = [p for p in to.iterdir() if p.is_dir()]
        return top, response.headers["X-Lineage-Hash"]

    def download_model(self, study_id: int, to: Path) -> str:
        """Save the study's final model to ``to``; return the hash the service says it has (``X-Model-Hash``)."""
        response = self.coordinator.call("GET", f"/v1/studies/{study_id}/model", self._token)
        to.write_bytes(response.content)
        return response.headers["X-Model-Hash"]


def _check(response: httpx.Response, method: str, path: str) -> None:
    """Raise the problem an error response carries."""
    if not response.is_error:
        return
    try:
        body = response.json()
        problem, detail = str(body["type"]).rsplit(":", 1)[-1], str(body["detail"])
    except (ValueError, KeyError, TypeError):
        problem, detail = "error", response.text[:300]
    raise ApiError(method, path, response.status_code, problem, detail)


class WalletError(DeployError, RuntimeError):
    """A prepared transaction is not for this wallet, or it reverted."""


def send_prepared(w3: Web3, account: LocalAccount, prepared: JSON, timeout: float = 60.0) -> str:
    """Sign and send a transaction the API prepared (``PreparedTransaction``) as a wallet does; return its hash.

    Raises:
        WalletError: the transaction is for another account or chain, or it reverted.
    """
    if prepared["sender"] != account.address or prepared["chain_id"] != w3.eth.chain_id:
        raise WalletError(f"the prepared transaction is for {prepared['sender']} on chain {prepared['chain_id']}, "
                          f"not for {account.address} on chain {w3.eth.chain_id}")
    tx: Any = {"from": account.address, "to": prepared["to"], "data": prepared["data"], "chainId": prepared["chain_id"],
               "nonce": w3.eth.get_transaction_count(account.address, "pending"), "gasPrice": w3.eth.gas_price}
    tx["gas"] = w3.eth.estimate_gas(tx) * 6 // 5
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise WalletError(f"transaction {tx_hash.to_0x_hex()} to {prepared['to']} reverted")
    return tx_hash.to_0x_hex()


def request_study(researcher: Session, chain: Chain, body: JSON) -> tuple[int, str]:
    """Have the API prepare the researcher's study request (``StudyCreate``), then send it from their own wallet.

    Returns:
        The study's id (from the mined transaction's StudyRequested event) and the API's summary of the request.
    """
    prepared: JSON = researcher.post("/v1/studies/prepare", body)["prepared"]
    mined = chain.receipt(send_prepared(chain.w3, researcher.account, prepared))
    if mined is None:
        raise WalletError("the study request was mined but its receipt is gone; ask the chain again")
    return mined.event(StudyRequested).study_id, str(prepared["summary"])
