"""Capture sharded over sequences on 8 fake CPU devices equals the one-device call (issue 6)."""

import jax
import numpy as np
import pytest

from ie_jax.models import capture, random_model
from ie_jax.sharding import make_mesh

TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 97, "max_position_embeddings": 64,
    "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
}


@pytest.mark.slow
@pytest.mark.parametrize("batch", [8, 11])  # 11 does not divide over 8 devices: padded, then dropped
@pytest.mark.parametrize("isolated", [False, True])
def test_sharded_capture_equals_unsharded(batch, isolated):
    assert len(jax.devices()) == 8, "conftest sets 8 fake CPU devices"
    lm = random_model(TINY_LLAMA, seed=0)
    tokens = np.random.default_rng(batch).integers(0, 97, size=(batch, 6))
    positions = np.random.default_rng(1).integers(0, 6, size=(batch, 2))
    for pos in (None, [-1], positions):
        ref = capture(lm, tokens, positions=pos, isolated=isolated)
        got = capture(lm, tokens, positions=pos, isolated=isolated, mesh=make_mesh())
        assert got.block_input.shape == ref.block_input.shape
        np.testing.assert_allclose(np.asarray(got.block_input), np.asarray(ref.block_input), rtol=1e-5, atol=1e-5)  # fp32 reduction order differs per shard
        np.testing.assert_allclose(np.asarray(got.block_output), np.asarray(ref.block_output), rtol=1e-5, atol=1e-5)  # fp32 reduction order differs per shard
    sharded = capture(lm, tokens, mesh=make_mesh())
    assert len(sharded.block_input.sharding.device_set) == 8
