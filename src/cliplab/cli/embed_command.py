"""`cliplab embed CHECKPOINT --images DIR|MANIFEST --texts FILE --out FILE`: normalised embeddings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

EPILOG = """\
Embeddings are L2-normalised float32 rows, so a dot product is a cosine similarity.

output:
  --out X.npy       one modality: X.npy; images and texts: X.images.npy and X.texts.npy
                    (--parquet adds X.parquet with ids, paths and texts)
  --out X.parquet   one table: modality, id (row in its modality), path, text, embedding

examples:
  cliplab embed logs/tiny-run --images photos/ --out photos.npy
  cliplab embed bundle/ --texts queries.txt --out queries.npy
  cliplab embed bundle/ --images val.tsv --texts queries.txt --out emb.parquet
  cliplab embed bundle/ --images val.csv --csv-separator , --out val.npy --parquet
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "embed",
        help="write normalised image and/or text embeddings",
        description="Embed the images of a directory or manifest and/or the lines of a text file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="bundle, training checkpoint or run directory")
    parser.add_argument("--images", metavar="DIR|MANIFEST",
                        help="a directory (every image below it, sorted) or a CSV/TSV manifest")
    parser.add_argument("--texts", metavar="FILE", help="a text file, one text per line (blank lines skipped)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output .npy or .parquet")
    parser.add_argument("--parquet", action="store_true", help="with a .npy --out, also write <stem>.parquet")
    parser.add_argument("--csv-img-key", default="filepath", help="manifest image column (default: filepath)")
    parser.add_argument("--csv-caption-key", default="title", help="manifest caption column (default: title)")
    parser.add_argument("--csv-separator", default="\t", help="manifest column separator (default: tab)")
    parser.add_argument("--batch-size", type=int, default=128, help="items per forward (default: 128)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        written = embed(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"cliplab embed: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def embed(args: argparse.Namespace) -> list[Path]:
    """Embed what was asked for and write it; returns the files written."""
    from tqdm import tqdm

    from cliplab.bundle import load_model
    from cliplab.eval.embedding_files import EmbeddedItems, write_npy, write_parquet
    from cliplab.eval.embeddings import encode_image_batches, encode_texts
    from cliplab.eval.image_sources import image_batches
    from cliplab.eval.prompts import read_lines

    out = Path(args.out)
    if not args.images and not args.texts:
        raise ValueError("nothing to embed: give --images DIR|MANIFEST and/or --texts FILE")
    if out.suffix not in (".npy", ".parquet"):
        raise ValueError(f"--out {out} must end with .npy or .parquet")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    image_paths, image_texts = _image_inputs(args)
    texts = read_lines(args.texts, "--texts") if args.texts else None

    loaded = load_model(args.checkpoint, device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    items = []
    if image_paths is not None:
        with tqdm(total=len(image_paths), desc="images", unit="img") as progress:
            features = encode_image_batches(loaded.model, image_batches(image_paths, loaded.preprocess, args.batch_size),
                                            device=loaded.device, progress=progress)
        items.append(EmbeddedItems("image", features.numpy(), tuple(str(path) for path in image_paths), image_texts))
    if texts is not None:
        with tqdm(total=len(texts), desc="texts", unit="text") as progress:
            features = encode_texts(loaded.model, loaded.tokenizer, texts, batch_size=args.batch_size,
                                    device=loaded.device, progress=progress)
        items.append(EmbeddedItems("text", features.numpy(), (None,) * len(texts), tuple(texts)))

    if out.suffix == ".parquet":
        return [write_parquet(items, out)]
    written = write_npy(items, out)
    if args.parquet:
        written.append(write_parquet(items, out.with_suffix(".parquet")))
    return written


def _image_inputs(args: argparse.Namespace) -> tuple[list[Path] | None, tuple[str | None, ...] | None]:
    """(paths, per-image texts) of --images, or (None, None) when not given."""
    from cliplab.eval.image_sources import list_images, manifest_images

    if not args.images:
        return None, None
    source = Path(args.images)
    if source.is_dir():
        paths = list_images(source)
        return paths, (None,) * len(paths)
    if source.is_file():
        manifest = manifest_images(source, img_key=args.csv_img_key, caption_key=args.csv_caption_key,
                                   separator=args.csv_separator)
        return list(manifest.paths), manifest.captions
    raise FileNotFoundError(f"--images {source} does not exist (expected an image directory or a manifest)")
