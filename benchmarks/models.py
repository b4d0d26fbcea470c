"""Forward+backward throughput and peak memory of model configs, with and without checkpointing.

Each configuration runs in a fresh subprocess so its peak RSS (`ru_maxrss`) is its own. A step is
forward of images and tokens, a local symmetric InfoNCE loss, and backward (no optimizer).

    python benchmarks/models.py                       # tiny and ViT-B-32 at batch 64, writes BENCHMARKS.md
    python benchmarks/models.py --models tiny --steps 5 --no-write
    python benchmarks/models.py --against-open-clip ViT-B-16-SigLIP2 --batch-size 8
    python benchmarks/models.py --reparameterize MobileCLIP2-S0 --batch-size 16 --steps 5

`--against-open-clip NAME` times instead, in one process on the same inputs, cliplab's model and
open_clip's (with timm 1.0.31's tower) holding the same weights (cliplab's, through its open_clip
key rules): forward + backward of the model's own loss (SigLIP's sigmoid loss for a SigLIP model),
the two libraries' steps interleaved so that machine load falls on both alike; section
`models_open_clip_NAME` of BENCHMARKS.md (one per model).

`--reparameterize NAME` (a FastViT / MobileCLIP model) times instead, in one process, image inference
(`encode_image`, eval, no grad) of the model as trained and of a copy after `reparameterize()`, their
batches interleaved so that machine load falls on both alike, after checking their features equal;
section `models_reparameterize` of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report import format_table, load_note, write_section  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_worker(model_name: str, batch_size: int, checkpointing: bool, warmup: int, steps: int,
               threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from cliplab.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name, output_dict=True)
    model.set_grad_checkpointing(checkpointing)
    config = model.config
    size, length = config.vision.image_size, config.text.context_length
    images = torch.randn(batch_size, 3, size, size)
    tokens = torch.randint(5, config.text.vocab_size, (batch_size, length))
    caption_lengths = torch.randint(4, length, (batch_size,))
    positions = torch.arange(length)
    tokens[:, 0] = 1
    tokens[positions >= caption_lengths[:, None]] = 0
    tokens[torch.arange(batch_size), caption_lengths - 1] = 2
    labels = torch.arange(batch_size)
    baseline_mib = peak_rss_mib()

    def step() -> None:
        output = model(images, tokens)
        logits = output["logit_scale"] * output["image_features"] @ output["text_features"].T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        model.zero_grad(set_to_none=True)
        loss.backward()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {"model": model_name, "batch_size": batch_size, "checkpointing": checkpointing,
            "seconds_per_step": seconds, "images_per_second": batch_size / seconds,
            "peak_rss_mib": peak_rss_mib(), "baseline_rss_mib": baseline_mib,
            "parameters": sum(parameter.numel() for parameter in model.parameters())}


def measure_in_subprocess(model_name: str, batch_size: int, checkpointing: bool, warmup: int,
                          steps: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--worker", "--models", model_name, "--batch-size", str(batch_size),
               "--warmup", str(warmup), "--steps", str(steps), "--threads", str(threads)]
    if checkpointing:
        command.append("--checkpointing")
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])))
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"worker {model_name} checkpointing={checkpointing} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def compare_with_open_clip(name: str, batch_size: int, warmup: int, steps: int, threads: int) -> dict:
    """Seconds per forward + backward step of cliplab's and open_clip's `name` (same weights, same
    inputs), interleaved; also the largest relative difference of their losses."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from cliplab.models import create_model
    from cliplab.models.open_clip_config import builtin_open_clip_config
    from cliplab.pretrained.key_maps import from_cliplab
    from cliplab.pretrained.open_clip_keys import open_clip_rules
    from reference_libraries import open_clip, open_clip_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model_cfg = builtin_open_clip_config(name)
    ours = create_model(name, output_dict=True).train()
    theirs = open_clip_model(model_cfg).train()
    theirs.output_dict = True
    prefix = "text." if model_cfg.get("custom_text") else ""
    theirs.load_state_dict(from_cliplab(ours.state_dict(), open_clip_rules(ours.config, prefix)))
    config = ours.config
    size, length = config.vision.image_size, config.text.context_length
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(batch_size, 3, size, size, generator=generator)
    tokens = torch.randint(1, config.text.vocab_size, (batch_size, length), generator=generator)
    labels = 2 * torch.eye(batch_size) - 1

    def loss_of(output: dict) -> torch.Tensor:
        logits = output["logit_scale"] * output["image_features"] @ output["text_features"].T
        if "logit_bias" in output and output["logit_bias"] is not None:
            return -F.logsigmoid(labels * (logits + output["logit_bias"])).sum() / batch_size
        targets = torch.arange(batch_size)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    def step(model) -> float:
        loss = loss_of(model(images, tokens))
        model.zero_grad(set_to_none=True)
        loss.backward()
        return float(loss.detach())

    timings = {"cliplab": [], "open_clip": []}
    losses = {"cliplab": [], "open_clip": []}
    for index in range(warmup + steps):
        for library, model in (("cliplab", ours), ("open_clip", theirs)):
            start = time.perf_counter()
            losses[library].append(step(model))
            if index >= warmup:
                timings[library].append(time.perf_counter() - start)
    return {"parameters": sum(parameter.numel() for parameter in ours.parameters()),
            "cliplab": sum(timings["cliplab"]) / steps, "open_clip": sum(timings["open_clip"]) / steps,
            "loss_difference": max(abs(a - b) / abs(b) for a, b in zip(losses["cliplab"], losses["open_clip"]))}


