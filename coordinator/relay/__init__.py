"""The consent relay: patients' signed grants and revocations, kept in an outbox and sent in batches."""

from coordinator.relay.outbox import RelayOutcome, accept_many, item_of, outstanding_nonces
from coordinator.relay.worker import Relay

__all__ = ["Relay", "RelayOutcome", "accept_many", "item_of", "outstanding_nonces"]
