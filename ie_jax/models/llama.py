"""The Llama family as a flax.nnx module: Llama-2/3, OpenLlama, TinyLlama, SmolLM2.

RMSNorm, rotary position embeddings (the config's rope_theta, optional Llama-3 or linear scaling),
grouped-query attention, SwiGLU MLP, tied or untied LM head. The L blocks are one module with parameters
stacked on a leading layer axis and run under a scan (ie_jax/models/stack.py).

This file is the template for the other architectures. Each exposes:
  CONFIG_CLASS (frozen dataclass with from_hf), MODEL_CLASS (nnx.Module), WEIGHT_MAP, CAUSAL,
  optionally TRANSFORMS (extra named weight transforms) and ignored_keys(config).
The model class implements embed, run_blocks, run_block, head and __call__ (see contracts).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ie_jax.models.masks import make_mask
from ie_jax.models.stack import layer_block, scan_blocks


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Shapes and constants of a Llama model (field names follow ie_jax, from_hf reads HF's config.json)."""

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
    # Hashable form of HF's rope_scaling dict, e.g. (("factor", 8.0), ("rope_type", "llama3"), ...).
    rope_scaling: tuple[tuple[str, object], ...] | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}.")

    @classmethod
    def from_hf(cls, hf: dict) -> "LlamaConfig":
        # transformers 5 keeps rope_theta/rope_scaling inside rope_parameters; older configs at top level.
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        theta = hf.get("rope_theta", rope.pop("rope_theta", 10000.0))
        rope.pop("rope_theta", None)
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        return cls(
            num_layers=hf["num_hidden_layers"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            head_dim=hf.get("head_dim"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-5),
            rope_theta=float(theta),
            rope_scaling=None if rope_type == "default" else tuple(sorted(rope.items())),
            tie_word_embeddings=hf.get("tie_word_embeddings", False),
            attention_bias=hf.get("attention_bias", False),
        )


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    """[head_dim // 2] rotary inverse frequencies (radians per position), scaled as the config says.

    Llama-3 scaling (Meta's reference): wavelengths longer than original_max / low_freq_factor are divided
    by `factor`, shorter than original_max / high_freq_factor are kept, and the band between is interpolated.
    """
    dim = config.head_dim
    inv_freq = 1.0 / config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    scaling = dict(config.rope_scaling or ())
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        pass
    elif rope_type == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif rope_type == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        smooth = (original / wavelen - low) / (high - low)
        interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        inv_freq = np.where(wavelen > original / low, inv_freq / factor, inv_freq)
        between = (wavelen <= original / low) & (wavelen >= original / high)
        inv_freq = np.where(between, interpolated, inv_freq)
    else:
        raise ValueError(f"Unsupported rope scaling {rope_type!r}; supported: default, linear, llama3.")
    return inv_freq.astype(np.float32)


def rotary_cos_sin(inv_freq, position_ids: jnp.ndarray, dtype):
    """cos, sin [B, T, head_dim] for position_ids [B, T] (angles computed in fp32, as HF does)."""
    angles = position_ids.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, dtype=jnp.float32)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def apply_rotary(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """x [B, T, H, hd] rotated in HF's half-split layout (x1 = first half, x2 = second half)."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, *, dtype):
        self.weight = nnx.Param(jnp.ones((dim,), dtype=dtype))
        self.eps = eps

    def __call__(self, x):
        # Normalise in fp32 even for bf16 weights, as HF does; the scale multiplies in the model dtype.
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...] * normed.astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim
        linear = lambda i, o: nnx.Linear(  # noqa: E731
            i, o, use_bias=config.attention_bias, dtype=dtype, param_dtype=dtype, rngs=rngs
        )
        self.q_proj = linear(d, config.num_heads * hd)
        self.k_proj = linear(d, config.num_kv_heads * hd)
        self.v_proj = linear(d, config.num_kv_heads * hd)
        self.o_proj = nnx.Linear(config.num_heads * hd, d, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, hd

    def __call__(self, x, cos, sin, mask):
        """x [B, T, d], cos/sin [B, T, hd], mask bool [B or 1, 1, T, T] -> [B, T, d]."""
        b, t, _ = x.shape
        kv, group, hd = self.num_kv_heads, self.num_heads // self.num_kv_heads, self.head_dim
        q = apply_rotary(self.q_proj(x).reshape(b, t, self.num_heads, hd), cos, sin)
        k = apply_rotary(self.k_proj(x).reshape(b, t, kv, hd), cos, sin)
        v = self.v_proj(x).reshape(b, t, kv, hd)
        # GQA without repeating k/v: query heads are grouped [kv, group] around their shared kv head.
        q = q.reshape(b, t, kv, group, hd)
        # Axes: b batch, q/s query/key position, k kv head, g query head within its group, h head dim.
        scores = jnp.einsum("bqkgh,bskh->bkgqs", q, k) * hd**-0.5
        scores = jnp.where(mask[:, :, None], scores.astype(jnp.float32), -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bkgqs,bskh->bqkgh", weights, v).reshape(b, t, self.num_heads * hd)
        return self.o_proj(out)


class MLP(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype, rngs: nnx.Rngs):
        d, f = config.hidden_size, config.intermediate_size
        linear = lambda i, o: nnx.Linear(i, o, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)  # noqa: E731
        self.gate_proj, self.up_proj, self.down_proj = linear(d, f), linear(d, f), linear(f, d)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)
        self.self_attn = Attention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)
        self.mlp = MLP(config, dtype=dtype, rngs=rngs)

    def __call__(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Llama(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config, self.dtype = config, dtype
        # A tuple of floats: a hashable constant of the graph, not a parameter.
        self.inv_freq = tuple(float(f) for f in rope_inv_freq(config))
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)

        @nnx.split_rngs(splits=config.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def stacked_blocks(rngs):
            return Block(config, dtype=dtype, rngs=rngs)

        self.blocks = stacked_blocks(rngs)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)
        if not config.tie_word_embeddings:
            self.lm_head = nnx.Linear(
                config.hidden_size, config.vocab_size, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs
            )

    def embed(self, token_ids, position_ids=None):
        """token_ids [B, T] -> h [B, T, d]. Llama's positions enter through RoPE, not here."""
        del position_ids
        return self.embed_tokens(token_ids)

    def run_blocks(self, h, position_ids, mask, positions=None):
        """h [B, T, d] through all blocks -> (h_out [B, T, d], block_inputs [L, B, P, d], block_outputs [L, B, P, d]).

        position_ids [B, T] ints; mask bool [B or 1, 1, T, T]; positions: None (P = T), [P] or [B, P] ints.
        """
        cos, sin = rotary_cos_sin(self.inv_freq, position_ids, h.dtype)
        return scan_blocks(self.blocks, h, lambda block, x: block(x, cos, sin, mask), positions)

    def run_block(self, layer, h, position_ids, mask):
        """Block `layer` alone on h [B, T, d] -> [B, T, d] (e.g. Gaussian input states)."""
        cos, sin = rotary_cos_sin(self.inv_freq, position_ids, h.dtype)
        return layer_block(self.blocks, layer)(h, cos, sin, mask)

    def head(self, h):
        """Final RMSNorm and LM head: h [B, T, d] -> logits [B, T, vocab]."""
        h = self.norm(h)
        if self.config.tie_word_embeddings:
            return self.embed_tokens.attend(h)
        return self.lm_head(h)

    def __call__(self, token_ids, position_ids=None, mask="causal"):
        """token_ids [B, T] -> logits [B, T, vocab] (causal, positions 0..T-1 unless given)."""
        t = token_ids.shape[1]
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t), token_ids.shape)
        h, _, _ = self.run_blocks(self.embed(token_ids, position_ids), position_ids, make_mask(mask, t))
        return self.head(h)


