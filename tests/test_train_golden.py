"""Golden trajectory: 50 deterministic CPU steps of the shrunken tiny model reproduce a committed
loss file exactly (RELIABILITY item 9).

Any change to the model, initialisation, data order, augmentation, tokenizer, loss, optimiser,
schedule or RNG use shows up here. When such a change is intended, regenerate the file
deliberately (`python scripts/make_golden_losses.py`) and say why in the commit. The values are
those of this machine's CPU kernels (torch 2.13, one thread); another CPU or torch build may
differ in the last bits.
"""

import json

from golden_run import GOLDEN_FILE, REGENERATE, STEPS, golden_losses


def test_fifty_steps_match_the_committed_losses_exactly(tmp_path):
    golden = json.loads(GOLDEN_FILE.read_text())
    assert len(golden) == STEPS and all(isinstance(loss, float) for loss in golden)
    losses = golden_losses(tmp_path)
    first_difference = next((step for step, (a, b) in enumerate(zip(losses, golden), 1) if a != b), None)
    assert losses == golden, (
        f"the training trajectory changed: first at step {first_difference} "
        f"(got {losses[first_difference - 1]!r}, golden {golden[first_difference - 1]!r}). "
        f"If the numerics changed on purpose, regenerate {GOLDEN_FILE.name} with `{REGENERATE}` "
        f"and explain the change in the commit; otherwise this is a regression.")
