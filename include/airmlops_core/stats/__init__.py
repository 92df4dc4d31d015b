"""Statistics shared by the stages: metrics, paired comparisons, fairness, drift."""
