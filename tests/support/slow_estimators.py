"""Estimators whose fit takes a known time, importable by dotted path from a spec
(`slow_estimators.SlowClassifier`): tests/support is on sys.path."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class SlowClassifier(ClassifierMixin, BaseEstimator):
    """LogisticRegression(C) that sleeps `delay` seconds in every fit."""

    def __init__(self, C: float = 1.0, delay: float = 0.1) -> None:
        self.C = C
        self.delay = delay

    def fit(self, X: Any, y: Any) -> SlowClassifier:
        time.sleep(self.delay)
        self.model_ = LogisticRegression(C=self.C).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.model_.predict(X)
