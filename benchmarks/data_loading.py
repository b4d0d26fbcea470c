"""Data loading throughput: the built-in dataset, a CSV manifest of PNGs, the same as shards and as parquet.

Run from the repository root: `python benchmarks/data_loading.py [--samples 6000] [--batch-size 256]`.
Writes section `data_loading` of BENCHMARKS.md. The shards and the parquet files hold the manifest's
own PNG bytes and captions, so every source but the built-in one decodes the same images. Where the tiny model and ClipLoss exist, also
measures the share of a training step spent waiting for data in the tiny config.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.report import format_table, write_section  # noqa: E402
from cliplab.data import CsvDataset, DataConfig, FashionMnistDataset, build_train_loader  # noqa: E402
from cliplab.data.fashion_mnist import fashion_mnist_caption_corpus  # noqa: E402
from cliplab.data import parquet_dataset  # noqa: E402
from cliplab.data.webdataset_writer import dataset_records, write_shards  # noqa: E402
from cliplab.data.tokenizer import Tokenizer  # noqa: E402
from cliplab.data.transforms import PreprocessConfig, image_transform  # noqa: E402
from cliplab.train.config import DEFAULT_MODEL_OVERRIDES  # noqa: E402

CONTEXT_LENGTH = DEFAULT_MODEL_OVERRIDES["tiny"]["text.context_length"]
# img2dataset and the Hugging Face hub write row groups of about 100 rows; 1000 shows the cost of
# larger ones (a random read decodes the whole row group that holds the sample).
PARQUET_ROW_GROUP_SIZES = (100, 1000)
NO_CACHE = ", no cache hits"


def write_png_manifest(directory: Path, count: int) -> Path:
    """The first `count` Fashion-MNIST train images as PNG files plus a TSV manifest."""
    dataset = FashionMnistDataset(split="train")
    (directory / "images").mkdir(parents=True)
    lines = ["filepath\ttitle\tlabel"]
    for index in range(count):
        sample = dataset.read(index, epoch=0)
        Image.fromarray(dataset.images[index]).save(directory / "images" / f"{index}.png")
        lines.append(f"images/{index}.png\t{sample.caption}\t{sample.label}")
    manifest = directory / "train.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def write_parquet(records, path: Path, *, row_group_size: int) -> Path:
    """The shard records (PNG bytes, caption, label) as one parquet file in img2dataset's columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(records)
    table = pa.table({"jpg": pa.array([row.image_bytes for row in rows], pa.binary()),
                      "txt": [row.caption for row in rows], "label": [row.label for row in rows]})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def samples_per_second(config: DataConfig, *, transform, tokenize, batch_size: int,
                       workers: int) -> float:
    loader, num_batches = build_train_loader(
        config, transform=transform, tokenize=tokenize, batch_size=batch_size, rank=0,
        world_size=1, seed=0, epoch=0, workers=workers, pin_memory=False)
    start = time.perf_counter()
    count = sum(len(batch["sample_ids"]) for batch in loader)
    return count / (time.perf_counter() - start)


