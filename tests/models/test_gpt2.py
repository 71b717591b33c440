"""GPT-2 parity against transformers' PyTorch GPT2LMHeadModel on a tiny random config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from _helpers_arch import relative_error, torch_reference
from flax import nnx

from ie_jax.models import capture, gpt2, load_model, random_model, registry
from ie_jax.models.masks import causal_mask, isolated_mask
from ie_jax.models.weights import fill_params

HF_CONFIG = dict(
    n_layer=3, n_embd=32, n_head=4, n_inner=None, n_positions=16, vocab_size=97,
    activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0,
)


@pytest.fixture(scope="module")
def torch_model():
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**HF_CONFIG, attn_implementation="eager")).eval()
    with torch.no_grad():  # LayerNorms start at (1, 0): randomise everything so a swapped weight shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def jax_model(torch_model, dtype=jnp.float32):
    config = gpt2.GPT2Config.from_hf(torch_model.config.to_dict())
    abstract = nnx.eval_shape(lambda: gpt2.GPT2(config, dtype=dtype, rngs=nnx.Rngs(0)))
    tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    return fill_params(abstract, tensors, gpt2.WEIGHT_MAP, ignore=gpt2.ignored_keys(config))


@pytest.fixture(scope="module")
def token_ids():
    return np.random.default_rng(0).integers(0, HF_CONFIG["vocab_size"], size=(2, 11))


def forward(model, token_ids, position_ids, mask):
    h, block_inputs, block_outputs = model.run_blocks(model.embed(token_ids, position_ids), position_ids, mask)
    return model.head(h), block_inputs, block_outputs


def test_config_from_hf():
    config = gpt2.GPT2Config.from_hf(transformers.GPT2Config(**HF_CONFIG).to_dict())
    assert (config.num_layers, config.hidden_size, config.intermediate_size, config.head_dim) == (3, 32, 128, 8)
    with pytest.raises(ValueError, match="activation"):
        gpt2.GPT2Config.from_hf({**HF_CONFIG, "activation_function": "swish"})


def test_fp32_parity_every_block_and_logits(torch_model, token_ids):
    model = jax_model(torch_model)
    logits_ref, inputs_ref, outputs_ref = torch_reference(
        torch_model.transformer.h, lambda: torch_model(torch.as_tensor(token_ids), output_hidden_states=True)
    )
    t = token_ids.shape[1]
    logits, block_inputs, block_outputs = jax.jit(forward)(model, token_ids, jnp.arange(t)[None], causal_mask(t))

    hidden = np.stack([h.numpy() for h in logits_ref.hidden_states])
    # HF's hidden_states: our block inputs, then block L-1's output AFTER the final LayerNorm.
    assert relative_error(block_inputs, hidden[:-1]) < 1e-5
    assert relative_error(model.ln_f(block_outputs[-1]), hidden[-1]) < 1e-5
    assert relative_error(block_inputs, inputs_ref) < 1e-5
    assert relative_error(block_outputs, outputs_ref) < 1e-5
    assert relative_error(logits, logits_ref.logits.numpy()) < 1e-5
    assert relative_error(model(token_ids), logits) < 1e-6


def test_bf16_bound(torch_model, token_ids):
    """bf16 parameters and activations vs the fp32 reference: observed per element up to 4e-2 on the logits."""
    model = jax_model(torch_model, jnp.bfloat16)
    with torch.no_grad():
        logits_ref = torch_model(torch.as_tensor(token_ids)).logits.numpy()
    logits = jax.jit(lambda m, x: m(x))(model, token_ids)
    assert logits.dtype == jnp.bfloat16
    assert relative_error(logits.astype(jnp.float32), logits_ref) < 1e-1


def test_run_block_matches_scan(torch_model, token_ids):
    model = jax_model(torch_model)
    t = token_ids.shape[1]
    pos, mask = jnp.arange(t)[None], causal_mask(t)
    _, block_inputs, block_outputs = jax.jit(forward)(model, token_ids, pos, mask)
    run_block = jax.jit(lambda m, layer, h: m.run_block(layer, h, pos, mask))  # one compile: layer is traced
    for layer in range(HF_CONFIG["n_layer"]):
        np.testing.assert_allclose(run_block(model, layer, block_inputs[layer]), block_outputs[layer],
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("own_position", [False, True])
def test_isolated_mask_equals_tokens_fed_alone(torch_model, token_ids, own_position):
    """Absolute position embeddings: the isolated pass must use position 0 (or the token's own) exactly as
    a length-1 input at that position would."""
    model = jax_model(torch_model)
    t = token_ids.shape[1]
    pos = jnp.arange(t)[None] if own_position else jnp.zeros((1, t), int)
    _, _, isolated = forward(model, token_ids, pos, isolated_mask(t))
    run_alone = jax.jit(forward)
    for i in range(t):
        _, _, alone = run_alone(model, token_ids[:, i : i + 1], pos[:, i : i + 1], causal_mask(1))
        np.testing.assert_allclose(isolated[:, :, i], alone[:, :, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, num_params", [
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200),
])
def test_named_shapes_have_the_published_parameter_counts(name, num_params):
    arch, hf = registry.NAMED_SHAPES[name]
    config = registry.get_architecture(arch).CONFIG_CLASS.from_hf(hf)
    abstract = nnx.eval_shape(lambda: gpt2.GPT2(config, rngs=nnx.Rngs(0)))
    assert sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == num_params


@pytest.mark.slow
def test_capture_isolated_own_position_through_the_public_api():
    """End to end through ie_jax.models.capture: an isolated token with its own position id equals that
    token fed alone as a length-1 input at that position id (absolute position embeddings)."""
    lm = random_model(gpt2.GPT2Config.from_hf(HF_CONFIG), seed=1)
    token_ids = np.random.default_rng(3).integers(0, HF_CONFIG["vocab_size"], size=(2, 6))
    cap = capture(lm, token_ids, positions=[1, 4], isolated=True, isolated_position="own")
    run_alone = jax.jit(forward)
    for p, i in enumerate([1, 4]):
        _, _, alone = run_alone(lm.module, token_ids[:, i : i + 1], jnp.full((1, 1), i), causal_mask(1))
        np.testing.assert_allclose(cap.block_output[:, :, p], alone[:, :, 0], rtol=1e-5, atol=1e-5)


def test_load_model_from_saved_hf_dir(torch_model, token_ids, tmp_path):
    """The HF-dir loader with GPT-2's WEIGHT_MAP on a checkpoint written by transformers itself."""
    torch_model.save_pretrained(tmp_path)
    lm = load_model(tmp_path)
    assert lm.arch == "gpt2" and lm.config == gpt2.GPT2Config.from_hf(torch_model.config.to_dict())
    with torch.no_grad():
        logits_ref = torch_model(torch.as_tensor(token_ids)).logits.numpy()
    assert relative_error(lm.module(token_ids), logits_ref) < 1e-5


def test_bad_checkpoint_names_every_problem_at_once(torch_model):
    config = gpt2.GPT2Config.from_hf(torch_model.config.to_dict())
    tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    tensors["transformer.h.0.attn.c_proj.weight"] = tensors["transformer.h.0.attn.c_proj.weight"][:, :5]
    abstract = nnx.eval_shape(lambda: gpt2.GPT2(config, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError) as err:
        fill_params(abstract, tensors, gpt2.WEIGHT_MAP, ignore=gpt2.ignored_keys(config))
    assert "blocks.mlp.c_fc.bias (layers [1])" in str(err.value)
    assert "transformer.h.0.attn.c_proj.weight" in str(err.value)
