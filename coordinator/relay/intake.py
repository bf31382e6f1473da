"""Taking signed consents into the outbox in groups: one nonce query and one transaction for many.

Each signed consent the API accepts must be stored (and committed) before the API answers.
Stored one per transaction, concurrent submissions queue for the database's single writer and
each waits for the chain's nonce answer on its own; the service then took about 60 consents a
second. Here every consent that arrives while a group is being stored joins the next group;
a group's patients' nonces are asked in one JSON-RPC batch and its items are written in one
transaction. Each submitter still gets its own answer: its item, or why it was refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.consent import ConsentClient
from contracts.eip712 import SignedConsent
from coordinator.core.db import Database
from coordinator.models.tables import RelayItem
from coordinator.relay.outbox import accept_many, signature_hex

#: Signed consents one group takes at most (one transaction, one JSON-RPC batch).
GROUP = 200


@dataclass(frozen=True)
class NonceUsed:
    """The consent's nonce is below the patient's next one on chain: relayed or cancelled already."""

    nonce: int
    next_nonce: int


class Intake:
    """Stores signed consents in groups; :meth:`take` answers each caller once its group is committed.

    Parameters:
        db: the service's database (the outbox).
        consent: the ConsentRegistry client, for the patients' nonces.
    """

    def __init__(self, db: Database, consent: ConsentClient) -> None:
        self.db = db
        self.consent = consent
        self._waiting: list[tuple[SignedConsent, asyncio.Future[RelayItem | NonceUsed]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def take(self, signed: SignedConsent) -> RelayItem | NonceUsed:
        """Store ``signed`` (state pending) with whatever else arrives meanwhile; its item, or why not.

        The answer comes only after the transaction holding the item committed. An identical
        signature taken earlier returns the earlier item.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[RelayItem | NonceUsed] = loop.create_future()
        self._waiting.append((signed, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(answer)  # a caller that goes away leaves its group to finish

    async def _drain(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:GROUP], self._waiting[GROUP:]
            try:
                stored = await asyncio.to_thread(self._store, [signed for signed, _ in group])
            except Exception as exc:  # each submitter of the group hears of it
                for _, answer in group:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), outcome in zip(group, stored, strict=True):
                if not answer.done():
                    answer.set_result(outcome)

    def _store(self, group: Sequence[SignedConsent]) -> list[RelayItem | NonceUsed]:
        """Ask the chain for the group's nonces, then store the acceptable ones in one transaction."""
        # Before the transaction: no write waits on the chain.
        next_nonces = self.consent.nonces(sorted({signed.patient for signed in group}))
        outcomes: list[RelayItem | NonceUsed | None] = [None] * len(group)
        fresh: list[SignedConsent] = []
        for n, signed in enumerate(group):
            next_nonce = next_nonces[signed.patient]
            if signed.nonce < next_nonce:
                outcomes[n] = NonceUsed(signed.nonce, next_nonce)
            else:
                fresh.append(signed)
        if fresh:
            with self.db.session() as db:
                stored = accept_many(db, fresh)
            for n, signed in enumerate(group):
                if outcomes[n] is None:
                    outcomes[n] = stored[signature_hex(signed)]
        return [o for o in outcomes if o is not None]
