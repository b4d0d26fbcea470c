"""`cliplab caption CHECKPOINT IMAGE...`: captions from a CoCa checkpoint's text decoder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

EPILOG = """\
Only CoCa checkpoints (model kind "coca") carry a text decoder; other checkpoints are refused.

examples:
  cliplab caption logs/coca-run shoe.png bag.png
  cliplab caption bundle/ photo.jpg --max-length 20
  cliplab caption bundle/ photo.jpg --strategy top_k --top-k 10 --temperature 0.8 --seed 1
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "caption",
        help="caption images with a CoCa checkpoint",
        description="Generate a caption for each image with a CoCa model's text decoder.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="CoCa bundle, training checkpoint or run directory")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to caption")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per caption, start and end tokens included (default: the context length)")
    parser.add_argument("--strategy", choices=("greedy", "top_k"), default="greedy",
                        help="greedy: most likely token; top_k: sample among the K most likely (default: greedy)")
    parser.add_argument("--top-k", type=int, default=50, metavar="K", help="K for --strategy top_k (default: 50)")
    parser.add_argument("--temperature", type=float, default=1.0, help="for --strategy top_k (default: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed for --strategy top_k (default: 0)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward (default: 16)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--out", metavar="FILE.json", help="also write {image: caption} as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        captions = caption(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"cliplab caption: error: {error}", file=sys.stderr)
        return 2
    for image, text in captions.items():
        print(f"{image}: {text}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(captions, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


def caption(args: argparse.Namespace) -> dict[str, str]:
    """{image path: generated caption}, in the order given."""
    from cliplab.bundle import load_model
    from cliplab.eval.image_sources import image_batches

    paths = [Path(image) for image in args.images]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"IMAGE {path} does not exist")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    loaded = load_model(args.checkpoint, device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not callable(getattr(loaded.model, "generate", None)):
        kind = getattr(getattr(loaded.model, "config", None), "kind", type(loaded.model).__name__)
        raise ValueError(f"checkpoint {loaded.path} holds a {kind!r} model, which cannot caption: "
                         "captioning needs a CoCa checkpoint (model kind 'coca')")
    generator = torch.Generator(device=loaded.device).manual_seed(args.seed)
    captions: dict[str, str] = {}
    for start, images in zip(range(0, len(paths), args.batch_size),
                             image_batches(paths, loaded.preprocess, args.batch_size)):
        tokens = loaded.model.generate(images.to(loaded.device), loaded.tokenizer, max_length=args.max_length,
                                       strategy=args.strategy, top_k=args.top_k, temperature=args.temperature,
                                       generator=generator)
        for path, text in zip(paths[start:start + len(images)], loaded.tokenizer.batch_decode(tokens.cpu())):
            captions[str(path)] = text
    return captions
