"""What the commands that use a trained model share: their parser, --device, flag checks, --out.

Nothing here reports errors: a problem with the user's input is raised as a `UserError`, reported by
`cliplab.cli.main`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from cliplab.errors import InvalidInputError, MissingInputError, UserError


def add_command_parser(subparsers: argparse._SubParsersAction, name: str, *, help: str, description: str,
                       epilog: str) -> argparse.ArgumentParser:
    """A sub-command parser whose epilog (its examples) keeps its line breaks."""
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


# What CHECKPOINT may be for the commands that use a model: every format `cliplab.load` reads alone.
CHECKPOINT_FORMATS = ("a cliplab run, step or bundle directory; an open_clip hub directory (open_clip_config.json, "
                      "or local-dir:DIR); an OpenAI CLIP .pt; a Hugging Face CLIP/SigLIP directory; or hf-hub:org/repo "
                      "(the Hugging Face cache first, then a download)")


def add_checkpoint_argument(parser: argparse.ArgumentParser, model_kind: str = "") -> None:
    """The CHECKPOINT positional; `model_kind` (e.g. "CoCa") names the kind of model it must hold."""
    held = f" holding a {model_kind} model" if model_kind else ""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help=f"the model to use{held}: {CHECKPOINT_FORMATS}")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def finish_model_use_parser(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int], *,
                            batch_size: int, batch_of: str = "images", out: str | None = None
                            ) -> argparse.ArgumentParser:
    """Add --batch-size (default `batch_size`), --device and, when `out` names what it holds,
    --out FILE.json; make `run` the command. Returns the parser."""
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"{batch_of} per forward (default: {batch_size})")
    add_device_argument(parser)
    if out is not None:
        parser.add_argument("--out", metavar="FILE.json", help=f"also write {out} as JSON")
    parser.set_defaults(run=run)
    return parser


def add_inference_arguments(parser: argparse.ArgumentParser, *, workers: int) -> None:
    """--precision, --workers and --compile: how a command that encodes many images runs."""
    from cliplab.precision_names import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="fp32, or autocast: amp (fp16 on CUDA, bf16 on a CPU), fp16 (CUDA), bf16 (default: amp "
                             "on CUDA, fp32 on a CPU; bf16 is fast on CPUs with AVX512-BF16 or AMX)")
    parser.add_argument("--workers", type=int, default=workers,
                        help=f"image decoding processes (default: {workers})")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model's blocks first (a minute or so once; cached for later runs)")


def inference_autocast(args: argparse.Namespace, device):
    """The autocast of --precision on `device` (its default: amp on CUDA, fp32 elsewhere)."""
    from cliplab.eval.split_features import autocast_for

    return autocast_for(args.precision or ("amp" if device.type == "cuda" else "fp32"), device)


def compile_if_asked(args: argparse.Namespace, model) -> None:
    """--compile: the model's repeated blocks compiled in place (`CLIP.compile_blocks`), with
    torch's compile cache where training keeps it."""
    if args.compile:
        from cliplab.train.parallel.torch_setup import use_compile_cache

        use_compile_cache()
        model.compile_blocks()


def require_at_least(flag: str, value: int | None, minimum: int) -> None:
    """UserError naming `flag` unless `value` (None: not given) is >= `minimum`."""
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")


def existing_images(images: list[str]) -> list[Path]:
    """The IMAGE arguments as paths; a UserError naming the first that is a directory or does not exist."""
    paths = [Path(image) for image in images]
    for path in paths:
        if path.is_dir():
            raise InvalidInputError(f"IMAGE {path} is a directory; pass the image files in it (e.g. {path}/*.png)")
        if not path.is_file():
            raise MissingInputError(f"IMAGE {path} does not exist")
    return paths


def resolve_device(text: str | None):
    """--device as a torch.device (None: cuda when available, else cpu); a UserError naming --device
    when it is not a device name or names one this machine lacks."""
    import torch

    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise InvalidInputError(f"--device {text!r} is not a device name: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise InvalidInputError(f"--device {text}: CUDA is not available ({why}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InvalidInputError(f"--device {text}: this machine has {count} CUDA device(s), cuda:0 to "
                                    f"cuda:{count - 1}")
    elif device.type != "cpu":
        raise InvalidInputError(f"--device {text}: cliplab runs on cpu or cuda")
    return device


def load_for_use(checkpoint: str | Path, device: str | None):
    """The model, preprocess and tokenizer of CHECKPOINT (any path `cliplab.load` accepts) on
    --device `device` (None: cuda when available), as a `cliplab.model_io.LoadedModel`."""
    from cliplab.model_io import load_model

    return load_model(checkpoint, device=resolve_device(device))


def write_out(path: str | Path | None, value: Any) -> None:
    """Write `value` as indented JSON to `path` (--out; parent directories created), if one is given."""
    if path is None:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(value, indent=2) + "\n")
    print(f"wrote {out}")
