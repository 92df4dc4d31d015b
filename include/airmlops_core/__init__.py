"""airmlops core: plain, Airflow-free Python for specs, data, training, registry and statistics.

Submodules import their heavy dependencies themselves; importing this package is free.
"""
