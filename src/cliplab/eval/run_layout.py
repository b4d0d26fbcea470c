"""The files of a training run directory `<logs>/<name>/`: what training writes, what the commands read.

    config.json        the resolved TrainConfig (RUN_CONFIG_FILE; `cliplab.file_names` tells the three apart)
    metrics.jsonl      one JSON record per line (METRICS_FILE)
    summary.json       the run's outcome (SUMMARY_FILE)
    tensorboard/       event files (TENSORBOARD_DIR)
    checkpoints/       step_XXXXXXX/ directories and the `latest` pointer (CHECKPOINTS_DIR, LATEST_FILE;
                       read by `cliplab.checkpoint_files.step_dirs`)
    run_id             the run's id, which its checkpoint manifests carry (RUN_ID_FILE)
    run.lock           locked by the live run's main process; holds its pid (LOCK_FILE)
    preempted.json     written when a signal stopped the run after a checkpoint, removed when it
                       starts again (PREEMPTED_FILE; `cliplab.train.preemption`)
    config_history.jsonl  the configs of resumed attempts that changed settings (CONFIG_HISTORY_FILE)
"""

from cliplab.checkpoint_files.step_dirs import CHECKPOINTS_DIR, LATEST_FILE  # listed here with the rest
from cliplab.file_names import RUN_CONFIG_FILE  # one of three config.json (see there)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TENSORBOARD_DIR = "tensorboard"
RUN_ID_FILE = "run_id"
LOCK_FILE = "run.lock"
PREEMPTED_FILE = "preempted.json"
CONFIG_HISTORY_FILE = "config_history.jsonl"
