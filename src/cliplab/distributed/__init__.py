"""Collectives with autograd, process-group helpers, and how ranks agree on an outcome
(`agreement`). Knows nothing of losses or models."""
