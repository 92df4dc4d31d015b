"""Serving: the model REST API and its health probe."""
