"""What a run reports:

    log.py       metrics.jsonl, the console lines and the sinks (`TrainLogger`, `announce_run`)
    sinks.py     TensorBoard and W&B (`ScalarSink`)
    summary.py   summary.json as strict JSON
"""
