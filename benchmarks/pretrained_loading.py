"""Load time and peak memory of pretrained checkpoints: cliplab.load against open_clip and transformers.

Run from the repository root (needs open_clip_torch and transformers, as the test extras install):

    python benchmarks/pretrained_loading.py [--models ViT-B-32,ViT-L-14] [--repeats 2]
        [--timm-models ViT-B-16-SigLIP2,ViT-SO400M-14-SigLIP]

For each model, random weights are written once in each format (open_clip hub directory, open_clip
epoch_K.pt, OpenAI fp16 state dict, Hugging Face CLIPModel directory) by cliplab's own export, then
every measurement runs in a fresh Python process: imports first (their memory is the baseline),
then one timed load. The models with a timm image tower (`--timm-models`, section
`pretrained_loading_timm`) are written once as open_clip writes its hub directories (open_clip's
model with its own random initialisation, its `CustomTextCLIP` layout) and loaded from there only:
by cliplab (`load_model(..., require_tokenizer=False)`: their tokenizer files are not part of the
directory) and by open_clip + timm (`create_model(name)` + `load_state_dict`). Peak memory is the process's RSS high-water mark during the load (VmHWM, reset
after the imports) minus the RSS after the imports: what loading adds, file pages read through a
memory map included (pages mapped but not yet read are not counted; a model whose parameters are
still unread file pages is counted when first used, which this does not do). The
baselines are the libraries' own ways of loading the same files:
    open_clip     create_model(name) + load_state_dict(load_state_dict(file)), or load_openai_model(file)
    transformers  CLIPModel.from_pretrained(directory)
Writes section `pretrained_loading` of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FORMATS = ("open_clip hub dir", "open_clip epoch_K.pt", "OpenAI .pt (fp16)", "HF directory")


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Start the RSS high-water mark afresh (Linux: 5 > /proc/self/clear_refs), so that a transient
    peak while importing does not count as the load's."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_checkpoints(name: str, directory: Path) -> dict[str, Path]:
    """Random weights of open_clip architecture `name` in every format (one cliplab model)."""
    import torch

    import cliplab
    from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
    from cliplab.pretrained.key_maps import from_cliplab
    from cliplab.pretrained.open_clip_keys import open_clip_rules

    torch.manual_seed(0)
    model = cliplab.create_model(name).eval()
    tokenizer = openai_bpe_tokenizer()
    hub = cliplab.export(model, tokenizer, directory / "hub", format="open_clip", force=True)
    hf = cliplab.export(model, tokenizer, directory / "hf", format="hf", force=True)
    state = from_cliplab(model.state_dict(), open_clip_rules(model.config))
    torch.save({"epoch": 1, "state_dict": {f"module.{key}": value for key, value in state.items()}},
               directory / "epoch_1.pt")
    vision = model.config.vision
    openai = {key: value.half() if value.is_floating_point() else value for key, value in state.items()}
    openai.update(input_resolution=torch.tensor(vision.image_size),
                  context_length=torch.tensor(model.config.text.context_length),
                  vocab_size=torch.tensor(model.config.text.vocab_size))
    torch.save(openai, directory / "openai.pt")
    return {FORMATS[0]: hub, FORMATS[1]: directory / "epoch_1.pt", FORMATS[2]: directory / "openai.pt",
            FORMATS[3]: hf}


def write_open_clip_hub_of(name: str, directory: Path) -> dict[str, Path]:
    """An open_clip hub directory (`directory`/hub) of open_clip architecture `name` as open_clip's
    own model lays it out (for the models with a timm tower, whose configs cliplab's export writes
    as plain CLIP)."""
    import torch
    from safetensors.torch import save_file

    from reference_libraries import open_clip, open_clip_model

    library = open_clip()
    torch.manual_seed(0)
    model = open_clip_model(library.get_model_config(name))
    directory = directory / "hub"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": library.get_model_config(name),
                                                                 "preprocess_cfg": {}}))
    save_file({key: value.contiguous() for key, value in model.state_dict().items()},
              str(directory / "open_clip_model.safetensors"))
    return {FORMATS[0]: directory}


def measure(library: str, checkpoint_format: str, path: str, name: str) -> dict:
    """One load in this (fresh) process: {"seconds", "added_mib"}."""
    import torch
    torch.set_num_threads(2)
    if library == "cliplab":
        import cliplab
        from cliplab.model_io import load_model
        from cliplab.data.tokenizer_openai import openai_vocabulary
        from cliplab.models.open_clip_config import builtin_open_clip_config
        openai_vocabulary()  # the BPE vocabulary is read once per process, like the libraries' imports
        load = (lambda: cliplab.load(path, model=name)) if checkpoint_format == FORMATS[1] else (
            lambda: cliplab.load(path))
        if builtin_open_clip_config(name)["vision_cfg"].get("timm_model_name"):
            load = lambda: load_model(path, require_tokenizer=False).model  # noqa: E731
    elif library == "open_clip":
        from reference_libraries import open_clip
        library_module = open_clip()
        if checkpoint_format == FORMATS[2]:
            load = lambda: library_module.load_openai_model(path, device="cpu")  # noqa: E731
        else:
            weights = str(Path(path) / "open_clip_model.safetensors") if Path(path).is_dir() else path

            def load():
                model = library_module.create_model(name)
                model.load_state_dict(library_module.factory.load_state_dict(weights))
                return model
    else:
        import transformers
        load = lambda: transformers.CLIPModel.from_pretrained(path)  # noqa: E731
    reset_peak_rss()
    baseline = rss_mib()
    start = time.perf_counter()
    loaded = load()
    seconds = time.perf_counter() - start
    added = peak_rss_mib() - baseline
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    with torch.no_grad():  # read every parameter once: memory-mapped weights are read here
        checksum = sum(float(tensor.float().sum()) for tensor in model.state_dict().values())
    used_seconds = time.perf_counter() - start
    return {"seconds": seconds, "added_mib": added, "used_seconds": used_seconds,
            "used_mib": peak_rss_mib() - baseline, "checksum": checksum}


def run_measurement(library: str, checkpoint_format: str, path: Path, name: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--measure", library, checkpoint_format, str(path), name],
                               capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ViT-B-32,ViT-L-14", help="open_clip architecture names")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per measurement (median)")
    parser.add_argument("--measure", nargs=4, metavar=("LIBRARY", "FORMAT", "PATH", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--timm-models", default="ViT-B-16-SigLIP2,ViT-SO400M-14-SigLIP",
                        help="open_clip names with a timm image tower (open_clip hub directories only)")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    from benchmarks.report import format_table, load_note, write_section

    headers = ["model", "format", "file MiB", "loader", "load s", "peak RSS added MiB", "load + read every weight s",
               "peak RSS added then MiB"]
    if args.models:
        write_own_section(format_table(headers, measure_rows(args.models.split(","), write_checkpoints, args.repeats)),
                          args.repeats)
    if args.timm_models:
        load_before = os.getloadavg()[0]
        table = format_table(headers, measure_rows(args.timm_models.split(","), write_open_clip_hub_of, args.repeats))
        write_section("pretrained_loading_timm", "Loading open_clip hub directories of timm-tower models", f"""
