"""Small configs shared by the training tests (a shrunken tiny model, a few steps, no eval)."""

from cliplab.train.config import EvalConfig
from cliplab.train.presets import smoke_config

SMALL_MODEL = {"vision.width": 16, "text.width": 32, "text.heads": 2, "text.layers": 1,
               "text.context_length": 20, "embed_dim": 16}


def small_config(logs, name="run", *, steps=6, batch_size=8, evaluate=False, **loop_overrides):
    config = smoke_config(logs=str(logs), name=name, steps=steps, batch_size=batch_size, **SMALL_MODEL)
    config.data.train_num_samples = 256
    if not evaluate:
        config.eval = EvalConfig(eval_at_end=False)
    for key, value in loop_overrides.items():
        setattr(config.loop, key, value)
    return config
