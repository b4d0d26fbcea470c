"""`cliplab classify CHECKPOINT IMAGE... --labels a,b,c`: the most probable labels of each image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

EPILOG = """\
Probabilities are a softmax over the labels of logit_scale * cosine similarity, so they sum to one
over the labels given. Each label is embedded through every template and the embeddings averaged.

examples:
  cliplab classify logs/tiny-run shoe.png shirt.jpg --labels "sneaker,sandal,shirt,bag"
  cliplab classify bundle/ images/*.png --labels "cat,dog,bird" --top-k 2 --templates prompts.txt
  cliplab classify bundle/ photo.jpg --labels "a,b" --out predictions.json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "classify",
        help="zero-shot classify images among labels you give",
        description="Rank the given labels for each image by zero-shot probability.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="bundle, training checkpoint or run directory")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify")
    parser.add_argument("--labels", required=True, help="comma-separated candidate labels, e.g. 'cat,dog,bird'")
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="labels shown per image (default: min(5, number of labels))")
    parser.add_argument("--templates", metavar="FILE",
                        help="prompt templates, one per line with '{}' for the label (default: 'a photo of the {}.')")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward (default: 64)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--out", metavar="FILE.json", help="also write the predictions as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        predictions = classify(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"cliplab classify: error: {error}", file=sys.stderr)
        return 2
    for prediction in predictions:
        ranked = ", ".join(f"{label} {100 * probability:.1f}%" for label, probability in prediction["top_k"])
        print(f"{prediction['image']}: {ranked}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(predictions, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


def classify(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per image: {"image": path, "top_k": [[label, probability], ...], "probabilities": {label: p}}."""
    from cliplab.bundle import load_model
    from cliplab.eval.embeddings import encode_image_batches
    from cliplab.eval.image_sources import image_batches
    from cliplab.eval.prompts import DEFAULT_TEMPLATES, parse_labels, read_templates
    from cliplab.eval.scores import label_probabilities, model_logit_scale, top_k_labels
    from cliplab.eval.zero_shot import zero_shot_classifier

    labels = parse_labels(args.labels)
    top_k = min(5, len(labels)) if args.top_k is None else args.top_k
    if not 1 <= top_k <= len(labels):
        raise ValueError(f"--top-k must be in [1, {len(labels)}] for {len(labels)} labels, got {top_k}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = [Path(image) for image in args.images]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"IMAGE {path} does not exist")
    templates = read_templates(args.templates) if args.templates else DEFAULT_TEMPLATES
    loaded = load_model(args.checkpoint, device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    class_embeddings = zero_shot_classifier(loaded.model, loaded.tokenizer, labels, templates, device=loaded.device)
    image_features = encode_image_batches(loaded.model, image_batches(paths, loaded.preprocess, args.batch_size),
                                          device=loaded.device)
    probabilities = label_probabilities(image_features, class_embeddings.cpu(), model_logit_scale(loaded.model))
    ranked = top_k_labels(probabilities, labels, top_k)
    return [
        {"image": str(path), "top_k": [[label, probability] for label, probability in ranked_labels],
         "probabilities": dict(zip(labels, row.tolist()))}
        for path, ranked_labels, row in zip(paths, ranked, probabilities)
    ]
