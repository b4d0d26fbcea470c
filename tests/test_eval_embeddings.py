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


def test_every_caption_of_each_image_is_encoded_and_owned_up_to_max_samples():
    from cliplab.eval.embeddings import encode_images_and_captions
    from eval_toy_models import BagOfTokensModel

    model = BagOfTokensModel().eval()
    generator = torch.Generator().manual_seed(2)
    images, tokens = torch.randn(5, 3, 2, 2, generator=generator), torch.randint(1, 64, (9, 4), generator=generator)
    lists = [["a", "b"], ["c"], ["d", "e", "f"], ["g"], ["h", "i"]]  # 9 captions, tokens row by row
    batches = [{"images": images[:3], "tokens": tokens[:3], "caption_lists": lists[:3], "caption_tokens": tokens[:6]},
               {"images": images[3:], "tokens": tokens[:2], "caption_lists": lists[3:], "caption_tokens": tokens[6:]}]
    image_features, text_features, image_of_text = encode_images_and_captions(model, batches, max_samples=4)
    assert image_of_text.tolist() == [0, 0, 1, 2, 2, 2, 3]
    with torch.no_grad():  # encoded in two batches: the same up to float summation order
        torch.testing.assert_close(image_features, model.encode_image(images[:4], normalize=True), rtol=0, atol=1e-6)
        torch.testing.assert_close(text_features, model.encode_text(tokens[:7], normalize=True), rtol=0, atol=1e-6)
    _, one_each, owners = encode_images_and_captions(model, [{"images": images, "tokens": tokens[:5]}])
    assert owners.tolist() == [0, 1, 2, 3, 4] and one_each.shape == (5, 6)
