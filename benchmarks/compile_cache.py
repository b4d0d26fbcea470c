"""What `--torchcompile` costs at start-up, the first time and the second (its compile cache).

    python benchmarks/compile_cache.py                    # the default run's model and ViT-B-32
    python benchmarks/compile_cache.py --models default --no-write

For each model, three starts of `cliplab train` with one training step and nothing else (no
evaluation, no checkpoint), each its own process, timed from launch to exit: eager; compiled with
an empty compile cache (`TORCHINDUCTOR_CACHE_DIR` a fresh directory, as on a new machine: every
graph compiled); compiled again with that cache (a second start of the same configuration: a
resume, another rank, a later run). "default" is `cliplab train`'s own configuration (the reshaped
tiny model, batch 128); ViT-B-32 runs at batch 4 on Fashion-MNIST resized to 224. The compile cost
is the compiled start minus the eager one. Beside the whole start, the first step's own time as
the run logs it (`step_time_s` in metrics.jsonl: reading its batch, forward, backward, update;
compilation happens inside it), which is what the compile cache saves; the start's fixed part
(imports, model build, data set-up) is the same with and without it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report import format_table, load_note, write_section  # noqa: E402

ONE_STEP = ["--max-steps", "1", "--epochs", "1", "--save-frequency", "0", "--set", "eval.eval_at_end=false",
            "--no-tensorboard", "--no-progress-bar"]
MODELS = {
    "default": [],
    "ViT-B-32": ["--model", "ViT-B-32", "--batch-size", "4", "--train-num-samples", "64", "--workers", "0"],
}


def timed_start(arguments: list[str], logs: str, name: str, cache: str | None) -> tuple[float, float]:
    """(launch to exit s, the first step's logged step_time_s) of one start."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])))
    if cache is not None:
        environment["TORCHINDUCTOR_CACHE_DIR"] = cache
    command = [sys.executable, "-m", "cliplab", "train", "--logs", logs, "--name", name, *ONE_STEP, *arguments]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-4000:]}")
    records = [json.loads(line) for line in (Path(logs) / name / "metrics.jsonl").read_text().splitlines()]
    first_step = next(record for record in records if record.get("kind") == "train")
    return seconds, first_step["step_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default,ViT-B-32", help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as logs:
        for model in args.models.split(","):
            arguments = MODELS[model]
            cache = str(Path(logs) / f"cache-{model}")
            (eager, eager_step), (cold, cold_step), (warm, warm_step) = (
                timed_start(arguments + extra, logs, f"{model}-{kind}", run_cache)
                for kind, extra, run_cache in (("eager", [], None), ("cold", ["--torchcompile"], cache),
                                               ("warm", ["--torchcompile"], cache)))
            rows.append([model, f"{eager:.1f}", f"{cold:.1f}", f"{warm:.1f}", f"{cold - eager:.1f}",
                         f"{warm - eager:.1f}", f"{cold / warm:.1f}", f"{eager_step:.2f}", f"{cold_step:.2f}",
                         f"{warm_step:.2f}", f"{cold_step / warm_step:.1f}"])
            print(rows[-1], flush=True)
    table = format_table(["model", "eager start s", "compiled, empty cache s", "compiled, cached s",
                          "compile cost s (empty cache)", "compile cost s (cached)",
                          "first start / second start", "first step s (eager)", "first step s (empty cache)",
                          "first step s (cached)", "first step: first start / second start"], rows)
    print(table)
    if not args.no_write:
        body = (f"Each start: `cliplab train ... --max-steps 1` in a fresh process, launch to exit (see the "
                f"script's docstring). " + load_note(load_before, os.getloadavg()[0], 2) + "\n\n" + table)
        write_section("compile_cache", "Compile cost at start-up, and the compile cache", body)


if __name__ == "__main__":
    main()
