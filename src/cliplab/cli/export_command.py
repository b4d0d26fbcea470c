"""`cliplab export CHECKPOINT --format open_clip|hf|bundle --out DIR`: write what open_clip /
transformers load, or a cliplab bundle with one weights file (e.g. from an FSDP2 run's DCP shards)."""

from __future__ import annotations

import argparse

from cliplab.errors import UserError
from cliplab.pretrained.formats import EXPORT_FORMATS, export_form

EPILOG = """\
formats:
  open_clip   open_clip_config.json + open_clip_model.safetensors:
              open_clip.create_model_and_transforms("local-dir:DIR")
              A tokenizer other than the OpenAI BPE (SigLIP's, SigLIP2's, a Hugging Face text
              tower's) is written beside as Hugging Face files, named by text_cfg.hf_tokenizer_name
              with its tokenizer_kwargs: open_clip.get_tokenizer("local-dir:DIR") reads them. For an
              upload, --hf-tokenizer-name ORG/REPO makes "hf-hub:ORG/REPO" read them there too.
  hf          config.json, model.safetensors, preprocessor_config.json and tokenizer files:
              transformers.CLIPModel / SiglipModel.from_pretrained(DIR), CLIPTokenizer.from_pretrained(DIR)
  bundle      cliplab's own: model.safetensors, config.json and the tokenizer's files: cliplab.load(DIR).
              Turns an FSDP2 run's sharded (DCP) checkpoint into one file, in one process.

A run trained with LoRA adapters is exported merged (W + (alpha / r) B A): a plain model of
its architecture. --ema exports a run's EMA weights (a run trained with --ema-decay) instead
of its model's.

A model the target cannot represent is refused, naming what is missing, before anything is
written. An existing non-empty --out is written into only with --force (files of the exported
names are replaced; other files are kept).

examples:
  cliplab export logs/vitb32-run --format open_clip --out exported/open_clip
  cliplab export ViT-B-32.pt --format hf --out exported/hf
  cliplab export epoch_10.pt --model ViT-B-32 --format hf --out exported/hf
  cliplab export logs/fsdp-run/checkpoints/step_0001000 --format bundle --out exported/bundle
  cliplab export logs/ema-run --ema --format open_clip --out exported/ema
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="write a checkpoint in open_clip's or Hugging Face's format",
        description="Export a checkpoint (any format cliplab loads) to open_clip, Hugging Face transformers "
                    "or a cliplab bundle.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="bundle, run directory, open_clip / OpenAI / Hugging Face checkpoint")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="what to write")
    parser.add_argument("--ema", action="store_true",
                        help="the EMA weights of a training checkpoint (a run trained with --ema-decay)")
    add_output_arguments(parser, "output directory")
    parser.add_argument("--hf-tokenizer-name", metavar="NAME",
                        help="open_clip format: text_cfg.hf_tokenizer_name for a Hugging Face tokenizer, the "
                             "repository id DIR will be uploaded to (default: the text tower's model name, "
                             "else DIR's absolute path)")
    parser.set_defaults(run=run)
    return parser


def add_output_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """--out, --model and --force, as the commands that read checkpoints and write a directory take them."""
    parser.add_argument("--out", required=True, metavar="DIR", help=out_help)
    parser.add_argument("--model", metavar="NAME",
                        help="open_clip architecture name, for checkpoint files without one (epoch_K.pt)")
    parser.add_argument("--force", action="store_true", help="write into an existing non-empty --out")


def run(args: argparse.Namespace) -> int:
    from cliplab.model_io import load_model
    from cliplab.pretrained.export import export

    if args.hf_tokenizer_name is not None and "hf_tokenizer_name" not in export_form(args.format).options:
        raise UserError(f"--hf-tokenizer-name names an open_clip export's tokenizer; --format is {args.format}")
    loaded = load_model(args.checkpoint, model=args.model, ema=args.ema)
    directory = export(loaded.model, loaded.tokenizer, args.out, format=args.format, force=args.force,
                       hf_tokenizer_name=args.hf_tokenizer_name)
    weights = " (its EMA weights)" if args.ema else ""
    print(f"exported {loaded.path} ({loaded.format}){weights} as {args.format} to {directory}")
    return 0
