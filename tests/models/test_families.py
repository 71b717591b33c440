"""Today's families (Qwen2/2.5, Qwen3, Mistral, Gemma 2, Gemma 3 text, Phi-3, OLMo 2) against transformers.

Per family: a tiny random config built by transformers (PyTorch, fp32, eager attention), saved with
save_pretrained (safetensors) and loaded with ie_jax.load_model. Every block's input and output and the
logits must match within 1e-5 (per element, relative, with a floor), the block inputs must match HF's
hidden_states within 1e-4, and the sequence is longer than every sliding window. All configs are
grouped-query (4 query heads, 2 key/value heads) except where noted.
"""

import numpy as np
import pytest
import torch
import transformers
from _helpers_models import relative_error, torch_block_states

import ie_jax
from ie_jax.models import capture, registry

SEQ_LEN = 12  # longer than every sliding window below
BASE = dict(
    vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
)
FAMILIES = {
    # q/k/v biases; use_sliding_window from layer max_window_layers = 1 on: layer 0 global, layer 1 sliding.
    "qwen2": dict(model_type="qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=1,
                  rope_theta=1e4, tie_word_embeddings=True),
    # per-head q/k RMSNorm; head_dim 16 != hidden / heads = 8.
    "qwen3": dict(model_type="qwen3", head_dim=16, rope_theta=1e4),
    "mistral": dict(model_type="mistral", sliding_window=5, rope_theta=1e4),
    # attention scale from query_pre_attn_scalar (not head_dim), soft-caps small enough to bite.
    "gemma2": dict(model_type="gemma2", head_dim=16, query_pre_attn_scalar=12, sliding_window=4,
                   attn_logit_softcapping=2.0, final_logit_softcapping=3.0, hidden_activation="gelu_pytorch_tanh",
                   rope_theta=1e4, tie_word_embeddings=True),
    # q/k norm; a sliding layer with rotary base 100, a global one with base 10^4 and linear scaling x2.
    "gemma3_text": dict(model_type="gemma3_text", head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                        layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=True,
                        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4},
                                         "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}),
    # fused qkv and gate_up; only half of each head rotated; sliding window in every layer.
    "phi3": dict(model_type="phi3", sliding_window=5, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                 rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
    # post-norms, q/k norm over all heads together.
    "olmo2": dict(model_type="olmo2", rope_theta=1e4, pad_token_id=0, eos_token_id=2),
    # plain Llama with attention_bias: o_proj carries a bias too.
    "llama_bias": dict(model_type="llama", attention_bias=True, rope_theta=1e4),
}


def make_torch_model(family: str):
    """A transformers model of the family's tiny config with every parameter perturbed: HF starts norms and
    biases at 1 or 0 (hiding a swapped or unmapped weight) and its small initial weights would leave
    attention scores too small for soft-capping or a wrong scale to show."""
    hf = {**BASE, **FAMILIES[family]}
    config = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
    config._attn_implementation = "eager"
    torch.manual_seed(sum(map(ord, family)))
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.2 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def tokens():
    """[2, SEQ_LEN] ids; position 7 repeats position 0's token (an isolated token's state depends on it alone)."""
    ids = np.random.default_rng(0).integers(0, BASE["vocab_size"], size=(2, SEQ_LEN))
    ids[:, 7] = ids[:, 0]
    return ids


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory, tokens):
    """One family's torch model, its save_pretrained directory (phi3: sharded) loaded by ie_jax, the
    torch reference states and ie_jax's capture of `tokens`: built once, shared by the tests below."""
    torch_model = make_torch_model(request.param)
    path = tmp_path_factory.mktemp(request.param)
    shard = {"max_shard_size": "20KB"} if request.param == "phi3" else {}
    torch_model.save_pretrained(path, safe_serialization=True, **shard)
    lm = ie_jax.load_model(path)
    return dict(name=request.param, lm=lm, torch=torch_block_states(torch_model, tokens), cap=capture(lm, tokens))


def test_parity_every_block_logits_and_hidden_states(family):
    lm, cap = family["lm"], family["cap"]
    block_in, block_out, hidden, torch_logits = family["torch"]
    assert cap.block_input.shape == (2, 2, SEQ_LEN, 32)
    assert relative_error(cap.block_input, block_in) < 1e-5
    assert relative_error(cap.block_output, block_out) < 1e-5
    assert relative_error(lm.module.head(cap.block_output[-1]), torch_logits) < 1e-5
    # HF hidden_states: entries 0..L-1 are the block inputs (the last entry is after the final norm).
    assert relative_error(cap.block_input, hidden[:-1]) < 1e-4


