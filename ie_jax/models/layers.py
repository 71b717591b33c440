"""Pieces shared by the architecture files: RMSNorm variants, rotary embeddings, the attention core, the gated MLP.

Each piece here is the same computation in every architecture that uses it; what differs between
architectures (which norms, where, which projections) stays in the architecture's own file.
Shapes: B batch, T query positions, S key positions, H query heads, K key/value heads, hd head dim.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ROPE_TYPES = ("default", "linear", "llama3")


class RMSNorm(nnx.Module):
    """x / rms(x) times a learned scale, normalised in fp32 as HF does.

    unit_offset: the scale is (1 + w) with w initialised to 0 (Gemma); else w, initialised to 1.
    scale_in_fp32: the scale multiplies the fp32 normalised x before the cast back (Gemma, OLMo 2); else the
      normalised x is cast to the model dtype first (Llama, Qwen, Mistral, Phi-3). Equal in fp32.
    """

    def __init__(self, dim: int, eps: float, *, dtype, unit_offset: bool = False, scale_in_fp32: bool = False):
        self.weight = nnx.Param(jnp.zeros((dim,), dtype) if unit_offset else jnp.ones((dim,), dtype))
        self.eps, self.unit_offset, self.scale_in_fp32 = eps, unit_offset, scale_in_fp32

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        weight = self.weight[...]
        if self.unit_offset:
            return (normed * (1.0 + weight.astype(jnp.float32))).astype(x.dtype)
        if self.scale_in_fp32:
            return (weight.astype(jnp.float32) * normed).astype(x.dtype)
        return weight * normed.astype(x.dtype)


class GatedMLP(nnx.Module):
    """down(act(gate(x)) * up(x)), no biases: SwiGLU (act = silu: Llama, Qwen, Mistral, OLMo 2) and GeGLU
    (act = tanh GELU: Gemma). Parameters gate_proj, up_proj [d, f] and down_proj [f, d], named as in HF."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation, *, dtype, rngs: nnx.Rngs):
        d, f = hidden_size, intermediate_size
        linear = lambda i, o: nnx.Linear(i, o, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)  # noqa: E731
        self.gate_proj, self.up_proj, self.down_proj = linear(d, f), linear(d, f), linear(f, d)
        self.activation = activation

    def __call__(self, x):
        return self.down_proj(self.activation(self.gate_proj(x)) * self.up_proj(x))


def silu(x):
    return jax.nn.silu(x)


def gelu_tanh(x):
    """GELU with the tanh approximation (HF's gelu_pytorch_tanh)."""
    return jax.nn.gelu(x, approximate=True)


def rope_parameters(hf: dict) -> dict:
    """HF's rope settings as one dict (rope_type, rope_theta, factor, ...), from transformers 5's
    `rope_parameters` or the older top-level `rope_theta` and `rope_scaling`."""
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    rope.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    rope["rope_type"] = rope.get("rope_type", rope.get("type", "default"))
    rope.pop("type", None)
    return rope


def check_rope_type(rope: dict, family: str, supported=ROPE_TYPES) -> None:
    """A clear error for a rope scaling type this package does not implement (yarn, longrope, dynamic, ...)."""
    if rope["rope_type"] not in supported:
        raise ValueError(f"{family}: rope scaling type {rope['rope_type']!r} is not supported "
                         f"(supported: {', '.join(supported)}); use a checkpoint without it.")


def hashable_rope(rope: dict) -> tuple[tuple[str, object], ...] | None:
    """A rope dict as a sorted tuple (a frozen-dataclass field), None for plain RoPE."""
    scaling = {k: tuple(v) if isinstance(v, list) else v for k, v in rope.items() if k != "rope_theta"}
    return None if scaling.get("rope_type", "default") == "default" else tuple(sorted(scaling.items()))


