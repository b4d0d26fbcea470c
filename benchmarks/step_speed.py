"""One training step of cliplab against open_clip 3.3.0's model code, and what each speed-up buys.

    python benchmarks/step_speed.py                          # ViT-B-32 and ViT-B-16, fp32 and bf16, batch 16
    python benchmarks/step_speed.py --models ViT-B-32 --precisions fp32 --rounds 3 --no-write
    python benchmarks/step_speed.py --flops                  # the step's matmul FLOPs instead (section step_flops)

A step is what training does for one batch: both towers forward, the symmetric InfoNCE loss
(each library's own `ClipLoss`), backward, AdamW (each library's own optimiser set-up: open_clip's
`main.py` groups and `torch.optim.AdamW` with its defaults, cliplab's `build_optimizer`), zero_grad.
bf16 is `torch.autocast("cpu", torch.bfloat16)` around forward and loss, for both. The two models
hold the same weights (cliplab's, through its open_clip key rules) and see the same inputs: random
images and the 16 realistic captions of `CAPTIONS` tokenized by OpenAI's BPE to context 77, as
open_clip pads them (`cliplab.tokenize`; the longest is 24 tokens with start and end).

cliplab's variants share one model and one optimiser and differ only in what they switch on,
cumulatively (the ablation): the per-parameter AdamW loop (as before this benchmark) or the fused
kernel; the text tower on the whole context or on the batch's deciding prefix (the cut the
trainer makes, `cliplab.train.step.text_prefix`); the image tower's last block on every token or on the class token's
row alone (`VisionTransformer.forward`); eager blocks or regional compilation
(`CLIP.compile_blocks`, `--torchcompile`). Every round runs each variant's step once, in an order rotated from round to
round, so machine load falls on all of them alike; the figure is each variant's median over the
rounds after warm-up, and the ratio to open_clip's median in the same run is printed last.

`--flops` counts instead what each eager set-up asks of the processor in one fp32 step (forward
and backward; torch's `FlopCounterMode`: matmuls and convolutions, not the CPU attention kernels,
which it has no formula for). Both libraries run the same matmul kernels, so the matmuls' share of
a step shrinks by that ratio and no further; the rest of the step (elementwise work, the
optimiser's update) is what the fused AdamW and compilation act on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report import format_table, load_note, write_section  # noqa: E402

# Sixteen captions in the style of COCO's (one sentence, 8-20 words), written for this benchmark.
CAPTIONS = [
    "A man riding a bicycle down a busy city street next to a red bus.",
    "Two dogs playing with a frisbee on a grassy field in the park.",
    "A plate of pasta with tomato sauce and basil on a wooden table.",
    "A woman holding an umbrella while walking through the rain at night.",
    "A small kitchen with white cabinets, a stove and a window over the sink.",
    "A group of people standing around a table covered with food and drinks at an outdoor party.",
    "A cat sleeping on top of a laptop keyboard.",
    "An airplane taking off from a runway under a cloudy sky.",
    "A young boy in a baseball uniform swinging a bat at a ball.",
    "A train traveling over a bridge across a wide river surrounded by autumn trees.",
    "A bowl of fresh fruit including bananas, apples and oranges.",
    "A skier going down a snowy slope with mountains in the background.",
    "A living room with a brown leather couch, a television and a coffee table covered in magazines.",
    "A giraffe standing next to a tree in a zoo enclosure.",
    "A person surfing a large wave in the ocean.",
    "Several boats docked at a marina on a sunny day.",
]


@dataclass(frozen=True)
class Variant:
    """One of cliplab's set-ups: which optimiser kernel, whether the text tower trims, whether the
    image tower's last block computes the class row alone, whether the blocks run compiled."""

    label: str
    fused_adamw: bool
    trimmed_text: bool
    class_row: bool
    compiled: bool


VARIANTS = [
    Variant("cliplab, AdamW loop, whole context, eager (before)", False, False, False, False),
    Variant("+ fused AdamW", True, False, False, False),
    Variant("+ text on the pooled prefix", True, True, False, False),
    Variant("+ last image block on the class row (the default)", True, True, True, False),
    Variant("+ regional torch.compile (--torchcompile)", True, True, True, True),
]
DEFAULT, COMPILED = VARIANTS[3], VARIANTS[4]


def caption_batch(batch_size: int):
    import cliplab

    captions = [CAPTIONS[index % len(CAPTIONS)] for index in range(batch_size)]
    return cliplab.tokenize(captions, context_length=77)


