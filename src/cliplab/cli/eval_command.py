"""`cliplab eval CHECKPOINT`: zero-shot classification accuracy and image-text retrieval metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

EPILOG = """\
CHECKPOINT is a bundle directory, a training checkpoint (<run>/checkpoints/step_XXXXXXX) or a run
directory (its checkpoints/latest is used).

examples:
  # zero-shot accuracy on the Fashion-MNIST test split (the default)
  cliplab eval logs/tiny-run
  # the first 1000 test images, results also written as JSON
  cliplab eval logs/tiny-run/checkpoints/step_0000500 --max-samples 1000 --out eval.json
  # your own classes: one sub-folder of images per class, your own prompts ('{}' = class name)
  cliplab eval bundle/ --classes-from-folders pets/ --templates templates.txt
  # retrieval metrics on a tab-separated manifest (columns filepath, title), no zero-shot
  cliplab eval bundle/ --retrieval-data val.tsv --dataset-type csv --no-zero-shot
  # retrieval on webdataset shards
  cliplab eval bundle/ --retrieval-data 'shards/val-{000000..000003}.tar' --dataset-type webdataset
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="zero-shot accuracy and retrieval metrics of a checkpoint",
        description="Zero-shot top-1/top-5 and per-class accuracy (Fashion-MNIST test split by default, or "
                    "class-named folders), and image-text retrieval metrics on a manifest or shards.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="bundle, training checkpoint or run directory")
    zero_shot = parser.add_argument_group("zero-shot classification")
    zero_shot.add_argument("--classes-from-folders", metavar="DIR",
                           help="evaluate on DIR/<class name>/<images>; '_' in folder names reads as a space")
    zero_shot.add_argument("--templates", metavar="FILE",
                           help="prompt templates, one per line with '{}' for the class name "
                                "(default: the Fashion-MNIST templates)")
    zero_shot.add_argument("--data-dir", metavar="DIR",
                           help="directory holding the Fashion-MNIST idx files (default: the system copy or cache)")
    zero_shot.add_argument("--max-samples", type=int, metavar="N", help="evaluate on the first N images only")
    zero_shot.add_argument("--no-zero-shot", action="store_true", help="skip zero-shot classification")
    retrieval = parser.add_argument_group("retrieval")
    retrieval.add_argument("--retrieval-data", metavar="PATH",
                           help="manifest (csv) or shard pattern (webdataset) of image-caption pairs")
    retrieval.add_argument("--dataset-type", choices=("csv", "webdataset"), default="csv",
                           help="format of --retrieval-data (default: csv)")
    retrieval.add_argument("--csv-img-key", default="filepath", help="image path column (default: filepath)")
    retrieval.add_argument("--csv-caption-key", default="title", help="caption column (default: title)")
    retrieval.add_argument("--csv-separator", default="\t", help="column separator (default: tab)")
    retrieval.add_argument("--retrieval-max-samples", type=int, metavar="N", help="use the first N pairs only")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward (default: 256)")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes (default: 0)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--out", metavar="FILE.json", help="also write the results as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        results = evaluate(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"cliplab eval: error: {error}", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the requested evaluations, print them, and return the JSON-ready results."""
    from cliplab.bundle import load_model

    _check_args(args)
    loaded = load_model(args.checkpoint, device=args.device or _default_device())
    print(f"checkpoint: {loaded.path}")
    results: dict[str, Any] = {"checkpoint": str(loaded.path)}
    if not args.no_zero_shot:
        results["zero_shot"] = _zero_shot(args, loaded)
    if args.retrieval_data:
        results["retrieval"] = _retrieval(args, loaded)
    return results


