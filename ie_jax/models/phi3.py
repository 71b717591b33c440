"""Phi-3 (Abdin et al. 2024) as a flax.nnx module: Phi-3-mini/medium (4k context) and Phi-4-mini.

A Llama-like pre-norm decoder whose checkpoints fuse projections: one `qkv_proj` (queries, keys, values
stacked along the output axis) and one `gate_up_proj` (SwiGLU's gate then up). Optional partial rotary
(`partial_rotary_factor`: only the first part of each head is rotated) and a sliding window in every layer
(`sliding_window`, 2047 in Phi-3-mini-4k). The long-context variants' "longrope" scaling is refused.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from ie_jax.models.layers import (
    RMSNorm, apply_rotary, attention, check_rope_type, rope_inv_freq, rope_parameters,
    sliding_window,
)
from ie_jax.models.decoder import RotaryDecoder


@dataclasses.dataclass(frozen=True)
class Phi3Config:
    """Shapes and switches of a Phi-3 model (from_hf reads HF's config.json)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    max_position_embeddings: int
    head_dim: int | None = None  # None: hidden_size // num_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 1.0
    sliding_window: int | None = None  # every layer when set
    tie_word_embeddings: bool = False

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}.")

    @classmethod
    def from_hf(cls, hf: dict) -> Phi3Config:
        """Config from an HF config.json dict of model_type "phi3"."""
        activation = hf.get("hidden_act", "silu")
        if activation != "silu":
            raise ValueError(f"phi3: activation {activation!r} is not supported; Phi-3 uses 'silu'.")
        rope = rope_parameters(hf)
        if rope["rope_type"] in ("su", "yarn"):  # Phi-3's old names for longrope
            rope["rope_type"] = "longrope"
        check_rope_type(rope, "phi3", supported=("default",))
        return cls(
            num_layers=hf["num_hidden_layers"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            head_dim=hf.get("head_dim"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-5),
            rope_theta=float(rope["rope_theta"]),
            partial_rotary_factor=float(rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))),
            sliding_window=hf.get("sliding_window"),
            tie_word_embeddings=hf.get("tie_word_embeddings", False),
        )


class Attention(nnx.Module):
    def __init__(self, config: Phi3Config, *, dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim
        self.q_size, self.kv_size = config.num_heads * hd, config.num_kv_heads * hd
        linear = lambda i, o: nnx.Linear(i, o, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)  # noqa: E731
        self.qkv_proj = linear(d, self.q_size + 2 * self.kv_size)
        self.o_proj = linear(self.q_size, d)
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, hd

    def __call__(self, x, cos, sin, mask):
        """x [B, T, d], cos/sin [B, T, rotary_dim], mask bool [B or 1, 1, T, T] -> [B, T, d]."""
        b, t, _ = x.shape
        q, k, v = jnp.split(self.qkv_proj(x), [self.q_size, self.q_size + self.kv_size], axis=-1)
        q = apply_rotary(q.reshape(b, t, self.num_heads, self.head_dim), cos, sin)
        k = apply_rotary(k.reshape(b, t, self.num_kv_heads, self.head_dim), cos, sin)
        v = v.reshape(b, t, self.num_kv_heads, self.head_dim)
        return self.o_proj(attention(q, k, v, mask, scale=self.head_dim**-0.5))


class MLP(nnx.Module):
    """SwiGLU with a fused projection: gate, up = split(gate_up(x)); down(silu(gate) * up)."""

    def __init__(self, config: Phi3Config, *, dtype, rngs: nnx.Rngs):
        d, f = config.hidden_size, config.intermediate_size
        linear = lambda i, o: nnx.Linear(i, o, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)  # noqa: E731
        self.gate_up_proj, self.down_proj = linear(d, 2 * f), linear(f, d)

    def __call__(self, x):
        gate, up = jnp.split(self.gate_up_proj(x), 2, axis=-1)
        return self.down_proj(jax.nn.silu(gate) * up)


class Block(nnx.Module):
    """Pre-norm block: h + attn(norm(h)), then + mlp(norm(.))."""

    def __init__(self, config: Phi3Config, *, dtype, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)
        self.self_attn = Attention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)
        self.mlp = MLP(config, dtype=dtype, rngs=rngs)
        self.sliding_window = config.sliding_window

    def __call__(self, h, layer, cos, sin, mask):
        del layer  # every Phi-3 layer is the same
        if self.sliding_window is not None:
            mask = sliding_window(mask, self.sliding_window)
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Phi3(RotaryDecoder):
    """Phi-3 language model. Token ids [B, T] -> logits [B, T, vocab]."""

    def __init__(self, config: Phi3Config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(
            config, dtype=dtype, rngs=rngs,
            inv_freq=rope_inv_freq(config.head_dim, config.rope_theta, partial_rotary_factor=config.partial_rotary_factor),
            make_block=lambda r: Block(config, dtype=dtype, rngs=r),
            norm=RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype),
            tied_head=config.tie_word_embeddings,
        )


_LAYER = r"model\.layers\.(\d+)\."
WEIGHT_MAP = (
    (r"model\.embed_tokens\.weight", "embed_tokens.embedding", "identity"),
    (_LAYER + r"input_layernorm\.weight", "blocks.input_layernorm.weight", "identity"),
    (_LAYER + r"self_attn\.qkv_proj\.weight", "blocks.self_attn.qkv_proj.kernel", "transpose"),
    (_LAYER + r"self_attn\.o_proj\.weight", "blocks.self_attn.o_proj.kernel", "transpose"),
    (_LAYER + r"post_attention_layernorm\.weight", "blocks.post_attention_layernorm.weight", "identity"),
    (_LAYER + r"mlp\.gate_up_proj\.weight", "blocks.mlp.gate_up_proj.kernel", "transpose"),
    (_LAYER + r"mlp\.down_proj\.weight", "blocks.mlp.down_proj.kernel", "transpose"),
    (r"model\.norm\.weight", "norm.weight", "identity"),
    (r"lm_head\.weight", "lm_head.kernel", "transpose"),
)
TRANSFORMS: dict = {}


def ignored_keys(config: Phi3Config) -> tuple[str, ...]:
    """Checkpoint keys that carry nothing the model needs (a stored copy of a tied head)."""
    return (r"lm_head\.weight",) if config.tie_word_embeddings else ()


CONFIG_CLASS = Phi3Config
MODEL_CLASS = Phi3
CAUSAL = True
