"""OLMo 2 (Team OLMo 2024) as a flax.nnx module: OLMo-2 1B, 7B, 13B, 32B.

A Llama-like decoder with the norms moved: no norm before attention or the MLP, an RMSNorm on each
sublayer's OUTPUT before it joins the residual stream (h + norm(attn(h)), then + norm(mlp(.))), and an
RMSNorm over all query (and all key) features together, before the heads are split and rotated. Its RMSNorm
multiplies by the scale in fp32 before casting back. SwiGLU MLP, untied LM head.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from ie_jax.models.layers import (
    GatedMLP, RMSNorm, apply_rotary, attention, check_rope_type, hashable_rope, rope_inv_freq, rope_parameters, silu,
)
from ie_jax.models.decoder import RotaryDecoder


@dataclasses.dataclass(frozen=True)
class Olmo2Config:
    """Shapes of an OLMo 2 model (from_hf reads HF's config.json)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 500000.0
    rope_scaling: tuple[tuple[str, object], ...] | None = None
    attention_bias: bool = False
    tie_word_embeddings: bool = False

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, hf: dict) -> Olmo2Config:
        """Config from an HF config.json dict of model_type "olmo2"."""
        activation = hf.get("hidden_act", "silu")
        if activation != "silu":
            raise ValueError(f"olmo2: activation {activation!r} is not supported; OLMo 2 uses 'silu'.")
        rope = rope_parameters(hf)
        check_rope_type(rope, "olmo2")
        return cls(
            num_layers=hf["num_hidden_layers"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope["rope_theta"]),
            rope_scaling=hashable_rope(rope),
            attention_bias=hf.get("attention_bias", False),
            tie_word_embeddings=hf.get("tie_word_embeddings", False),
        )


def _norm(config: Olmo2Config, dim: int, dtype) -> RMSNorm:
    return RMSNorm(dim, config.rms_norm_eps, dtype=dtype, scale_in_fp32=True)


class Attention(nnx.Module):
    def __init__(self, config: Olmo2Config, *, dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim
        linear = lambda i, o: nnx.Linear(  # noqa: E731
            i, o, use_bias=config.attention_bias, dtype=dtype, param_dtype=dtype, rngs=rngs
        )
        self.q_proj = linear(d, config.num_heads * hd)
        self.k_proj = linear(d, config.num_kv_heads * hd)
        self.v_proj = linear(d, config.num_kv_heads * hd)
        self.o_proj = linear(config.num_heads * hd, d)
        # Over all heads' features at once (unlike Qwen3 and Gemma 3, which norm each head).
        self.q_norm = _norm(config, config.num_heads * hd, dtype)
        self.k_norm = _norm(config, config.num_kv_heads * hd, dtype)
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, hd

    def __call__(self, x, cos, sin, mask):
        """x [B, T, d], cos/sin [B, T, hd], mask bool [B or 1, 1, T, T] -> [B, T, d]."""
        b, t, _ = x.shape
        q = apply_rotary(self.q_norm(self.q_proj(x)).reshape(b, t, self.num_heads, self.head_dim), cos, sin)
        k = apply_rotary(self.k_norm(self.k_proj(x)).reshape(b, t, self.num_kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        return self.o_proj(attention(q, k, v, mask, scale=self.head_dim**-0.5))


class Block(nnx.Module):
    """Post-norm sublayers: h + norm(attn(h)), then + norm(mlp(.))."""

    def __init__(self, config: Olmo2Config, *, dtype, rngs: nnx.Rngs):
        self.self_attn = Attention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = _norm(config, config.hidden_size, dtype)
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, silu, dtype=dtype, rngs=rngs)
        self.post_feedforward_layernorm = _norm(config, config.hidden_size, dtype)

    def __call__(self, h, layer, cos, sin, mask):
        del layer  # every OLMo 2 layer is the same
        h = h + self.post_attention_layernorm(self.self_attn(h, cos, sin, mask))
        return h + self.post_feedforward_layernorm(self.mlp(h))


class Olmo2(RotaryDecoder):
    """OLMo 2 language model. Token ids [B, T] -> logits [B, T, vocab]."""

    def __init__(self, config: Olmo2Config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(
            config, dtype=dtype, rngs=rngs,
            inv_freq=rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling),
            make_block=lambda r: Block(config, dtype=dtype, rngs=r),
            norm=_norm(config, config.hidden_size, dtype),
            tied_head=config.tie_word_embeddings,
        )


_LAYER = r"model\.layers\.(\d+)\."
WEIGHT_MAP = (
    (r"model\.embed_tokens\.weight", "embed_tokens.embedding", "identity"),
    *((_LAYER + rf"self_attn\.{p}_proj\.weight", f"blocks.self_attn.{p}_proj.kernel", "transpose") for p in "qkvo"),
    *((_LAYER + rf"self_attn\.{p}_proj\.bias", f"blocks.self_attn.{p}_proj.bias", "identity") for p in "qkvo"),
    (_LAYER + r"self_attn\.q_norm\.weight", "blocks.self_attn.q_norm.weight", "identity"),
    (_LAYER + r"self_attn\.k_norm\.weight", "blocks.self_attn.k_norm.weight", "identity"),
    (_LAYER + r"post_attention_layernorm\.weight", "blocks.post_attention_layernorm.weight", "identity"),
    (_LAYER + r"post_feedforward_layernorm\.weight", "blocks.post_feedforward_layernorm.weight", "identity"),
    *((_LAYER + rf"mlp\.{p}_proj\.weight", f"blocks.mlp.{p}_proj.kernel", "transpose") for p in ("gate", "up", "down")),
    (r"model\.norm\.weight", "norm.weight", "identity"),
    (r"lm_head\.weight", "lm_head.kernel", "transpose"),
)
TRANSFORMS: dict = {}


def ignored_keys(config: Olmo2Config) -> tuple[str, ...]:
    """Checkpoint keys that carry nothing the model needs (a stored copy of a tied head)."""
    return (r"lm_head\.weight",) if config.tie_word_embeddings else ()


CONFIG_CLASS = Olmo2Config
MODEL_CLASS = Olmo2
CAUSAL = True