def _check_args(args: argparse.Namespace) -> None:
    for name in ("batch_size", "max_samples", "retrieval_max_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.no_zero_shot and not args.retrieval_data:
        raise ValueError("--no-zero-shot leaves nothing to do: also give --retrieval-data")


def _zero_shot(args: argparse.Namespace, loaded) -> dict[str, Any]:
    from cliplab.data import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES
    from cliplab.eval.image_sources import class_folders, labelled_image_batches
    from cliplab.eval.prompts import read_templates
    from cliplab.eval.zero_shot import zero_shot_classifier, zero_shot_evaluate

    if args.classes_from_folders:
        folders = class_folders(args.classes_from_folders)
        classnames, dataset_name = folders.classnames, str(args.classes_from_folders)
        batches = labelled_image_batches(folders.paths, folders.labels, loaded.preprocess, args.batch_size)
    else:
        classnames, dataset_name = FASHION_MNIST_CLASSNAMES, "fashion-mnist test split"
        batches = _fashion_mnist_batches(args, loaded)
    templates = read_templates(args.templates) if args.templates else FASHION_MNIST_TEMPLATES
    classifier = zero_shot_classifier(loaded.model, loaded.tokenizer, classnames, templates, device=loaded.device)
    result = zero_shot_evaluate(loaded.model, classifier, batches, classnames=classnames, device=loaded.device,
                                max_samples=args.max_samples)
    print(f"\nzero-shot on {dataset_name}: {result.count} images, {len(classnames)} classes, "
          f"{len(templates)} templates")
    print(f"  top-1 {100 * result.top1:6.2f}%   top-{min(5, len(classnames))} {100 * result.top5:6.2f}%")
    width = max(len(name) for name in classnames)
    print(f"  {'class':<{width}}  accuracy  images")
    totals = result.confusion.sum(dim=1).tolist()
    for index, name in enumerate(classnames):
        accuracy = result.per_class.get(name)
        shown = "     -" if accuracy is None else f"{100 * accuracy:6.2f}%"
        print(f"  {name:<{width}}  {shown}  {totals[index]:>6}")
    return {"dataset": dataset_name, "templates": list(templates), **result.as_metrics()}


def _fashion_mnist_batches(args: argparse.Namespace, loaded):
    from cliplab.data import DataConfig, build_eval_loader

    config = DataConfig(dataset_type="fashion-mnist", val_data=args.data_dir, workers=args.workers)
    loader, _ = build_eval_loader(config, transform=loaded.preprocess, tokenize=loaded.tokenizer,
                                  batch_size=args.batch_size, pin_memory=False)
    return loader


def _retrieval(args: argparse.Namespace, loaded) -> dict[str, Any]:
    from cliplab.data import DataConfig, build_eval_loader
    from cliplab.eval.embeddings import encode_pairs
    from cliplab.eval.retrieval import retrieval_metrics
    from cliplab.eval.scores import model_logit_scale

    if args.dataset_type == "csv" and not Path(args.retrieval_data).is_file():
        raise FileNotFoundError(f"--retrieval-data: manifest {args.retrieval_data} does not exist")
    config = DataConfig(dataset_type=args.dataset_type, val_data=args.retrieval_data, workers=args.workers,
                        csv_img_key=args.csv_img_key, csv_caption_key=args.csv_caption_key,
                        csv_separator=args.csv_separator)
    loader, _ = build_eval_loader(config, transform=loaded.preprocess, tokenize=loaded.tokenizer,
                                  batch_size=args.batch_size, pin_memory=False)
    image_features, text_features = encode_pairs(loaded.model, loader, device=loaded.device,
                                                  max_samples=args.retrieval_max_samples)
    metrics = retrieval_metrics(image_features, text_features, model_logit_scale(loaded.model))
    print(f"\nretrieval on {args.retrieval_data}: {image_features.shape[0]} image-caption pairs")
    for direction in ("image_to_text", "text_to_image"):
        recalls = "  ".join(f"R@{k} {100 * metrics[f'{direction}_R@{k}']:6.2f}%" for k in (1, 5, 10))
        print(f"  {direction:<14} {recalls}  mean rank {metrics[f'{direction}_mean_rank']:.1f}  "
              f"median rank {metrics[f'{direction}_median_rank']:.0f}")
    return {"data": str(args.retrieval_data), "count": int(image_features.shape[0]), **metrics}


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
