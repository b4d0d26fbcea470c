"""`cliplab embed CHECKPOINT --images DIR|MANIFEST --texts FILE --out FILE`: normalised embeddings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cliplab.cli.common import (add_checkpoint_argument, add_command_parser, add_inference_arguments,
                                compile_if_asked, finish_model_use_parser, inference_autocast, load_for_use,
                                require_at_least)
from cliplab.errors import MissingInputError, UserError

PROGRESS_LINE_INTERVAL_S = 10.0

EPILOG = """\
Embeddings are L2-normalised float32 rows, so a dot product is a cosine similarity.

output:
  --out X.npy       one modality: X.npy; images and texts: X.images.npy and X.texts.npy; each array
                    with its ids beside it, X.ids.tsv (X.images.ids.tsv, ...): columns id (the row),
                    path (the image), line (in the --texts file or the manifest), text (the text or
                    the image's caption); --parquet adds X.parquet
  --out X.parquet   one table: modality, id (row in its modality), path, line, text, embedding

examples:
  cliplab embed logs/tiny-run --images photos/ --out photos.npy
  cliplab embed bundle/ --texts queries.txt --out queries.npy
  cliplab embed bundle/ --images val.tsv --texts queries.txt --out emb.parquet
  cliplab embed bundle/ --images val.csv --csv-separator , --out val.npy --parquet
  cliplab embed bundle/ --images photos/ --out photos.npy --precision bf16 --compile   # fastest on a CPU
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "embed", help="write normalised image and/or text embeddings",
                                description="Embed the images of a directory or manifest and/or the lines of a "
                                            "text file.", epilog=EPILOG)
    add_checkpoint_argument(parser)
    parser.add_argument("--images", metavar="DIR|MANIFEST",
                        help="a directory (every image below it, sorted) or a CSV/TSV manifest")
    parser.add_argument("--texts", metavar="FILE", help="a text file, one text per line (blank lines skipped)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output .npy or .parquet")
    parser.add_argument("--parquet", action="store_true", help="with a .npy --out, also write <stem>.parquet")
    parser.add_argument("--csv-img-key", default="filepath", help="manifest image column (default: filepath)")
    parser.add_argument("--csv-caption-key", default="title", help="manifest caption column (default: title)")
    parser.add_argument("--csv-separator", default="\t", help="manifest column separator (default: tab)")
    add_inference_arguments(parser, workers=2)
    return finish_model_use_parser(parser, run, batch_size=128, batch_of="items")


def run(args: argparse.Namespace) -> int:
    for path in embed(args):
        print(f"wrote {path}")
    return 0


def embed(args: argparse.Namespace) -> list[Path]:
    """Embed what was asked for and write it; returns the files written."""
    from cliplab.eval.embedding_files import write_npy, write_parquet
    from cliplab.eval.prompts import read_numbered_lines

    out = Path(args.out)
    if not args.images and not args.texts:
        raise UserError("nothing to embed: give --images DIR|MANIFEST and/or --texts FILE")
    if out.suffix not in (".npy", ".parquet"):
        raise UserError(f"--out {out} must end with .npy or .parquet")
    require_at_least("--batch-size", args.batch_size, 1)
    require_at_least("--workers", args.workers, 0)
    images = _image_inputs(args)
    texts = read_numbered_lines(args.texts, "--texts") if args.texts else None

    loaded = load_for_use(args.checkpoint, args.device)
    compile_if_asked(args, loaded.model)
    items = []
    if images is not None:
        items.append(_embedded_images(loaded, images, args))
    if texts is not None:
        items.append(_embedded_texts(loaded, texts, args))

    if out.suffix == ".parquet":
        return [write_parquet(items, out)]
    written = write_npy(items, out)
    if args.parquet:
        written.append(write_parquet(items, out.with_suffix(".parquet")))
    return written


@dataclass(frozen=True)
class ImageInputs:
    """The images of --images: paths, and per image its manifest caption and line (None for a directory)."""

    paths: list[Path]
    captions: tuple[str | None, ...]
    lines: tuple[int | None, ...]


def _image_inputs(args: argparse.Namespace) -> ImageInputs | None:
    """The images of --images, or None when not given."""
    from cliplab.eval.image_sources import list_images, manifest_images

    if not args.images:
        return None
    source = Path(args.images)
    if source.is_dir():
        paths = list_images(source)
        return ImageInputs(paths=paths, captions=(None,) * len(paths), lines=(None,) * len(paths))
    if source.is_file():
        manifest = manifest_images(source, img_key=args.csv_img_key, caption_key=args.csv_caption_key,
                                   separator=args.csv_separator)
        return ImageInputs(paths=list(manifest.paths), captions=manifest.captions, lines=manifest.lines)
    raise MissingInputError(f"--images {source} does not exist (expected an image directory or a manifest)")


def _embedded_images(loaded, images: ImageInputs, args: argparse.Namespace):
    from cliplab.console import Progress
    from cliplab.eval.embedding_files import EmbeddedItems
    from cliplab.eval.embeddings import encode_image_batches
    from cliplab.eval.image_sources import image_batches

    progress = Progress(len(images.paths), desc="images", unit="img", line_interval_s=PROGRESS_LINE_INTERVAL_S)
    try:
        batches = image_batches(images.paths, loaded.preprocess, args.batch_size, workers=args.workers)
        features = encode_image_batches(loaded.model, batches, device=loaded.device, progress=progress,
                                        autocast=inference_autocast(args, loaded.device))
    finally:
        progress.close()
    return EmbeddedItems("image", features.numpy(), paths=tuple(str(path) for path in images.paths),
                         lines=images.lines, texts=images.captions)


def _embedded_texts(loaded, texts: tuple[tuple[int, str], ...], args: argparse.Namespace):
    from cliplab.console import Progress
    from cliplab.eval.embedding_files import EmbeddedItems
    from cliplab.eval.embeddings import encode_texts

    progress = Progress(len(texts), desc="texts", unit="text", line_interval_s=PROGRESS_LINE_INTERVAL_S)
    try:
        features = encode_texts(loaded.model, loaded.tokenizer, [text for _, text in texts],
                                batch_size=args.batch_size, device=loaded.device, progress=progress,
                                autocast=inference_autocast(args, loaded.device))
    finally:
        progress.close()
    return EmbeddedItems("text", features.numpy(), paths=(None,) * len(texts),
                         lines=tuple(line for line, _ in texts), texts=tuple(text for _, text in texts))
