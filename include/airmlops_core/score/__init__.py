"""The score stage: bulk scoring of partitions with the champion.

Stream a partition through one model version, publish it atomically. The score DAG calls, in
order::

    partitions = list_partitions(input_uri, s3_client=s3)            # once per run
    version = resolve_champion(client, name)                         # once per run
    model = load_model(client, name, version)                        # once per task
    result = score_or_quarantine(model, uri, suite=..., row_key=..., logical_date=...,
                                 output_uri=output_uri(base, name, logical_date,
                                                       partition_name(uri)),
                                 quarantine_uri=...)                 # per partition
    write_manifest(base, results)                                    # once, after all

Modules: `partitions` (list_partitions), `model` (resolve_champion, load_model, LoadedModel:
the signature checks), `reading` (staging, hashing and chunked reading of one partition),
`stream` (score_partition: parallel chunk prediction, atomic publish), `gate`
(score_or_quarantine, check_partition, write_manifest), `results` (the typed dicts the steps
exchange) and `flow` (the steps the DAG's operators run). The output layout (output_uri,
partition_name, column names) is `airmlops_core.io.scored`.

No Airflow imports: usable from tests, a CLI or any orchestrator.
"""
