"""Gemma 2 (Gemma Team 2024b) and Gemma 3 text (Gemma Team 2025) as a flax.nnx module.

Like Gemma v1 (gemma.py): embedding times sqrt(hidden_size) rounded to the activation dtype, RMSNorm with
scale (1 + w) in fp32, GeGLU MLP with the tanh GELU, head_dim from the config, LM head tied to the embedding.
New in Gemma 2: four norms per block (before and after attention, before and after the MLP, each output
normed before it joins the residual stream), queries scaled by query_pre_attn_scalar**-0.5 instead of
head_dim**-0.5, attention scores and final logits soft-capped (cap * tanh(x / cap)), and layers that
alternate between sliding-window attention (even layers) and global attention.
New in Gemma 3: RMSNorm on each query and key head (before the rotary embedding), no soft-capping, five
sliding layers per global one, and separate rotary bases: rope_local_base_freq (10^4) for sliding layers,
rope_theta (10^6, linearly scaled in the 4B and larger models) for global ones.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from ie_jax.models.layers import (
    GatedMLP, RMSNorm, apply_rotary, attention, check_rope_type, gelu_tanh, hashable_rope, rope_inv_freq,
    rope_parameters, rotary_cos_sin, sliding_layers_from_hf, sliding_window,
)
from ie_jax.models.decoder import Decoder
from ie_jax.models.stack import layer_block, per_layer, scan_blocks, stacked_blocks

_GELU_NAMES = ("gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_tanh")  # all meant as the tanh GELU


@dataclasses.dataclass(frozen=True)
class Gemma2Config:
    """Shapes and switches of a Gemma 2 or Gemma 3 text model (from_hf reads HF's config.json)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    sliding_window: int
    sliding_layers: tuple[bool, ...]  # per layer: sliding-window (True) or global attention
    query_pre_attn_scalar: float = 256.0
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0  # global layers
    rope_scaling: tuple[tuple[str, object], ...] | None = None  # global layers (Gemma 3: linear, factor 8)
    rope_local_theta: float = 10000.0  # sliding layers
    rope_local_scaling: tuple[tuple[str, object], ...] | None = None
    qk_norm: bool = False
    attention_bias: bool = False
    tie_word_embeddings: bool = True
    family: str = "gemma2"

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}.")
        if len(self.sliding_layers) != self.num_layers:
            raise ValueError(f"sliding_layers has {len(self.sliding_layers)} entries for {self.num_layers} layers.")

    @classmethod
    def from_hf(cls, hf: dict) -> Gemma2Config:
        """Config from an HF config.json dict of model_type "gemma2" or "gemma3_text"."""
        family = hf.get("model_type")
        if family not in ("gemma2", "gemma3_text"):
            raise ValueError(f"Gemma2Config reads model_type 'gemma2' or 'gemma3_text', got {family!r}.")
        activation = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
        if activation not in _GELU_NAMES:
            raise ValueError(f"{family}: activation {activation!r} is not supported; expected one of {_GELU_NAMES}.")
        if hf.get("use_bidirectional_attention"):
            raise ValueError(f"{family}: use_bidirectional_attention (EmbeddingGemma) is not supported.")
        num_layers = hf["num_hidden_layers"]
        if family == "gemma2":
            default = [i % 2 == 0 for i in range(num_layers)]
            global_rope = local_rope = rope_parameters(hf)
        else:
            pattern = hf.get("sliding_window_pattern", 6)
            default = [(i + 1) % pattern != 0 for i in range(num_layers)]
            global_rope, local_rope = _gemma3_rope(hf)
        for rope in (global_rope, local_rope):
            check_rope_type(rope, family, supported=("default", "linear"))
        return cls(
            num_layers=num_layers,
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 8192),
            sliding_window=hf.get("sliding_window") or 4096,
            sliding_layers=tuple(sliding_layers_from_hf(hf, default)),
            query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar", 256)),
            attn_logit_softcapping=hf.get("attn_logit_softcapping"),
            final_logit_softcapping=hf.get("final_logit_softcapping"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(global_rope["rope_theta"]),
            rope_scaling=hashable_rope(global_rope),
            rope_local_theta=float(local_rope["rope_theta"]),
            rope_local_scaling=hashable_rope(local_rope),
            qk_norm=family == "gemma3_text",
            attention_bias=hf.get("attention_bias", False),
            tie_word_embeddings=hf.get("tie_word_embeddings", True),
            family=family,
        )


