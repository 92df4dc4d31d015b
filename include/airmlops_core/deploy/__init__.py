"""Promotion of a model version from one environment's registry to another's (deploy DAG)."""
