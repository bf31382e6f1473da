"""MeTAI exchange: node package (filled by later issues)."""
