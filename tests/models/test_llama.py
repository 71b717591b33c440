"""Llama parity with transformers' PyTorch LlamaForCausalLM on tiny random configs."""

import jax.numpy as jnp
import numpy as np
import pytest
from _helpers_models import relative_error, tiny_llama, torch_block_states

import ie_jax
from ie_jax.models import capture, logits, random_model, run_block
from ie_jax.models.layers import rope_inv_freq
from ie_jax.models.llama import LlamaConfig

CONFIGS = {
    "gqa_untied": {},
    "tied_mha": dict(num_key_value_heads=4, tie_word_embeddings=True),
    "llama3_rope": dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    torch_model = tiny_llama(path, **CONFIGS[request.param])
    return torch_model, path


def test_parity_fp32(pair):
    torch_model, path = pair
    lm = ie_jax.load_model(path)
    tokens = np.random.default_rng(0).integers(0, 128, size=(2, 11))
    block_in, block_out, hidden, torch_logits = torch_block_states(torch_model, tokens)
    cap = capture(lm, tokens)
    assert cap.block_input.shape == (3, 2, 11, 64)
    assert relative_error(cap.block_input, block_in) < 1e-5
    assert relative_error(cap.block_output, block_out) < 1e-5
    # HF hidden_states: entries 0..L-1 are block inputs, entry L is AFTER the final norm.
    assert relative_error(cap.block_input, hidden[:-1]) < 1e-5
    assert relative_error(lm.module.norm(cap.block_output[-1]), hidden[-1]) < 1e-5
    assert relative_error(logits(lm, tokens), torch_logits) < 1e-5


def test_parity_bf16_bound(pair):
    """bf16 weights and activations: observed per-element relative error up to 5e-2 (bf16 has 8 mantissa bits)."""
    torch_model, path = pair
    lm = ie_jax.load_model(path, dtype=jnp.bfloat16)
    tokens = np.random.default_rng(1).integers(0, 128, size=(2, 9))
    block_in, block_out, _, torch_logits = torch_block_states(torch_model, tokens)
    cap = capture(lm, tokens)
    assert cap.block_output.dtype == jnp.bfloat16
    assert relative_error(cap.block_output, block_out) < 1e-1
    assert relative_error(logits(lm, tokens), torch_logits) < 1e-1


def test_run_block_reproduces_captured_blocks(pair):
    _, path = pair
    lm = ie_jax.load_model(path)
    tokens = np.random.default_rng(2).integers(0, 128, size=(3, 7))
    cap = capture(lm, tokens)
    for layer in range(lm.config.num_layers):
        out = run_block(lm, layer, cap.block_input[layer])
        assert relative_error(out, cap.block_output[layer]) < 1e-6


def test_from_hf_reads_rope_parameters_of_transformers5():
    hf = {"num_hidden_layers": 2, "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
          "vocab_size": 10, "rope_parameters": {"rope_type": "default", "rope_theta": 123.0}}
    config = LlamaConfig.from_hf(hf)
    assert config.rope_theta == 123.0 and config.rope_scaling is None and config.num_kv_heads == 2
    expected = 123.0 ** -(np.arange(0, 4, 2) / 4)
    np.testing.assert_allclose(rope_inv_freq(config.head_dim, config.rope_theta), expected, rtol=1e-6)


@pytest.mark.slow
def test_random_model_named_shape_and_scan_layout():
    lm = random_model("smollm2-135m")
    assert lm.arch == "llama" and lm.config.num_layers == 30 and lm.config.hidden_size == 576
    assert lm.config.rope_theta == 1e5 and lm.config.tie_word_embeddings
    # Blocks are stacked on a leading layer axis (scan), not 30 separate modules.
    assert lm.module.blocks.self_attn.q_proj.kernel.shape == (30, 576, 576)
    assert lm.module.blocks.self_attn.k_proj.kernel.shape == (30, 576, 192)