def data_wait_fraction(config: DataConfig, *, transform, tokenize, batch_size: int,
                       workers: int, steps: int) -> tuple[float, float] | None:
    """(share of step time spent waiting for the next batch, step time in ms), or None."""
    try:
        from cliplab.losses.clip import ClipLoss
        from cliplab.models import create_model
    except ImportError:
        return None
    model = create_model("tiny", output_dict=True, **DEFAULT_MODEL_OVERRIDES["tiny"])  # the default run's model
    loss_fn = ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader, _ = build_train_loader(config, transform=transform, tokenize=tokenize,
                                   batch_size=batch_size, rank=0, world_size=1, seed=0, epoch=0,
                                   workers=workers, pin_memory=False)
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per epoch, not per step
    waited = computed = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(iterator)
        ready = time.perf_counter()
        output = model(batch["images"], batch["tokens"])
        loss = loss_fn(output["image_features"], output["text_features"], output["logit_scale"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        waited += ready - start
        computed += time.perf_counter() - ready
    return waited / (waited + computed), 1000 * (waited + computed) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2, help="epochs timed per row (the best is kept)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    transform = image_transform(PreprocessConfig(image_size=28), train=True)
    # the default run's context (its captions need at most 18 tokens)
    tokenize = Tokenizer.train(fashion_mnist_caption_corpus(), vocab_size=1024, context_length=CONTEXT_LENGTH)

    with tempfile.TemporaryDirectory(prefix="cliplab-bench-") as scratch:
        scratch = Path(scratch)
        manifest = write_png_manifest(scratch / "png", args.samples)
        cache_bytes = parquet_dataset.ROW_GROUP_CACHE_BYTES
        records = list(dataset_records(CsvDataset(manifest, label_key="label")))
        report = write_shards(iter(records), out_dir=scratch / "shards", prefix="train",
                              samples_per_shard=args.samples // 4)
        parquet = {size: write_parquet(records, scratch / f"train-rg{size}.parquet", row_group_size=size)
                   for size in PARQUET_ROW_GROUP_SIZES}
        sources = {
            "fashion-mnist (idx in memory)": DataConfig(train_num_samples=args.samples),
            "CSV manifest of PNG files": DataConfig(dataset_type="csv", train_data=str(manifest),
                                                    csv_label_key="label"),
            # the epoch's size comes from train-info.json, written beside the shards
            "webdataset shards (4 tars)": DataConfig(dataset_type="webdataset",
                                                     train_data=report.pattern),
            **{f"parquet, row groups of {size}{suffix}": DataConfig(
                dataset_type="parquet", train_data=str(path), parquet_label_key="label")
               for size, path in parquet.items() for suffix in ("", NO_CACHE)},
        }
        rows = []
        for name, config in sources.items():
            # without the cache every read decodes its row group: a dataset far larger than the cache
            parquet_dataset.ROW_GROUP_CACHE_BYTES = 0 if name.endswith(NO_CACHE) else cache_bytes
            for workers in (0, 2):
                # the best of several epochs: other jobs on the shared machine only ever slow one down
                rate = max(samples_per_second(config, transform=transform, tokenize=tokenize,
                                              batch_size=args.batch_size, workers=workers)
                           for _ in range(args.repeats))
                rows.append([name, workers, f"{rate:,.0f}"])
                print(f"{name:32s} workers={workers}  {rate:10,.0f} samples/s", flush=True)
        table = format_table(["source", "workers", "samples/s"], rows)
        body = (f"{args.samples} samples per source (one epoch, best of {args.repeats}), batch {args.batch_size}, "
                "28x28 images "
                "through the training transform (random resized crop, normalise) and the BPE "
                f"tokenizer (context {CONTEXT_LENGTH}); the machine's 2 cores are shared with other jobs, so "
                "workers=2 competes with the main process. The shards and the parquet files hold the "
                "manifest's PNG bytes and captions; parquet is read in a random order by row group, "
                f"keeping up to {cache_bytes // 2**20} MiB of row groups per process (which holds all "
                f"{args.samples} samples here); '{NO_CACHE.strip(', ')}' reads a row group for every sample, "
                "as with a dataset far larger than the cache.\n\n" + table)
        wait_rows = []
        for workers in (0, 2):
            measured = data_wait_fraction(sources["fashion-mnist (idx in memory)"],
                                          transform=transform, tokenize=tokenize,
                                          batch_size=args.batch_size, workers=workers,
                                          steps=args.steps)
            if measured is None:
                break
            fraction, step_ms = measured
            wait_rows.append([workers, f"{step_ms:.0f}", f"{fraction:.1%}"])
            print(f"tiny model step, workers={workers}: {step_ms:.0f} ms, {fraction:.1%} waiting "
                  "for data", flush=True)
        if wait_rows:
            body += ("\n\nShare of a training step (tiny model as in the default run, ClipLoss, AdamW, batch "
                     f"{args.batch_size}, {args.steps} steps after the first batch) spent waiting "
                     "for the next batch of Fashion-MNIST:\n\n"
                     + format_table(["workers", "step ms", "waiting for data"], wait_rows))
        else:
            body += ("\n\nThe data-wait share of a training step is left for the training "
                     "benchmark (the tiny model or ClipLoss was not importable).")
    write_section("data_loading", "Data loading", body)
    print(table)


if __name__ == "__main__":
    main()