def write_comparison(name: str, args, result: dict, load_before: float) -> None:
    ratio = result["cliplab"] / result["open_clip"]
    table = format_table(["model", "params", "batch", "cliplab s / step", "open_clip + timm s / step",
                          "cliplab / open_clip", "loss rel. difference"],
                         [[name, f"{result['parameters'] / 1e6:.2f}M", args.batch_size, f"{result['cliplab']:.2f}",
                           f"{result['open_clip']:.2f}", f"{ratio:.2f}", f"{result['loss_difference']:.1e}"]])
    print(table)
    if not args.no_write:
        body = (f"Forward + backward of the model's own loss (SigLIP's sigmoid loss with logit_bias for a SigLIP "
                f"model), float32 on CPU with {args.threads} threads, cliplab's and open_clip's model (timm's "
                f"tower) in one process with the same weights and inputs, their steps interleaved, "
                f"{args.warmup} warm-up and {args.steps} timed steps each. "
                + load_note(load_before, os.getloadavg()[0], args.threads) + "\n\n" + table)
        write_section(f"models_open_clip_{name}", f"Forward/backward against open_clip + timm: {name}", body)


def compare_reparameterized(name: str, batch_size: int, warmup: int, steps: int, threads: int) -> dict:
    """Seconds per `encode_image` batch of `name` as built (train-time branches) and folded by
    `reparameterize()`, interleaved; the largest relative difference of their features."""
    import copy

    import torch

    from cliplab.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unfolded = create_model(name).eval()
    folded = copy.deepcopy(unfolded).reparameterize()
    size = unfolded.config.vision.image_size
    images = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(1))
    timings = {"unfolded": 0.0, "folded": 0.0}
    with torch.no_grad():
        expected = unfolded.encode_image(images)
        difference = float((folded.encode_image(images) - expected).abs().max() / expected.abs().max())
        for index in range(warmup + steps):
            for variant, model in (("unfolded", unfolded), ("folded", folded)):
                start = time.perf_counter()
                model.encode_image(images)
                if index >= warmup:
                    timings[variant] += (time.perf_counter() - start) / steps
    return {"parameters": (sum(p.numel() for p in unfolded.vision_tower.parameters()),
                           sum(p.numel() for p in folded.vision_tower.parameters())),
            "seconds": timings, "difference": difference}


def write_reparameterized(name: str, args, result: dict, load_before: float) -> None:
    seconds, (before, after) = result["seconds"], result["parameters"]
    rows = [[name, label, f"{count / 1e6:.2f}M", args.batch_size, f"{seconds[variant]:.3f}",
             f"{args.batch_size / seconds[variant]:.1f}"]
            for variant, label, count in (("unfolded", "as built (train-time branches)", before),
                                          ("folded", "after reparameterize()", after))]
    table = format_table(["model", "image tower", "image tower params", "batch", "s / batch", "images / s"], rows)
    table += (f"\n\nSpeed-up of `reparameterize()`: {seconds['unfolded'] / seconds['folded']:.2f}x images / s; "
              f"features max relative difference {result['difference']:.1e}.")
    print(table)
    if not args.no_write:
        body = (f"Image inference (`encode_image`, eval mode, no grad), float32 on CPU with {args.threads} threads, "
                f"the model as built and a copy folded by `reparameterize()` in one process on the same images, "
                f"their batches interleaved, {args.warmup} warm-up and {args.steps} timed batches each. "
                + load_note(load_before, os.getloadavg()[0], args.threads) + "\n\n" + table)
        write_section("models_reparameterize", "FastViT inference before and after reparameterize()", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,ViT-B-32", help="comma-separated registered names")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per configuration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--against-open-clip", metavar="NAME",
                        help="time NAME against open_clip + timm in this process instead (see above)")
    parser.add_argument("--reparameterize", metavar="NAME",
                        help="time NAME's image inference before and after reparameterize() instead (see above)")
    args = parser.parse_args()

    if args.against_open_clip:
        load_before = os.getloadavg()[0]
        write_comparison(args.against_open_clip, args, compare_with_open_clip(
            args.against_open_clip, args.batch_size, args.warmup, args.steps, args.threads), load_before)
        return

    if args.reparameterize:
        load_before = os.getloadavg()[0]
        write_reparameterized(args.reparameterize, args, compare_reparameterized(
            args.reparameterize, args.batch_size, args.warmup, args.steps, args.threads), load_before)
        return

    if args.worker:
        print(json.dumps(run_worker(args.models, args.batch_size, args.checkpointing, args.warmup,
                                    args.steps, args.threads)))
        return

    rows = []
    for model_name in args.models.split(","):
        for checkpointing in (False, True):
            result = measure_in_subprocess(model_name, args.batch_size, checkpointing, args.warmup,
                                           args.steps, args.threads)
            rows.append([model_name, f"{result['parameters'] / 1e6:.2f}M", args.batch_size,
                         "on" if checkpointing else "off", f"{result['seconds_per_step']:.3f}",
                         f"{result['images_per_second']:.1f}", f"{result['peak_rss_mib']:.0f}",
                         f"{result['peak_rss_mib'] - result['baseline_rss_mib']:.0f}"])
            print(rows[-1], flush=True)
    headers = ["model", "params", "batch", "grad checkpointing", "s / step", "images / s",
               "peak RSS MiB", "peak above setup MiB"]
    table = format_table(headers, rows)
    print(table)
    if not args.no_write:
        body = (f"Forward + backward (local symmetric InfoNCE, no optimizer step), float32 on CPU with "
                f"{args.threads} threads, {args.warmup} warm-up and {args.steps} timed steps per row, each row "
                "in a fresh process. 'peak above setup' is the peak RSS minus the RSS after building the "
                "model and batch: activations and gradients.\n\n" + table)
        write_section("models", "Model forward/backward throughput and memory", body)


if __name__ == "__main__":
    main()
