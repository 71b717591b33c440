"""The shared model pieces (ie_jax/models/layers.py) against direct numpy formulas."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ie_jax.models.layers import (
    GatedMLP, RMSNorm, apply_rotary, attention, gelu_tanh, rope_inv_freq, rotary_cos_sin, silu, sliding_window,
)
from ie_jax.models.masks import causal_mask


def naive_attention(q, k, v, mask, scale, softcap):
    """Per query head, with its key/value head repeated (HF's repeat_kv), in float64."""
    heads, kv = q.shape[2], k.shape[2]
    out = np.zeros(q.shape)
    for h in range(heads):
        kh, vh = k[:, :, h // (heads // kv)], v[:, :, h // (heads // kv)]
        scores = np.einsum("bqd,bsd->bqs", q[:, :, h], kh) * scale
        if softcap:
            scores = softcap * np.tanh(scores / softcap)
        scores = np.where(mask[:, 0], scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        out[:, :, h] = np.einsum("bqs,bsd->bqd", weights / weights.sum(-1, keepdims=True), vh)
    return out.reshape(*q.shape[:2], -1)


@pytest.mark.parametrize("kv, softcap, window", [(4, None, None), (2, 1.5, None), (1, None, 3)])
def test_attention_core_equals_the_per_head_formula(kv, softcap, window):
    rng = np.random.default_rng(kv)
    q = rng.normal(size=(2, 7, 4, 8)) * 2
    k, v = rng.normal(size=(2, 7, kv, 8)) * 2, rng.normal(size=(2, 7, kv, 8))
    mask = causal_mask(7) if window is None else sliding_window(causal_mask(7), window)
    ours = attention(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), jnp.asarray(v, jnp.float32), mask,
                     scale=0.3, softcap=softcap)
    np.testing.assert_allclose(ours, naive_attention(q, k, v, np.asarray(mask), 0.3, softcap), rtol=1e-5, atol=1e-5)


def test_sliding_window_keeps_the_last_window_positions():
    band = np.asarray(sliding_window(causal_mask(6), 3))[0, 0]
    expected = np.array([[0 <= q - s < 3 for s in range(6)] for q in range(6)])
    np.testing.assert_array_equal(band, expected)


def test_partial_rotary_rotates_the_first_dims_only():
    inv_freq = rope_inv_freq(8, 100.0, partial_rotary_factor=0.5)
    assert inv_freq.shape == (2,)
    np.testing.assert_allclose(rope_inv_freq(8, 100.0, {"rope_type": "linear", "factor": 4.0}),
                               rope_inv_freq(8, 100.0) / 4, rtol=1e-6)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 3, 8)), jnp.float32)
    cos, sin = rotary_cos_sin(inv_freq, jnp.arange(5)[None], jnp.float32)
    rotated = np.asarray(apply_rotary(x, cos, sin))
    np.testing.assert_array_equal(rotated[..., 4:], np.asarray(x)[..., 4:])  # passed through
    np.testing.assert_allclose(rotated[:, 0], np.asarray(x)[:, 0], rtol=1e-6)  # position 0: no rotation
    # Each (i, i + 2) pair turns by position * inv_freq[i]: its length is kept, the pair moves.
    pairs = lambda a: np.hypot(a[..., :2], a[..., 2:4])  # noqa: E731
    np.testing.assert_allclose(pairs(rotated), pairs(np.asarray(x)), rtol=1e-5)
    assert np.abs(rotated[:, 1:, :, :4] - np.asarray(x)[:, 1:, :, :4]).max() > 1e-2


def test_rms_norm_variants():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 16)), jnp.float32)
    normed = np.asarray(x) / np.sqrt(np.mean(np.asarray(x) ** 2, -1, keepdims=True) + 1e-6)
    w = np.random.default_rng(2).normal(size=16).astype(np.float32)
    for unit_offset, scale_in_fp32, scale in [(False, False, w), (False, True, w), (True, False, 1 + w)]:
        norm = RMSNorm(16, 1e-6, dtype=jnp.float32, unit_offset=unit_offset, scale_in_fp32=scale_in_fp32)
        norm.weight[...] = jnp.asarray(w)
        np.testing.assert_allclose(norm(x), normed * scale, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation, formula", [
    (silu, lambda z: z / (1 + np.exp(-z))),
    (gelu_tanh, lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))),
])
def test_gated_mlp_is_down_of_activated_gate_times_up(activation, formula):
    mlp = GatedMLP(6, 10, activation, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = np.random.default_rng(3).normal(size=(2, 3, 6)).astype(np.float32)
    gate, up, down = (np.asarray(m.kernel[...], np.float64) for m in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    want = (formula(x @ gate) * (x @ up)) @ down
    np.testing.assert_allclose(mlp(jnp.asarray(x)), want, rtol=1e-5, atol=1e-6)
