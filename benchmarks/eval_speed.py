"""Zero-shot classification throughput of `cliplab benchmark` against CLIP_benchmark 1.6.2's own loop,
the same model in the same process.

Run from the repository root: `python benchmarks/eval_speed.py [--images 512] [--rounds 2]`. Writes
section `eval_speed` of BENCHMARKS.md.

Model: cliplab's ViT-B-32 (open_clip's architecture) with random weights (seed 0), fp32, on the CPU,
OpenAI's BPE tokenizer. Data: the first N Fashion-MNIST test images in CLIP_benchmark's webdataset
layout (`write_clip_benchmark_split`: one tar per loader worker, class names, the 10 built-in
templates). Each side
does the whole task: class embeddings from 10 classes x 10 templates, every image decoded,
preprocessed (the model's eval transform, 224 px) and encoded, the metrics.
- cliplab: `eval.benchmark.run_benchmark` (what `cliplab benchmark --task zeroshot_classification`
  runs after loading the model).
- CLIP_benchmark: what its CLI runs for a `wds/` dataset: `build_wds_dataset`, a torch DataLoader over
  `dataset.batched(batch_size)`, `zeroshot_classification.evaluate`, with amp off (fp32, the same
  numbers; checked equal) and with its default amp on (bf16 autocast on a CPU).
Both use the same batch size and number of loader workers. Rounds alternate the two; each side's best
round is reported (the CPU is shared with other jobs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402

import clip_benchmark_oracle  # noqa: E402
from benchmarks.report import format_table, write_section  # noqa: E402
from cliplab.data.benchmark import open_benchmark_dataset  # noqa: E402
from cliplab.data.benchmark.wds_writer import write_clip_benchmark_split  # noqa: E402
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer  # noqa: E402
from cliplab.data.transforms import image_transform  # noqa: E402
from cliplab.eval.benchmark import ZERO_SHOT, BenchmarkModel, BenchmarkOptions, run_benchmark  # noqa: E402
from cliplab.models import create_model  # noqa: E402


def write_dataset(directory: Path, count: int, shards: int) -> Path:
    """The first `count` test images in `shards` tars (webdataset gives each loader worker whole
    shards and refuses a worker without one, so CLIP_benchmark's loader needs one per worker)."""
    builtin = open_benchmark_dataset("fashion-mnist")
    target = directory / "wds_fashion_mnist"
    write_clip_benchmark_split(builtin.split("test"), target, classnames=builtin.classnames.values,
                               templates=builtin.templates.values, samples_per_shard=-(-count // shards),
                               max_samples=count)
    return target


def time_cliplab(model, preprocess, tokenizer, directory: Path, batch_size: int, workers: int) -> tuple[float, dict]:
    benchmark_model = BenchmarkModel(name="ViT-B-32", pretrained="random", model=model, preprocess=preprocess,
                                     tokenizer=tokenizer, device=torch.device("cpu"), preprocess_key="vit")
    options = BenchmarkOptions(tasks=(ZERO_SHOT,), batch_size=batch_size, workers=workers)
    start = time.perf_counter()
    dataset = open_benchmark_dataset(str(directory))
    results = run_benchmark([benchmark_model], dataset, options, note=lambda line: None)
    return time.perf_counter() - start, results[0]["metrics"]


def time_clip_benchmark(model, preprocess, tokenizer, directory: Path, batch_size: int, workers: int,
                        amp: bool) -> tuple[float, dict]:
    builder = clip_benchmark_oracle.datasets_builder()
    zeroshot_classification, _, _ = clip_benchmark_oracle.metrics_modules()
    start = time.perf_counter()
    dataset = builder.build_wds_dataset(directory.name, transform=preprocess, split="test", data_dir=str(directory))
    loader = torch.utils.data.DataLoader(dataset.batched(batch_size), batch_size=None, shuffle=False,
                                         num_workers=workers)
    loader.dataset.classes = dataset.classes  # its evaluate reads dataloader.dataset.classes
    with clip_benchmark_oracle.numpy_scalars():
        metrics = zeroshot_classification.evaluate(model, loader, tokenizer, dataset.classes, dataset.templates, "cpu",
                                                   amp=amp)
    return time.perf_counter() - start, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_model("ViT-B-32").eval()
    preprocess = image_transform(model.config.preprocess, train=False)
    tokenizer = openai_bpe_tokenizer(77)
    times: dict[str, list[float]] = {"cliplab": [], "clip_benchmark": [], "clip_benchmark_amp": []}
    with tempfile.TemporaryDirectory() as scratch:
        directory = write_dataset(Path(scratch), args.images, max(1, args.workers))
        for round_index in range(args.rounds):
            seconds, ours = time_cliplab(model, preprocess, tokenizer, directory, args.batch_size, args.workers)
            times["cliplab"].append(seconds)
            seconds, theirs = time_clip_benchmark(model, preprocess, tokenizer, directory, args.batch_size,
                                                  args.workers, amp=False)
            times["clip_benchmark"].append(seconds)
            if any(abs(ours[key] - theirs[key]) > 1e-9 for key in ("acc1", "acc5", "mean_per_class_recall")):
                raise SystemExit(f"metrics differ: cliplab {ours}, CLIP_benchmark {theirs}")
            seconds, _ = time_clip_benchmark(model, preprocess, tokenizer, directory, args.batch_size, args.workers,
                                             amp=True)
            times["clip_benchmark_amp"].append(seconds)
            print(f"round {round_index + 1}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items()),
                  flush=True)
    best = {name: min(values) for name, values in times.items()}
    rate = {name: args.images / seconds for name, seconds in best.items()}
    rows = [["`cliplab benchmark` (fp32, inference_mode)", f"{best['cliplab']:.1f}", f"{rate['cliplab']:.2f}", "1.00"],
            ["CLIP_benchmark `evaluate`, amp off (fp32)", f"{best['clip_benchmark']:.1f}",
             f"{rate['clip_benchmark']:.2f}", f"{rate['cliplab'] / rate['clip_benchmark']:.2f}"],
            ["CLIP_benchmark `evaluate`, its default amp (bf16 autocast)", f"{best['clip_benchmark_amp']:.1f}",
             f"{rate['clip_benchmark_amp']:.2f}", f"{rate['cliplab'] / rate['clip_benchmark_amp']:.2f}"]]
    table = format_table(["loop", "best of rounds, s", "images/s", "cliplab speed-up"], rows)
    print(table)
    print(f"metrics (cliplab = CLIP_benchmark amp off): {ours}")
    if not args.no_write:
        body = (f"ViT-B-32, random weights, CPU, {args.images} Fashion-MNIST test images (224 px after the eval "
                f"transform), batch {args.batch_size}, {args.workers} loader workers, 10 classes x 10 templates; "
                f"best of {args.rounds} alternating rounds, each the whole task (class embeddings, decoding, "
                "encoding, metrics). The fp32 rows give equal metrics.\n\n" + table)
        write_section("eval_speed", "Zero-shot throughput: `cliplab benchmark` against CLIP_benchmark's loop", body)


if __name__ == "__main__":
    main()
