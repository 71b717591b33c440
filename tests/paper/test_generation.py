"""Generation on the capture path: greedy continuations and continuation log-probabilities of a tiny random LM,
checked against the full-sequence logits step by step."""

import jax
import numpy as np
import pytest

from ie_jax.paper.generation import continuation_logprob, generate, next_token_logits
from ie_jax.models import random_model
from ie_jax.models.capture import logits

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 16,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}


@pytest.fixture(scope="module")
def lm():
    return random_model(TINY, seed=0)


@pytest.mark.slow
def test_greedy_generation_follows_the_argmax_of_the_full_logits(lm):
    prompts = np.random.default_rng(0).integers(0, 50, (5, 3)).astype(np.int32)
    out = generate(lm, prompts, 4, batch_size=2)
    assert out.shape == (5, 7) and (out[:, :3] == prompts).all()
    full = np.asarray(logits(lm, out))
    np.testing.assert_array_equal(out[:, 3:], full[:, 2:6].argmax(-1))  # each new token: argmax after its prefix
    # tokens after `pos` cannot change the logits at `pos` (causal), so a padded buffer is fine
    padded = np.concatenate([out[:, :4], np.zeros((5, 3), np.int32)], axis=1)
    np.testing.assert_allclose(next_token_logits(lm, padded, 3), full[:, 3], rtol=1e-5, atol=1e-5)


def test_continuation_logprob_is_the_mean_log_softmax_of_the_continuation(lm):
    ids = np.random.default_rng(1).integers(0, 50, (4, 6)).astype(np.int32)
    logp = np.asarray(jax.nn.log_softmax(np.asarray(logits(lm, ids), np.float64), axis=-1))
    expected = np.mean([logp[:, t - 1][np.arange(4), ids[:, t]] for t in range(2, 6)], axis=0)
    np.testing.assert_allclose(continuation_logprob(lm, ids, 2, batch_size=3), expected, rtol=1e-5, atol=1e-5)