def _gemma3_rope(hf: dict) -> tuple[dict, dict]:
    """(global, local) rope dicts from transformers 5's per-layer-type rope_parameters, or the older
    top-level rope_theta, rope_scaling (global layers) and rope_local_base_freq (sliding layers)."""
    per_type = hf.get("rope_parameters") or {}
    if "full_attention" in per_type or "sliding_attention" in per_type:
        full = dict(per_type.get("full_attention") or {})
        local = dict(per_type.get("sliding_attention") or {})
        full.setdefault("rope_theta", 1e6)
        local.setdefault("rope_theta", 1e4)
    else:
        full = rope_parameters({**hf, "rope_theta": hf.get("rope_theta", 1e6)})
        local = {"rope_type": "default", "rope_theta": hf.get("rope_local_base_freq", 1e4)}
    for rope in (full, local):
        rope["rope_type"] = rope.get("rope_type", rope.pop("type", "default"))
    return full, local


def _norm(config: Gemma2Config, dim: int, dtype) -> RMSNorm:
    return RMSNorm(dim, config.rms_norm_eps, dtype=dtype, unit_offset=True)


class Attention(nnx.Module):
    def __init__(self, config: Gemma2Config, *, dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim
        linear = lambda i, o: nnx.Linear(  # noqa: E731
            i, o, use_bias=config.attention_bias, dtype=dtype, param_dtype=dtype, rngs=rngs
        )
        self.q_proj = linear(d, config.num_heads * hd)
        self.k_proj = linear(d, config.num_kv_heads * hd)
        self.v_proj = linear(d, config.num_kv_heads * hd)
        self.o_proj = linear(config.num_heads * hd, d)
        if config.qk_norm:  # Gemma 3: per head, before the rotary embedding
            self.q_norm, self.k_norm = _norm(config, hd, dtype), _norm(config, hd, dtype)
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, hd
        self.qk_norm = config.qk_norm
        self.scale = config.query_pre_attn_scalar**-0.5
        self.softcap = config.attn_logit_softcapping

    def __call__(self, x, cos, sin, mask):
        """x [B, T, d], cos/sin [B, T, hd], mask bool [B or 1, 1, T, T] -> [B, T, d]."""
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim)
        k = self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return self.o_proj(attention(q, k, v, mask, scale=self.scale, softcap=self.softcap))


class Block(nnx.Module):
    """h + post_norm(attn(pre_norm(h))), then + post_norm(mlp(pre_norm(.))); sliding or global attention."""

    def __init__(self, config: Gemma2Config, *, dtype, rngs: nnx.Rngs):
        d = config.hidden_size
        self.input_layernorm = _norm(config, d, dtype)
        self.self_attn = Attention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = _norm(config, d, dtype)
        self.pre_feedforward_layernorm = _norm(config, d, dtype)
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, gelu_tanh, dtype=dtype, rngs=rngs)
        self.post_feedforward_layernorm = _norm(config, d, dtype)
        self.sliding_window, self.sliding_layers = config.sliding_window, config.sliding_layers

    def __call__(self, h, layer, rotary, mask):
        """rotary: ((cos, sin) of global layers, (cos, sin) of sliding layers)."""
        sliding = per_layer(self.sliding_layers, layer)
        mask = jnp.where(sliding, sliding_window(mask, self.sliding_window), mask)
        (cos_global, sin_global), (cos_local, sin_local) = rotary
        cos, sin = jnp.where(sliding, cos_local, cos_global), jnp.where(sliding, sin_local, sin_global)
        h = h + self.post_attention_layernorm(self.self_attn(self.input_layernorm(h), cos, sin, mask))
        return h + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(h)))


