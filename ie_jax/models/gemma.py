"""Gemma v1 (Gemma Team 2024) as a flax.nnx module: gemma-2b (multi-query) and gemma-7b (multi-head).

Differences from Llama: the token embedding is multiplied by sqrt(hidden_size) (rounded to the activation
dtype, as HF does), RMSNorm scales by (1 + w) computed in fp32, the MLP is GeGLU with the tanh GELU,
head_dim comes from the config (256, not hidden_size / num_heads), and the LM head is tied to the embedding.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from ie_jax.models.layers import GatedMLP, RMSNorm, apply_rotary, attention, gelu_tanh, rope_inv_freq
from ie_jax.models.decoder import RotaryDecoder

# Gemma's released configs say "gelu" but were trained with the tanh approximation; HF maps them to it too.
_GELU_NAMES = ("gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_tanh")


@dataclasses.dataclass(frozen=True)
class GemmaConfig:
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}.")

    @classmethod
    def from_hf(cls, hf: dict) -> GemmaConfig:
        """Config from a HF `config.json` dict of model_type "gemma"."""
        activation = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
        if activation not in _GELU_NAMES:
            raise ValueError(f"Gemma activation {activation!r} is not supported; expected one of {_GELU_NAMES}.")
        # transformers 5 keeps rope_theta inside rope_parameters; older configs at top level.
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise ValueError(f"Gemma v1 uses plain RoPE; rope scaling {rope} is not supported.")
        return cls(
            num_layers=hf["num_hidden_layers"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 8192),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(hf.get("rope_theta", rope.get("rope_theta", 10000.0))),
            attention_bias=hf.get("attention_bias", False),
        )


class Attention(nnx.Module):
    def __init__(self, config: GemmaConfig, *, dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim
        linear = lambda i, o: nnx.Linear(  # noqa: E731
            i, o, use_bias=config.attention_bias, dtype=dtype, param_dtype=dtype, rngs=rngs
        )
        self.q_proj = linear(d, config.num_heads * hd)
        self.k_proj = linear(d, config.num_kv_heads * hd)
        self.v_proj = linear(d, config.num_kv_heads * hd)
        self.o_proj = linear(config.num_heads * hd, d)
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, hd

    def __call__(self, x, cos, sin, mask):
        """x [B, T, d], cos/sin [B, T, hd], mask bool [B or 1, 1, T, T] -> [B, T, d]."""
        b, t, _ = x.shape
        q = apply_rotary(self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim), cos, sin)
        k = apply_rotary(self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        return self.o_proj(attention(q, k, v, mask, scale=self.head_dim**-0.5))


class Block(nnx.Module):
    def __init__(self, config: GemmaConfig, *, dtype, rngs: nnx.Rngs):
        norm = lambda: RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, unit_offset=True)  # noqa: E731
        self.input_layernorm = norm()
        self.self_attn = Attention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = norm()
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, gelu_tanh, dtype=dtype, rngs=rngs)

    def __call__(self, h, layer, cos, sin, mask):
        del layer  # every Gemma v1 layer is the same
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Gemma(RotaryDecoder):
    """Gemma v1 language model. Token ids [B, T] -> logits [B, T, vocab]."""

    def __init__(self, config: GemmaConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(
            config, dtype=dtype, rngs=rngs,
            inv_freq=rope_inv_freq(config.head_dim, config.rope_theta),
            make_block=lambda r: Block(config, dtype=dtype, rngs=r),
            norm=RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, unit_offset=True),
            tied_head=True,
        )

    def embed(self, token_ids, position_ids=None):
        """token_ids [B, T] -> h [B, T, d] = embedding * sqrt(d). Positions enter through RoPE, not here."""
        del position_ids
        h = self.embed_tokens(token_ids)
        # The scale is rounded to the activation dtype first (bf16: sqrt(2048) = 45.25), as in the reference.
        return h * jnp.asarray(self.config.hidden_size**0.5, dtype=h.dtype)


_LAYER = r"model\.layers\.(\d+)\."
WEIGHT_MAP = (
    (r"model\.embed_tokens\.weight", "embed_tokens.embedding", "identity"),
    (_LAYER + r"input_layernorm\.weight", "blocks.input_layernorm.weight", "identity"),
    *((_LAYER + rf"self_attn\.{p}_proj\.weight", f"blocks.self_attn.{p}_proj.kernel", "transpose") for p in "qkvo"),
    *((_LAYER + rf"self_attn\.{p}_proj\.bias", f"blocks.self_attn.{p}_proj.bias", "identity") for p in "qkvo"),
    (_LAYER + r"post_attention_layernorm\.weight", "blocks.post_attention_layernorm.weight", "identity"),
    *((_LAYER + rf"mlp\.{p}_proj\.weight", f"blocks.mlp.{p}_proj.kernel", "transpose") for p in ("gate", "up", "down")),
    (r"model\.norm\.weight", "norm.weight", "identity"),
)


def ignored_keys(config: GemmaConfig) -> tuple[str, ...]:
    """Checkpoint keys present in some files that carry nothing the model needs (the head is tied)."""
    del config
    return (r"lm_head\.weight", r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


TRANSFORMS: dict = {}
CONFIG_CLASS = GemmaConfig
MODEL_CLASS = Gemma
CAUSAL = True