def test_capture_isolated_tokens(family, tokens):
    """Isolated tokens sit at position id 0 and see only themselves: position 7 (same token as position 0)
    then equals position 0 in context, which sees only itself too; in context, position 7 differs."""
    lm, cap = family["lm"], family["cap"]
    isolated = capture(lm, tokens, isolated=True, positions=[0, 7])
    assert isolated.block_output.shape == (2, 2, 2, 32)
    for states in (isolated.block_input, isolated.block_output):
        assert relative_error(states[:, :, 1], states[:, :, 0]) < 1e-6
    assert relative_error(isolated.block_output[:, :, 1], cap.block_output[:, :, 0]) < 1e-5
    assert relative_error(cap.block_output[:, :, 7], cap.block_output[:, :, 0]) > 1e-3


def test_sliding_window_really_limits_attention(family):
    """In a sliding layer, changing the first position leaves outputs a window or more later unchanged;
    in a global layer it changes them."""
    lm = family["lm"]
    window = getattr(lm.config, "sliding_window", None)
    sliding = getattr(lm.config, "sliding_layers", None) or (bool(window),) * lm.config.num_layers
    if not any(sliding):
        pytest.skip(f"{family['name']} has no sliding-window layer")
    states = np.random.default_rng(1).normal(size=(1, SEQ_LEN, 32)).astype(np.float32)
    changed = states.copy()
    changed[:, 0] += 1.0
    for layer, slides in enumerate(sliding):
        far = np.abs(np.asarray(ie_jax.models.run_block(lm, layer, states) -
                                ie_jax.models.run_block(lm, layer, changed)))[:, window:]
        assert (far.max() == 0.0) == slides, (layer, slides, far.max())


UNSUPPORTED = [
    ({**BASE, "model_type": "qwen2", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope scaling type 'yarn'"),
    ({**BASE, "model_type": "phi3", "rope_scaling": {"type": "su", "short_factor": [1.0], "long_factor": [1.0]}},
     "rope scaling type 'longrope'"),
    ({**BASE, "model_type": "qwen3_moe", "num_experts": 8}, "mixture-of-experts"),
    ({**BASE, "model_type": "mixtral"}, "mixture-of-experts"),
    ({**BASE, "model_type": "gemma3", "text_config": {}}, "multimodal"),
    ({**BASE, "model_type": "gemma2", "layer_types": ["chunked_attention", "full_attention"]}, "chunked_attention"),
    ({**BASE, "model_type": "mistral", "hidden_act": "gelu"}, "activation 'gelu'"),
]


@pytest.mark.parametrize("hf, message", UNSUPPORTED, ids=[m for _, m in UNSUPPORTED])
def test_unsupported_modes_are_named(hf, message):
    with pytest.raises(ValueError, match=message):
        ie_jax.models.random_model(hf)


@pytest.mark.parametrize("name, num_params", [
    ("qwen2.5-0.5b", 494_032_768), ("qwen2.5-7b", 7_615_616_512), ("qwen3-0.6b", 596_049_920),
    ("mistral-7b", 7_241_732_096), ("gemma-2-2b", 2_614_341_888), ("gemma-3-1b", 999_885_952),
    ("phi-3-mini", 3_821_079_552),
])
def test_named_shapes_have_the_published_parameter_counts(name, num_params):
    import jax
    from flax import nnx

    arch, hf = registry.NAMED_SHAPES[name]
    module = registry.get_architecture(arch)
    config = module.CONFIG_CLASS.from_hf(hf)
    abstract = nnx.eval_shape(lambda: module.MODEL_CLASS(config, rngs=nnx.Rngs(0)))
    assert sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == num_params


def test_every_architecture_satisfies_the_protocol():
    for name in registry.ARCHITECTURES:
        registry.check_architecture(registry.get_architecture(name))
    broken = type("module", (), {})()
    broken.__name__ = "broken"
    with pytest.raises(TypeError, match=r"lacks \['CONFIG_CLASS'"):
        registry.check_architecture(broken)


def test_cli_models_lists_the_families(capsys):
    from ie_jax.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3", "olmo2", "qwen2.5-7b", "gemma-3-1b"):
        assert name in out
