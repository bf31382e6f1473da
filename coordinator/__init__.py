"""MeTAI exchange: coordinator package (filled by later issues)."""
