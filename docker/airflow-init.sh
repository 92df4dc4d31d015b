#!/usr/bin/env bash
# One-shot setup of the compose stack, run by the airflow-init service on every
# `docker compose up` (through the image's /entrypoint, which first waits for the database).
# Idempotent. Creates no user with a default password: the admin's password comes from .env.
set -euo pipefail

echo "airflow-init: airflow $(airflow version)"
echo "airflow-init: migrating the metadata database"
airflow db migrate

echo "airflow-init: writing the simple auth manager's password file"
python -m airmlops_dev.compose_env \
    --airflow-passwords-file "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}"

echo "airflow-init: loading connections, pools and variables"
python -m airmlops_dev.settings_loader "${AIRMLOPS_SETTINGS_FILE:-/opt/airflow/airflow_settings.yaml}"

if [[ "${AIRMLOPS_DEMO_DATA:-true}" == "true" ]]; then
    echo "airflow-init: writing the demo datasets (kept when present)"
    airmlops demo-data
fi
echo "airflow-init: done"
