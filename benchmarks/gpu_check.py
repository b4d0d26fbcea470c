"""The CUDA paths on one GPU, in one run of under 8 minutes: one JSON and one Markdown table.

Parts (each runs on its own; a failure is recorded in its entry and the others still run):
  train      ViT-B-32 at bf16, synthetic batches: samples/s and MFU, plain (bf16 autocast), compiled
             (the same with `CLIP.compile_blocks`, `--torchcompile`: regional torch.compile; its
             first step, compilation included, timed apart) and FSDP2 at world size 1
             (`cliplab.train.parallel.fsdp.shard`: bf16 gather, fp32 reduce)
  losses     tiled against dense CLIP and SigLIP, forward + backward at global batch 32k .. 256k,
             D = 768: time and peak CUDA memory beyond the inputs; a dense loss that runs out of
             memory is recorded as such. Inf-CL's published figures (0.36 GB at 64k, 1.45 GB at
             256k, over 8 GPUs) are printed beside them.
  grad_scaler  tests/test_train_step_precision.py (the fp16 GradScaler run is its CUDA case)
  host_syncs the per-tile host sync of `losses.tiling.softmax_tile_stats_` (a `bool()` of a device
             value per tile): how many one loss makes, and the time with and without it

Runs from a bare checkout: the repository's src/ goes first on sys.path, and a dependency of
cliplab that is missing is installed with pip only if the network allows (the torch already there
is never replaced; see README "Setup"). `--dry-run` runs every part at tiny sizes on the CPU, as
the test suite does, so the script cannot rot.

    python benchmarks/gpu_check.py [--out DIR] [--dry-run]
Writes DIR/gpu_check.json and DIR/gpu_check.md (DIR: benchmarks/gpu_check_results).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import torch  # noqa: E402

H200_BF16_DENSE_FLOPS = 989e12  # NVIDIA's H200 SXM datasheet, dense bf16 tensor-core peak
INF_CL_PUBLISHED_GB = {65536: 0.36, 262144: 1.45}  # Inf-CL (Cheng et al. 2024), 8 GPUs, per GPU
RUNTIME_MODULES = {"safetensors": "safetensors", "tokenizers": "tokenizers", "regex": "regex",
                   "ftfy": "ftfy", "numpy": "numpy"}


def install_missing() -> dict[str, str]:
    """pip-install cliplab's missing pure-Python dependencies (never torch); what happened, by name."""
    report = {}
    for module, package in RUNTIME_MODULES.items():
        if importlib.util.find_spec(module) is not None:
            continue
        completed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--retries", "0", "--timeout", "5",
                                    package], capture_output=True, text=True)
        report[package] = "installed" if completed.returncode == 0 else "missing (pip could not install it)"
    return report


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int) -> float:
    """Mean seconds of `function` after `warmup` calls."""
    for _ in range(warmup):
        function()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    _synchronize(device)
    return (time.perf_counter() - start) / repeats


def _peak_bytes(function: Callable[[], Any], device: torch.device) -> int | None:
    """Peak CUDA memory `function` allocates beyond what was allocated before it (None on a CPU)."""
    if device.type != "cuda":
        function()
        return None
    _synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    function()
    _synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


# --- train ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _process_group_of_one(device: torch.device) -> Iterator[None]:
    """FSDP2 needs a process group; a world of one when none exists (destroyed again after)."""
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def train_throughput(sizes: dict, device: torch.device) -> dict:
    """samples/s and MFU of one optimiser step of ViT-B-32 at bf16: plain, compiled, under FSDP2."""
    with _process_group_of_one(device):
        plain = _train_steps("plain", sizes, device)
        compiled = _train_steps("compiled", sizes, device, flops=plain["flops_per_step"])
        return {"plain": plain, "compiled": compiled, "fsdp2": _train_steps("fsdp2", sizes, device)}


