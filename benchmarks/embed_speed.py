"""Images per second of `cliplab embed`'s image path against open_clip 3.3.0's `encode_image`.

    python benchmarks/embed_speed.py                         # ViT-B-32, 128 JPEG images, batch 32
    python benchmarks/embed_speed.py --images 64 --rounds 2 --no-write

Both sides read the same JPEG files (640x480, smooth random colour fields written for the run),
decode them with PIL and preprocess them with the model's eval transform (resize, centre crop,
normalise: cliplab's, since open_clip's needs torchvision, which does not import here), and
encode them in batches with the same weights (cliplab's, through its open_clip key rules).
open_clip: decoding in the main process, `model.encode_image` under `torch.inference_mode()`, as
a user's loop over open_clip does; fp32, and bf16 autocast for reference. cliplab: the code path of
`cliplab embed` (`eval.image_sources.image_batches` decoding in `--workers` processes,
`eval.embeddings.encode_image_batches`), in fp32, `--precision bf16`, and `--precision bf16
--compile`. Every round runs each set-up over all the images, in an order rotated from round to
round; the figure is the median over the timed rounds, the ratio to open_clip fp32 printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report import format_table, load_note, write_section  # noqa: E402


def write_images(directory: Path, count: int) -> list[Path]:
    """`count` 640x480 JPEGs of smooth random colour fields (JPEG-typical content and file sizes)."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    paths = []
    for index in range(count):
        coarse = generator.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((640, 480), Image.BICUBIC)
        path = directory / f"{index:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="cliplab's decoding processes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="rounds before the timed ones (compilation included)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from cliplab.data.transforms import image_transform
    from cliplab.eval.embeddings import encode_image_batches
    from cliplab.eval.image_sources import image_batches, load_image
    from cliplab.models import create_model
    from cliplab.models.open_clip_config import builtin_open_clip_config
    from cliplab.pretrained.key_maps import from_cliplab
    from cliplab.pretrained.open_clip_keys import open_clip_rules
    from cliplab.train.parallel.torch_setup import use_compile_cache
    from reference_libraries import open_clip_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    eager = create_model(args.model).eval()
    compiled = create_model(args.model).eval()
    compiled.load_state_dict(eager.state_dict())
    use_compile_cache()
    compiled.compile_blocks()
    theirs = open_clip_model(builtin_open_clip_config(args.model)).eval()
    theirs.load_state_dict(from_cliplab(eager.state_dict(), open_clip_rules(eager.config, "")))
    preprocess = image_transform(eager.config.preprocess, train=False)
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731

    def open_clip_pass(autocast) -> torch.Tensor:
        features = []
        with torch.inference_mode(), autocast():
            for start in range(0, len(paths), args.batch_size):
                batch = torch.stack([preprocess(load_image(path)) for path in paths[start:start + args.batch_size]])
                features.append(theirs.encode_image(batch).float())
        return torch.cat(features)

    def cliplab_pass(model, autocast) -> torch.Tensor:
        return encode_image_batches(model, image_batches(paths, preprocess, args.batch_size, workers=args.workers),
                                    autocast=autocast)

    setups = {
        "open_clip 3.3.0 encode_image, fp32": lambda: open_clip_pass(contextlib.nullcontext),
        "open_clip 3.3.0 encode_image, bf16 autocast": lambda: open_clip_pass(bf16),
        "cliplab embed, fp32": lambda: cliplab_pass(eager, contextlib.nullcontext),
        "cliplab embed --precision bf16": lambda: cliplab_pass(eager, bf16),
        "cliplab embed --precision bf16 --compile": lambda: cliplab_pass(compiled, bf16),
    }
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as directory:
        paths = write_images(Path(directory), args.images)
        timings: dict[str, list[float]] = {label: [] for label in setups}
        outputs: dict[str, torch.Tensor] = {}
        order = list(setups)
        for index in range(args.warmup + args.rounds):
            shift = index % len(order)
            for label in order[shift:] + order[:shift]:
                start = time.perf_counter()
                outputs[label] = setups[label]()
                if index >= args.warmup:
                    timings[label].append(time.perf_counter() - start)
            print(f"round {index + 1}/{args.warmup + args.rounds} done", flush=True)
    reference = torch.nn.functional.normalize(outputs[order[0]], dim=-1)
    baseline = statistics.median(timings[order[0]])
    rows = []
    for label in order:
        seconds = statistics.median(timings[label])
        cosine = (torch.nn.functional.normalize(outputs[label], dim=-1) * reference).sum(dim=1).min()
        rows.append([label, f"{args.images / seconds:.1f}", f"{baseline / seconds:.2f}", f"{float(cosine):.5f}"])
    table = format_table(["set-up", "images / s", "speed / open_clip fp32", "lowest cosine to open_clip fp32"],
                         rows)
    print(table)
    if not args.no_write:
        body = (f"{args.model}, {args.images} JPEG images (640x480) per pass, batch {args.batch_size}, "
                f"{args.threads} torch threads, cliplab decoding in {args.workers} worker processes, {args.warmup} "
                f"warm-up and {args.rounds} timed rounds (see the script's docstring). "
                + load_note(load_before, os.getloadavg()[0], args.threads) + "\n\n" + table)
        write_section("embed_speed", "Image embedding throughput against open_clip's encode_image", body)


if __name__ == "__main__":
    main()
