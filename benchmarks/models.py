"""Forward+backward throughput and peak memory of model configs, with and without checkpointing;
and cliplab's towers beside open_clip's (with timm's) on the same weights and inputs.

Each configuration runs in a fresh subprocess so its peak RSS (`ru_maxrss`) is its own. A step is
forward of images and tokens, a local symmetric InfoNCE loss, and backward (no optimizer).

    python benchmarks/models.py                       # tiny and ViT-B-32 at batch 64, writes BENCHMARKS.md
    python benchmarks/models.py --models tiny --steps 5 --no-write
    python benchmarks/models.py --against-open-clip convnext_base --batch-size 8 --steps 3

--against-open-clip: in one process, cliplab's model of each open_clip name and open_clip's own
(open_clip 3.3.0 + timm 1.0.31 from build/test-oracles, through tests/reference_libraries.py) holding
the same weights (cliplab's, mapped by the family's key rules), on the same batch; their features are
checked equal first, then the two step in turn (warm-up, then timed steps interleaved, who goes
first alternating, so both see the same machine load). Writes section `models_vs_open_clip` (the
ratio is the median of cliplab's s/step over open_clip's, step by step, from this one run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report import format_table, write_section  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def random_batch(config, batch_size: int):
    """(images [B, 3, S, S], tokens [B, T]): random pixels, random captions of random lengths
    (start id 1, end id 2, padding 0)."""
    import torch

    size, length = config.vision.image_size, config.text.context_length
    images = torch.randn(batch_size, 3, size, size)
    tokens = torch.randint(5, config.text.vocab_size, (batch_size, length))
    caption_lengths = torch.randint(4, length, (batch_size,))
    positions = torch.arange(length)
    tokens[:, 0] = 1
    tokens[positions >= caption_lengths[:, None]] = 0
    tokens[torch.arange(batch_size), caption_lengths - 1] = 2
    return images, tokens


def training_step(model, images, tokens) -> None:
    """Forward, the local symmetric InfoNCE loss, backward (a model returning a dict or open_clip's
    (image_features, text_features, logit_scale) tuple)."""
    import torch
    import torch.nn.functional as F

    output = model(images, tokens)
    image_features, text_features, logit_scale = (
        (output["image_features"], output["text_features"], output["logit_scale"]) if isinstance(output, dict)
        else output[:3])
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(images.shape[0])
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    model.zero_grad(set_to_none=True)
    loss.backward()


def run_worker(model_name: str, batch_size: int, checkpointing: bool, warmup: int, steps: int,
               threads: int) -> dict:
    import torch

    from cliplab.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name, output_dict=True)
    model.set_grad_checkpointing(checkpointing)
    config = model.config
    images, tokens = random_batch(config, batch_size)
    baseline_mib = peak_rss_mib()

    def step() -> None:
        training_step(model, images, tokens)

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


def compare_with_open_clip(model_name: str, batch_size: int, warmup: int, steps: int, threads: int) -> dict:
    """cliplab's and open_clip's `model_name` on the same weights and batch (see the module docstring):
    {"seconds_cliplab", "seconds_open_clip", "parameters", "image_size", "max_relative_difference"}."""
    import torch

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from reference_libraries import open_clip, open_clip_model, reference_mode

    from cliplab.models import create_model
    from cliplab.pretrained.key_maps import from_cliplab
    from cliplab.pretrained.open_clip_keys import open_clip_rules, open_clip_text_prefix

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ours = create_model(model_name, output_dict=True)
    theirs = open_clip_model(open_clip().get_model_config(model_name))
    rules = open_clip_rules(ours.config, open_clip_text_prefix(ours.config))
    theirs.load_state_dict(from_cliplab(ours.state_dict(), rules))
    images, tokens = random_batch(ours.config, batch_size)
    with torch.no_grad(), reference_mode():
        expected = theirs.eval().encode_image(images)
        difference = float((ours.eval().encode_image(images) - expected).abs().max() / expected.abs().max())
    if difference > 1e-5:
        raise RuntimeError(f"{model_name}: cliplab's features differ from open_clip's by {difference:.2e} (relative)")
    ours.train(), theirs.train()
    for _ in range(warmup):
        training_step(ours, images, tokens)
        training_step(theirs, images, tokens)
    seconds: dict[str, list[float]] = {"cliplab": [], "open_clip": []}
    pair = [("cliplab", ours), ("open_clip", theirs)]
    for step in range(steps):
        for library, model in pair if step % 2 == 0 else pair[::-1]:  # who goes first alternates
            start = time.perf_counter()
            training_step(model, images, tokens)
            seconds[library].append(time.perf_counter() - start)
    ratios = [ours_s / theirs_s for ours_s, theirs_s in zip(seconds["cliplab"], seconds["open_clip"])]
    return {"seconds_cliplab": statistics.median(seconds["cliplab"]),
            "seconds_open_clip": statistics.median(seconds["open_clip"]), "ratio": statistics.median(ratios),
            "parameters": sum(parameter.numel() for parameter in ours.parameters()),
            "image_size": ours.config.vision.image_size, "max_relative_difference": difference}


def report_comparisons(args) -> None:
    load_before, rows = os.getloadavg()[0], []
    for model_name in args.against_open_clip.split(","):
        result = compare_with_open_clip(model_name, args.batch_size, args.warmup, args.steps, args.threads)
        rows.append([model_name, f"{result['parameters'] / 1e6:.2f}M", args.batch_size, result["image_size"],
                     f"{result['seconds_cliplab']:.2f}", f"{result['seconds_open_clip']:.2f}",
                     f"{result['ratio']:.2f}",
                     f"{result['max_relative_difference']:.1e}"])
        print(rows[-1], flush=True)
    headers = ["model", "params", "batch", "image side", "cliplab s / step", "open_clip + timm s / step",
               "ratio (cliplab / open_clip, median of steps)", "features max rel. difference"]
    table = format_table(headers, rows)
    print(table)
    if not args.no_write:
        body = (f"Forward + backward (local symmetric InfoNCE, no optimizer step), float32 on CPU with "
                f"{args.threads} threads, train mode (stochastic depth on in both), {args.warmup} warm-up and "
                f"{args.steps} timed steps per library, interleaved in one process on the same weights and "
                f"batch (who goes first alternates); medians of the steps, and the median of the step-by-step "
                f"ratios; eval-mode image features checked equal first. Load average (1 min) before / after: "
                f"{load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (above the core count: "
                "other jobs shared the CPU, so the seconds are slow; the interleaved ratio less so).\n\n" + table)
        write_section("models_vs_open_clip", "Model forward/backward beside open_clip + timm", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,ViT-B-32", help="comma-separated registered names")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per configuration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    parser.add_argument("--against-open-clip", metavar="NAMES",
                        help="comma-separated open_clip names: time cliplab beside open_clip + timm instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_worker(args.models, args.batch_size, args.checkpointing, args.warmup,
                                    args.steps, args.threads)))
        return
    if args.against_open_clip:
        report_comparisons(args)
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
