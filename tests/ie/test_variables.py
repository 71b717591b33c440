"""Macro/micro variables on tiny random models, against a direct block-by-block computation."""

import jax.numpy as jnp
import numpy as np
import pytest

from ie_jax.ie import data
from ie_jax.ie import variables
from ie_jax.models import random_model, run_block

TINY = {
    "llama": {"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 32, "intermediate_size": 64,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 16,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True},
    "gpt2": {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 4, "n_positions": 16, "n_ctx": 16,
             "vocab_size": 50, "layer_norm_epsilon": 1e-5},
}


@pytest.fixture(scope="module", params=sorted(TINY))
def lm(request):
    return random_model(TINY[request.param], seed=1)


def _direct(lm, token_ids):
    """Residual stream [L+1, N, T, d] by embedding then calling each block in turn (no capture code)."""
    N, T = token_ids.shape
    pos = jnp.broadcast_to(jnp.arange(T), (N, T))
    h = lm.module.embed(jnp.asarray(token_ids), pos)
    states = [np.asarray(h)]
    for layer in range(lm.config.num_layers):
        h = run_block(lm, layer, h)
        states.append(np.asarray(h))
    return np.stack(states)


@pytest.mark.slow
def test_context_and_isolated_micro_match_direct_computation(lm):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (37, 5)).astype(np.int32)
    v = variables.extract(lm, data.TokenData(ids, "t", "icl", "t"), batch_size=8)  # 37 = 4 full batches + 5
    L = lm.config.num_layers
    res = _direct(lm, ids)
    assert v.context_input.shape == (L, 37, 5, 32) and v.positions == tuple(range(5))
    np.testing.assert_allclose(v.context_input, res[:-1], atol=2e-5)
    np.testing.assert_allclose(v.context_output, res[1:], atol=2e-5)
    # micro: every token as its own length-1 sequence (position id 0)
    alone = _direct(lm, ids.reshape(-1, 1))[:, :, 0].reshape(L + 1, 37, 5, 32)
    for l in range(L):
        x, y = v.macro_pair(l)
        np.testing.assert_allclose(x, res[l, :, -1], atol=2e-5)
        np.testing.assert_allclose(y, res[l + 1, :, -1], atol=2e-5)
        for t in range(5):
            x, y = v.micro_pair(l, t)
            np.testing.assert_allclose(x, alone[l, :, t], atol=2e-5)
            np.testing.assert_allclose(y, alone[l + 1, :, t], atol=2e-5)
    # the first token has no context: its micro and context states coincide
    np.testing.assert_allclose(v.micro_pair(1, 0)[1], v.context_pair(1, 0)[1], atol=2e-5)
    assert not np.allclose(v.micro_pair(1, 3)[1], v.context_pair(1, 3)[1], atol=1e-3)


def test_in_context_micro_is_the_full_pass(lm):
    ids = np.random.default_rng(1).integers(0, 50, (12, 4)).astype(np.int32)
    v = variables.extract(lm, data.TokenData(ids, "t", "icl", "t"), micro="in_context")
    assert v.micro_input is None
    for t in range(4):
        np.testing.assert_array_equal(v.micro_pair(1, t)[1], v.context_pair(1, t)[1])


