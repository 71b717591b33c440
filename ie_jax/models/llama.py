"""The Llama family as a flax.nnx module: Llama 2/3, SmolLM2, and as switches Qwen2/2.5, Qwen3, Mistral.

RMSNorm, rotary position embeddings (rope_theta, optional Llama-3 or linear scaling), grouped-query
attention, SwiGLU MLP, tied or untied LM head. The family members differ from Llama only in switches:
  Qwen2/2.5: biases on q/k/v (not on o_proj);
  Qwen3: an RMSNorm on each query and key head before the rotary embedding;
  Mistral: sliding-window attention (each query sees the last `sliding_window` positions) in every layer;
  Qwen2/3 with use_sliding_window: sliding window in the layers from max_window_layers on.
The L blocks are one module with parameters stacked on a leading layer axis, run under a scan (stack.py).

Like every architecture file (see registry.Architecture) this exposes CONFIG_CLASS, MODEL_CLASS,
WEIGHT_MAP, TRANSFORMS, CAUSAL and ignored_keys(config); the model implements registry.LanguageModel.
"""

import dataclasses

import jax.numpy as jnp
from flax import nnx

from ie_jax.models.layers import (
    GatedMLP, RMSNorm, apply_rotary, attention, check_rope_type, hashable_rope, rope_inv_freq, rope_parameters, silu,
    sliding_layers_from_hf, sliding_window,
)
from ie_jax.models.decoder import RotaryDecoder
from ie_jax.models.stack import per_layer

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Shapes and switches of a Llama-family model (ie_jax names; from_hf reads HF's config.json)."""

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
    # Hashable form of HF's rope scaling dict, e.g. (("factor", 8.0), ("rope_type", "llama3"), ...).
    rope_scaling: tuple[tuple[str, object], ...] | None = None
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    sliding_layers: tuple[bool, ...] = ()  # per layer: uses the sliding window (empty: none does)
    family: str = "llama"

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}.")
        if any(self.sliding_layers) and not self.sliding_window:
            raise ValueError("sliding_layers are set but sliding_window is not; give the window size.")

    @classmethod
    def from_hf(cls, hf: dict) -> "LlamaConfig":
        """Config from an HF config.json dict of model_type llama, mistral, qwen2 or qwen3."""
        family = hf.get("model_type") or "llama"
        if family not in FAMILIES:
            raise ValueError(f"LlamaConfig reads model_type {FAMILIES}, got {family!r}.")
        activation = hf.get("hidden_act", "silu")
        if activation != "silu":
            raise ValueError(f"{family}: activation {activation!r} is not supported; the Llama family uses 'silu'.")
        rope = rope_parameters(hf)
        check_rope_type(rope, family)
        num_layers = hf["num_hidden_layers"]
        window = hf.get("sliding_window")
        if family == "mistral":  # one window for every layer (null in Mistral-7B v0.2 and later)
            sliding = (True,) * num_layers if window else ()
        elif family in ("qwen2", "qwen3"):
            uses_window = bool(hf.get("use_sliding_window")) and window is not None
            first = hf.get("max_window_layers", num_layers)
            sliding = sliding_layers_from_hf(hf, [uses_window and i >= first for i in range(num_layers)])
        else:
            sliding = sliding_layers_from_hf(hf, [False] * num_layers)
        bias = bool(hf.get("attention_bias", False))
        return cls(
            num_layers=num_layers,
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            head_dim=hf.get("head_dim"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-5),
            rope_theta=float(rope["rope_theta"]),
            rope_scaling=hashable_rope(rope),
            tie_word_embeddings=hf.get("tie_word_embeddings", False),
            qkv_bias=True if family == "qwen2" else bias,
            o_bias=False if family == "qwen2" else bias,
            qk_norm=family == "qwen3",
            sliding_window=window if any(sliding) else None,
            sliding_layers=tuple(sliding) if any(sliding) else (),
            family=family,
        )


class Attention(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim

        def linear(i, o, bias):
            return nnx.Linear(i, o, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=rngs)

        self.q_proj = linear(d, config.num_heads * hd, config.qkv_bias)
        self.k_proj = linear(d, config.num_kv_heads * hd, config.qkv_bias)
        self.v_proj = linear(d, config.num_kv_heads * hd, config.qkv_bias)
        self.o_proj = linear(config.num_heads * hd, d, config.o_bias)
        if config.qk_norm:  # Qwen3: per head, before the rotary embedding
            self.q_norm = RMSNorm(hd, config.rms_norm_eps, dtype=dtype)
            self.k_norm = RMSNorm(hd, config.rms_norm_eps, dtype=dtype)
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, hd
        self.qk_norm = config.qk_norm

    def __call__(self, x, cos, sin, mask):
        """x [B, T, d], cos/sin [B, T, hd], mask bool [B or 1, 1, T, T] -> [B, T, d]."""
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim)
        k = self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return self.o_proj(attention(q, k, v, mask, scale=self.head_dim**-0.5))


class Block(nnx.Module):
    """Pre-norm block: h + attn(norm(h)), then + mlp(norm(.))."""

    def __init__(self, config: LlamaConfig, *, dtype, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)
        self.self_attn = Attention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, silu, dtype=dtype, rngs=rngs)
        self.sliding_window, self.sliding_layers = config.sliding_window, config.sliding_layers

    def __call__(self, h, layer, cos, sin, mask):
        if self.sliding_layers:
            mask = jnp.where(per_layer(self.sliding_layers, layer), sliding_window(mask, self.sliding_window), mask)
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Llama(RotaryDecoder):
    """A Llama-family language model. Token ids [B, T] -> logits [B, T, vocab]."""

    def __init__(self, config: LlamaConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(
            config, dtype=dtype, rngs=rngs,
            inv_freq=rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling),
            make_block=lambda r: Block(config, dtype=dtype, rngs=r),
            norm=RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype),
            tied_head=config.tie_word_embeddings,
        )


_LAYER = r"model\.layers\.(\d+)\."
WEIGHT_MAP = (
    (r"model\.embed_tokens\.weight", "embed_tokens.embedding", "identity"),
    (_LAYER + r"input_layernorm\.weight", "blocks.input_layernorm.weight", "identity"),
    *((_LAYER + rf"self_attn\.{p}_proj\.weight", f"blocks.self_attn.{p}_proj.kernel", "transpose") for p in "qkvo"),
    *((_LAYER + rf"self_attn\.{p}_proj\.bias", f"blocks.self_attn.{p}_proj.bias", "identity") for p in "qkvo"),
    (_LAYER + r"self_attn\.q_norm\.weight", "blocks.self_attn.q_norm.weight", "identity"),
    (_LAYER + r"self_attn\.k_norm\.weight", "blocks.self_attn.k_norm.weight", "identity"),
    (_LAYER + r"post_attention_layernorm\.weight", "blocks.post_attention_layernorm.weight", "identity"),
    *((_LAYER + rf"mlp\.{p}_proj\.weight", f"blocks.mlp.{p}_proj.kernel", "transpose") for p in ("gate", "up", "down")),
    (r"model\.norm\.weight", "norm.weight", "identity"),
    (r"lm_head\.weight", "lm_head.kernel", "transpose"),
)
TRANSFORMS: dict = {}


def ignored_keys(config: LlamaConfig) -> tuple[str, ...]:
    """Checkpoint keys that are present in some files but carry nothing the model needs."""
    ignored = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)
    # Tied checkpoints sometimes also store the (identical) head matrix.
    return ignored + ((r"lm_head\.weight",) if config.tie_word_embeddings else ())


CONFIG_CLASS = LlamaConfig
MODEL_CLASS = Llama
CAUSAL = True
