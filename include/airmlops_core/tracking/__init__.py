"""MLflow: runs that survive retries, the model registry and its aliases, resource use."""