class Gemma2(Decoder):
    """Gemma 2 / Gemma 3 text language model. Token ids [B, T] -> logits [B, T, vocab]."""

    def __init__(self, config: Gemma2Config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config, self.dtype = config, dtype
        hd = config.head_dim
        # Tuples of floats: hashable constants of the graph, not parameters.
        self.inv_freq_global = tuple(float(f) for f in rope_inv_freq(hd, config.rope_theta, config.rope_scaling))
        self.inv_freq_local = tuple(float(f) for f in rope_inv_freq(hd, config.rope_local_theta,
                                                                     config.rope_local_scaling))
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.blocks = stacked_blocks(lambda r: Block(config, dtype=dtype, rngs=r), config.num_layers, rngs)
        self.norm = _norm(config, config.hidden_size, dtype)
        if not config.tie_word_embeddings:
            self.lm_head = nnx.Linear(
                config.hidden_size, config.vocab_size, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs
            )

    def embed(self, token_ids, position_ids=None):
        """token_ids [B, T] -> h [B, T, d] = embedding * sqrt(d). Positions enter through RoPE, not here."""
        del position_ids
        h = self.embed_tokens(token_ids)
        # The scale is rounded to the activation dtype first (bf16: sqrt(2304) = 48.0), as in the reference.
        return h * jnp.asarray(self.config.hidden_size**0.5, dtype=h.dtype)

    def _rotary(self, position_ids, dtype):
        return (rotary_cos_sin(self.inv_freq_global, position_ids, dtype),
                rotary_cos_sin(self.inv_freq_local, position_ids, dtype))

    def run_blocks(self, h, position_ids, mask, positions=None):
        """h [B, T, d] through all blocks -> (h_out [B, T, d], block_inputs [L, B, P, d], block_outputs [L, B, P, d]).

        position_ids [B, T] ints; mask bool [B or 1, 1, T, T]; positions: None (P = T), [P] or [B, P] ints.
        """
        rotary = self._rotary(position_ids, h.dtype)
        return scan_blocks(self.blocks, h, lambda block, x, layer: block(x, layer, rotary, mask), positions)

    def run_block(self, layer, h, position_ids, mask):
        """Block `layer` alone on h [B, T, d] -> [B, T, d] (e.g. Gaussian input states)."""
        return layer_block(self.blocks, layer)(h, layer, self._rotary(position_ids, h.dtype), mask)

    def head(self, h):
        """Final norm, LM head and (Gemma 2) logit soft-capping: h [B, T, d] -> logits [B, T, vocab]."""
        h = self.norm(h)
        logits = self.embed_tokens.attend(h) if self.config.tie_word_embeddings else self.lm_head(h)
        cap = self.config.final_logit_softcapping
        if cap is not None:
            logits = (cap * jnp.tanh(logits.astype(jnp.float32) / cap)).astype(logits.dtype)
        return logits


_LAYER = r"model\.layers\.(\d+)\."
_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")
WEIGHT_MAP = (
    (r"model\.embed_tokens\.weight", "embed_tokens.embedding", "identity"),
    *((_LAYER + rf"{n}\.weight", f"blocks.{n}.weight", "identity") for n in _NORMS),
    *((_LAYER + rf"self_attn\.{p}_proj\.weight", f"blocks.self_attn.{p}_proj.kernel", "transpose") for p in "qkvo"),
    *((_LAYER + rf"self_attn\.{p}_proj\.bias", f"blocks.self_attn.{p}_proj.bias", "identity") for p in "qkvo"),
    (_LAYER + r"self_attn\.q_norm\.weight", "blocks.self_attn.q_norm.weight", "identity"),
    (_LAYER + r"self_attn\.k_norm\.weight", "blocks.self_attn.k_norm.weight", "identity"),
    *((_LAYER + rf"mlp\.{p}_proj\.weight", f"blocks.mlp.{p}_proj.kernel", "transpose") for p in ("gate", "up", "down")),
    (r"model\.norm\.weight", "norm.weight", "identity"),
    (r"lm_head\.weight", "lm_head.kernel", "transpose"),
)
TRANSFORMS: dict = {}


def ignored_keys(config: Gemma2Config) -> tuple[str, ...]:
    """Checkpoint keys that carry nothing the model needs (a stored copy of the tied head)."""
    return (r"lm_head\.weight",) if config.tie_word_embeddings else ()


CONFIG_CLASS = Gemma2Config
MODEL_CLASS = Gemma2
CAUSAL = True
