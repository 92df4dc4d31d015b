"""Airflow import errors for invalid model specs (the DAG factory skips them).

This file defines no DAG. When a spec in the models directory is invalid it raises, so the Airflow
UI lists the problem (file, field, what is wrong) under import errors, while every other
model's DAGs, built by model_pipelines.py, keep working.
"""

from __future__ import annotations

from airmlops.factory import spec_errors

_errors = spec_errors()
if _errors:
    raise ValueError("\n\n".join(str(e) for e in _errors.values()))
