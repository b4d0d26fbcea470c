"""Tiled CLIP / SigLIP losses against the dense open_clip-style losses and torch's built-in
`linear_cross_entropy`: forward + backward time and peak memory beyond inputs and gradients.

Every (method, batch size) runs in a fresh subprocess. The child allocates the features and their
.grad buffers, reads ru_maxrss, runs the loss (a warm-up, then the timed runs), reads ru_maxrss
again and reports the difference: the peak memory the loss needed beyond its inputs and their
gradients (the warm-up's peak included). Then one more subprocess times the methods at
--ratio-batch interleaved (dense, tiled, built-in, dense, tiled, ...), so that the ratios compare
runs seconds apart on this shared machine.

Run from the repository root: python benchmarks/tiled_losses.py [--batch-sizes ...] [--quick]
Writes section `tiled_losses` of BENCHMARKS.md and the plot docs/tiled_losses.png.
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
BATCH_SIZES = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
DENSE_MAX_BATCH = 16384
METHODS = ["dense_clip", "tiled_clip", "builtin_lce_clip", "builtin_lce_chunked_clip", "dense_siglip",
           "tiled_siglip"]
DENSE_METHODS = {"dense_clip", "builtin_lce_clip", "builtin_lce_chunked_clip", "dense_siglip"}
LABELS = {
    "dense_clip": "dense CLIP (open_clip style)",
    "tiled_clip": "TiledClipLoss",
    "builtin_lce_clip": "CLIP via F.linear_cross_entropy (reference path)",
    "builtin_lce_chunked_clip": "CLIP via F.linear_cross_entropy (chunked options)",
    "dense_siglip": "dense SigLIP (open_clip style)",
    "tiled_siglip": "TiledSigLipLoss",
}
ROOT = Path(__file__).resolve().parent.parent
PLOT_PATH = ROOT / "docs" / "tiled_losses.png"
SECTION_ID, TITLE = "tiled_losses", "Tiled contrastive losses"


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def builtin_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, chunked: bool) -> torch.Tensor:
    """CLIP loss through torch's linear_cross_entropy, which never hands the logits back."""
    labels = torch.arange(image.shape[0], device=image.device)
    options = torch.nn.LinearCrossEntropyOptions() if chunked else None
    return (F.linear_cross_entropy(scale * image, text, labels, options=options)
            + F.linear_cross_entropy(scale * text, image, labels, options=options)) / 2


def make_step(method: str, batch_size: int):
    """(leaf tensors, callable running forward + backward once)."""
    from cliplab.losses.tiled_clip import TiledClipLoss
    from cliplab.losses.tiled_siglip import TiledSigLipLoss

    generator = torch.Generator().manual_seed(0)
    image, text, scale, bias = loss_inputs(batch_size, FEATURE_DIM, generator)
    leaves = [image, text, scale, bias]
    for leaf in leaves:
        leaf.grad = torch.zeros_like(leaf)
    tiled_clip, tiled_siglip = TiledClipLoss(), TiledSigLipLoss()
    losses = {
        "dense_clip": lambda: openclip_style_clip_loss(image, text, scale),
        "tiled_clip": lambda: tiled_clip(image, text, scale),
        "builtin_lce_clip": lambda: builtin_clip_loss(image, text, scale, chunked=False),
        "builtin_lce_chunked_clip": lambda: builtin_clip_loss(image, text, scale, chunked=True),
        "dense_siglip": lambda: openclip_style_siglip_loss(image, text, scale, bias),
        "tiled_siglip": lambda: tiled_siglip(image, text, scale, bias),
    }
    loss_fn = losses[method]
    return leaves, lambda: loss_fn().backward()


def run_child(method: str, batch_size: int, repeats: int, warmup: int) -> dict:
    leaves, step = make_step(method, batch_size)
    baseline = _peak_rss_bytes()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"method": method, "batch_size": batch_size, "seconds": statistics.median(times),
            "peak_extra_bytes": _peak_rss_bytes() - baseline}


def run_interleaved(batch_size: int, methods: list[str], rounds: int) -> dict:
    steps = {method: make_step(method, batch_size)[1] for method in methods}
    times = {method: [] for method in methods}
    for method in methods:
        steps[method]()
    for _ in range(rounds):
        for method in methods:
            start = time.perf_counter()
            steps[method]()
            times[method].append(time.perf_counter() - start)
    return {method: statistics.median(values) for method, values in times.items()}


