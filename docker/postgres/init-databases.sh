#!/usr/bin/env bash
# Create or update the roles and databases of the compose stack; run by the postgres-init service
# on every `docker compose up`. Idempotent, so it also applies rotated passwords:
#   role airflow (AIRFLOW_DB_PASSWORD) owning database airflow  -- Airflow metadata
#   role mlflow  (MLFLOW_DB_PASSWORD)  owning database mlflow   -- MLflow tracking + registry
#   superuser postgres (POSTGRES_PASSWORD)
# It connects through the server's Unix socket (a volume shared with the postgres service only),
# where the official image trusts local connections, so a rotated superuser password is applied
# too. Passwords are read inside psql with \getenv: never on a command line, never echoed.
set -euo pipefail
: "${POSTGRES_PASSWORD:?}" "${AIRFLOW_DB_PASSWORD:?}" "${MLFLOW_DB_PASSWORD:?}"
export PGHOST="${PGHOST:-/var/run/postgresql}" PGUSER="${PGUSER:-postgres}" PGDATABASE=postgres

for _ in $(seq 1 120); do
    pg_isready -q && break
    sleep 1
done
pg_isready -q || { echo "postgres-init: server not ready on $PGHOST" >&2; exit 1; }

psql -v ON_ERROR_STOP=1 --quiet --no-psqlrc <<'SQL'
\getenv superuser_password POSTGRES_PASSWORD
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
SET password_encryption = 'scram-sha-256';
ALTER ROLE CURRENT_USER PASSWORD :'superuser_password';

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airflow') AS missing \gset
\if :missing
CREATE ROLE airflow LOGIN;
\endif
ALTER ROLE airflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'airflow_password';
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = 'airflow') AS missing \gset
\if :missing
CREATE DATABASE airflow OWNER airflow;
\endif
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow') AS missing \gset
\if :missing
CREATE ROLE mlflow LOGIN;
\endif
ALTER ROLE mlflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'mlflow_password';
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow') AS missing \gset
\if :missing
CREATE DATABASE mlflow OWNER mlflow;
\endif
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
SQL
echo "postgres-init: roles and databases airflow, mlflow are up to date"
