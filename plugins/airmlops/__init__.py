"""airmlops: the Airflow-facing parts of the pack (DAG factory, operators, hooks, notifiers).

Importing this package is cheap; heavy libraries are imported inside execute().
"""
