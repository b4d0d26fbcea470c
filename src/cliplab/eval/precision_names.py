"""The inference precisions a command takes (--precision), importable without torch so that
building the command-line parser stays torch-free; `split_features.autocast_for` gives each one
its autocast."""

PRECISIONS = ("fp32", "amp", "fp16", "bf16", "amp_bf16")
