"""Bring-up of the MeTAI exchange: local chain, contract deployment, services, the demo."""
