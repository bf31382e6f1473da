"""The relay worker: sends the outbox's signed consents to the chain in batches, exactly once.

Each batch transaction is signed and stored with its items marked ``sent`` in one database
transaction before it is broadcast. Whatever stops the service (a crash, SIGKILL, a power
cut), a restart finds every batch in one of three places and finishes it: not yet broadcast
or not yet mined (the stored bytes are broadcast again: they are the same transaction, so the
chain mines it once), mined (its receipt is read), or replaced by another transaction with the
relayer's nonce (its items go back to pending; their signatures were not used). An item never
enters a second batch while its first could still be mined, and the chain itself refuses a
signature twice (the patient's nonce), so no consent is relayed twice.

Before batching, items the chain would refuse for sure are settled without a transaction: a
passed deadline, or a nonce the patient already used (relayed, or cancelled by the patient).
An item whose nonce is ahead of the patient's next one waits for the signatures before it.

Only one relay works on an outbox at a time, whichever process it runs in: it holds the
database's ``consent-relay`` lease (:meth:`Database.try_lease`) while it runs, and a second one
waits for it. Two relays on one outbox would each send the same pending items, and the second
batch's items would then be settled as failed although the first had mined them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from eth_account.signers.local import LocalAccount
from sqlalchemy import select, update

from contracts.chain import SignedTx, TxResult
from contracts.consent import ConsentClient
from contracts.errors import ChainError, ContractRevert
from contracts.events import ConsentGranted, ConsentRelayFailed, ConsentRevoked
from coordinator.core.db import Database, DatabaseError, Lease
from coordinator.models.tables import BatchState, RelayBatch, RelayItem, RelayState, utcnow
from coordinator.relay.outbox import depth, signed_consent

_log = logging.getLogger("metai.coordinator.relay")
_POLL = 0.05
_IDLE = 1.0
_LEASE = "consent-relay"


class Relay:
    """Sends pending consents in batches of at most ``batch`` and settles each item's outcome.

    Parameters:
        db: the service's database (the outbox).
        consent: the ConsentRegistry client.
        relayer: the key that pays for the batches.
        batch: items per transaction at most.
        wait: seconds to wait for a batch to fill before sending it part-full.
    """

    def __init__(self, db: Database, consent: ConsentClient, relayer: LocalAccount, *,
                 batch: int = 100, wait: float = 0.2) -> None:
        self.db = db
        self.consent = consent
        self.relayer = relayer
        self.batch = batch
        self.wait = wait
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    # ------------------------------------------------------------------ running in the background

    def start(self) -> None:
        """Finish what a previous run left, then relay in a background thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="consent-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background thread after its current batch."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def running(self) -> bool:
        """Whether the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """Tell the worker a consent was accepted (it then does not wait for its next poll)."""
        self._wake.set()

    def _run(self) -> None:
        lease = self._take_lease()
        if lease is None:
            return  # stopped while waiting
        try:
            self._loop()
        finally:
            lease.release()

    def _take_lease(self) -> Lease | None:
        """Wait until this relay is the outbox's only one (or until :meth:`stop`)."""
        told = False
        while not self._stop.is_set():
            try:
                lease = self.db.try_lease(_LEASE)
            except DatabaseError as exc:
                _log.warning("relay waiting: %s", exc)
                lease = None
            if lease is not None:
                if told:
                    _log.info("the other relay stopped; relaying now")
                return lease
            if not told:
                _log.warning("another relay is working on this outbox (a previous service process still "
                             "stopping?); waiting until it stops")
                told = True
            self._stop.wait(0.5)
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Cleared before looking, not after sleeping: a consent accepted while this step runs
            # sets it again, so the sleep below ends at once instead of missing it.
            self._wake.clear()
            try:
                self.recover()
                sent = self.step()
            except ChainError as exc:  # the chain is down or refused the batch itself: retry later
                _log.warning("relay paused: %s", exc)
                sent = 0
                self._stop.wait(2.0)
            except Exception:
                _log.exception("relay step failed")
                sent = 0
                self._stop.wait(2.0)
            if not sent:
                # Idle: sleep until a consent is accepted (notify) or, at the latest, a second passes
                # (a batch waiting for its receipt, one part-full batch's wait).
                self._wake.wait(max(self.wait, _IDLE) if not self._waiting() else max(self.wait, _POLL))

    # ------------------------------------------------------------------ one step

    def recover(self) -> int:
        """Finish every stored batch that is not settled; return how many were settled now."""
        settled = 0
        with self.db.reading() as db:
            batches = list(db.scalars(select(RelayBatch).where(RelayBatch.state == BatchState.SENT)
                                      .order_by(RelayBatch.id)))
        for batch in batches:
            signed = SignedTx(batch.tx_hash, batch.raw_tx, batch.relayer, batch.account_nonce)
            result = self._receipt(batch.tx_hash)
            if result is None:
                if self.consent.chain.mined_nonce(batch.relayer) > batch.account_nonce:
                    result = self._receipt(batch.tx_hash)  # mined between the two questions?
                    if result is None:
                        self._dropped(batch.id)
                        settled += 1
                        continue
                else:
                    self.consent.chain.broadcast(signed)
                    result = self._await(batch.tx_hash)
            if result is not None:
                self._settle(batch.id, result)
                settled += 1
        return settled

    def step(self) -> int:
        """Send one batch of pending items (settling stale ones first); return how many items it sent."""
        items = self._next_items()
        if not items:
            return 0
        kind = items[0].kind
        signed = [signed_consent(item) for item in items]
        tx = self.consent.chain.sign_raw(self.relayer, self.consent.address, self.consent.batch_calldata(signed),
                                         gas=self.consent.batch_gas(len(signed)))
        with self.db.session() as db:
            batch = RelayBatch(relayer=tx.sender, account_nonce=tx.nonce, tx_hash=tx.tx_hash, raw_tx=tx.raw,
                               state=BatchState.SENT, created_at=utcnow())
            db.add(batch)
            db.flush()
            now = utcnow()
            # One UPDATE by primary key for the whole batch (SQLAlchemy's bulk update), not a load per row.
            db.execute(update(RelayItem), [
                {"id": item.id, "state": RelayState.SENT, "batch_id": batch.id, "batch_index": index,
                 "tx_hash": tx.tx_hash, "updated_at": now} for index, item in enumerate(items)])
            batch_id = batch.id
        _log.info("relaying %d %s(s) in %s", len(items), kind, tx.tx_hash)
        self.consent.chain.broadcast(tx)
        result = self._await(tx.tx_hash)
        if result is not None:
            self._settle(batch_id, result)
        return len(items)

    # ------------------------------------------------------------------ internals

    def _waiting(self) -> bool:
        """Whether anything is pending or sent (so the next look should come soon)."""
        with self.db.reading() as db:
            return depth(db) > 0

    def _next_items(self) -> list[RelayItem]:
        """The next batch: the oldest pending items of one kind that the chain can take now."""
        chain_time = int(time.time())
        with self.db.reading() as db:
            pending = list(db.scalars(select(RelayItem).where(RelayItem.state == RelayState.PENDING)
                                      .order_by(RelayItem.created_at, RelayItem.id).limit(self.batch * 4)))
        if not pending:
            return []
        oldest = pending[0]
        age = (utcnow() - oldest.created_at).total_seconds()
        same_kind = [i for i in pending if i.kind == oldest.kind]
        if len(same_kind) < self.batch and age < self.wait and not self._stop.is_set():
            return []  # let the batch fill a little
        # Asked of the chain with no database transaction open: a write waiting on a chain call
        # would hold SQLite's write lock (or a PostgreSQL row lock) for as long.
        next_nonce = self.consent.nonces(sorted({i.patient for i in same_kind}))
        chosen: list[RelayItem] = []
        refused: list[tuple[str, str, str]] = []
        taken: defaultdict[str, int] = defaultdict(int)
        for item in sorted(same_kind, key=lambda i: (i.patient, i.nonce)):
            expected = next_nonce[item.patient] + taken[item.patient]
            if item.deadline < chain_time:
                refused.append((item.id, "ConsentRegistryExpiredSignature",
                                f"the signature's deadline {item.deadline} passed before it could be relayed"))
            elif item.nonce < expected:
                refused.append((item.id, "InvalidAccountNonce",
                                f"nonce {item.nonce} is already used (the patient's next nonce is {expected}): "
                                "relayed, superseded or cancelled by the patient"))
            elif item.nonce == expected and len(chosen) < self.batch:
                chosen.append(item)
                taken[item.patient] += 1
        if refused:
            with self.db.session() as db:
                for item_id, error, detail in refused:
                    row = db.get(RelayItem, item_id)
                    if row is not None and row.state == RelayState.PENDING:
                        self._fail(row, error, detail)
        chosen.sort(key=lambda i: (i.created_at, i.id))
        return chosen

    def _fail(self, item: RelayItem, error: str, detail: str) -> None:
        item.state, item.error, item.error_detail, item.updated_at = RelayState.FAILED, error, detail, utcnow()

    def _receipt(self, tx_hash: str) -> TxResult | ContractRevert | None:
        try:
            return self.consent.chain.receipt(tx_hash)
        except ContractRevert as exc:  # the batch as a whole reverted: none of its items took effect
            _log.error("relay batch %s reverted: %s", tx_hash, exc)
            return exc

    def _await(self, tx_hash: str) -> TxResult | ContractRevert | None:
        deadline = time.monotonic() + self.consent.chain.timeout
        while time.monotonic() < deadline:
            result = self._receipt(tx_hash)
            if result is not None:
                return result
            if self._stop.wait(_POLL):
                return None
        return None

    def _reverted(self, batch_id: int, exc: ContractRevert) -> None:
        with self.db.session() as db:
            batch = db.get(RelayBatch, batch_id)
            assert batch is not None
            batch.state = BatchState.MINED
            for item in db.scalars(select(RelayItem).where(RelayItem.batch_id == batch_id)):
                item.state, item.error, item.error_detail = RelayState.FAILED, exc.error, f"the batch reverted: {exc}"
                item.updated_at = utcnow()

    def _dropped(self, batch_id: int) -> None:
        with self.db.session() as db:
            batch = db.get(RelayBatch, batch_id)
            assert batch is not None
            batch.state = BatchState.DROPPED
            for item in db.scalars(select(RelayItem).where(RelayItem.batch_id == batch_id)):
                item.state, item.batch_id, item.batch_index, item.tx_hash = RelayState.PENDING, None, None, None
                item.updated_at = utcnow()
        _log.warning("relay batch %d was replaced by another transaction; its items are pending again", batch_id)

    def _settle(self, batch_id: int, result: TxResult | ContractRevert) -> None:
        if isinstance(result, ContractRevert):
            self._reverted(batch_id, result)
            return
        failed = {e.index: e for e in result.events if isinstance(e, ConsentRelayFailed)}
        done = [e for e in result.events if isinstance(e, (ConsentGranted, ConsentRevoked))]
        with self.db.session() as db:
            batch = db.get(RelayBatch, batch_id)
            assert batch is not None
            batch.state, batch.block_number = BatchState.MINED, result.block_number
            items = list(db.execute(select(RelayItem.id, RelayItem.patient, RelayItem.batch_index)
                                    .where(RelayItem.batch_id == batch_id).order_by(RelayItem.batch_index)))
            successes = iter(done)
            now = utcnow()
            changes = []
            for item in items:
                change = {"id": item.id, "block_number": result.block_number, "updated_at": now}
                if item.batch_index in failed:
                    reason = failed[item.batch_index].failure
                    change.update(state=RelayState.FAILED, error=getattr(reason, "error", type(reason).__name__),
                                  error_detail=str(reason))
                else:
                    event = next(successes, None)
                    if event is None or event.patient != item.patient:
                        change.update(state=RelayState.FAILED, error="UnexpectedReceipt",
                                      error_detail=f"transaction {result.tx_hash} has no event for this item")
                    else:
                        change.update(state=RelayState.MINED, event=event.name,
                                      consent_id="0x" + event.consent_id.hex())
                changes.append(change)
            if changes:
                db.execute(update(RelayItem), changes)
        _log.info("relay batch %s mined in block %d: %d item(s), %d refused",
                  result.tx_hash, result.block_number, len(items), len(failed))
