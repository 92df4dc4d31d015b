"""The train stage: the estimator pipeline, evaluation, the train DAG's steps."""
