"""`cliplab caption CHECKPOINT IMAGE...`: captions from a CoCa checkpoint's text decoder."""

from __future__ import annotations

import argparse

from cliplab.cli.common import (add_checkpoint_argument, add_command_parser, existing_images, finish_model_use_parser,
                                load_for_use, require_at_least, write_out)
from cliplab.errors import UserError

DESCRIPTION = "Generate a caption for each image with a CoCa model's text decoder."
EPILOG = """\
Only CoCa checkpoints (model kind "coca") carry a text decoder; other checkpoints are refused.

examples:
  cliplab caption logs/coca-run shoe.png bag.png
  cliplab caption bundle/ photo.jpg --max-length 20
  cliplab caption bundle/ photo.jpg --strategy top_k --top-k 10 --temperature 0.8 --seed 1
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "caption", help="caption images with a CoCa checkpoint",
                                description=DESCRIPTION, epilog=EPILOG)
    add_checkpoint_argument(parser, "CoCa")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files to caption")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per caption, start and end tokens included (default: the context length)")
    parser.add_argument("--strategy", choices=("greedy", "top_k"), default="greedy",
                        help="greedy: most likely token; top_k: sample among the K most likely (default: greedy)")
    parser.add_argument("--top-k", type=int, default=50, metavar="K", help="K for --strategy top_k (default: 50)")
    parser.add_argument("--temperature", type=float, default=1.0, help="for --strategy top_k (default: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed for --strategy top_k (default: 0)")
    return finish_model_use_parser(parser, run, batch_size=16, out="{image: caption}")


def run(args: argparse.Namespace) -> int:
    captions = caption(args)
    for image, text in captions.items():
        print(f"{image}: {text}")
    write_out(args.out, captions)
    return 0


def caption(args: argparse.Namespace) -> dict[str, str]:
    """{image path: generated caption}, in the order given."""
    import torch

    from cliplab.eval.image_sources import image_batches

    paths = existing_images(args.images)
    require_at_least("--batch-size", args.batch_size, 1)
    loaded = load_for_use(args.checkpoint, args.device)
    kind = loaded.model.config.kind
    if kind != "coca":
        raise UserError(f"checkpoint {loaded.path} holds a {kind!r} model, which cannot caption: "
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
