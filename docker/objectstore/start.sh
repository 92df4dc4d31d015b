#!/bin/sh
# Start the object store: SeaweedFS's master, volume server, filer and S3 gateway in one process
# (`weed mini`), with three S3 identities from the environment:
#   admin   S3_ADMIN_ACCESS_KEY / S3_ADMIN_SECRET_KEY    everything (used to create buckets)
#   mlflow  S3_MLFLOW_ACCESS_KEY / S3_MLFLOW_SECRET_KEY  the MLflow artifacts bucket only
#   airflow S3_DATA_ACCESS_KEY / S3_DATA_SECRET_KEY      the data bucket only
# The identity file is written with mode 0600 to the container's /tmp (printf is a shell
# builtin: no key on any command line), never to the data volume or the image.
set -eu
: "${S3_ADMIN_ACCESS_KEY:?}" "${S3_ADMIN_SECRET_KEY:?}"
: "${S3_MLFLOW_ACCESS_KEY:?}" "${S3_MLFLOW_SECRET_KEY:?}"
: "${S3_DATA_ACCESS_KEY:?}" "${S3_DATA_SECRET_KEY:?}"
: "${MLFLOW_ARTIFACTS_BUCKET:?}" "${AIRMLOPS_DATA_BUCKET:?}"
umask 077
config="${S3_CONFIG_FILE:-/tmp/s3.json}"

identity() {  # name access_key secret_key actions
    printf '{"name":"%s","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":[%s]}' \
        "$1" "$2" "$3" "$4"
}
on_bucket() {  # bucket -> the actions of a read/write identity limited to that bucket
    printf '"Read:%s","Write:%s","List:%s","Tagging:%s"' "$1" "$1" "$1" "$1"
}
{
    printf '{"identities":['
    identity admin "$S3_ADMIN_ACCESS_KEY" "$S3_ADMIN_SECRET_KEY" \
        '"Admin","Read","List","Tagging","Write"'
    printf ','
    identity mlflow "$S3_MLFLOW_ACCESS_KEY" "$S3_MLFLOW_SECRET_KEY" \
        "$(on_bucket "$MLFLOW_ARTIFACTS_BUCKET")"
    printf ','
    identity airflow "$S3_DATA_ACCESS_KEY" "$S3_DATA_SECRET_KEY" \
        "$(on_bucket "$AIRMLOPS_DATA_BUCKET")"
    printf ']}\n'
} > "$config"

exec "${WEED_BIN:-weed}" mini \
    -dir="${WEED_DIR:-/data}" \
    -ip="${WEED_IP:-objectstore}" -ip.bind="${WEED_BIND:-0.0.0.0}" \
    -s3.port="${WEED_S3_PORT:-8333}" -s3.config="$config" \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
    -master.telemetry=false -master.volumeSizeLimitMB=1024
