"""`cliplab benchmark`: CLIP_benchmark's zero-shot classification, retrieval and linear probe, its
metrics and result files, for any checkpoint cliplab loads, on any dataset it reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from cliplab.cli.common import (add_command_parser, add_device_argument, add_inference_arguments,
                                compile_if_asked, resolve_device)
from cliplab.errors import InvalidInputError, UserError

HELP = "CLIP_benchmark's tasks and result files: zero-shot, retrieval, linear probe"
DESCRIPTION = ("Evaluate one or more models as CLIP_benchmark 1.6.2's `eval` does (same definitions, same numbers, "
               "same JSON records); the images are decoded once for every model and task. With --build, gather "
               "result files into CLIP_benchmark's CSV and, with --plot, bar charts.")
EPILOG = """\
MODEL is anything cliplab.load reads: a run or step directory, a bundle, an open_clip, OpenAI or
Hugging Face checkpoint, hf-hub:ORG/NAME (--arch names the architecture of an open_clip epoch
checkpoint). DATASET is the built-in name fashion-mnist, a directory in CLIP_benchmark's webdataset
layout ({split}/*.tar, classnames.txt, zeroshot_classification_templates.txt, dataset_type.txt),
an ImageFolder tree (DIR/<class>/<images>, or DIR/{train,test}/<class>/...), or a CSV/TSV or
parquet file (or a directory of {train,test}.csv ...) with an image column and a label column,
captions (one or a JSON list per cell; rows naming one image add up), or both.

Tasks: zeroshot_classification (acc1, acc5, mean_per_class_recall), zeroshot_retrieval
(image_retrieval_recall@k, text_retrieval_recall@k; an image is found when any of its captions
is), linear_probe (lp_acc1, lp_acc5, lp_mean_per_class_recall, weight_decay: CLIP_benchmark's
probe, its weight decay searched on --val-split when given, else 0), or all (default: every task
the dataset supports). Class names and templates: --classnames / --templates, else the dataset's
own files, else the built-in sets by dataset name (ImageNet-1k and CLIP_benchmark's VTAB+ sets;
--templates openai = OpenAI's 80 ImageNet templates, openai-short = open_clip's 7).

examples:
  # the built-in model's run on the built-in dataset, all three tasks
  cliplab benchmark --model logs/tiny-run --dataset fashion-mnist --output 'results/{dataset}_{task}.json'
  # two models, one pass over ImageNet's validation images (ImageFolder of WordNet-id folders)
  cliplab benchmark --model hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K --model logs/my-run \\
      --dataset imagenet/val --task zeroshot_classification --output 'results/{model}_{task}.json'
  # a CLIP_benchmark webdataset download, retrieval at k = 1, 5, 10
  cliplab benchmark --model bundle/ --dataset wds_mscoco_captions --recall-k 1,5,10
  # CLIP_benchmark's layout of the built-in set, then its CSV and charts of many results
  cliplab shards --from fashion-mnist --split test --layout clip_benchmark --out wds_fashion_mnist
  cliplab benchmark --build results/*.json --output benchmark.csv --plot charts/
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from cliplab.eval.benchmark_tasks import ALL, TASKS

    parser = add_command_parser(subparsers, "benchmark", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--model", action="append", metavar="MODEL", help="a checkpoint to evaluate (repeatable)")
    parser.add_argument("--arch", action="append", metavar="NAME",
                        help="architecture of a checkpoint that carries none (once for all models, or once per "
                             "--model); also the result's model name")
    parser.add_argument("--dataset", metavar="DATASET", help="fashion-mnist, or a dataset directory or file (above)")
    parser.add_argument("--task", action="append", choices=TASKS + (ALL,), help=f"repeatable (default: {ALL})")
    parser.add_argument("--output", metavar="TEMPLATE",
                        help="result file(s), a template of {dataset} {model} {pretrained} {task} {language} "
                             "(default: {dataset}_{pretrained}_{model}_{language}_{task}.json); with --build the "
                             "CSV (default: benchmark.csv)")
    parser.add_argument("--batch-size", type=int, default=64, help="images (and texts) per forward (default: 64)")
    add_device_argument(parser)
    add_inference_arguments(parser, workers=4)  # amp is CLIP_benchmark's: fp16 on CUDA, bf16 on a CPU
    parser.add_argument("--recall-k", default="1,5,10", metavar="K,K", help="k of recall@k (default: 1,5,10)")
    parser.add_argument("--language", default="en", help="language of the built-in class names and templates")
    data = parser.add_argument_group("dataset")
    data.add_argument("--dataset-name", metavar="NAME", help="the result's dataset field (default: from the dataset)")
    data.add_argument("--split", default="test", help="the split evaluated (default: test)")
    data.add_argument("--train-split", default="train", help="the linear probe's training split (default: train)")
    data.add_argument("--val-split", default=None,
                      help="the linear probe's validation split for the weight-decay search (default: none)")
    data.add_argument("--classnames", metavar="FILE|NAME", help="class names file, or a built-in set (imagenet1k, ...)")
    data.add_argument("--templates", metavar="FILE|NAME",
                      help="templates file ('{c}' or '{}' = class name), or openai, openai-short, a built-in set")
    data.add_argument("--image-key", help="table: image column")
    data.add_argument("--label-key", help="table: integer label column (default: label)")
    data.add_argument("--caption-key", help="table: caption column")
    data.add_argument("--csv-separator", help="table: separator (default: ',' for .csv, tab otherwise)")
    data.add_argument("--data-dir", metavar="DIR", help="fashion-mnist: directory of its idx files")
    probe = parser.add_argument_group("linear probe (CLIP_benchmark's defaults)")
    probe.add_argument("--fewshot-k", type=int, default=-1, help="training images per class (-1: all)")
    probe.add_argument("--fewshot-epochs", type=int, default=10, help="epochs (default: 10)")
    probe.add_argument("--fewshot-lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    probe.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    probe.add_argument("--feature-root", metavar="DIR",
                       help="feature cache (default: $CLIPLAB_CACHE/benchmark-features, ~/.cache/cliplab/...)")
    probe.add_argument("--no-feature-cache", action="store_true", help="neither read nor write cached features")
    results = parser.add_argument_group("result files")
    results.add_argument("--build", nargs="+", metavar="FILE", help="result files (or directories of them) to gather")
    results.add_argument("--plot", metavar="DIR", help="one bar chart per task comparing the models (of --build's "
                                                      "files, or of this run)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.build:
        return _build(args)
    if not args.model or not args.dataset:
        raise UserError("give --model and --dataset (or --build FILES)")
    return _evaluate(args)


def _build(args: argparse.Namespace) -> int:
    from cliplab.eval.benchmark_results import plot_charts, read_records, write_csv

    records = [record for _, record in read_records(args.build)]
    output = Path(args.output or "benchmark.csv")
    print(f"wrote {write_csv(records, output)} ({len(records)} results)")
    if args.plot:
        for path in plot_charts(records, Path(args.plot)):
            print(f"wrote {path}")
    return 0


def _recall_k(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", ",").split(",") if part)
    except ValueError:
        raise InvalidInputError(f"--recall-k {text!r}: expected integers such as 1,5,10") from None
    if not values or min(values) < 1:
        raise InvalidInputError(f"--recall-k {text!r}: expected positive integers such as 1,5,10")
    return values


def _architectures(args: argparse.Namespace) -> list[str | None]:
    if not args.arch:
        return [None] * len(args.model)
    if len(args.arch) == 1:
        return list(args.arch) * len(args.model)
    if len(args.arch) != len(args.model):
        raise UserError(f"--arch given {len(args.arch)} times for {len(args.model)} --model: give it once, or once "
                        "per --model")
    return list(args.arch)


def _evaluate(args: argparse.Namespace) -> int:
    from cliplab.data.benchmark import DatasetOptions, TableKeys, open_benchmark_dataset
    from cliplab.eval.benchmark import BenchmarkOptions, resolve_tasks, run_benchmark
    from cliplab.eval.benchmark_results import (DEFAULT_OUTPUT, check_writable, output_paths, result_record,
                                                write_record)
    from cliplab.eval.feature_cache import default_root
    from cliplab.eval.linear_probe import LinearProbeConfig

    device = resolve_device(args.device)
    precision = args.precision or ("amp" if device.type == "cuda" else "fp32")
    options = BenchmarkOptions(
        tasks=tuple(args.task or ("all",)), split=args.split, train_split=args.train_split, val_split=args.val_split,
        recall_k=_recall_k(args.recall_k), batch_size=args.batch_size, workers=args.workers, language=args.language,
        classnames=args.classnames, templates=args.templates,
        probe=LinearProbeConfig(epochs=args.fewshot_epochs, lr=args.fewshot_lr, batch_size=args.batch_size,
                                fewshot_k=args.fewshot_k, seed=args.seed),
        feature_root=None if args.no_feature_cache else Path(args.feature_root or default_root()))
    dataset = open_benchmark_dataset(args.dataset, DatasetOptions(
        keys=TableKeys(image_key=args.image_key, label_key=args.label_key, caption_key=args.caption_key,
                       separator=args.csv_separator), name=args.dataset_name, data_dir=args.data_dir))
    print(f"dataset: {dataset.name} ({dataset.layout}, {dataset.location}; splits {', '.join(dataset.split_names)})")
    architectures = _architectures(args)
    tasks = resolve_tasks(dataset, options)
    planned = [result_record(dataset.name, args.language, {"model": _model_name(spec, arch), "pretrained": spec,
                                                           "task": task, "metrics": {}})
               for spec, arch in zip(args.model, architectures) for task in tasks]
    check_writable(output_paths(args.output or DEFAULT_OUTPUT, planned))  # before hours of work, not after
    models = [_load(spec, arch, device, precision, args) for spec, arch in zip(args.model, architectures)]
    results = run_benchmark(models, dataset, options, progress=_progress)
    records = [result_record(dataset.name, args.language, result) for result in results]
    for record, path in zip(records, output_paths(args.output or DEFAULT_OUTPUT, records)):
        print(f"wrote {write_record(record, path)}")
    if args.plot:
        from cliplab.eval.benchmark_results import plot_charts

        for path in plot_charts(records, Path(args.plot)):
            print(f"wrote {path}")
    return 0


def _model_name(spec: str, arch: str | None) -> str:
    """The result's `model`: the architecture when named, else the checkpoint's file or folder name."""
    from cliplab.pretrained.formats.prefixes import HF_HUB_PREFIX

    return arch or Path(spec[len(HF_HUB_PREFIX):] if spec.startswith(HF_HUB_PREFIX) else spec.rstrip("/")).name


def _progress(what: str, total: int, unit: str):
    from cliplab.console import Progress

    return Progress(total, desc=what, unit=unit, line_interval_s=10.0)


def _load(spec: str, arch: str | None, device, precision: str, args: argparse.Namespace):
    from cliplab.model_io import load_model
    from cliplab.eval.benchmark import BenchmarkModel
    from cliplab.eval.feature_cache import checkpoint_fingerprint
    from cliplab.eval.split_features import autocast_for

    autocast = autocast_for(precision, device)
    loaded = load_model(spec, model=arch, device=device)
    print(f"model: {spec} ({loaded.format}, {loaded.path})")
    compile_if_asked(args, loaded.model)
    preprocess_key = repr(loaded.model.config.preprocess)
    return BenchmarkModel(
        name=_model_name(spec, arch), pretrained=spec, model=loaded.model, preprocess=loaded.preprocess,
        tokenizer=loaded.tokenizer,
        device=device, preprocess_key=preprocess_key, autocast=autocast,
        cache_key={"checkpoint": checkpoint_fingerprint(loaded.path), "arch": arch, "precision": precision,
                   "compiled": args.compile,
                   "preprocess": preprocess_key})
