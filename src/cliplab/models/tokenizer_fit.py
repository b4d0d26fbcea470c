"""Whether a tokenizer can drive a model's text tower (checked when saving, exporting, training)."""

from __future__ import annotations

from typing import Any

from cliplab.errors import UserError
from cliplab.models.config import ModelConfig


def check_tokenizer_fits(config: ModelConfig, tokenizer: Any, source: str) -> None:
    """UserError naming `source` when `tokenizer` cannot drive `config`'s text tower: more ids or a
    longer context than the tower has, another padding id, or an end-of-text id the pooling rule
    does not find (pool "argmax" needs end-of-text to be the largest id, as in the OpenAI BPE;
    pool "eos" needs the tower's eos_id)."""
    text = config.text
    problems = []
    if tokenizer.vocab_size > text.vocab_size:
        problems.append(f"tokenizer.vocab_size ({tokenizer.vocab_size}) exceeds the model's text.vocab_size "
                        f"({text.vocab_size})")
    if tokenizer.context_length > text.context_length:
        problems.append(f"tokenizer.context_length ({tokenizer.context_length}) exceeds the model's "
                        f"text.context_length ({text.context_length})")
    if tokenizer.pad_id != text.pad_id:
        problems.append(f"tokenizer.pad_id ({tokenizer.pad_id}) differs from the model's text.pad_id ({text.pad_id})")
    pool = getattr(text, "pool", None)  # a Hugging Face tower pools by its own rule, no id needed
    if pool == "argmax" and tokenizer.eot_id != tokenizer.vocab_size - 1:
        problems.append(f"the model pools text at the largest id (text.pool='argmax') but the tokenizer's "
                        f"end-of-text id {tokenizer.eot_id} is not its largest ({tokenizer.vocab_size - 1})")
    if pool == "eos" and tokenizer.eot_id != text.eos_id:
        problems.append(f"the model pools text at eos_id {text.eos_id} but the tokenizer ends text with "
                        f"{tokenizer.eot_id}")
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))


def check_captions_fit(config: ModelConfig, tokenizer: Any, source: str) -> None:
    """UserError naming `source` when a CoCa model's decoder predicts fewer ids than `tokenizer`
    makes (its caption loss would meet labels past its vocabulary): open_clip's
    coca_roberta-ViT-B-32 predicts 49408 ids, RoBERTa's tokenizer makes 50265 (a training run
    can set decoder.vocab_size to the tokenizer's)."""
    if config.decoder is not None and tokenizer.vocab_size > config.decoder_vocab_size:
        raise UserError(f"{source}: tokenizer.vocab_size ({tokenizer.vocab_size}) exceeds the ids the CoCa decoder "
                        f"predicts ({config.decoder_vocab_size}, decoder.vocab_size): its captions would hold ids "
                        "the caption loss cannot score")
