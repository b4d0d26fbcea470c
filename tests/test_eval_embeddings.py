"""Text embeddings in batches: sorted by length and cut to the columns the tower reads, returned in
the given order, equal to encoding every text over the whole context."""

import pytest
import torch
import torch.nn.functional as F

from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.eval.embeddings import encode_texts
from cliplab.models import create_model


@pytest.mark.parametrize("text", [{}, {"text.pool": "argmax", "text.padding_mask": "none"}])  # cliplab's, OpenAI's
def test_length_sorted_trimmed_batches_equal_whole_context_encoding(text):
    torch.manual_seed(0)
    model = create_model("tiny", **{"text.width": 32, "text.heads": 2, "text.layers": 2, "embed_dim": 16,
                                    "text.vocab_size": 49408, **text}).eval()
    context = model.config.text.context_length
    tokenizer = openai_bpe_tokenizer(context)
    texts = ["a photo of a very small grey ankle boot on a table", "bag", "a t-shirt", "the trouser, front",
             "an item of clothing: a pullover made of knitted wool", "coat"]
    seen = []
    original = model.encode_text
    model.encode_text = lambda tokens, **kwargs: seen.append(tokens.shape) or original(tokens, **kwargs)
    ours = encode_texts(model, tokenizer, texts, batch_size=2)
    model.encode_text = original
    with torch.no_grad():
        expected = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    assert max(shape[1] for shape in seen[:2]) < context  # the short texts' batches are cut
    assert [shape[0] for shape in seen] == [2, 2, 2]
