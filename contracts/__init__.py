"""MeTAI exchange chain layer: contracts, their build, and the Python client."""