def spawn(*args: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                               cwd=ROOT)
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1] if completed.stderr else "failed"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def repeats_for(batch_size: int) -> tuple[int, int]:
    """(timed runs, warm-up runs): fewer for the large batches, whose runs take minutes."""
    if batch_size <= 4096:
        return 3, 1
    if batch_size <= 16384:
        return 1, 1
    return 1, 0


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for method in METHODS:
        points = sorted((r["batch_size"], r["seconds"], r["peak_extra_bytes"]) for r in results
                        if r.get("method") == method and "seconds" in r)
        if not points:
            continue
        batches = [p[0] for p in points]
        style = "-o" if method.startswith("tiled") else "--s"
        time_axis.plot(batches, [p[1] for p in points], style, label=LABELS[method])
        memory_axis.plot(batches, [max(p[2], 1) / 2**20 for p in points], style, label=LABELS[method])
    for axis, ylabel in ((time_axis, "forward + backward (s)"), (memory_axis, "peak memory beyond inputs+grads (MiB)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("global batch B (D = 512, fp32)")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    memory_axis.axhline(1024, color="grey", linewidth=0.8)
    time_axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES)
    parser.add_argument("--ratio-batch", type=int, default=8192)
    parser.add_argument("--ratio-rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md and the plot")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "interleaved":
            print(json.dumps(run_interleaved(int(args.child[1]), args.child[3:], int(args.child[2]))))
        else:
            method, batch_size, repeats, warmup = args.child
            print(json.dumps(run_child(method, int(batch_size), int(repeats), int(warmup))))
        return

    results = []
    for batch_size in args.batch_sizes:
        for method in METHODS:
            if method in DENSE_METHODS and batch_size > DENSE_MAX_BATCH:
                continue
            repeats, warmup = repeats_for(batch_size)
            result = spawn(method, str(batch_size), str(repeats), str(warmup))
            result.setdefault("method", method)
            result.setdefault("batch_size", batch_size)
            results.append(result)
            shown = (f"{result['seconds']:.3f} s, {result['peak_extra_bytes'] / 2**20:.0f} MiB"
                     if "seconds" in result else result["error"])
            print(f"B={batch_size:6d} {method:26s} {shown}", flush=True)

    ratio_methods = ["dense_clip", "tiled_clip", "builtin_lce_clip", "builtin_lce_chunked_clip",
                     "dense_siglip", "tiled_siglip"]
    interleaved = spawn("interleaved", str(args.ratio_batch), str(args.ratio_rounds), *ratio_methods)
    print(f"interleaved at B={args.ratio_batch}: {interleaved}", flush=True)

    rows = []
    for batch_size in args.batch_sizes:
        for method in METHODS:
            found = [r for r in results if r["method"] == method and r["batch_size"] == batch_size]
            if not found:
                continue
            result = found[0]
            if "seconds" in result:
                rows.append([batch_size, LABELS[method], f"{result['seconds']:.3f}",
                             f"{result['peak_extra_bytes'] / 2**20:.0f}"])
            else:
                rows.append([batch_size, LABELS[method], "failed", result["error"]])
    table = format_table(["B", "method", "fwd+bwd (s)", "peak extra memory (MiB)"], rows)
    ratio_rows = []
    if "error" not in interleaved:
        builtin_best = min(interleaved["builtin_lce_clip"], interleaved["builtin_lce_chunked_clip"])
        ratio_rows = [
            ["TiledClipLoss / dense CLIP", f"{interleaved['tiled_clip'] / interleaved['dense_clip']:.2f}"],
            ["TiledClipLoss / best linear_cross_entropy CLIP", f"{interleaved['tiled_clip'] / builtin_best:.2f}"],
            ["best linear_cross_entropy CLIP / dense CLIP", f"{builtin_best / interleaved['dense_clip']:.2f}"],
            ["TiledSigLipLoss / dense SigLIP", f"{interleaved['tiled_siglip'] / interleaved['dense_siglip']:.2f}"],
        ]
        ratio_rows += [[f"{LABELS[m]} (s)", f"{interleaved[m]:.3f}"] for m in ratio_methods]
    ratio_table = format_table(["interleaved at B=%d" % args.ratio_batch, "value"], ratio_rows)
    print(table)
    print(ratio_table)
    if args.no_write:
        return
    plot(results, PLOT_PATH)
    body = (
        f"D = {FEATURE_DIM}, fp32, forward + backward, one process; each row a fresh subprocess "
        "(median of 3 timed runs up to B=4096, one run above; no warm-up from B=32768). Peak extra memory: "
        "ru_maxrss growth after the features and their .grad buffers were allocated. Dense methods "
        f"only up to B={DENSE_MAX_BATCH}. Tiled losses at their defaults (tile 4096, logits kept for "
        "backward while they fit in 512 MiB, i.e. up to B=11585). The machine's 2 cores are shared with other jobs, "
        "so compare the interleaved ratios below rather than rows of the sweep.\n\n"
        f"{table}\n\n{ratio_table}\n\nPlot: `docs/tiled_losses.png`."
    )
    write_section(SECTION_ID, TITLE, body)


if __name__ == "__main__":
    main()