def open_clip_optimizer(model, lr: float, wd: float):
    """open_clip's `main.py` optimiser: no weight decay for gains and biases, AdamW's defaults."""
    import torch

    def excluded(name, parameter):
        return parameter.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    named = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    groups = [{"params": [p for n, p in named if excluded(n, p)], "weight_decay": 0.0},
              {"params": [p for n, p in named if not excluded(n, p)], "weight_decay": wd}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


@contextlib.contextmanager
def every_image_row(enabled: bool):
    """While enabled, the image tower's last block computes every token (as before)."""
    from cliplab.models.towers.vision_transformer import VisionTransformer

    original = VisionTransformer.pools_class_row_only
    if enabled:
        VisionTransformer.pools_class_row_only = property(lambda self: False)
    try:
        yield
    finally:
        VisionTransformer.pools_class_row_only = original


def compiled_calls(model) -> dict:
    """Each compiled unit's compiled call (see `nn.Module.compile`), to switch compilation off and
    on again between the variants that share the model."""
    return {unit: unit._compiled_call_impl for unit in model.fsdp_units()}


def build_pair(name: str, batch_size: int, precision: str):
    """(cliplab step for a Variant, open_clip step, first-compiled-step seconds holder)."""
    import torch

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from cliplab.losses import ClipLoss
    from cliplab.models import create_model
    from cliplab.models.open_clip_config import builtin_open_clip_config
    from cliplab.pretrained.key_maps import from_cliplab
    from cliplab.pretrained.open_clip_keys import open_clip_rules
    from cliplab.train.config import OptimConfig
    from cliplab.train.step.accumulation import MicroBatch
    from cliplab.train.step.optim import build_optimizer
    from cliplab.train.step.text_prefix import cut_to_step_prefix
    from reference_libraries import open_clip, open_clip_model

    torch.manual_seed(0)
    ours = create_model(name, output_dict=True).train()
    theirs = open_clip_model(builtin_open_clip_config(name)).train()
    theirs.output_dict = True
    theirs.load_state_dict(from_cliplab(ours.state_dict(), open_clip_rules(ours.config, "")))
    size = ours.config.vision.image_size
    images = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(1))
    tokens = caption_batch(batch_size)
    optim_config = OptimConfig(lr=1e-5, wd=0.1)
    our_optimizer = build_optimizer(ours, optim_config)
    their_optimizer = open_clip_optimizer(theirs, optim_config.lr, optim_config.wd)
    our_loss, their_loss = ClipLoss(), open_clip().loss.ClipLoss()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

    ours.compile_blocks()
    compiled = compiled_calls(ours)

    def run(model, loss_fn, optimizer, cut_text: bool = False) -> None:
        step_tokens = cut_to_step_prefix([MicroBatch(images, tokens)], model)[0].tokens if cut_text else tokens
        with autocast():
            output = model(images, step_tokens)
            loss = loss_fn(output["image_features"].float(), output["text_features"].float(), output["logit_scale"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def our_step(variant: Variant) -> None:
        for group in our_optimizer.param_groups:
            group["fused"], group["foreach"] = variant.fused_adamw or None, False
        for unit, call in compiled.items():
            unit._compiled_call_impl = call if variant.compiled else None
        with every_image_row(not variant.class_row):
            run(ours, our_loss, our_optimizer, cut_text=variant.trimmed_text)

    def their_step() -> None:
        run(theirs, their_loss, their_optimizer)

    return our_step, their_step, sum(parameter.numel() for parameter in ours.parameters())


def measure(name: str, batch_size: int, precision: str, variants: list[Variant], warmup: int, rounds: int
            ) -> dict:
    our_step, their_step, parameters = build_pair(name, batch_size, precision)
    steps: list[tuple[str, Callable[[], None]]] = [("open_clip 3.3.0", their_step)]
    steps += [(variant.label, lambda variant=variant: our_step(variant)) for variant in variants]
    timings: dict[str, list[float]] = {label: [] for label, _ in steps}
    first: dict[str, float] = {}
    for index in range(warmup + rounds):
        shift = index % len(steps)
        for label, step in steps[shift:] + steps[:shift]:
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
            first.setdefault(label, seconds)
            if index >= warmup:
                timings[label].append(seconds)
        print(f"{name} {precision} round {index + 1}/{warmup + rounds}: "
              + ", ".join(f"{label[:24]} {times[-1] if times else first[label]:.2f}s"
                          for label, times in timings.items()), flush=True)
    medians = {label: statistics.median(times) for label, times in timings.items()}
    return {"parameters": parameters, "medians": medians, "first": first}


def count_flops(name: str, batch_size: int) -> list[list[str]]:
    """Rows (model, set-up, GFLOP per step, / open_clip) of one fp32 step of each eager set-up."""
    from torch.utils.flop_counter import FlopCounterMode

    our_step, their_step, _ = build_pair(name, batch_size, "fp32")

    def flops(step: Callable[[], None]) -> int:
        with FlopCounterMode(display=False) as counter:
            step()
        return counter.get_total_flops()

    theirs = flops(their_step)
    rows = [[name, "open_clip 3.3.0", f"{theirs / 1e9:.0f}", "1.00"]]
    for variant in VARIANTS[:-1]:
        ours = flops(lambda: our_step(variant))
        rows.append([name, variant.label, f"{ours / 1e9:.0f}", f"{ours / theirs:.2f}"])
    return rows


def flops_report(args) -> None:
    rows = [row for name in args.models.split(",") for row in count_flops(name, args.batch_size)]
    table = format_table(["model", "set-up", "GFLOP / step", "/ open_clip"], rows)
    print(table, flush=True)
    if not args.no_write:
        body = (f"Batch {args.batch_size}, fp32, one step of each eager set-up (forward and backward) under torch's "
                f"`FlopCounterMode`: matmuls and convolutions; the CPU attention kernels have no formula there and "
                f"are left out on both sides (a few percent of a ViT-B step). Both libraries run the same matmul "
                f"kernels, so the matmuls' share of a step shrinks by this ratio and no further; the rest (elementwise "
                f"work, the optimiser's update) is what the fused AdamW and compilation act on.\n\n" + table)
        write_section("step_flops", "Training step FLOPs against open_clip (ViT-B, batch 16)", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ViT-B-32,ViT-B-16")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2, help="rounds before the timed ones (compilation included)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ablation-models", default="ViT-B-32",
                        help="models timed with every variant; the others with the default and the compiled one")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    parser.add_argument("--flops", action="store_true", help="count each set-up's FLOPs instead of timing it")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.flops:
        flops_report(args)
        return
    load_before = os.getloadavg()[0]
    headline, ablation, compile_rows = [], [], []
    baseline = "open_clip 3.3.0"
    for name in args.models.split(","):
        chosen = VARIANTS if name in args.ablation_models.split(",") else [DEFAULT, COMPILED]
        for precision in args.precisions.split(","):
            result = measure(name, args.batch_size, precision, chosen, args.warmup, args.rounds)
            medians = result["medians"]
            default, compiled = medians[DEFAULT.label], medians[COMPILED.label]
            headline.append([name, precision, f"{medians[baseline]:.2f}", f"{default:.2f}", f"{compiled:.2f}",
                             f"{default / medians[baseline]:.2f}", f"{compiled / medians[baseline]:.2f}"])
            compile_rows.append([name, precision, f"{result['first'][COMPILED.label]:.0f}",
                                 f"{compiled:.2f}"])
            if len(chosen) == len(VARIANTS):
                for label, seconds in medians.items():
                    ablation.append([name, precision, label, f"{seconds:.2f}", f"{seconds / medians[baseline]:.2f}"])
            report(args, headline, ablation, compile_rows, load_before)  # after each pair: a stopped run keeps these


def report(args, headline: list, ablation: list, compile_rows: list, load_before: float) -> None:
    tables = (
        "Ablation (cumulative, top to bottom; s / step is the median over the timed rounds):\n\n"
        + format_table(["model", "precision", "set-up", "s / step", "/ open_clip"], ablation)
        + "\n\nFirst step of the compiled variant (compilation of the vision and the text block, forward "
          "and backward, with whatever the compile cache held) against its median step:\n\n"
        + format_table(["model", "precision", "first compiled step s", "compiled step s"], compile_rows)
        + "\n\nStep time against open_clip 3.3.0 (lower is faster):\n\n"
        + format_table(["model", "precision", "open_clip s / step", "cliplab default s / step",
                        "cliplab --torchcompile s / step", "default / open_clip", "compiled / open_clip"],
                       headline))
    print(tables, flush=True)
    if not args.no_write:
        body = (f"Batch {args.batch_size}, {args.threads} torch threads, {args.warmup} warm-up and {args.rounds} "
                f"timed rounds per model and precision; one process, the variants interleaved (see the "
                f"script's docstring for the step, the inputs and the variants). "
                + load_note(load_before, os.getloadavg()[0], args.threads) + "\n\n" + tables)
        write_section("step_speed", "Training step against open_clip (ViT-B, batch 16)", body)


if __name__ == "__main__":
    main()
