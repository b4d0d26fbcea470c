"""The task names of `cliplab benchmark`, as CLIP_benchmark names them (imports nothing, so the
CLI's `--help` reads them without torch)."""

ZERO_SHOT, RETRIEVAL, LINEAR_PROBE = "zeroshot_classification", "zeroshot_retrieval", "linear_probe"
TASKS = (ZERO_SHOT, RETRIEVAL, LINEAR_PROBE)
ALL = "all"
