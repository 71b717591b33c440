"""The forward shells shared by the decoder-only models: token ids -> embed -> blocks -> head.

`Decoder` is the __call__ every causal model here runs (GPT-2, Gemma 2/3 and the rotary decoders below): it
needs `embed`, `run_blocks` and `head` from the architecture. `RotaryDecoder` adds what Llama, Qwen, Mistral,
Gemma v1, Phi-3 and OLMo 2 share exactly: one set of rotary frequencies, a token embedding, the stacked blocks
(each called as block(h, layer, cos, sin, mask)), a final norm and a tied or separate LM head. An architecture
overrides `embed` or `head` where it differs (e.g. Gemma's scaled embedding).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ie_jax.models.layers import rotary_cos_sin
from ie_jax.models.masks import make_mask
from ie_jax.models.stack import layer_block, scan_blocks, stacked_blocks


class Decoder(nnx.Module):
    def __call__(self, token_ids, position_ids=None, mask="causal"):
        """token_ids [B, T] -> logits [B, T, vocab] (causal, positions 0..T-1 unless given)."""
        t = token_ids.shape[1]
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t), token_ids.shape)
        h, _, _ = self.run_blocks(self.embed(token_ids, position_ids), position_ids, make_mask(mask, t))
        return self.head(h)


class RotaryDecoder(Decoder):
    def __init__(self, config, *, dtype, rngs: nnx.Rngs, inv_freq, make_block, norm: nnx.Module, tied_head: bool):
        """config needs num_layers, hidden_size, vocab_size; inv_freq [rotary_dim // 2] (layers.rope_inv_freq);
        make_block(rngs) -> one block; norm: the final norm; tied_head: logits from the embedding matrix."""
        self.config, self.dtype = config, dtype
        # A tuple of floats: a hashable constant of the graph, not a parameter.
        self.inv_freq = tuple(float(f) for f in inv_freq)
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.blocks = stacked_blocks(make_block, config.num_layers, rngs)
        self.norm = norm
        self.tied_head = tied_head
        if not tied_head:
            self.lm_head = nnx.Linear(config.hidden_size, config.vocab_size, use_bias=False, dtype=dtype,
                                      param_dtype=dtype, rngs=rngs)

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
        return self.embed_tokens.attend(h) if self.tied_head else self.lm_head(h)
