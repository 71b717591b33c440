"""Gemma v1 parity against transformers' PyTorch GemmaForCausalLM on tiny random configs (MQA and GQA)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from _helpers_arch import relative_error, torch_reference
from flax import nnx

from ie_jax.models import gemma, load_model, registry
from ie_jax.models.masks import causal_mask
from ie_jax.models.weights import fill_params

# head_dim 16 != hidden_size / num_heads = 8, as in the real models (256 vs 2048 / 8).
HF_CONFIG = dict(
    num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4, head_dim=16,
    vocab_size=97, max_position_embeddings=64, rms_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh",
    rope_parameters={"rope_type": "default", "rope_theta": 500.0},
)


def make_torch_model(num_kv_heads):
    torch.manual_seed(num_kv_heads)
    config = transformers.GemmaConfig(**HF_CONFIG, num_key_value_heads=num_kv_heads, attn_implementation="eager")
    model = transformers.GemmaForCausalLM(config).eval()
    with torch.no_grad():  # norms start at w = 0: randomise everything so a swapped weight shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def jax_model(torch_model, dtype=jnp.float32):
    config = gemma.GemmaConfig.from_hf(torch_model.config.to_dict())
    abstract = nnx.eval_shape(lambda: gemma.Gemma(config, dtype=dtype, rngs=nnx.Rngs(0)))
    tensors = {k: v.float().numpy() for k, v in torch_model.state_dict().items()}
    return fill_params(abstract, tensors, gemma.WEIGHT_MAP, ignore=gemma.ignored_keys(config))


def forward(model, token_ids, position_ids, mask):
    h, block_inputs, block_outputs = model.run_blocks(model.embed(token_ids, position_ids), position_ids, mask)
    return model.head(h), block_inputs, block_outputs


@pytest.fixture(scope="module")
def token_ids():
    return np.random.default_rng(0).integers(0, HF_CONFIG["vocab_size"], size=(2, 11))


def test_config_from_hf():
    config = gemma.GemmaConfig.from_hf(transformers.GemmaConfig(**HF_CONFIG, num_key_value_heads=1).to_dict())
    assert (config.head_dim, config.num_kv_heads, config.rope_theta) == (16, 1, 500.0)
    # Legacy top-level rope_theta and the released checkpoints' "gelu" (meaning tanh GELU) both read.
    legacy = {**HF_CONFIG, "rope_parameters": None, "rope_theta": 7.0, "hidden_act": "gelu"}
    assert gemma.GemmaConfig.from_hf(legacy).rope_theta == 7.0
    with pytest.raises(ValueError, match="activation"):
        gemma.GemmaConfig.from_hf({**HF_CONFIG, "hidden_act": "silu"})
    with pytest.raises(ValueError, match="rope scaling"):
        gemma.GemmaConfig.from_hf({**HF_CONFIG, "rope_parameters": {"rope_type": "linear", "factor": 2.0}})


@pytest.mark.slow
@pytest.mark.parametrize("num_kv_heads", [1, 2])
def test_fp32_parity_every_block_and_logits(token_ids, num_kv_heads):
    torch_model = make_torch_model(num_kv_heads)
    model = jax_model(torch_model)
    out_ref, inputs_ref, outputs_ref = torch_reference(
        torch_model.model.layers, lambda: torch_model(torch.as_tensor(token_ids), output_hidden_states=True)
    )
    t = token_ids.shape[1]
    logits, block_inputs, block_outputs = jax.jit(forward)(model, token_ids, jnp.arange(t)[None], causal_mask(t))

    hidden = np.stack([h.numpy() for h in out_ref.hidden_states])
    # HF's hidden_states: our L block inputs, then block L-1's output AFTER the final norm.
    assert relative_error(block_inputs, hidden[:-1]) < 1e-5
    assert relative_error(model.norm(block_outputs[-1]), hidden[-1]) < 1e-5
    assert relative_error(block_inputs, inputs_ref) < 1e-5
    assert relative_error(block_outputs, outputs_ref) < 1e-5
    assert relative_error(logits, out_ref.logits.numpy()) < 1e-5
    for layer in range(HF_CONFIG["num_hidden_layers"]):
        alone = model.run_block(layer, block_inputs[layer], jnp.arange(t)[None], causal_mask(t))
        assert relative_error(alone, outputs_ref[layer]) < 1e-5


def test_bf16_bound(token_ids):
    """bf16 weights and activations: vs torch in bf16 (same roundings, incl. the sqrt(d) scale) and vs fp32
    (observed per element: up to 4e-2 on the logits)."""
    torch_model = make_torch_model(1)
    model = jax_model(torch_model, jnp.bfloat16)
    t = token_ids.shape[1]
    logits, block_inputs, _ = jax.jit(forward)(model, token_ids, jnp.arange(t)[None], causal_mask(t))
    assert logits.dtype == jnp.bfloat16
    with torch.no_grad():
        ref32 = torch_model(torch.as_tensor(token_ids)).logits.numpy()
        out16 = torch_model.to(torch.bfloat16)(torch.as_tensor(token_ids), output_hidden_states=True)
    # Embedding output: bf16 embedding times bf16(sqrt(32)) is computed identically on both sides.
    np.testing.assert_array_equal(np.asarray(block_inputs[0], np.float32), out16.hidden_states[0].float().numpy())
    assert relative_error(np.asarray(logits, np.float32), out16.logits.float().numpy()) < 1e-1
    assert relative_error(np.asarray(logits, np.float32), ref32) < 1e-1


@pytest.mark.parametrize("name, num_params", [("gemma-2b", 2_506_172_416), ("gemma-7b", 8_537_680_896)])
def test_named_shapes_have_the_published_parameter_counts(name, num_params):
    arch, hf = registry.NAMED_SHAPES[name]
    config = registry.get_architecture(arch).CONFIG_CLASS.from_hf(hf)
    abstract = nnx.eval_shape(lambda: gemma.Gemma(config, rngs=nnx.Rngs(0)))
    assert sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == num_params


def test_load_model_from_saved_hf_dir(token_ids, tmp_path):
    """The HF-dir loader with Gemma's WEIGHT_MAP on a checkpoint written by transformers itself."""
    torch_model = make_torch_model(2)
    torch_model.save_pretrained(tmp_path)
    lm = load_model(tmp_path)
    assert lm.arch == "gemma" and lm.config.head_dim == 16 and lm.config.num_kv_heads == 2
    with torch.no_grad():
        logits_ref = torch_model(torch.as_tensor(token_ids)).logits.numpy()
    assert relative_error(lm.module(token_ids), logits_ref) < 1e-5
