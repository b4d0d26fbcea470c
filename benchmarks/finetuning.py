"""Fine-tuning to new classes with cliplab's controls, and LoRA against full fine-tuning on ViT-B-32.

    python benchmarks/finetuning.py                 # section finetuning (about 50 minutes on 2 busy cores)
    python benchmarks/finetuning.py --base-steps 60 --steps 40 --vit-steps 2 --no-write   # a quick look

1. The default run's tiny model (`cliplab train`'s model, batch BATCH) trains on Fashion-MNIST's
   classes 0-4 only (`--train-classes 0,1,2,3,4`) for BASE_STEPS steps: the "pretrained" model, which
   has seen captions of five classes.
2. From that run (`--pretrained`), four fine-tunes on all ten classes, STEPS steps each, the same
   lr, schedule and batch: (a) full fine-tuning, (b) LoRA rank 8 (`--lora-rank 8`; adapters only),
   (c) layer decay 0.7 (`--layer-decay 0.7`), (d) a locked image tower (`--lock-image`), each in a
   process of its own with one torch thread, so that its peak RSS is its own; its CPU time per step
   (the process's CPU seconds over `train()`, start-up included, divided by the steps: on a shared
   machine the work, where wall time would follow the other jobs) and, for reference, its median
   wall time of a step (compute only, the data wait subtracted) from its metrics.jsonl.
3. Each fine-tuned model and its WiSE-FT (alpha 0.5 with the pretrained model, `cliplab.wise_ft`)
   are evaluated zero-shot on the 10,000 test images against all ten class prompts (the Fashion-MNIST
   templates, cliplab's zero-shot path): top-1 on the images of classes 0-4 (old) and of 5-9 (new).
4. ViT-B-32 (random weights), batch 16 of 224x224 images, CPU fp32, AdamW, one torch thread: the
   CPU time of a training step (forward, backward, optimiser) and the peak RSS of the training steps
   (the process's high-water mark reset after the model is built, where Linux allows) of full
   fine-tuning and of LoRA rank 8 (`cliplab.train.setup.lora.adapt_for_training`), each in a fresh
   process, both in this run.

The CPU is shared with other jobs: the 1-minute load average is recorded with the figures, and the
ratios within one table (same run, same machine) are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import format_table, write_section  # noqa: E402

BASE_STEPS, STEPS, BATCH, LR = 300, 200, 64, 1e-3
OLD_CLASSES = (0, 1, 2, 3, 4)
VARIANTS = {  # name -> the config keys it sets
    "full fine-tuning": {},
    "LoRA rank 8": {"lora.rank": 8},
    "layer decay 0.7": {"optim.layer_decay": 0.7},
    "locked image tower": {"model.lock_image": True},
}
WISE_ALPHA = 0.5
VIT_BATCH, VIT_WARMUP = 16, 1
PLOT = Path(__file__).resolve().parent.parent / "docs" / "finetuning.png"


def _peak_rss_mib() -> float:
    """The process's peak RSS: VmHWM (which `_reset_peak_rss` resets), else ru_maxrss (never reset)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _reset_peak_rss() -> bool:
    """Set the peak RSS to the current RSS (Linux: "5" to /proc/self/clear_refs); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _run_config(logs: Path, name: str, steps: int, settings: dict):
    from cliplab.train.config.io import resolve_config

    overrides = {"logging.logs": str(logs), "logging.name": name, "logging.tensorboard": False,
                 "logging.progress_bar": False, "logging.log_every_n_steps": 1, "loop.max_steps": steps,
                 "loop.epochs": 100, "loop.batch_size": BATCH, "loop.threads": 1, "optim.lr": LR,
                 "optim.warmup": steps // 10,
                 "data.workers": 0, "eval.eval_at_end": False, "checkpoint.save_frequency": 0, **settings}
    return resolve_config(None, overrides)


def child_train(logs: str, name: str, steps: int, settings: dict) -> dict:
    """In a fresh process: one run; its trainable parameters, CPU s / step, median wall s / step, peak RSS."""
    import torch

    from cliplab.train import train
    from cliplab.train.setup.model import build_training_model
    from cliplab.train.setup.model_plan import plan_model

    config = _run_config(Path(logs), name, steps, settings)
    plan = None if config.model.pretrained else plan_model(config.model, config.data.dataset_type)
    built = build_training_model(config.model, torch.device("cpu"), plan=plan, lora=config.lora)
    trainable = sum(parameter.numel() for parameter in built.model.parameters() if parameter.requires_grad)
    del built
    started = time.process_time()
    train(config)
    cpu = time.process_time() - started
    records = [json.loads(line) for line in (Path(logs) / name / "metrics.jsonl").read_text().splitlines()]
    compute = [record["step_time_s"] - record["data_wait_s"] for record in records if record["kind"] == "train"]
    return {"trainable": trainable, "cpu_step_s": cpu / len(compute),
            "wall_step_s": statistics.median(compute[min(5, len(compute) - 1):]), "peak_rss_mib": _peak_rss_mib()}


def child_vit(mode: str, steps: int) -> dict:
    """In a fresh process: ViT-B-32 training steps at batch VIT_BATCH, full or LoRA rank 8."""
    import torch

    from cliplab.losses import ClipLoss
    from cliplab.models import create_model
    from cliplab.train.config import LoraConfig, OptimConfig
    from cliplab.train.setup.lora import adapt_for_training
    from cliplab.train.step.optim import build_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("ViT-B-32", output_dict=True).train()
    if mode == "lora":
        adapt_for_training(model, LoraConfig(rank=8))
    optimizer = build_optimizer(model, OptimConfig(lr=1e-5))
    loss = ClipLoss()
    images = torch.randn(VIT_BATCH, 3, 224, 224)
    tokens = torch.randint(1, 49407, (VIT_BATCH, 77))
    setup_rss = _peak_rss_mib()
    reset = _reset_peak_rss()
    times = []
    for _ in range(VIT_WARMUP + steps):
        started = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        output = model(images, tokens)
        loss(output["image_features"], output["text_features"], output["logit_scale"]).backward()
        optimizer.step()
        times.append(time.process_time() - started)
    return {"trainable": sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad),
            "cpu_step_s": statistics.median(times[VIT_WARMUP:]), "setup_rss_mib": setup_rss,
            "peak_rss_mib": _peak_rss_mib(), "peak_reset": reset}


def _in_child(*arguments: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", *arguments], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")})
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _zero_shot_old_new(model, tokenizer, preprocess) -> tuple[float, float]:
    """Top-1 on the test images of the old and of the new classes, among all ten class prompts."""
    import numpy as np
    import torch
    from PIL import Image

    from cliplab.data.fashion_mnist import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES, FashionMnistDataset
    from cliplab.eval import zero_shot_classifier

    test = FashionMnistDataset(split="test")
    model.eval()
    with torch.no_grad():
        classifier = zero_shot_classifier(model, tokenizer, FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES)
        predictions = []
        for start in range(0, len(test), 1000):
            pixels = test.images[start:start + 1000]
            batch = torch.stack([preprocess(Image.fromarray(np.repeat(image[:, :, None], 3, axis=2), mode="RGB"))
                                 for image in pixels])
            features = model.encode_image(batch, normalize=True)
            predictions.append((features @ classifier.T).argmax(dim=1))
    predicted, labels = torch.cat(predictions), torch.from_numpy(test.labels)
    old = torch.isin(labels, torch.tensor(OLD_CLASSES))
    correct = predicted == labels
    return correct[old].float().mean().item(), correct[~old].float().mean().item()


def _plot(points: dict[str, tuple[float, float]], wise: dict[str, tuple[float, float]], base: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.scatter([base[1]], [base[0]], marker="*", s=160, color="black", label="pretrained (classes 0-4)")
    for (name, (old, new)), color in zip(points.items(), ("C0", "C1", "C2", "C3")):
        wise_old, wise_new = wise[name]
        axes.scatter([new], [old], color=color, label=name)
        axes.scatter([wise_new], [wise_old], color=color, marker="x")
        axes.annotate("", xy=(wise_new, wise_old), xytext=(new, old),
                      arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.6})
    axes.set_xlabel("zero-shot top-1, new classes 5-9")
    axes.set_ylabel("zero-shot top-1, old classes 0-4")
    axes.set_title(f"The tiny model fine-tuned on all ten classes\n(dots: fine-tuned; x: WiSE-FT, alpha {WISE_ALPHA})",
                   fontsize=10)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-steps", type=int, default=BASE_STEPS)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--vit-steps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true",
                        help="print the tables, leave BENCHMARKS.md and the plot alone")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_vit(rest[0], int(rest[1])) if kind == "vit" else child_train(
            rest[0], rest[1], int(rest[2]), json.loads(rest[3]))
        print(json.dumps(result))
        return

    import cliplab

    load_before = os.getloadavg()[0]
    logs = Path(tempfile.mkdtemp(prefix="finetuning-"))
    classes = ",".join(map(str, OLD_CLASSES))
    base = _in_child("train", str(logs), "base", str(args.base_steps),
                     json.dumps({"data.train_classes": list(OLD_CLASSES)}))
    base_model, preprocess, tokenizer = cliplab.load(logs / "base")
    base_accuracy = _zero_shot_old_new(base_model, tokenizer, preprocess)
    runs, points, wise = {}, {}, {}
    for index, (name, settings) in enumerate(VARIANTS.items()):
        runs[name] = _in_child("train", str(logs), f"v{index}", str(args.steps),
                               json.dumps({"model.pretrained": str(logs / "base"), **settings}))
        tuned, _, _ = cliplab.load(logs / f"v{index}")
        points[name] = _zero_shot_old_new(tuned, tokenizer, preprocess)
        wise[name] = _zero_shot_old_new(cliplab.wise_ft(base_model, tuned, WISE_ALPHA), tokenizer, preprocess)
    vit = {mode: _in_child("vit", mode, str(args.vit_steps)) for mode in ("full", "lora")}
    load_after = os.getloadavg()[0]

    percent = lambda value: f"{100 * value:.1f}%"  # noqa: E731
    reference = runs["full fine-tuning"]
    rows = [["pretrained on classes 0-4", percent(base_accuracy[0]), percent(base_accuracy[1]), "", "",
             f"{base['trainable']:,}", f"{1000 * base['cpu_step_s']:.0f}", "", f"{1000 * base['wall_step_s']:.0f}",
             f"{base['peak_rss_mib']:.0f}"]]
    for name, run in runs.items():
        rows.append([name, percent(points[name][0]), percent(points[name][1]), percent(wise[name][0]),
                     percent(wise[name][1]), f"{run['trainable']:,}", f"{1000 * run['cpu_step_s']:.0f}",
                     f"{run['cpu_step_s'] / reference['cpu_step_s']:.2f}", f"{1000 * run['wall_step_s']:.0f}",
                     f"{run['peak_rss_mib']:.0f}"])
    tiny_table = format_table(["model", "old 0-4 top-1", "new 5-9 top-1", f"WiSE-FT {WISE_ALPHA} old",
                               f"WiSE-FT {WISE_ALPHA} new", "trainable params", "CPU ms / step", "vs full",
                               "wall ms / step", "peak RSS MiB"], rows)
    vit_rows = [[mode if mode == "full" else "LoRA rank 8", f"{run['trainable']:,}", f"{run['cpu_step_s']:.2f}",
                 f"{run['cpu_step_s'] / vit['full']['cpu_step_s']:.2f}", f"{run['setup_rss_mib']:.0f}",
                 f"{run['peak_rss_mib']:.0f}", f"{run['peak_rss_mib'] / vit['full']['peak_rss_mib']:.2f}"]
                for mode, run in vit.items()]
    vit_table = format_table(["ViT-B-32, batch 16", "trainable params", "CPU s / step", "vs full",
                              "RSS after building MiB", "peak RSS of the steps MiB", "vs full"], vit_rows)
    peak = ("its high-water mark reset once the model and optimiser are built" if all(
        run["peak_reset"] for run in vit.values()) else "the process's peak (setup included: no reset here)")
    body = (f"The default run's tiny model trained {args.base_steps} steps on Fashion-MNIST classes {classes} "
            f"(`--train-classes {classes}`), then fine-tuned {args.steps} steps on all ten from that run "
            f"(`--pretrained`), batch {BATCH}, lr {LR:g} (warmup a tenth of the steps, cosine), one process "
            "each with one torch thread, no data workers. Zero-shot top-1 on the 10,000 test images against all ten "
            "class prompts, on the images of the old classes (0-4) and of the new ones (5-9); WiSE-FT interpolates "
            f"each fine-tune with the pretrained model at alpha {WISE_ALPHA} (`cliplab wise-ft`). Trainable "
            "parameters as `cliplab train` counts them; CPU ms / step: the process's CPU time over the whole "
            "`train()` call (start-up, data loading and logging included) divided by the steps, the work of a "
            "step, which the other jobs on the machine change little; wall ms / step: the median compute time of "
            "a step (its data wait subtracted, the first 5 steps left out), which they do change (the runs are "
            "minutes apart); peak RSS: the run's process.\n\n"
            f"{tiny_table}\n\nPlot: `docs/finetuning.png` (old against new accuracy; arrows to WiSE-FT).\n\n"
            f"ViT-B-32 with random weights, batch {VIT_BATCH} of 224x224 images, fp32 on the CPU with one torch "
            f"thread, ClipLoss, AdamW: the median CPU time of {args.vit_steps} training steps after {VIT_WARMUP} "
            f"(forward, backward, optimiser step), each mode in a fresh process of this run; peak RSS of the steps: "
            f"{peak}.\n\n{vit_table}\n\n"
            f"The machine's 1-minute load average was {load_before:.1f} at the start and {load_after:.1f} at the "
            f"end (on {os.cpu_count()} cores shared with other work): wall times scale with it, CPU times much "
            "less.")
    print(body)
    if not args.no_write:
        _plot(points, wise, base_accuracy)
        write_section("finetuning", "Fine-tuning: full, LoRA, layer decay, locked image tower, WiSE-FT", body)


if __name__ == "__main__":
    main()
