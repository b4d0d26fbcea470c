"""`cliplab eval CHECKPOINT`: zero-shot classification accuracy and image-text retrieval metrics."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cliplab.cli.common import (add_checkpoint_argument, add_command_parser, finish_model_use_parser, load_for_use,
                                require_at_least, write_out)
from cliplab.data.sources import SOURCES, data_source
from cliplab.errors import InvalidInputError, UserError

if TYPE_CHECKING:
    from cliplab.data import DataConfig

# the training sources whose data --retrieval-data can name (a built-in one has no location to give)
RETRIEVAL_SOURCES = tuple(source for source in SOURCES if source.trains and not source.built_in)
RETRIEVAL_DATA_TYPES = tuple(source.name for source in RETRIEVAL_SOURCES)
PROGRESS_LINE_INTERVAL_S = 10.0

HELP = "zero-shot accuracy and retrieval metrics of a checkpoint"
DESCRIPTION = ("Zero-shot top-1/top-5 and per-class accuracy (Fashion-MNIST test split by default, or class-named "
               "folders), and image-text retrieval metrics on a manifest, shards or parquet files.")
EPILOG = """\
CHECKPOINT is a bundle directory, a training checkpoint (<run>/checkpoints/step_XXXXXXX), a run
directory (its newest checkpoint that verifies is used), or an open_clip, OpenAI or Hugging Face
checkpoint.

