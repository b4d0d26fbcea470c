import io

import torch

from cliplab.train.config import LoggingConfig
from cliplab.train.metrics.log import StepReport, TrainLogger, eval_line, step_line
from cliplab.train.state import TrainState
from cliplab.train.step.accumulation import LossOutput


def _report(terms, *, total=None, epoch=1):
    total = sum(terms.values()) if total is None else total
    return StepReport(epoch=epoch, epoch_done=False, lr=1.25e-4, grad_norm=None, samples=512, data_wait_s=0.0125,
                      step_time_s=0.5, output=LossOutput(total=torch.tensor(total),
                                                         terms={name: torch.tensor(v) for name, v in terms.items()}))


def _state(step):
    state = TrainState()
    state.step = step
    return state


def test_step_line_names_every_quantity_of_the_step():
    line = step_line(_state(10), _report({"contrastive_loss": 2.0, "caption_loss": 1.5}), total_steps=40, eta_s=65.0)
    assert line == ("step 10/40 (25%) | epoch 1 | loss 3.5000 (contrastive_loss 2.0000, caption_loss 1.5000) | "
                    "lr 0.000125 | 1024 samples/s | data wait 0.013 s | ETA 1:05")


def test_a_loss_that_is_its_only_term_is_printed_once():
    line = step_line(_state(40), _report({"contrastive_loss": 2.0}), total_steps=40, eta_s=None)
    assert "| loss 2.0000 |" in line and "contrastive_loss" not in line and "ETA" not in line


def test_eval_line_says_what_each_figure_measures_and_its_chance_level():
    # Before: "retrieval R@1 image-to-text 0.0120" beside "zero-shot top-1 0.9064", unexplained.
    record = {"step": 7, "image_to_text_R@1": 0.012, "text_to_image_R@1": 0.011, "retrieval_count": 10000}
    retrieval = ("  retrieval R@1 image-to-text 1.20%, text-to-image 1.10% of 10000 pairs (chance 0.01%: a hit is "
                 "the pair's own caption (image) ranked first of all 10000, so captions that fit many images keep it "
                 "low)")
    assert eval_line(record) == "eval at step 7:\n" + retrieval
    record.update(zero_shot_top1=0.9064, zero_shot_top5=0.9988, zero_shot_count=10000, classnames=list("abcdefghij"))
    assert eval_line(record) == ("eval at step 7:\n  zero-shot top-1 90.64%, top-5 99.88% of 10000 images (chance "
                                 "10.00%, 50.00%: the true class among the 1 or 5 closest of 10 class prompts)\n"
                                 + retrieval)
    assert eval_line({"step": 1, "image_to_text_R@1": 0.5, "text_to_image_R@1": 0.25}) == (
        "eval at step 1:\n  retrieval R@1 image-to-text 50.00%, text-to-image 25.00%")  # a record without its count
    record = {"step": 3, "zero_shot_top1": 0.75, "zero_shot_top5": 1.0, "zero_shot_mean_per_class_recall": 0.625,
              "zero_shot_count": 8, "classnames": ["a", "b", "c", "d"]}
    assert eval_line(record) == ("eval at step 3:\n  zero-shot top-1 75.00%, top-4 100.00%, mean per-class recall "
                                 "62.50% of 8 images (chance 25.00%, 100.00%, 25.00%: the true class among the 1 or "
                                 "4 closest of 4 class prompts)")


def test_without_a_terminal_a_line_every_n_steps_and_at_the_last(tmp_path, monkeypatch):
    stdout = io.StringIO()
    monkeypatch.setattr("sys.stdout", stdout)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    logger = TrainLogger(tmp_path, LoggingConfig(log_every_n_steps=3, tensorboard=False), enabled=True,
                         start_step=0, total_steps=7, run_config={})
    for step in range(1, 8):
        logger.log_step(_state(step), _report({"contrastive_loss": 1.0}))
    logger.close()
    printed = stdout.getvalue()
    assert "\r" not in printed
    assert [line.split(" | ")[0] for line in printed.splitlines()] == ["step 3/7 (43%)", "step 6/7 (86%)",
                                                                      "step 7/7 (100%)"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
