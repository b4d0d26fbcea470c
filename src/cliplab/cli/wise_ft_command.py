"""`cliplab wise-ft ZERO_SHOT FINE_TUNED --alpha A --out DIR`: weight-space ensembling (WiSE-FT)."""

from __future__ import annotations

import argparse

from cliplab.cli.export_command import add_output_arguments

EPILOG = """\
Writes a cliplab bundle whose every floating tensor is (1 - A) * zero-shot + A * fine-tuned
(Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022), with the fine-tuned model's
tokenizer and preprocessing. Both checkpoints may be in any format cliplab loads; they must have the
same architecture. An existing non-empty --out is written into only with --force.

examples:
  cliplab wise-ft ViT-B-32.pt logs/finetune-run --alpha 0.5 --out wise/0.5
  cliplab wise-ft hub_dir/ logs/finetune-run --alpha 0.3 --out wise/0.3
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "wise-ft", help="interpolate a zero-shot and a fine-tuned model's weights (WiSE-FT)",
        description="Weight-space ensembling of a zero-shot and a fine-tuned checkpoint.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zero_shot", metavar="ZERO_SHOT", help="the checkpoint fine-tuning started from")
    parser.add_argument("fine_tuned", metavar="FINE_TUNED", help="the fine-tuned checkpoint")
    parser.add_argument("--alpha", required=True, type=float, metavar="A",
                        help="weight of the fine-tuned model, in [0, 1] (0: zero-shot, 1: fine-tuned)")
    add_output_arguments(parser, "output bundle directory")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from cliplab.model_io import load_model, save
    from cliplab.pretrained.export import prepare_directory
    from cliplab.pretrained.wise_ft import wise_ft

    zero_shot = load_model(args.zero_shot, model=args.model, require_tokenizer=False)
    fine_tuned = load_model(args.fine_tuned, model=args.model)
    mixed = wise_ft(zero_shot.model, fine_tuned.model, args.alpha)
    directory = save(mixed, fine_tuned.tokenizer, prepare_directory(args.out, args.force))
    print(f"wrote {directory}: (1 - {args.alpha}) * {zero_shot.path} + {args.alpha} * {fine_tuned.path}")
    return 0
