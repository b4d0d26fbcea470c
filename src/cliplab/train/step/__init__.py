"""The parts of one optimiser step (`Trainer.train_step` calls them):

    accumulation.py  `forward_backward`: micro-batches, gradient accumulation, feature caching
    text_prefix.py   the token columns the step's global batch needs, the same on every rank
    loss_table.py    `LOSS_TABLE`: which loss a model kind trains with, what it reads
    precision.py     autocast and the GradScaler
    optim.py         AdamW's parameter groups, gradient clipping, the logit-scale clamp
    schedule.py      the learning-rate schedule and its warm-up warning
    guards.py        non-finite losses: skip, count, stop
"""
