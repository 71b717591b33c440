"""The forward shell shared by rotary decoder-only models (Llama family, Gemma v1, Phi-3, OLMo 2).

A subclass builds `config`, `inv_freq` (a tuple of floats), `embed_tokens`, `blocks` (from `stacked_blocks`,
each block called as block(h, layer, cos, sin, mask)), `norm` and, unless the head is tied, `lm_head`; it
overrides `embed` or `head` where its architecture differs (e.g. Gemma's scaled embedding).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ie_jax.models.layers import rotary_cos_sin
from ie_jax.models.masks import make_mask
from ie_jax.models.stack import layer_block, scan_blocks


class RotaryDecoder(nnx.Module):
    def embed(self, token_ids, position_ids=None):
        """token_ids [B, T] -> h [B, T, d]. Positions enter through RoPE, not here."""
        del position_ids
        return self.embed_tokens(token_ids)

    def run_blocks(self, h, position_ids, mask, positions=None):
        """h [B, T, d] through all blocks -> (h_out [B, T, d], block_inputs [L, B, P, d], block_outputs [L, B, P, d]).

        position_ids [B, T] ints; mask bool [B or 1, 1, T, T]; positions: None (P = T), [P] or [B, P] ints.
        """
        cos, sin = rotary_cos_sin(self.inv_freq, position_ids, h.dtype)
        return scan_blocks(self.blocks, h, lambda block, x, layer: block(x, layer, cos, sin, mask), positions)

    def run_block(self, layer, h, position_ids, mask):
        """Block `layer` alone on h [B, T, d] -> [B, T, d] (e.g. Gaussian input states)."""
        cos, sin = rotary_cos_sin(self.inv_freq, position_ids, h.dtype)
        return layer_block(self.blocks, layer)(h, layer, cos, sin, mask)

    def head(self, h):
        """Final norm and LM head: h [B, T, d] -> logits [B, T, vocab]."""
        h = self.norm(h)
        return self.embed_tokens.attend(h) if self.config.tie_word_embeddings else self.lm_head(h)

    def __call__(self, token_ids, position_ids=None, mask="causal"):
        """token_ids [B, T] -> logits [B, T, vocab] (causal, positions 0..T-1 unless given)."""
        t = token_ids.shape[1]
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t), token_ids.shape)
        h, _, _ = self.run_blocks(self.embed(token_ids, position_ids), position_ids, make_mask(mask, t))
        return self.head(h)
