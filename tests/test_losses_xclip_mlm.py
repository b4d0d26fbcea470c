import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.xclip.mlm import mask_tokens, mlm_loss, ordinary_token_ids

PAD, SOT, EOT, MASK = 0, 1, 2, 3
VOCAB = 50
PROTECTED = (PAD, SOT, EOT)


def _large_batch(seed=0, rows=400, length=50):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, VOCAB, (rows, length), generator=generator)
    tokens[:, 0] = SOT
    lengths = torch.randint(3, length + 1, (rows,), generator=generator)
    positions = torch.arange(length)[None, :]
    tokens[positions == (lengths[:, None] - 1)] = EOT
    tokens[positions >= lengths[:, None]] = PAD
    return tokens


def test_specials_and_padding_are_never_selected_or_changed():
    tokens = _large_batch()
    masked = mask_tokens(tokens, protected_ids=PROTECTED, mask_id=MASK, vocab_size=VOCAB,
                         generator=torch.Generator().manual_seed(1))
    special = torch.isin(tokens, torch.tensor(PROTECTED))
    assert not masked.selected[special].any()
    assert torch.equal(masked.input_tokens[special], tokens[special])
    assert torch.equal(masked.target_tokens, tokens)
    # random replacements are ordinary ids: no special id appears where there was none
    assert not torch.isin(masked.input_tokens[~special], torch.tensor(PROTECTED)).any()
    # unselected positions are untouched
    assert torch.equal(masked.input_tokens[~masked.selected], tokens[~masked.selected])


def test_ratios_are_right_and_counts_exact_for_the_seed():
    tokens = _large_batch()
    masked = mask_tokens(tokens, protected_ids=PROTECTED, mask_id=MASK, vocab_size=VOCAB,
                         mask_probability=0.15, mask_token_fraction=0.8, random_token_fraction=0.1,
                         generator=torch.Generator().manual_seed(7))
    candidates = int((~torch.isin(tokens, torch.tensor(PROTECTED))).sum())
    selected = int(masked.selected.sum())
    became_mask = int((masked.selected & (masked.input_tokens == MASK)).sum())
    changed = masked.selected & (masked.input_tokens != tokens) & (masked.input_tokens != MASK)
    kept = int((masked.selected & (masked.input_tokens == tokens)).sum())

    # statistically right: within 5 standard deviations of the binomial expectations
    def within(count, trials, probability):
        return abs(count - trials * probability) < 5 * math.sqrt(trials * probability * (1 - probability))
    assert within(selected, candidates, 0.15)
    assert within(became_mask, selected, 0.8)
    # a random replacement equals the original with probability 1 / (ordinary ids), counted as kept
    ordinary = VOCAB - 4
    assert within(int(changed.sum()), selected, 0.1 * (1 - 1 / ordinary))
    assert within(kept, selected, 0.1 + 0.1 / ordinary)

    # exact for the seed: replay the documented draw order directly
    generator = torch.Generator().manual_seed(7)
    selection_draw = torch.rand(tokens.shape, generator=generator)
    kind_draw = torch.rand(tokens.shape, generator=generator)
    random_draw = torch.randint(ordinary, tokens.shape, generator=generator)
    expected_selected = (tokens > 3) & (selection_draw < 0.15)
    expected_mask = expected_selected & (kind_draw < 0.8)
    expected_random = expected_selected & (kind_draw >= 0.8) & (kind_draw < 0.9)
    assert selected == int(expected_selected.sum())
    assert became_mask == int(expected_mask.sum())
    assert torch.equal(masked.input_tokens[expected_random], (random_draw + 4)[expected_random])


def test_ordinary_ids_leave_out_protected_ones():
    assert ordinary_token_ids(6, [0, 2, 5]).tolist() == [1, 3, 4]


def test_loss_is_cross_entropy_over_selected_positions_only():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    targets = torch.tensor([0, 1])
    expected = ((math.log(math.exp(2) + 1 + math.exp(-1)) - 2)
                + (math.log(2 * math.exp(0.5) + math.exp(3)) - 0.5)) / 2
    assert mlm_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(mlm_loss(logits, targets), F.cross_entropy(logits, targets))


def test_no_selected_positions_gives_a_connected_zero():
    weight = torch.randn(4, 7, requires_grad=True)
    loss = mlm_loss(torch.zeros(0, 4) @ weight, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(weight.grad, torch.zeros(4, 7))


def test_bad_input_names_the_argument():
    tokens = _large_batch(rows=2)
    with pytest.raises(ValueError, match="mask_probability"):
        mask_tokens(tokens, protected_ids=PROTECTED, mask_id=MASK, vocab_size=VOCAB, mask_probability=1.5)
    with pytest.raises(ValueError, match="mask_token_fraction and random_token_fraction"):
        mask_tokens(tokens, protected_ids=PROTECTED, mask_id=MASK, vocab_size=VOCAB,
                    mask_token_fraction=0.8, random_token_fraction=0.3)
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(tokens, protected_ids=PROTECTED, mask_id=VOCAB, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="tokens"):
        mask_tokens(tokens.float(), protected_ids=PROTECTED, mask_id=MASK, vocab_size=VOCAB)
