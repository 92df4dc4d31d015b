"""Hooks of the pack."""