def _train_steps(mode: str, sizes: dict, device: torch.device, flops: int | None = None) -> dict:
    """Time optimiser steps of the model, plain, compiled or FSDP2-sharded; count their FLOPs once
    (a compiled step's are the plain step's: `flops`)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cliplab.losses import ClipLoss
    from cliplab.models import create_model
    from cliplab.train.parallel.fsdp import shard

    batch = sizes["train_batch"]
    torch.manual_seed(0)
    model = create_model(sizes["model"], output_dict=True, **sizes["model_overrides"]).to(device).train()
    if mode == "fsdp2":
        shard(model, model, precision="amp_bf16", compile_blocks=False)
    if mode == "compiled":
        model.compile_blocks(backend=sizes["compile_backend"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = ClipLoss()
    size = model.config.vision.image_size
    images = torch.randn(batch, 3, size, size, device=device)
    tokens = torch.randint(0, model.config.text.vocab_size, (batch, model.config.text.context_length),
                           device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            output = model(images, tokens)
        loss = loss_fn(output["image_features"].float(), output["text_features"].float(),
                       output["logit_scale"].float())
        loss.backward()
        optimizer.step()

    first_step_s = _timed(step, device, warmup=0, repeats=1)
    if flops is None:
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    seconds = _timed(step, device, warmup=sizes["warmup"], repeats=sizes["repeats"])
    return {"batch": batch, "step_s": seconds, "first_step_s": first_step_s, "samples_per_s": batch / seconds,
            "flops_per_step": flops, "mfu": flops / seconds / H200_BF16_DENSE_FLOPS if device.type == "cuda" else None}


# --- losses --------------------------------------------------------------------------------------

def _loss_inputs(batch: int, dim: int, device: torch.device):
    generator = torch.Generator(device=device).manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(batch, dim, device=device, generator=generator), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(batch, dim, device=device, generator=generator), dim=-1)
    return (image.requires_grad_(True), text.requires_grad_(True), torch.tensor(10.0, device=device),
            torch.tensor(-10.0, device=device))


def loss_memory(sizes: dict, device: torch.device) -> dict:
    """Forward + backward time and peak memory of tiled and dense CLIP / SigLIP losses."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.baselines import openclip_style_clip_loss, openclip_style_siglip_loss
    from cliplab.losses import TiledClipLoss, TiledSigLipLoss

    tiled_clip, tiled_siglip = TiledClipLoss(), TiledSigLipLoss()
    methods = {
        "dense_clip": lambda i, t, s, b: openclip_style_clip_loss(i, t, s),
        "tiled_clip": lambda i, t, s, b: tiled_clip(i, t, s),
        "dense_siglip": openclip_style_siglip_loss,
        "tiled_siglip": lambda i, t, s, b: tiled_siglip(i, t, s, b),
    }
    rows = []
    for batch in sizes["loss_batches"]:
        inputs = _loss_inputs(batch, sizes["loss_dim"], device)
        for name, method in methods.items():
            def run():
                inputs[0].grad = inputs[1].grad = None
                method(*inputs).backward()
            row = {"method": name, "batch": batch}
            try:
                row["peak_bytes"] = _peak_bytes(run, device)
                row["seconds"] = _timed(run, device, warmup=0, repeats=sizes["loss_repeats"])
                row["status"] = "ok"
            except Exception as error:  # noqa: BLE001 - recorded, the next size still runs
                if not _is_oom(error):
                    raise
                row["status"] = "out of memory"
            inputs[0].grad = inputs[1].grad = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row["inf_cl_published_gb"] = INF_CL_PUBLISHED_GB.get(batch) if name.startswith("tiled") else None
            rows.append(row)
        inputs = None  # freed before the next size is drawn
    return {"dim": sizes["loss_dim"], "rows": rows}


# --- grad scaler ---------------------------------------------------------------------------------

