"""Critics: the paper's architecture exactly, concat x-part reuse, separable all-pairs scores, bf16."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ie_jax.mi.critics import PAPER_HIDDEN, concat_mlp, make_critic, n_params, paper_concat, separable_mlp


def _leaky(h):
    return np.where(h >= 0, h, 0.01 * h)


def _naive_concat(params, inputs):
    """Reference MLP on concatenated [x, y] rows, in float64 numpy."""
    w0 = np.concatenate([params["first"]["w_x"], params["first"]["w_y"]], 0).astype(np.float64)
    h = _leaky(inputs @ w0 + params["first"]["b"])
    rest = params["rest"]
    for i, layer in enumerate(rest):
        h = h @ np.asarray(layer["w"], np.float64) + layer["b"]
        if i < len(rest) - 1:
            h = _leaky(h)
    return h[:, 0]


@pytest.mark.slow
def test_paper_critic_architecture_and_init():
    dx, dy = 20, 12
    params = paper_concat().init(jax.random.key(0), dx, dy)
    widths = [params["first"]["w_x"].shape[1]] + [l["w"].shape[1] for l in params["rest"]]
    assert tuple(widths) == PAPER_HIDDEN + (1,) == (768, 384, 192, 96, 48, 24, 12, 6, 3, 1)
    assert params["first"]["w_x"].shape == (dx, 768) and params["first"]["w_y"].shape == (dy, 768)
    # torch nn.Sequential of the reference: sum over Linear layers of (in + 1) * out.
    sizes = [dx + dy, *PAPER_HIDDEN, 1]
    assert n_params(params) == sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert all(float(jnp.abs(b).max()) == 0.0 for b in jax.tree.leaves(params) if b.ndim == 1)
    # Xavier normal: std sqrt(2 / (fan_in + fan_out)) with the first layer's fan-in dx + dy.
    w0 = np.concatenate([params["first"]["w_x"], params["first"]["w_y"]], 0)
    assert w0.std() == pytest.approx(math.sqrt(2 / (dx + dy + 768)), rel=0.03)
    w1 = np.asarray(params["rest"][0]["w"])
    assert w1.std() == pytest.approx(math.sqrt(2 / (768 + 384)), rel=0.02)


def test_concat_reuses_parts_and_matches_naive_concat():
    critic = concat_mlp((32, 16))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 3)).astype(np.float32), rng.standard_normal((10, 5)).astype(np.float32)
    params = critic.init(jax.random.key(1), 3, 5)
    perm = np.array([3, 1, 4, 0, 9, 2, 6, 5, 8, 7])
    joint, marginal = critic.apply(params, x, y, perm)
    np.testing.assert_allclose(joint, _naive_concat(params, np.concatenate([x, y], 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(marginal, _naive_concat(params, np.concatenate([x, y[perm]], 1)), rtol=1e-5, atol=1e-6)


def test_separable_scores_every_pair():
    critic = separable_mlp((16,), embed_dim=8)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    params = critic.init(jax.random.key(2), 3, 4)
    scores = np.asarray(critic.apply(params, x, y))

    def encode(layers, v):
        h = _leaky(v @ np.asarray(layers[0]["w"], np.float64) + layers[0]["b"])
        return h @ np.asarray(layers[1]["w"], np.float64) + layers[1]["b"]

    params = jax.tree.map(np.asarray, params)
    gx, hy = encode(params["g"], x), encode(params["h"], y)
    for i in range(6):
        for j in range(6):
            assert scores[i, j] == pytest.approx(gx[i] @ hy[j] / math.sqrt(8), rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_bfloat16_matmuls_track_float32():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 16)).astype(np.float32), rng.standard_normal((64, 16)).astype(np.float32)
    for name in ("paper", "separable"):
        f32, bf16 = make_critic(name), make_critic(name, compute_dtype=jnp.bfloat16)
        params = f32.init(jax.random.key(3), 16, 16)
        args = (params, x, y) if f32.separable else (params, x, y, np.arange(64)[::-1])
        a, b = jax.tree.leaves(f32.apply(*args)), jax.tree.leaves(bf16.apply(*args))
        for u, v in zip(a, b):
            assert v.dtype == jnp.float32  # fp32 accumulation: scores come out in fp32
            scale = float(jnp.abs(u).max())
            assert float(jnp.abs(u - v).max()) < 0.05 * scale + 1e-3


@pytest.mark.slow
def test_bfloat16_keeps_hidden_activations_bf16_and_float32_stays_float32():
    x, y = np.ones((8, 4), np.float32), np.ones((8, 3), np.float32)
    for name in ("paper", "concat", "separable"):
        f32, bf16 = make_critic(name), make_critic(name, compute_dtype=jnp.bfloat16)
        params = f32.init(jax.random.key(0), 4, 3)
        args = (params, x, y) if f32.separable else (params, x, y, np.arange(8))
        # hidden layers return bf16 from the matmul (memory-bound training: half the activation bytes) ...
        assert "preferred_element_type=bfloat16" in str(jax.make_jaxpr(bf16.apply)(*args))
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf16.apply(*args)))  # ... scores fp32
        assert "bf16" not in str(jax.make_jaxpr(f32.apply)(*args))


@pytest.mark.slow
def test_init_stacks_over_problems_with_vmap():
    critic = paper_concat()
    stacked = jax.vmap(lambda k: critic.init(k, 4, 4))(jax.random.split(jax.random.key(0), 3))
    assert stacked["first"]["w_x"].shape == (3, 4, 768)
    assert not np.allclose(stacked["first"]["w_x"][0], stacked["first"]["w_x"][1])


def test_unknown_critic():
    with pytest.raises(ValueError, match="unknown critic"):
        make_critic("transformer")
