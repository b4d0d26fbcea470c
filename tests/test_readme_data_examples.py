"""The README's webdataset and parquet examples, run as written (as shell scripts, on tiny data in a
scratch directory laid out as the README assumes), so that they cannot rot. Each `cliplab train`
gets `--epochs 1` appended, to keep the test short; nothing else is added."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path


from data_fixtures import make_manifest, make_parquet

ROOT = Path(__file__).resolve().parent.parent


def readme_block(dataset_type: str) -> str:
    """The bash block of the README's Data section that trains on `dataset_type`."""
    data_section = re.search(r"^## Data\n(.*?)^## ", (ROOT / "README.md").read_text(), re.DOTALL | re.MULTILINE)
    blocks = re.findall(r"```bash\n(.*?)```", data_section.group(1), re.DOTALL)
    matching = [block for block in blocks if f"--dataset-type {dataset_type}" in block]
    assert len(matching) == 1, blocks
    return matching[0]


def run_block(block: str, cwd: Path) -> subprocess.CompletedProcess:
    """`block` as a bash script in `cwd`, `cliplab` being this checkout's (and this Python's)."""
    python = f'"{sys.executable}" -m cliplab'
    script = (f'set -euo pipefail\ncliplab() {{ if [ "$1" = train ]; then {python} "$@" --epochs 1; '
              f'else {python} "$@"; fi; }}\n{block}')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def only_run_summary(cwd: Path) -> dict:
    (summary,) = (cwd / "logs").glob("*/summary.json")
    return json.loads(summary.read_text())


def check_trained(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def test_webdataset_example_trains_on_the_shards_cliplab_shards_wrote(tmp_path):
    make_manifest(tmp_path / "data", 400).rename(tmp_path / "data" / "train.tsv")
    result = run_block(readme_block("webdataset"), tmp_path)
    assert "400 samples in 4 shards: shards/train-{000000..000003}.tar" in result.stdout, result.stderr[-3000:]
    check_trained(result)
    summary = only_run_summary(tmp_path)
    assert summary["steps"] == 4  # ceil(400 / 128) steps: the 400 read from train-info.json


def test_parquet_example_trains_on_hub_style_files(tmp_path):
    data = tmp_path / "my-dataset" / "data"
    for part in range(2):
        make_parquet(data / f"train-{part:05d}-of-00002.parquet", 150, first=150 * part, image_key="image",
                     caption_key="text", label_key=None, struct_images=True, row_group_size=100)
    make_parquet(data / "test-00000-of-00001.parquet", 20, first=300, image_key="image", caption_key="text",
                 label_key=None, struct_images=True, row_group_size=10)
    result = run_block(readme_block("parquet"), tmp_path)
    check_trained(result)
    summary = only_run_summary(tmp_path)
    assert summary["steps"] == 3  # ceil(300 / 128) steps
    assert "image_to_text_R@1" in summary  # evaluated on the test file
