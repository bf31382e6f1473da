"""Coordinator settings and shared plumbing."""
