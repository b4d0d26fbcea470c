"""benchmarks/gpu_check.py stays runnable: its CPU dry run (tiny sizes) runs every part, and the
modules it imports load without the packages the GPU machine lacks (webdataset, ftfy)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_dry_run_writes_every_part_to_the_json_and_the_table(tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["device"] == "cpu"
    assert {part: entry["status"] for part, entry in report["parts"].items()} == dict.fromkeys(gpu_check.PARTS, "ok")
    train = report["parts"]["train"]["result"]
    assert set(train) == {"plain", "compiled", "fsdp2"} and all(row["flops_per_step"] > 0 for row in train.values())
    rows = report["parts"]["losses"]["result"]["rows"]
    sizes = gpu_check.DRY_RUN_SIZES
    assert [(row["method"], row["batch"]) for row in rows] == [
        (method, batch) for batch in sizes["loss_batches"]
        for method in ("dense_clip", "tiled_clip", "dense_siglip", "tiled_siglip")]
    syncs = report["parts"]["host_syncs"]["result"]
    assert syncs["host_syncs_per_step"] == (sizes["sync_batch"] // sizes["sync_tile"]) ** 2  # one per forward tile
    assert syncs["same_loss"]
    assert report["parts"]["grad_scaler"]["result"]["returncode"] == 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| fsdp2 |" in table and "| compiled |" in table and "| tiled_siglip | 512 | ok |" in table and "host syncs" in table


def test_a_failing_part_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(sizes, device):
        raise RuntimeError("part broke")

    monkeypatch.setattr(gpu_check, "PARTS", {"broken": broken, "host_syncs": gpu_check.host_sync_cost})
    gpu_check.run_check(tmp_path, dry_run=True)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["parts"]["broken"]["status"] == "failed" and "part broke" in report["parts"]["broken"]["error"]
    assert report["parts"]["host_syncs"]["status"] == "ok"


def test_training_modules_import_without_webdataset_and_ftfy():
    code = ("import sys; sys.modules['webdataset'] = None; sys.modules['ftfy'] = None; "
            "import cliplab.train, cliplab.train.parallel.fsdp, cliplab.losses, cliplab.models")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr[-2000:]