def grad_scaler_test(sizes: dict, device: torch.device) -> dict:
    """Run tests/test_train_step_precision.py (collect only in a dry run) and report its summary line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_train_step_precision.py"]
    if sizes["collect_only"]:
        command.append("--collect-only")
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment,
                               timeout=sizes["pytest_timeout_s"])
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return {"returncode": completed.returncode, "summary": lines[-1] if lines else "",
            "output_tail": (completed.stdout + completed.stderr)[-3000:]}


# --- host syncs ----------------------------------------------------------------------------------

def host_sync_cost(sizes: dict, device: torch.device) -> dict:
    """Count the tiles' host syncs in one tiled CLIP forward + backward, and time it with the check
    and with it removed (the factorised column statistics taken unconditionally: valid for these
    inputs, whose columns never underflow; the two losses are compared)."""
    from cliplab.losses import TiledClipLoss, tiled_clip, tiling

    batch, tile = sizes["sync_batch"], sizes["sync_tile"]
    inputs = _loss_inputs(batch, sizes["loss_dim"], device)
    loss_fn = TiledClipLoss(tile_size=tile, keep_tiles_max_bytes=0)
    checked = tiling.softmax_tile_stats_
    calls = [0]

    def counting(logits):
        calls[0] += 1
        return checked(logits)

    def unchecked(logits):
        row_max = logits.amax(dim=1)
        exp_tile = logits.sub_(row_max[:, None]).exp_()
        row_lse = row_max + exp_tile.sum(dim=1).log()
        tile_max = row_max.max()
        col_sums = torch.mv(exp_tile.T, (row_max - tile_max).exp())
        return row_max, row_lse, tile_max + col_sums.log()

    def run():
        inputs[0].grad = inputs[1].grad = None
        loss = loss_fn(inputs[0], inputs[1], inputs[2])
        loss.backward()
        return loss.detach()

    result = {"batch": batch, "tile_size": tile}
    try:
        tiled_clip.softmax_tile_stats_ = counting
        reference = run()
        result["host_syncs_per_step"] = calls[0]
        tiled_clip.softmax_tile_stats_ = checked
        result["with_syncs_s"] = _timed(run, device, warmup=1, repeats=sizes["loss_repeats"])
        tiled_clip.softmax_tile_stats_ = unchecked
        unsynced = run()
        result["without_syncs_s"] = _timed(run, device, warmup=1, repeats=sizes["loss_repeats"])
        result["same_loss"] = bool(torch.equal(reference, unsynced))
    finally:
        tiled_clip.softmax_tile_stats_ = checked
    return result


# --- report --------------------------------------------------------------------------------------

def _gb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f}"


def markdown(report: dict) -> str:
    lines = [f"# GPU check\n\n{report['machine']}; dry run: {report['dry_run']}; {report['total_s']:.0f} s\n"]
    for part, entry in report["parts"].items():
        if entry["status"] != "ok":
            lines.append(f"## {part}: {entry['status']}\n\n```\n{entry.get('error', '')[-1500:]}\n```\n")
    train = report["parts"].get("train", {})
    if train.get("status") == "ok":
        lines.append("## train (bf16, synthetic batches)\n\n| mode | batch | first step s | step s | samples/s | MFU |\n"
                     "|---|---|---|---|---|---|")
        for mode, row in train["result"].items():
            mfu = "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
            lines.append(f"| {mode} | {row['batch']} | {row['first_step_s']:.2f} | {row['step_s']:.4f} | "
                         f"{row['samples_per_s']:.1f} | {mfu} |")
        lines.append("")
    losses = report["parts"].get("losses", {})
    if losses.get("status") == "ok":
        lines.append(f"## losses (forward + backward, D = {losses['result']['dim']})\n\n"
                     "| method | global batch | status | s | peak GB beyond inputs | Inf-CL published GB (8 GPUs) |\n"
                     "|---|---|---|---|---|---|")
        for row in losses["result"]["rows"]:
            seconds = f"{row['seconds']:.4f}" if "seconds" in row else "-"
            published = row["inf_cl_published_gb"] if row["inf_cl_published_gb"] is not None else "-"
            lines.append(f"| {row['method']} | {row['batch']} | {row['status']} | {seconds} | "
                         f"{_gb(row.get('peak_bytes'))} | {published} |")
        lines.append("")
    scaler = report["parts"].get("grad_scaler", {})
    if scaler.get("status") == "ok":
        lines.append(f"## grad_scaler\n\n`tests/test_train_step_precision.py`: {scaler['result']['summary']} "
                     f"(exit {scaler['result']['returncode']})\n")
    syncs = report["parts"].get("host_syncs", {})
    if syncs.get("status") == "ok":
        row = syncs["result"]
        lines.append(f"## host_syncs\n\nbatch {row['batch']}, tile {row['tile_size']}: {row['host_syncs_per_step']} "
                     f"host syncs per forward + backward; {row['with_syncs_s']:.4f} s with them, "
                     f"{row['without_syncs_s']:.4f} s without (same loss: {row['same_loss']})\n")
    return "\n".join(lines)


# The dry run traces the compiled blocks with dynamo but skips inductor's code generation (backend
# "eager"), which would cost the test suite a minute of CPU; the GPU run compiles for real.
GPU_SIZES = {"model": "ViT-B-32", "model_overrides": {}, "train_batch": 256, "warmup": 3, "repeats": 10,
             "compile_backend": "inductor",
             "loss_batches": [32768, 65536, 131072, 262144], "loss_dim": 768, "loss_repeats": 3,
             "sync_batch": 65536, "sync_tile": 4096, "collect_only": False, "pytest_timeout_s": 180}
DRY_RUN_SIZES = {"model": "tiny", "model_overrides": {"vision.width": 16, "text.width": 32, "text.heads": 2,
                                                      "text.layers": 1, "text.context_length": 20, "embed_dim": 16},
                 "train_batch": 4, "warmup": 1, "repeats": 1, "compile_backend": "eager",
                 "loss_batches": [256, 512], "loss_dim": 32,
                 "loss_repeats": 1, "sync_batch": 256, "sync_tile": 64, "collect_only": True, "pytest_timeout_s": 120}
PARTS = {"train": train_throughput, "losses": loss_memory, "grad_scaler": grad_scaler_test,
         "host_syncs": host_sync_cost}


def run_check(out_dir: Path, *, dry_run: bool) -> dict:
    """Every part, each recorded as ok (with its result) or with its error; writes the JSON and the
    table after each part, so that a machine taken back mid-run still leaves what was measured."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.report import machine_description

    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not dry_run else "cpu")
    sizes = DRY_RUN_SIZES if dry_run else GPU_SIZES
    report: dict[str, Any] = {"dry_run": dry_run, "machine": machine_description(), "device": str(device),
                              "setup": install_missing(), "parts": {}}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in PARTS.items():
        part_start = time.perf_counter()
        try:
            entry = {"status": "ok", "result": part(sizes, device)}
        except Exception as error:  # noqa: BLE001 - one part's failure must not lose the others
            entry = {"status": "failed" if not _is_oom(error) else "out of memory",
                     "error": traceback.format_exc()}
        entry["seconds"] = time.perf_counter() - part_start
        report["parts"][name] = entry
        report["total_s"] = time.perf_counter() - started
        (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "gpu_check.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check_results")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what the tests run)")
    args = parser.parse_args(argv)
    report = run_check(args.out, dry_run=args.dry_run)
    failed = [part for part, entry in report["parts"].items() if entry["status"] != "ok"]
    print(f"gpu_check: wrote {args.out / 'gpu_check.json'} and gpu_check.md; failed parts: {failed or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
