"""Reproducible measurements of the MeTAI exchange (not tests)."""
