"""Data quality: the data gate of the train, validate and score stages.

`suite` (a model's reviewed expectations), `drafting` (a suite drafted from data), `check`
(Great Expectations on a frame or file), `batch_checks` (a scoring partition chunk by chunk),
`results`, `report` (HTML page, MLflow evidence), `evidence` (quarantine). From a shell:
`python -m airmlops_core.quality profile|check`.
"""
