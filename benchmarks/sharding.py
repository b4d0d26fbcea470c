"""Per-rank memory of DDP against FSDP2 for ViT-L-14, and step time of both for the default model.

Memory: ViT-L-14 on gloo CPU processes at N = 1, 2, 4, one AdamW step on a small synthetic batch
(batch 1 per rank). After the step every rank counts the bytes of the tensors it actually holds:
parameters, gradients and AdamW state (under FSDP2 the local shards, `DTensor.to_local()`), and
reads its RSS high-water mark (ru_maxrss: everything, activations and the all-gathered blocks
included). FSDP2 builds the model on the meta device and fills its shards (`ModelBuild`), so no
rank holds the whole model. A DDP configuration whose processes cannot fit this machine's memory is
not run and says so (the rule: every DDP rank holds what the N = 1 run held, so N x its RSS above
70% of the memory available at start does not fit).

Step time: the default model (the slimmed `tiny`) trained by `cliplab.train` at N = 2, DDP and
FSDP2 in the same processes, same global batch; median step time of the steps after the first.

    python benchmarks/sharding.py [--quick]     # section `sharding` of BENCHMARKS.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402

from benchmarks.report import format_table, write_section  # noqa: E402

MEMORY_MODEL = "ViT-L-14"
WORLD_SIZES = (1, 2, 4)
FIT_FRACTION = 0.7


def _local_bytes(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def _memory_run(rank: int, world_size: int, model_name: str, overrides: dict, fsdp: bool) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    from cliplab.distributed.shard_init import ShardedInit
    from cliplab.losses import ClipLoss
    from cliplab.models import create_model
    from cliplab.models.registry import initialisers_on_meta
    from cliplab.train.parallel.fsdp_state import fill_shards
    from cliplab.train.parallel.fsdp import shard

    torch.manual_seed(0)
    if fsdp:
        recorder = ShardedInit(rank, world_size)
        with initialisers_on_meta(), recorder.building():
            model = create_model(model_name, output_dict=True, **overrides)
        initial = recorder.values(model)
        shard(model, model, precision="fp32", compile_blocks=False)
        fill_shards(model, initial.rows, torch.device("cpu"))
        module = model
    else:
        model = create_model(model_name, output_dict=True, **overrides)
        module = DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=False)
    loss = ClipLoss(gather_with_grad=True, rank=rank, world_size=world_size)
    size, text = model.config.vision.image_size, model.config.text
    images = torch.randn(1, 3, size, size)
    tokens = torch.randint(0, text.vocab_size, (1, text.context_length))
    output = module(images, tokens)
    loss(output["image_features"], output["text_features"], output["logit_scale"]).backward()
    optimizer.step()
    parameters = list(model.parameters())
    return {
        "parameters": sum(_local_bytes(p) for p in parameters),
        "gradients": sum(_local_bytes(p.grad) for p in parameters if p.grad is not None),
        "optimizer": sum(_local_bytes(value) for state in optimizer.state.values() for value in state.values()
                         if isinstance(value, torch.Tensor)),
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def memory_rows(model_name: str, overrides: dict, world_sizes: tuple[int, ...]) -> list[list[str]]:
    from cliplab.distributed.launch import run_on_workers

    rows, single_rss, available = [], None, _available_bytes()
    for fsdp in (False, True):
        for world_size in world_sizes:
            label = "FSDP2" if fsdp else "DDP"
            if not fsdp and single_rss is not None and world_size * single_rss > FIT_FRACTION * available:
                rows.append([label, str(world_size), "not run: needs about "
                             f"{world_size * single_rss / 2**30:.1f} GiB ({world_size} x the N=1 RSS), "
                             f"{available / 2**30:.1f} GiB available", "", "", "", ""])
                continue
            results = run_on_workers(_memory_run, world_size, model_name, overrides, fsdp, timeout_s=3000)
            if not fsdp and world_size == 1:
                single_rss = results[0]["max_rss"]
            for key in ("parameters", "gradients", "optimizer", "max_rss"):
                values = [result[key] for result in results]
                assert max(values) - min(values) <= 0.02 * max(values) or key == "max_rss", (key, values)
            first = results[0]
            sharded = first["parameters"] + first["gradients"] + first["optimizer"]
            rows.append([label, str(world_size), f"{first['parameters'] / 2**30:.3f}",
                         f"{first['gradients'] / 2**30:.3f}", f"{first['optimizer'] / 2**30:.3f}",
                         f"{sharded / 2**30:.3f}", f"{max(r['max_rss'] for r in results) / 2**30:.2f}"])
    return rows


def _step_time_run(rank: int, world_size: int, logs: str, steps: int) -> dict:
    from cliplab.train import train
    from cliplab.train.config.presets import smoke_config

    times = {}
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        config = smoke_config(logs=logs, name=name, steps=steps, batch_size=128 // world_size)
        config.loop.epochs = steps  # max_steps ends the run, not the 512-sample epoch
        config.eval.eval_at_end = False
        config.loss.gather_with_grad = True
        config.distributed.fsdp = fsdp
        run_dir = train(config).run_dir
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        times[name] = statistics.median(r["step_time_s"] for r in records if r["kind"] == "train" and r["step"] > 1)
    return times


def step_time_rows(steps: int) -> list[list[str]]:
    from cliplab.distributed.launch import run_on_workers

    with tempfile.TemporaryDirectory() as logs:
        times = run_on_workers(_step_time_run, 2, logs, steps, timeout_s=3000)[0]
    return [["DDP", f"{times['ddp']:.3f}", "1.00"], ["FSDP2", f"{times['fsdp']:.3f}", f"{times['fsdp'] / times['ddp']:.2f}"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shrunken ViT-L-14 and fewer steps (a check)")
    args = parser.parse_args()
    overrides = {"vision.layers": 2, "text.layers": 2} if args.quick else {}
    memory = memory_rows(MEMORY_MODEL, overrides, WORLD_SIZES)
    steps = step_time_rows(steps=6 if args.quick else 20)
    body = (f"Per-rank memory of {MEMORY_MODEL}{' (quick: 2 layers per tower)' if args.quick else ''} after one "
            "AdamW step at batch 1 per rank, fp32, gloo CPU processes (GiB). The sharded part is parameters + "
            "gradients + optimiser state actually held by the rank; max RSS is the largest rank's high-water "
            "mark (activations and gathered blocks included).\n\n"
            + format_table(["mode", "N", "parameters", "gradients", "AdamW state", "sharded part", "max RSS"],
                           memory)
            + "\n\nStep time of the default model (`cliplab train` defaults, global batch 128, N = 2, same "
              "processes), median over the steps after the first:\n\n"
            + format_table(["mode", "step s", "vs DDP"], steps))
    print(body)
    write_section("sharding", "DDP against FSDP2: per-rank memory and step time", body)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
