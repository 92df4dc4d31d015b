"""Operators of the pack: thin adapters from Airflow to airmlops_core."""
