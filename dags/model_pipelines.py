"""Airflow DAGs of every model spec in include/models, made by the airmlops DAG factory.

Each valid spec gets `<model>__train` (and the other pipelines). An invalid spec gets no DAGs;
its error is raised by dags/model_spec_errors.py so the Airflow UI shows it as an import error.
"""

from __future__ import annotations

from airmlops.factory import build_dags

globals().update(build_dags())
