"""Pretrained language models as flax.nnx modules, with per-block capture of the residual stream."""

from ie_jax.models.capture import Capture, capture, logits, run_block
from ie_jax.models.loading import LoadedModel, load_model, random_model
from ie_jax.models.masks import bidirectional_mask, causal_mask, isolated_mask
from ie_jax.models.registry import list_architectures

__all__ = [
    "Capture", "LoadedModel", "bidirectional_mask", "capture", "causal_mask", "isolated_mask",
    "list_architectures", "load_model", "logits", "random_model", "run_block",
]
