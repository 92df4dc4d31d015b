"""The development stack: local services, demo data and replay, test servers.

A distribution of its own (dev/pyproject.toml): never in the production image.
"""
