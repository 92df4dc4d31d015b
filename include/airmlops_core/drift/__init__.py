"""The drift stage: the monitoring window, drift and bias checks, the report."""
