"""The position grid resized per image equals transformers' Siglip2VisionEmbeddings resize (bilinear,
antialiased when shrinking) for real patches, growing and shrinking, in a mixed batch."""

import pytest
import torch

from cliplab.models.layers.naflex_positions import resized_positions
from reference_libraries import transformers


def test_equals_siglip2s_resize_on_every_real_patch():
    embeddings = pytest.importorskip("transformers.models.siglip2.modeling_siglip2").Siglip2VisionEmbeddings
    transformers()
    grid = torch.randn(6, 6, 10, generator=torch.Generator().manual_seed(0))
    shapes = torch.tensor([[6, 6], [2, 15], [9, 3], [1, 1], [2, 15], [4, 7]])
    ours = resized_positions(grid, shapes, 40)
    theirs = embeddings.resize_positional_embeddings(grid, shapes, max_length=40)
    for index, (rows, columns) in enumerate(shapes.tolist()):
        real = rows * columns
        torch.testing.assert_close(ours[index, :real], theirs[index, :real], rtol=0, atol=1e-6)
        assert not ours[index, real:].any()
    assert torch.equal(ours[0, :36], grid.reshape(36, 10))


def test_shapes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match=r"1 <= rows \* columns <= 8 .*got \(3, 3\)"):
        resized_positions(torch.zeros(2, 2, 4), torch.tensor([[3, 3]]), 8)