def rope_inv_freq(head_dim: int, theta: float, scaling=None, partial_rotary_factor: float = 1.0) -> np.ndarray:
    """[rotary_dim // 2] inverse frequencies (radians per position), rotary_dim = head_dim * partial factor.

    scaling: None or a rope dict/pairs with rope_type "linear" (positions divided by `factor`) or "llama3"
    (Meta's reference: wavelengths longer than original_max / low_freq_factor are divided by `factor`, shorter
    than original_max / high_freq_factor kept, the band between interpolated).
    """
    dim = int(head_dim * partial_rotary_factor)
    inv_freq = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    scaling = dict(scaling or ())
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "linear":
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
    elif rope_type != "default":
        raise ValueError(f"Unsupported rope scaling {rope_type!r}; supported: {', '.join(ROPE_TYPES)}.")
    return inv_freq.astype(np.float32)


def rotary_cos_sin(inv_freq, position_ids: jnp.ndarray, dtype):
    """cos, sin [B, T, rotary_dim] for position_ids [B, T] (angles in fp32, as HF computes them)."""
    angles = position_ids.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, dtype=jnp.float32)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def apply_rotary(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """x [B, T, heads, hd] rotated in HF's half-split layout on its first rotary_dim = cos.shape[-1] dims
    (partial rotary, as in Phi-3 variants); the remaining dims pass through."""
    rotary_dim = cos.shape[-1]
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    x1, x2 = jnp.split(x_rot, 2, axis=-1)
    rotated = x_rot * cos[:, :, None, :] + jnp.concatenate([-x2, x1], axis=-1) * sin[:, :, None, :]
    return jnp.concatenate([rotated, x_pass], axis=-1) if x_pass.shape[-1] else rotated


def sliding_window(mask: jnp.ndarray, window: int) -> jnp.ndarray:
    """mask [B or 1, 1, T, S] restricted to keys fewer than `window` positions back (HF: kv > q - window)."""
    t, s = mask.shape[-2:]
    band = jnp.arange(t)[:, None] - jnp.arange(s)[None, :] < window
    return mask & band


def attention(q, k, v, mask, *, scale: float, softcap: float | None = None) -> jnp.ndarray:
    """Scaled dot-product attention with grouped key/value heads, the core of every architecture here.

    q [B, T, H, hd], k and v [B, S, K, hd] with H a multiple of K (K = H: multi-head; K = 1: multi-query);
    mask bool [B or 1, 1, T, S] (True = may attend); scale: multiplies q.k (hd**-0.5, or Gemma's
    query_pre_attn_scalar**-0.5); softcap: scores -> softcap * tanh(scores / softcap) (Gemma 2).
    Scores, scale, soft-cap and softmax are in fp32 whatever the model dtype. Returns [B, T, H * hd].
    """
    b, t, heads, hd = q.shape
    kv = k.shape[2]
    # Query heads grouped [K, group] around their shared key/value head: no repeated k/v in memory.
    # Axes: b batch, q/s query/key position, k kv head, g query head within its group, h head dim.
    q = q.reshape(b, t, kv, heads // kv, hd)
    scores = jnp.einsum("bqkgh,bskh->bkgqs", q, k).astype(jnp.float32) * scale
    if softcap is not None:
        scores = softcap * jnp.tanh(scores / softcap)
    # finfo.min, not -inf: a row whose keys are all masked (padding) stays finite, as in HF.
    scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgqs,bskh->bqkgh", weights, v).reshape(b, t, heads * hd)


def sliding_layers_from_hf(hf: dict, default: list[bool]) -> list[bool]:
    """Per layer, whether it uses sliding-window attention: from HF's `layer_types` when the config has it
    ("sliding_attention" / "full_attention"), else `default`. Other layer types get a clear error."""
    layer_types = hf.get("layer_types")
    if layer_types is None:
        return list(default)
    unknown = sorted(set(layer_types) - {"sliding_attention", "full_attention"})
    if unknown:
        raise ValueError(f"{hf.get('model_type')}: layer types {unknown} are not supported "
                         "(supported: full_attention, sliding_attention).")
    if len(layer_types) != len(default):
        raise ValueError(f"layer_types lists {len(layer_types)} layers but the model has {len(default)}.")
    return [kind == "sliding_attention" for kind in layer_types]