Random weights of each open_clip architecture with a timm image tower, written once as open_clip lays
out its hub directories (its own model, `text.` prefix of CustomTextCLIP); each figure is the median
over {args.repeats} fresh processes of one load call after the imports (the columns as in "Loading
pretrained checkpoints"). cliplab builds its own towers in timm's layout (`models.families.timm_vit`);
open_clip builds timm's model (random initialisation included) and loads the state dict into it.
{load_note(load_before, os.getloadavg()[0], 2)} Ratios of this one run.

{table}
""")


def measure_rows(names: list[str], write, repeats: int) -> list[list[str]]:
    """The table rows of `names`, their files written by `write(name, directory)`."""
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as workdir:
            paths = write(name, Path(workdir))
            for checkpoint_format, path in paths.items():
                baseline = "transformers" if checkpoint_format == FORMATS[3] else "open_clip"
                file_bytes = sum(item.stat().st_size for item in ([path] if path.is_file() else path.iterdir()))
                for library in ("cliplab", baseline):
                    runs = [run_measurement(library, checkpoint_format, path, name) for _ in range(repeats)]
                    median = {key: statistics.median(run[key] for run in runs)
                              for key in ("seconds", "added_mib", "used_seconds", "used_mib")}
                    rows.append([name, checkpoint_format, f"{file_bytes / 2**20:.0f}", library,
                                 f"{median['seconds']:.2f}", f"{median['added_mib']:.0f}",
                                 f"{median['used_seconds']:.2f}", f"{median['used_mib']:.0f}"])
                    print(" | ".join(rows[-1]), flush=True)
    return rows


def write_own_section(table: str, repeats: int) -> None:
    from benchmarks.report import write_section

    write_section("pretrained_loading", "Loading pretrained checkpoints", f"""
Random weights of each open_clip architecture, written once per format by cliplab's export; each
figure is the median over {repeats} fresh processes of one load call after the imports.
"peak RSS added" is the process's RSS high-water mark during the load minus its RSS after the
imports: the memory a load needs, file pages read through a memory map included. Loaders that
map the file (cliplab for PyTorch zip files, transformers for safetensors) read the weights only
when they are first used, so the last two columns also read every weight once (a sum over each
tensor) and give the time and peak up to then: the figures to compare across loaders. The OpenAI row loads an fp16 file into
an fp32 model (QuickGELU architecture inferred from the shapes), so its file is half the size.

{table}
""")


if __name__ == "__main__":
    main()
