"""Collectives with autograd and process-group helpers. Knows nothing of losses or models."""
