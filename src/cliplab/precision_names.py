"""The numeric precisions a model runs at, by name (imports nothing, so the CLI's tables and the
configs read it without torch): "fp32"; "bf16" / "fp16" (weights and activations in that dtype);
"amp" / "amp_bf16" (fp32 weights under autocast to fp16 / bf16)."""

PRECISIONS = ("fp32", "bf16", "amp_bf16", "amp", "fp16")
