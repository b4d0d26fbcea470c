"""`cliplab shards`: write webdataset tar shards from the built-in dataset or a CSV/TSV manifest, in
img2dataset's layout (for training) or CLIP_benchmark's (for `cliplab benchmark` and CLIP_benchmark)."""

from __future__ import annotations

import argparse

from cliplab.cli.common import require_at_least

EXAMPLES = """\
examples:
  # the built-in dataset, so the shard path works end to end without external data
  cliplab shards --from fashion-mnist --split train --out shards/fmnist --samples-per-shard 10000
  cliplab shards --from fashion-mnist --split test --out shards/fmnist --samples-per-shard 10000

  # a manifest (tab-separated, columns filepath and title, paths relative to the manifest)
  cliplab shards --from data/train.tsv --out shards/mydata --samples-per-shard 5000

  # a comma-separated manifest with other column names
  cliplab shards --from data/train.csv --csv-separator , --csv-img-key image \\
      --csv-caption-key caption --out shards/mydata

  # CLIP_benchmark's layout (DIR/{split}/0.tar .., nshards.txt, classnames.txt, templates) for
  # cliplab benchmark and CLIP_benchmark's wds/ datasets: labels (.cls), captions (.txt, a line each)
  cliplab shards --from fashion-mnist --split test --layout clip_benchmark --out wds_fashion_mnist
  cliplab shards --from fashion-mnist --split train --layout clip_benchmark --out wds_fashion_mnist

then train on them (the sample count is read from the train-info.json written beside them):
  cliplab train --dataset-type webdataset --train-data 'shards/fmnist/train-{000000..000005}.tar'
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "shards", help="write webdataset tar shards (img2dataset layout)",
        description="Write webdataset tar shards in img2dataset layout (KEY.png/.jpg/.webp, "
                    "KEY.txt, KEY.json) from the built-in Fashion-MNIST or a CSV/TSV "
                    "manifest. Bad samples are skipped and reported.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="'fashion-mnist', or the path of a CSV/TSV manifest")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write shards to")
    parser.add_argument("--layout", choices=("img2dataset", "clip_benchmark"), default="img2dataset",
                        help="img2dataset (default: KEY.png/.txt/.json, for training) or clip_benchmark "
                             "(DIR/{split}/N.tar with .png/.cls/.txt, for benchmarking; --from fashion-mnist or any "
                             "dataset cliplab benchmark reads)")
    parser.add_argument("--split", choices=("train", "test"), default="train",
                        help="fashion-mnist split (default: train); also the shard name prefix")
    parser.add_argument("--samples-per-shard", type=int, default=10000, metavar="N",
                        help="samples per tar file (default: 10000)")
    parser.add_argument("--max-samples", type=int, default=None, metavar="N",
                        help="write only the first N samples of the source")
    parser.add_argument("--prefix", default=None,
                        help="shard file name prefix (default: the split for fashion-mnist, else "
                             "the manifest's name)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="fashion-mnist: directory holding the idx files (else the system "
                             "copy, the cache, or a download)")
    parser.add_argument("--caption-seed", type=int, default=0,
                        help="fashion-mnist: seed of the generated captions (default: 0)")
    parser.add_argument("--csv-img-key", default="filepath", help="manifest image path column")
    parser.add_argument("--csv-caption-key", default="title", help="manifest caption column")
    parser.add_argument("--csv-label-key", default=None, help="manifest integer label column")
    parser.add_argument("--csv-separator", default="\t",
                        help="manifest column separator (default: tab)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cliplab.data import DataConfig, build_map_dataset
    from cliplab.data.csv_dataset import CsvDataset
    from cliplab.data.webdataset_writer import dataset_records, write_shards
    from cliplab.data.sources import SOURCES

    require_at_least("--samples-per-shard", args.samples_per_shard, 1)
    require_at_least("--max-samples", args.max_samples, 1)
    if args.layout == "clip_benchmark":
        return _clip_benchmark_layout(args)
    if args.source in {source.name for source in SOURCES if source.built_in}:
        config = DataConfig(dataset_type=args.source, train_data=args.data_dir, val_data=args.data_dir,
                            caption_seed=args.caption_seed)
        dataset = build_map_dataset(config, train=args.split == "train")
        prefix = args.prefix or args.split
    else:
        dataset = CsvDataset(args.source, img_key=args.csv_img_key, caption_key=args.csv_caption_key,
                             separator=args.csv_separator, label_key=args.csv_label_key)
        prefix = args.prefix or Path(args.source).stem
    count = len(dataset) if args.max_samples is None else min(args.max_samples, len(dataset))
    report = write_shards(
        dataset_records(dataset, indices=range(count)), out_dir=args.out, prefix=prefix,
        samples_per_shard=args.samples_per_shard,
        on_shard_written=lambda path, done: print(f"wrote {path} ({done}/{count} samples)"))
    print(f"{report.num_samples} samples in {len(report.shard_paths)} shards: {report.pattern}")
    if report.skipped:
        print(f"skipped {report.skipped} bad samples, e.g.:\n  "
              + "\n  ".join(report.skipped_examples[:10]))
    return 0


def _clip_benchmark_layout(args: argparse.Namespace) -> int:
    from cliplab.data.benchmark import DatasetOptions, open_benchmark_dataset
    from cliplab.data.benchmark.wds_writer import write_clip_benchmark_split

    dataset = open_benchmark_dataset(args.source, DatasetOptions(data_dir=args.data_dir))
    split = dataset.split(args.split)
    written = write_clip_benchmark_split(
        split, args.out, classnames=dataset.classnames.values if dataset.classnames else None,
        templates=dataset.templates.values if dataset.templates else None, samples_per_shard=args.samples_per_shard,
        max_samples=args.max_samples, on_shard_written=lambda path, done: print(f"wrote {path} ({done} samples)"))
    print(f"{written.num_samples} samples in {len(written.shards)} shards: {written.directory}")
    return 0
