"""The development stack: local services, demo data and replay, process groups.

A distribution of its own (dev/pyproject.toml): never in the production image.
"""
