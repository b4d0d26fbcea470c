"""The step's token columns: every micro-batch cut to the prefix the whole global batch needs."""

import torch

from cliplab.models import create_model
from cliplab.train.step.accumulation import MicroBatch
from cliplab.train.step.text_prefix import cut_to_step_prefix, step_token_columns

OVERRIDES = {"embed_dim": 16, "vision.width": 16, "text.width": 16, "text.heads": 2, "text.context_length": 8,
             "text.vocab_size": 40}


def micro_batches():
    """Two micro-batches whose longest texts (end-of-text id 3) end at columns 3 and 5."""
    images = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    first = torch.tensor([[1, 7, 3, 0, 0, 0, 0, 0], [1, 8, 9, 3, 0, 0, 0, 0]])
    second = torch.tensor([[1, 3, 0, 0, 0, 0, 0, 0], [1, 5, 6, 7, 8, 3, 0, 0]])
    return [MicroBatch(images, first), MicroBatch(images, second)]


def test_every_micro_batch_is_cut_to_the_longest_prefix_of_the_step_and_keeps_its_outputs():
    torch.manual_seed(0)
    model = create_model("tiny", output_dict=True, **OVERRIDES).train()
    micro = micro_batches()
    assert [model.token_columns_read(batch.tokens) for batch in micro] == [4, 6]
    assert step_token_columns(micro, model) == 6
    cut = cut_to_step_prefix(micro, model)
    assert [tuple(batch.tokens.shape) for batch in cut] == [(2, 6), (2, 6)]
    assert all(torch.equal(batch.images, original.images) for batch, original in zip(cut, micro))
    for batch, original in zip(cut, micro):
        # The same computation on fewer columns: equal up to float reassociation.
        torch.testing.assert_close(model(batch.images, batch.tokens)["text_features"],
                                   model(original.images, original.tokens)["text_features"], rtol=0, atol=1e-6)


def test_no_cut_where_the_forward_reads_every_column():
    micro = micro_batches()
    torch.manual_seed(0)
    under_dropout = create_model("tiny", **OVERRIDES, **{"text.dropout": 0.1}).train()
    coca = create_model("tiny-coca", **OVERRIDES).train()  # its captioning labels are every column
    assert step_token_columns(micro, under_dropout) == step_token_columns(micro, coca) == 8