_LAYER = r"model\.layers\.(\d+)\."
WEIGHT_MAP = (
    (r"model\.embed_tokens\.weight", "embed_tokens.embedding", "identity"),
    (_LAYER + r"input_layernorm\.weight", "blocks.input_layernorm.weight", "identity"),
    (_LAYER + r"self_attn\.q_proj\.weight", "blocks.self_attn.q_proj.kernel", "transpose"),
    (_LAYER + r"self_attn\.k_proj\.weight", "blocks.self_attn.k_proj.kernel", "transpose"),
    (_LAYER + r"self_attn\.v_proj\.weight", "blocks.self_attn.v_proj.kernel", "transpose"),
    (_LAYER + r"self_attn\.q_proj\.bias", "blocks.self_attn.q_proj.bias", "identity"),
    (_LAYER + r"self_attn\.k_proj\.bias", "blocks.self_attn.k_proj.bias", "identity"),
    (_LAYER + r"self_attn\.v_proj\.bias", "blocks.self_attn.v_proj.bias", "identity"),
    (_LAYER + r"self_attn\.o_proj\.weight", "blocks.self_attn.o_proj.kernel", "transpose"),
    (_LAYER + r"post_attention_layernorm\.weight", "blocks.post_attention_layernorm.weight", "identity"),
    (_LAYER + r"mlp\.gate_proj\.weight", "blocks.mlp.gate_proj.kernel", "transpose"),
    (_LAYER + r"mlp\.up_proj\.weight", "blocks.mlp.up_proj.kernel", "transpose"),
    (_LAYER + r"mlp\.down_proj\.weight", "blocks.mlp.down_proj.kernel", "transpose"),
    (r"model\.norm\.weight", "norm.weight", "identity"),
    (r"lm_head\.weight", "lm_head.kernel", "transpose"),
)


def ignored_keys(config: LlamaConfig) -> tuple[str, ...]:
    """Checkpoint keys that are present in some files but carry nothing the model needs."""
    ignored = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)
    # Tied checkpoints sometimes also store the (identical) head matrix.
    return ignored + ((r"lm_head\.weight",) if config.tie_word_embeddings else ())


CONFIG_CLASS = LlamaConfig
MODEL_CLASS = Llama
CAUSAL = True