def test_last_position_only_and_layer_subset(lm):
    ids = np.random.default_rng(2).integers(0, 50, (10, 6)).astype(np.int32)
    full = variables.extract(lm, data.TokenData(ids, "t", "icl", "t"))
    last = variables.extract(lm, data.TokenData(ids, "t", "icl", "t"), token_curve=False, layers=[1])
    assert last.positions == (5,) and last.layers == (1,) and last.context_input.shape[:3] == (1, 10, 1)
    np.testing.assert_allclose(last.macro_pair(0)[1], full.macro_pair(1)[1], atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        variables.extract(lm, data.TokenData(ids, "t", "icl", "t"), layers=[7])
    long = np.zeros((2, 17), np.int32)
    with pytest.raises(ValueError, match="exceed .* context of 16"):
        variables.extract(lm, data.TokenData(long, "t", "icl", "t"))


def test_gaussian_states_through_each_block(lm):
    g = data.GaussianData(n_samples=9, seq_len=4, variance=0.81, seed=5)
    v = variables.extract(lm, g, batch_size=4)
    for l in range(lm.config.num_layers):
        states = g.states(l, 32)
        np.testing.assert_array_equal(v.context_input[l], states)
        np.testing.assert_allclose(v.context_output[l], np.asarray(run_block(lm, l, states)), atol=2e-5)
        # isolated micro: the same states with an isolated mask and position ids 0, in one pass
        iso = np.asarray(run_block(lm, l, states, mask="isolated", position_ids=jnp.zeros((9, 4), jnp.int32)))
        for t in range(4):
            x, y = v.micro_pair(l, t)
            np.testing.assert_array_equal(x, states[:, t])
            np.testing.assert_allclose(y, iso[:, t], atol=2e-5)


@pytest.mark.slow
def test_gaussian_draw_is_seeded_per_layer_and_independent_of_the_batch():
    g = data.GaussianData(n_samples=50, seq_len=3, variance=0.81, seed=7)
    full = np.asarray(g.device_states(2, 16))
    assert full.shape == (50, 3, 16) and full.dtype == np.float32
    np.testing.assert_array_equal(full, data.GaussianData(50, 3, 0.81, seed=7).states(2, 16))  # reproducible
    pieces = [np.asarray(g.device_states(2, 16, start, count)) for start, count in ((0, 7), (7, 30), (37, 13))]
    np.testing.assert_array_equal(np.concatenate(pieces), full)  # any batching draws the same rows
    for other in (g.states(3, 16), data.GaussianData(50, 3, 0.81, seed=8).states(2, 16)):  # another layer, seed
        assert not (other == full).any() and abs(np.corrcoef(other.ravel(), full.ravel())[0, 1]) < 0.1
    # N(0, 0.81): more samples of the first 50 rows' distribution keep its moments
    many = data.GaussianData(4000, 3, 0.81, seed=7).states(2, 16)
    np.testing.assert_array_equal(many[:50], full)  # sample n's draw does not depend on N
    assert many.var() == pytest.approx(0.81, rel=0.02) and abs(many.mean()) < 0.01
    assert "threefry" in g.metadata()["generator"]
    with pytest.raises(ValueError, match="outside 0..49"):
        g.device_states(0, 16, 40, 11)


@pytest.mark.slow
def test_states_kept_on_the_device_equal_the_host_copies(lm):
    # N = 1100 at T = 16: Gaussian batches of 1024 sequences, the second overlapping the first (starts 0, 76)
    g = data.GaussianData(n_samples=1100, seq_len=16, variance=0.81, seed=2)
    host = variables.extract(lm, g, layers=[1])
    dev = variables.extract(lm, g, layers=[1], on_device=True)
    assert dev.on_device and not host.on_device and dev.nbytes == host.nbytes
    assert dev.nbytes == variables.states_nbytes(lm, g, layers=[1])
    for name in ("context_input", "context_output", "micro_input", "micro_output"):
        np.testing.assert_array_equal(np.asarray(getattr(dev, name)), getattr(host, name))
    states = g.states(1, 32)
    np.testing.assert_array_equal(host.context_input[0], states)
    np.testing.assert_allclose(host.context_output[0], np.asarray(run_block(lm, 1, states)), atol=2e-5)
    ids = np.random.default_rng(3).integers(0, 50, (21, 4)).astype(np.int32)
    tokens = data.TokenData(ids, "t", "icl", "t")
    host, dev = (variables.extract(lm, tokens, batch_size=8, on_device=d) for d in (False, True))
    assert dev.on_device and dev.nbytes == variables.states_nbytes(lm, tokens)
    for l in range(lm.config.num_layers):
        for t in range(4):
            for got, want in zip(dev.micro_pair(l, t) + dev.context_pair(l, t),
                                 host.micro_pair(l, t) + host.context_pair(l, t)):
                np.testing.assert_array_equal(np.asarray(got), want)
