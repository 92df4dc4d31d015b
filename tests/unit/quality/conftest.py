"""Fixtures of the data-gate tests: the real demo data and the committed churn suite."""

from __future__ import annotations

import pandas as pd
import pytest

from airmlops_core.quality.suite import Suite, load_suite, suite_path
from airmlops_dev import demo_data


@pytest.fixture(scope="session")
def churn() -> pd.DataFrame:
    return demo_data.churn()


@pytest.fixture(scope="session")
def churn_suite() -> Suite:
    return load_suite(suite_path("customer_churn"))


@pytest.fixture(scope="session")
def flights() -> pd.DataFrame:
    return demo_data.flights()
