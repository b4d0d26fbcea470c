"""`cliplab report RUN_DIR`: PNG plots of a training run and a report.md linking them."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from cliplab.cli.common import add_command_parser, add_device_argument, load_for_use
from cliplab.errors import MissingInputError, UserError

if TYPE_CHECKING:
    from cliplab.data import DataConfig

DESCRIPTION = ("Plot losses, learning rate, logit scale, accuracies, zero-shot results, the last confusion matrix "
               "and an image-caption similarity matrix of the run's own data; write report.md linking them.")
EPILOG = """\
Reads RUN_DIR/metrics.jsonl and RUN_DIR/summary.json. The similarity figure loads the newest
checkpoint of RUN_DIR/checkpoints that verifies and embeds up to 10 of the run's own image-caption
pairs against each other: from its validation data (the training data when it has none; data as
RUN_DIR/config.json names it), one image per class where the data has labels, each with its own
caption. A metric measured once (a single evaluation) is drawn as bars. Figures whose data the run
has not logged yet are left out.

examples:
  cliplab report logs/tiny-run                  # writes logs/tiny-run/report/report.md + PNGs
  cliplab report logs/tiny-run --out-dir /tmp/tiny-report
  cliplab report logs/tiny-run --no-similarity  # metrics only, no model loaded
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command_parser(subparsers, "report", help="plots and a markdown report of a training run",
                                description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory (holding metrics.jsonl)")
    parser.add_argument("--out-dir", metavar="DIR", help="where to write the report (default: RUN_DIR/report)")
    parser.add_argument("--no-similarity", action="store_true",
                        help="skip the similarity matrix (no checkpoint is loaded)")
    parser.add_argument("--data-dir", metavar="DIR", help="directory of the Fashion-MNIST idx files (default: system copy or cache)")
    add_device_argument(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    print(f"wrote {write_report(args)}")
    return 0


def write_report(args: argparse.Namespace) -> Path:
    """Write the figures and report.md; returns the path of report.md."""
    from cliplab.eval.report import figure_notes, read_metrics, read_summary, report_markdown, training_figures
    from cliplab.eval.run_layout import METRICS_FILE

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise MissingInputError(f"RUN_DIR {run_dir} does not exist or is not a directory")
    if not (run_dir / METRICS_FILE).is_file():
        raise MissingInputError(f"RUN_DIR {run_dir} has no {METRICS_FILE}: expected a cliplab training run directory")
    out_dir = Path(args.out_dir) if args.out_dir else run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = read_metrics(run_dir / METRICS_FILE)
    figures = training_figures(metrics, out_dir)
    notes: list[str] = figure_notes(metrics)
    if not metrics.evals:
        notes.append("No evaluation has been logged yet: zero-shot and confusion figures are missing.")
    if args.no_similarity:
        notes.append("Similarity matrix skipped (--no-similarity).")
    else:
        similarity_figure = _similarity_figure(args, run_dir, out_dir, notes)
        if similarity_figure is not None:
            figures["Image-text similarity"] = similarity_figure
    report_path = out_dir / "report.md"
    report_path.write_text(report_markdown(run_dir, out_dir, metrics, read_summary(run_dir), figures, notes))
    for path in figures.values():
        print(f"wrote {path}")
    return report_path


def _similarity_figure(args: argparse.Namespace, run_dir: Path, out_dir: Path, notes: list[str]) -> Path | None:
    from cliplab.model_io import CheckpointNotFoundError
    from cliplab.data import build_eval_loader
    from cliplab.eval.plots import plot_similarity_matrix
    from cliplab.eval.similarity_sample import similarity_sample

    try:
        loaded = load_for_use(run_dir, args.device)
    except CheckpointNotFoundError as error:
        notes.append(f"Similarity matrix skipped: no checkpoint to load ({error}).")
        return None
    try:
        data, described = similarity_data(run_dir, args.data_dir)
        loader, _ = build_eval_loader(data, transform=loaded.preprocess, tokenize=loaded.tokenizer, batch_size=64,
                                      workers=0, pin_memory=False)
        normalisation = loaded.preprocess.config
        sample = similarity_sample(loaded.model, loader, mean=normalisation.mean, std=normalisation.std)
    except UserError as error:  # the run's data moved or went: the other figures still say something
        notes.append(f"Similarity matrix skipped: {error}.")
        return None
    by_label = " (one per class)" if min(sample.labels) >= 0 else ""
    notes.append(f"Similarity matrix: checkpoint {loaded.path}, the first {len(sample.texts)} image-caption pairs"
                 f"{by_label} of the run's {described}, each image against every caption.")
    return plot_similarity_matrix(out_dir / "similarity_matrix.png", sample.similarity, sample.images, sample.texts,
                                  f"Image-caption cosine similarity, {described} ({loaded.path.name})")


def similarity_data(run_dir: Path, fashion_mnist_dir: str | None) -> tuple[DataConfig, str]:
    """The data config whose evaluation split holds the pairs to show (the run's validation data,
    else its training data), and words for it; from RUN_DIR/config.json."""
    from cliplab.data.sources import data_source
    from cliplab.eval.run_layout import RUN_CONFIG_FILE
    from cliplab.train.config.io import read_data_section

    config_path = run_dir / RUN_CONFIG_FILE
    if not config_path.is_file():
        raise MissingInputError(f"{config_path} does not exist, so the run's data is unknown")
    data = read_data_section(config_path)
    source = data_source(data.dataset_type)
    if source.built_in:
        directory = fashion_mnist_dir or data.val_data or data.train_data
        return replace(data, val_data=directory, train_data=directory), f"{source.title} test split"
    if data.val_data is not None:
        return data, f"validation data ({data.val_data})"
    return (replace(data, val_data=data.train_data, val_num_samples=data.train_num_samples),
            f"training data ({data.train_data}; the run has no validation data)")
