"""`cliplab classify CHECKPOINT IMAGE... --labels a,b,c`: the most probable labels of each image."""

from __future__ import annotations

import argparse
from typing import Any

from cliplab.cli.common import (add_checkpoint_argument, add_command_parser, existing_images, finish_model_use_parser,
                                load_for_use, require_at_least, write_out)
from cliplab.errors import UserError

DESCRIPTION = "Rank the given labels for each image by zero-shot probability."
EPILOG = """\
Probabilities are a softmax over the labels of logit_scale * cosine similarity, so they sum to one
over the labels given. Each label is embedded through every template and the embeddings averaged.

Prompts: a label is put into the template, 'a photo of the {}.' unless --template or --templates
says otherwise ("sneaker" -> "a photo of the sneaker."). A label that is a phrase already, starting
with a, an or the ("a red circle") or ending in '.', is used as written. --template '{}' uses every
label as written.

examples:
  cliplab classify logs/tiny-run shoe.png shirt.jpg --labels "sneaker,sandal,shirt,bag"
  cliplab classify bundle/ shapes/*.png --labels "a red circle,a blue square,a green triangle"
  cliplab classify bundle/ images/*.png --labels "cat,dog,bird" --top-k 2 --templates prompts.txt
  cliplab classify bundle/ photo.jpg --labels "cat,dog" --template "a drawing of a {}." --out predictions.json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "classify", help="zero-shot classify images among labels you give",
                                description=DESCRIPTION, epilog=EPILOG)
    add_checkpoint_argument(parser)
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to classify")
    parser.add_argument("--labels", required=True,
                        help="comma-separated candidate labels, e.g. 'cat,dog,bird'; phrases such as 'a red circle' "
                             "are used as written (see below)")
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="labels shown per image (default: min(5, number of labels))")
    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument("--template", metavar="TEMPLATE",
                         help="the prompt template, with '{}' for the label (default: 'a photo of the {}.'; "
                              "'{}': the labels as written)")
    prompts.add_argument("--templates", metavar="FILE",
                         help="prompt templates, one per line with '{}' for the label; a label's embedding "
                              "averages them")
    return finish_model_use_parser(parser, run, batch_size=64, out="the predictions")


def run(args: argparse.Namespace) -> int:
    predictions = classify(args)
    for prediction in predictions:
        ranked = ", ".join(f"{label} {100 * probability:.1f}%" for label, probability in prediction["top_k"])
        print(f"{prediction['image']}: {ranked}")
    write_out(args.out, predictions)
    return 0


def classify(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per image: {"image": path, "top_k": [[label, probability], ...], "probabilities": {label: p}}."""
    from cliplab.eval.embeddings import encode_image_batches
    from cliplab.eval.image_sources import image_batches
    from cliplab.eval.prompts import DEFAULT_TEMPLATES, PhraseAwareTemplate, check_template, parse_labels, read_templates
    from cliplab.eval.scores import label_probabilities, model_logit_scale, top_k_labels
    from cliplab.eval.zero_shot import zero_shot_classifier

    labels = parse_labels(args.labels)
    top_k = min(5, len(labels)) if args.top_k is None else args.top_k
    if not 1 <= top_k <= len(labels):
        raise UserError(f"--top-k must be in [1, {len(labels)}] for {len(labels)} labels, got {top_k}")
    require_at_least("--batch-size", args.batch_size, 1)
    paths = existing_images(args.images)
    if args.templates:
        templates = read_templates(args.templates)
    else:
        templates = (check_template(args.template, "--template"),) if args.template else DEFAULT_TEMPLATES
    templates = tuple(PhraseAwareTemplate(template) for template in templates)
    loaded = load_for_use(args.checkpoint, args.device)
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
