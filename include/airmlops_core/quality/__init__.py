"""Data quality: suites, Great Expectations checks, streaming batch checks, reports."""