What is evaluated, unless --zero-shot / --no-zero-shot / --retrieval-data say otherwise: what the
run was trained for, read from its config.json. A Fashion-MNIST run: zero-shot on the test split. A
csv, webdataset or parquet run: retrieval on its validation data, no Fashion-MNIST zero-shot (its
classes are not the run's). A bundle (no run config): zero-shot, unless --retrieval-data is given.

examples:
  # zero-shot accuracy on the Fashion-MNIST test split (a Fashion-MNIST run, or a bundle)
  cliplab eval logs/tiny-run
  # the first 1000 test images, results also written as JSON
  cliplab eval logs/tiny-run/checkpoints/step_0000500 --max-samples 1000 --out eval.json
  # your own classes: one sub-folder of images per class, your own prompts ('{}' = class name)
  cliplab eval bundle/ --classes-from-folders pets/ --templates templates.txt
  # a run trained on a manifest: retrieval on its own validation data, or on another manifest
  cliplab eval logs/csv-run
  cliplab eval logs/csv-run --retrieval-data val.tsv
  # retrieval on webdataset shards, or on parquet files with other column names
  cliplab eval bundle/ --retrieval-data 'shards/val-{000000..000003}.tar' --dataset-type webdataset
  cliplab eval bundle/ --retrieval-data data/test.parquet --dataset-type parquet --parquet-caption-key alt_text
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "eval", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    add_checkpoint_argument(parser)
    zero_shot = parser.add_argument_group("zero-shot classification")
    zero_shot.add_argument("--classes-from-folders", metavar="DIR",
                           help="evaluate on DIR/<class name>/<images>; '_' in folder names reads as a space")
    zero_shot.add_argument("--templates", metavar="FILE",
                           help="prompt templates, one per line with '{}' for the class name "
                                "(default: the Fashion-MNIST templates)")
    zero_shot.add_argument("--data-dir", metavar="DIR",
                           help="directory holding the Fashion-MNIST idx files (default: the system copy or cache)")
    zero_shot.add_argument("--max-samples", type=int, metavar="N", help="evaluate on the first N images only")
    zero_shot.add_argument("--zero-shot", action=argparse.BooleanOptionalAction, default=None,
                           help="run zero-shot classification, or not (default: what the run trained for, above)")
    retrieval = parser.add_argument_group("retrieval")
    retrieval.add_argument("--retrieval-data", metavar="PATH",
                           help="image-caption pairs, by --dataset-type: " + "; ".join(
                               f"{source.name}: {source.location}" for source in RETRIEVAL_SOURCES)
                           + f" (default: a {', '.join(RETRIEVAL_DATA_TYPES)} run's validation data)")
    retrieval.add_argument("--dataset-type", choices=RETRIEVAL_DATA_TYPES, default="csv",
                           help="format of --retrieval-data (default: csv)")
    retrieval.add_argument("--csv-img-key", default="filepath", help="image path column (default: filepath)")
    retrieval.add_argument("--csv-caption-key", default="title", help="caption column (default: title)")
    retrieval.add_argument("--csv-separator", default="\t", help="column separator (default: tab)")
    retrieval.add_argument("--parquet-image-key", default=None,
                           help="parquet image column (default: the first of image, jpg, png)")
    retrieval.add_argument("--parquet-caption-key", default=None,
                           help="parquet caption column (default: the first of caption, text, txt)")
    retrieval.add_argument("--retrieval-max-samples", type=int, metavar="N", help="use the first N pairs only")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes (default: 0)")
    return finish_model_use_parser(parser, run, batch_size=256, out="the results")


def run(args: argparse.Namespace) -> int:
    results = evaluate(args)
    write_out(args.out, results)
    return 0


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the requested evaluations, print them, and return the JSON-ready results."""
    _check_args(args)
    loaded = load_for_use(args.checkpoint, args.device)
    print(f"checkpoint: {loaded.path}")
    trained_on = run_data_config(loaded.path)
    run_zero_shot = zero_shot_wanted(args, trained_on)
    retrieval_data = retrieval_data_config(args, trained_on)
    if not run_zero_shot and trained_on is not None and data_source(trained_on.dataset_type).zero_shot is None:
        print(f"no Fashion-MNIST zero-shot: the run trained on {trained_on.dataset_type} data (--zero-shot runs it)")
    if not run_zero_shot and retrieval_data is None:
        raise UserError("nothing to evaluate: give --retrieval-data (the run has no validation data to default to)"
                        + ("" if args.zero_shot is False else ", or --zero-shot"))
    results: dict[str, Any] = {"checkpoint": str(loaded.path)}
    if run_zero_shot:
        results["zero_shot"] = _zero_shot(args, loaded)
    if retrieval_data is not None:
        results["retrieval"] = _retrieval(args, loaded, retrieval_data)
    return results


def _check_args(args: argparse.Namespace) -> None:
    for name in ("batch_size", "max_samples", "retrieval_max_samples"):
        require_at_least(f"--{name.replace('_', '-')}", getattr(args, name), 1)
    require_at_least("--workers", args.workers, 0)
    if args.zero_shot is False and args.classes_from_folders:
        raise UserError("--no-zero-shot contradicts --classes-from-folders, which asks for zero-shot")


def run_data_config(bundle_dir: Path) -> DataConfig | None:
    """The data section of the training run that `bundle_dir` (a resolved checkpoint) belongs to:
    from <run>/config.json when it is <run>/checkpoints/step_XXXXXXX; None for a bundle saved elsewhere."""
    from cliplab.eval.run_layout import CHECKPOINTS_DIR, RUN_CONFIG_FILE
    from cliplab.train.config.io import read_data_section

    config_path = bundle_dir.parent.parent / RUN_CONFIG_FILE
    if bundle_dir.parent.name != CHECKPOINTS_DIR or not config_path.is_file():
        return None
    return read_data_section(config_path)


def zero_shot_wanted(args: argparse.Namespace, trained_on: DataConfig | None) -> bool:
    """--zero-shot / --no-zero-shot when given; with --classes-from-folders, yes; else what the run
    trained for (zero-shot for a Fashion-MNIST run only); for a bundle, yes unless --retrieval-data."""
    if args.zero_shot is not None:
        return args.zero_shot
    if args.classes_from_folders:
        return True
    if trained_on is None:
        return not args.retrieval_data
    return data_source(trained_on.dataset_type).zero_shot is not None


def retrieval_data_config(args: argparse.Namespace, trained_on: DataConfig | None) -> DataConfig | None:
    """The data config of the retrieval pairs: --retrieval-data with its flags, else the validation
    data of a csv, webdataset or parquet run (None: no retrieval)."""
    from cliplab.data import DataConfig

    if args.retrieval_data is None:
        if trained_on is None or data_source(trained_on.dataset_type).built_in or trained_on.val_data is None:
            return None
        return replace(trained_on, workers=args.workers)
    check = data_source(args.dataset_type).check
    try:
        if check is not None:
            check(args.retrieval_data)
    except UserError as error:
        raise type(error)(f"--retrieval-data: {error}") from None
    try:
        return DataConfig(dataset_type=args.dataset_type, val_data=args.retrieval_data, workers=args.workers,
                          csv_img_key=args.csv_img_key, csv_caption_key=args.csv_caption_key,
                          csv_separator=args.csv_separator, parquet_image_key=args.parquet_image_key,
                          parquet_caption_key=args.parquet_caption_key)
    except ValueError as error:  # DataConfig validates values only: each failure is a flag's value
        raise InvalidInputError(f"--retrieval-data options: {error}") from None


def _zero_shot(args: argparse.Namespace, loaded) -> dict[str, Any]:
    from cliplab.data import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES
    from cliplab.eval.image_sources import class_folders, labelled_image_batches
    from cliplab.eval.prompts import read_templates
    from cliplab.eval.chance import chance_of_top_k, percent
    from cliplab.eval.zero_shot import zero_shot_classifier, zero_shot_evaluate

    if args.classes_from_folders:
        folders = class_folders(args.classes_from_folders)
        classnames, dataset_name = folders.classnames, str(args.classes_from_folders)
        batches = labelled_image_batches(folders.paths, folders.labels, loaded.preprocess, args.batch_size)
        count = len(folders.paths)
    else:
        classnames, dataset_name = FASHION_MNIST_CLASSNAMES, "fashion-mnist test split"
        batches, count = _fashion_mnist_batches(args, loaded)
    templates = read_templates(args.templates) if args.templates else FASHION_MNIST_TEMPLATES
    classifier = zero_shot_classifier(loaded.model, loaded.tokenizer, classnames, templates, device=loaded.device)
    progress = _progress("zero-shot", "img", count, args.max_samples)
    try:
        result = zero_shot_evaluate(loaded.model, classifier, batches, classnames=classnames, device=loaded.device,
                                    max_samples=args.max_samples, progress=progress)
    finally:
        progress.close()
    print(f"\nzero-shot on {dataset_name}: {result.count} images, {len(classnames)} classes, "
          f"{len(templates)} templates")
    top_k = min(5, len(classnames))
    print(f"  top-1 {100 * result.top1:6.2f}%   top-{top_k} {100 * result.top5:6.2f}%   mean per-class recall "
          f"{100 * result.mean_per_class_recall:6.2f}%   (chance {percent(chance_of_top_k(1, len(classnames)))}, "
          f"{percent(chance_of_top_k(top_k, len(classnames)))}, {percent(chance_of_top_k(1, len(classnames)))}: the "
          f"true class among the 1 or {top_k} closest class prompts)")
    width = max(len(name) for name in classnames)
    print(f"  {'class':<{width}}  accuracy  images")
    totals = result.confusion.sum(dim=1).tolist()
    for index, name in enumerate(classnames):
        accuracy = result.per_class.get(name)
        shown = "     -" if accuracy is None else f"{100 * accuracy:6.2f}%"
        print(f"  {name:<{width}}  {shown}  {totals[index]:>6}")
    return {"dataset": dataset_name, "templates": list(templates), **result.as_metrics()}


def _fashion_mnist_batches(args: argparse.Namespace, loaded):
    """The test split's loader and its image count."""
    from cliplab.data import DataConfig, build_eval_loader, build_map_dataset

    config = DataConfig(dataset_type="fashion-mnist", val_data=args.data_dir, workers=args.workers)
    dataset = build_map_dataset(config, train=False)
    loader, _ = build_eval_loader(config, transform=loaded.preprocess, tokenize=loaded.tokenizer,
                                  batch_size=args.batch_size, pin_memory=False, dataset=dataset)
    return loader, len(dataset)


def _progress(desc: str, unit: str, count: int | None, max_samples: int | None):
    """The console progress of an evaluation over `count` items (None: unknown), `max_samples` at most."""
    from cliplab.console import Progress

    if max_samples is not None:
        count = max_samples if count is None else min(count, max_samples)
    return Progress(count, desc=desc, unit=unit, line_interval_s=PROGRESS_LINE_INTERVAL_S)


def _retrieval_pairs(data: DataConfig):
    """(the dataset of the retrieval pairs, their count): the dataset read once for map-style data;
    None for a streamed source (webdataset shards), whose count is its `sample_count`
    (--val-num-samples or the one recorded beside them; None when neither says)."""
    from cliplab.data import build_map_dataset

    source = data_source(data.dataset_type)
    if source.iterable is not None:
        return None, source.iterable.sample_count(data, False)
    dataset = build_map_dataset(data, train=False)
    return dataset, len(dataset)


def _retrieval(args: argparse.Namespace, loaded, data: DataConfig) -> dict[str, Any]:
    from cliplab.data import build_eval_loader
    from cliplab.eval.chance import LOW_WHEN_CAPTIONS_ARE_SHARED, chance_of_top_k
    from cliplab.eval.retrieval import evaluate_retrieval

    dataset, pairs = _retrieval_pairs(data)
    loader, _ = build_eval_loader(data, transform=loaded.preprocess, tokenize=loaded.tokenizer,
                                  batch_size=args.batch_size, pin_memory=False, dataset=dataset)
    progress = _progress("retrieval", "pairs", pairs, args.retrieval_max_samples)
    try:
        metrics, count = evaluate_retrieval(loaded.model, loader, device=loaded.device,
                                            max_samples=args.retrieval_max_samples, progress=progress)
    finally:
        progress.close()
    captions = metrics.get("retrieval_caption_count")
    print(f"\nretrieval on {data.val_data}: " + (f"{count} image-caption pairs" if captions is None else
          f"{count} images, {captions} captions (an image is found when any of its captions is, CLIP_benchmark's "
          "rule)"))
    for direction in ("image_to_text", "text_to_image"):
        recalls = "  ".join(f"R@{k} {100 * metrics[f'{direction}_R@{k}']:6.2f}%" for k in (1, 5, 10)
                            if f"{direction}_R@{k}" in metrics)
        ranks = (f"  mean rank {metrics[f'{direction}_mean_rank']:.1f}  median rank "
                 f"{metrics[f'{direction}_median_rank']:.0f}") if captions is None else ""
        print(f"  {direction:<14} {recalls}{ranks}")
    if count and captions is None:
        chances = "  ".join(f"R@{k} {100 * chance_of_top_k(k, count):6.2f}%" for k in (1, 5, 10))
        print(f"  chance         {chances}: a hit is the pair's own caption (image) among the k closest of all "
              f"{count}, {LOW_WHEN_CAPTIONS_ARE_SHARED}")
    return {"data": str(data.val_data), "count": count, **metrics}
