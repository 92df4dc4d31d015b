"""Airflow DAGs of every model spec, made by the airmlops DAG factory.

Specs are read from $AIRMLOPS_MODELS_DIR (default: include/models in a checkout, else the
example specs shipped in the package); `airmlops install-dags DIR` copies this file.

Each valid spec gets `<model>__train` (and the other pipelines). An invalid spec gets no DAGs;
its error is raised by dags/model_spec_errors.py so the Airflow UI shows it as an import error.
"""

from __future__ import annotations

from airmlops.factory import build_dags

globals().update(build_dags())
