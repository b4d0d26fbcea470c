"""Forward + backward time and peak memory of the dense losses against open_clip-style baselines.

For each batch size one subprocess times every loss in turn (interleaved rounds, so ratios compare
runs seconds apart), and each (loss, batch size) gets a fresh subprocess for memory: it reads
ru_maxrss after building the inputs and again after one forward+backward, and reports the
difference (memory the loss needed beyond its inputs).

Run from the repository root: python benchmarks/dense_losses.py [--batch-sizes 1024 2048 ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.baselines import loss_inputs, openclip_style_clip_loss, openclip_style_siglip_loss  # noqa: E402
from benchmarks.report import format_table, write_section  # noqa: E402

FEATURE_DIM = 512
BATCH_SIZES = [1024, 2048, 4096, 8192, 16384]
LOSSES = ["openclip_style_clip", "ClipLoss", "openclip_style_siglip", "SigLipLoss", "CoCaLoss", "DistillClipLoss"]
# CoCa and Distill have no baseline of their own and cost more; they are measured at small B only.
EXTRA_LOSSES, EXTRA_LOSSES_MAX_BATCH = ("CoCaLoss", "DistillClipLoss"), 4096
BASELINE_FAMILY = {"openclip_style_clip": "clip", "ClipLoss": "clip",
                   "openclip_style_siglip": "siglip", "SigLipLoss": "siglip"}
SECTION_ID, TITLE = "dense_losses", "Dense losses (baseline)"


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _loss_closure(name: str, batch_size: int):
    """(leaf tensors to time gradients for, callable computing the scalar loss)."""
    from cliplab.losses import ClipLoss, CoCaLoss, DistillClipLoss, SigLipLoss

    generator = torch.Generator().manual_seed(0)
    image, text, scale, bias = loss_inputs(batch_size, FEATURE_DIM, generator)
    if name == "openclip_style_clip":
        return lambda: openclip_style_clip_loss(image, text, scale)
    if name == "ClipLoss":
        loss_fn = ClipLoss()
        return lambda: loss_fn(image, text, scale)
    if name == "openclip_style_siglip":
        return lambda: openclip_style_siglip_loss(image, text, scale, bias)
    if name == "SigLipLoss":
        loss_fn = SigLipLoss()
        return lambda: loss_fn(image, text, scale, bias)
    if name == "CoCaLoss":
        # A small captioning head (16 tokens, vocabulary 1000) so the contrastive part dominates.
        caption_logits = torch.randn(batch_size, 16, 1000, generator=generator).requires_grad_(True)
        labels = torch.randint(0, 1000, (batch_size, 16), generator=generator)
        loss_fn = CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0)
        return lambda: sum(loss_fn(image, text, caption_logits, labels, scale))
    if name == "DistillClipLoss":
        teacher_image = F.normalize(torch.randn(batch_size, FEATURE_DIM, generator=generator), dim=-1)
        teacher_text = F.normalize(torch.randn(batch_size, FEATURE_DIM, generator=generator), dim=-1)
        loss_fn = DistillClipLoss()
        return lambda: sum(loss_fn(image, text, scale, teacher_image, teacher_text, torch.tensor(20.0)))
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")


def measure_memory(name: str, batch_size: int) -> dict:
    """Peak resident memory one forward+backward needs beyond its inputs (run in a fresh process)."""
    compute_loss = _loss_closure(name, batch_size)
    rss_with_inputs = _peak_rss_bytes()
    compute_loss().backward()
    return {"peak_extra_bytes": _peak_rss_bytes() - rss_with_inputs}


def measure_times_interleaved(names: list[str], batch_size: int, rounds: int) -> dict:
    """Median forward+backward seconds per loss, the losses run in turn in this one process
    (one warm-up each), so every ratio compares runs seconds apart on this shared machine."""
    closures = {name: _loss_closure(name, batch_size) for name in names}
    for compute_loss in closures.values():
        compute_loss().backward()
    seconds = {name: [] for name in names}
    for _ in range(rounds):
        for name, compute_loss in closures.items():
            start = time.perf_counter()
            compute_loss().backward()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def in_subprocess(threads: int, *child_args: str) -> dict:
    command = [sys.executable, __file__, "--threads", str(threads), "--child", *child_args]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES)
    parser.add_argument("--losses", nargs="+", default=LOSSES, choices=LOSSES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        if args.child[0] == "memory":
            print(json.dumps(measure_memory(args.child[1], int(args.child[2]))))
        else:
            rounds, batch_size, names = int(args.child[1]), int(args.child[2]), args.child[3:]
            print(json.dumps(measure_times_interleaved(names, batch_size, rounds)))
        return

    headers = ["loss", "B", "fwd+bwd s (median)", "peak extra RSS MiB", "time vs baseline", "memory vs baseline"]
    rows = []
    for batch_size in args.batch_sizes:
        names = [name for name in args.losses
                 if name not in EXTRA_LOSSES or batch_size <= EXTRA_LOSSES_MAX_BATCH]
        rounds = 3 if batch_size <= 4096 else 2
        seconds = in_subprocess(args.threads, "times", str(rounds), str(batch_size), *names)
        results = {name: {"seconds": seconds[name],
                          **in_subprocess(args.threads, "memory", name, str(batch_size))} for name in names}
        for name in names:
            result = results[name]
            family = BASELINE_FAMILY.get(name)
            reference = next((results[other] for other in names
                              if other.startswith("openclip_style") and BASELINE_FAMILY[other] == family), None)
            ratio = lambda key: (f"{result[key] / reference[key]:.2f}x"  # noqa: E731
                                 if reference and reference[key] > 0 else "-")
            row = [name, batch_size, f"{result['seconds']:.3f}", f"{result['peak_extra_bytes'] / 2**20:.0f}",
                   ratio("seconds"), ratio("peak_extra_bytes")]
            rows.append(row)
            print(" | ".join(str(cell) for cell in row), flush=True)
    table = format_table(headers, rows)
    print(table)
    if not args.no_write:
        body = (f"D={FEATURE_DIM}, fp32, CPU, {args.threads} threads. Time: for each B, all losses run in turn in "
                "one process (one warm-up each, then 3 rounds up to B=4096 and 2 above; median), so the ratios "
                "compare runs seconds apart on this shared machine. Memory: one forward+backward in a fresh "
                "process per loss, the peak resident set beyond the inputs (first-run allocations included). "
                "CoCa adds a 16-token, 1000-word caption head; Distill adds teacher logits (both only up to "
                "B=4096, no ratio). Ratios compare ClipLoss / SigLipLoss with the open_clip-style baseline of the "
                "same family (benchmarks/baselines.py).\n\n" + table)
        write_section(SECTION_ID, TITLE, body)


if __name__ == "__main__":
    main()
