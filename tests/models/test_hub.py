"""Hub names resolve through a Hugging Face cache (offline), and a name found nowhere gives one clear error."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from ie_jax.models import load_model
from ie_jax.models.hub import hub_snapshot, looks_like_hub_id

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_GPT2 = dict(model_type="gpt2", n_layer=2, n_embd=16, n_head=2, n_positions=32, n_ctx=32, vocab_size=50,
                 layer_norm_epsilon=1e-5)


def _tiny_gpt2_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """HF GPT-2 checkpoint keys (Conv1D weights are [in, out]) with random values."""
    rng = np.random.default_rng(seed)
    d, v, n = TINY_GPT2["n_embd"], TINY_GPT2["vocab_size"], TINY_GPT2["n_positions"]
    shapes = {"wte.weight": (v, d), "wpe.weight": (n, d), "ln_f.weight": (d,), "ln_f.bias": (d,)}
    for i in range(TINY_GPT2["n_layer"]):
        shapes |= {f"h.{i}.ln_1.weight": (d,), f"h.{i}.ln_1.bias": (d,), f"h.{i}.ln_2.weight": (d,),
                   f"h.{i}.ln_2.bias": (d,), f"h.{i}.attn.c_attn.weight": (d, 3 * d),
                   f"h.{i}.attn.c_attn.bias": (3 * d,), f"h.{i}.attn.c_proj.weight": (d, d),
                   f"h.{i}.attn.c_proj.bias": (d,), f"h.{i}.mlp.c_fc.weight": (d, 4 * d),
                   f"h.{i}.mlp.c_fc.bias": (4 * d,), f"h.{i}.mlp.c_proj.weight": (4 * d, d),
                   f"h.{i}.mlp.c_proj.bias": (d,)}
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def _put_in_hub_cache(cache: pathlib.Path, repo_id: str, tensors: dict) -> None:
    """The layout huggingface_hub writes: blobs named by content hash, a snapshot of links, refs/main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    staging = cache / "staging"
    staging.mkdir(exist_ok=True)
    save_file(tensors, staging / "model.safetensors")
    (staging / "config.json").write_text(json.dumps(TINY_GPT2))
    for file in staging.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        file.rename(blob)
        (repo / "snapshots" / commit / file.name).symlink_to(os.path.relpath(blob, blob.parent.parent / "snapshots" / commit))


def test_hub_ids_are_told_from_paths():
    assert looks_like_hub_id("gpt2") and looks_like_hub_id("HuggingFaceTB/SmolLM2-135M")
    assert not looks_like_hub_id("models/tiny.gguf")
    assert not looks_like_hub_id("../checkpoints/x") and not looks_like_hub_id("/abs/path")
    assert not looks_like_hub_id("a/b/c")


def test_a_hub_id_in_the_cache_loads_offline(tmp_path):
    tensors = _tiny_gpt2_tensors()
    _put_in_hub_cache(tmp_path, "tiny-org/tiny-gpt2", tensors)
    snapshot = hub_snapshot("tiny-org/tiny-gpt2", cache_dir=tmp_path, allow_download=False)
    assert (snapshot / "config.json").is_file() and snapshot.is_relative_to(tmp_path)

    # Through load_model, with the cache given the way a user gives it (HF_HUB_CACHE), and downloads off.
    code = ("import numpy as np; from ie_jax.models import load_model\n"
            "lm = load_model('tiny-org/tiny-gpt2')\n"
            "print(lm.arch, lm.num_layers, lm.hidden_size, np.asarray(lm.module.wte.embedding[...]).tobytes().hex())")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    arch, layers, hidden, wte = done.stdout.split()
    assert (arch, int(layers), int(hidden)) == ("gpt2", 2, 16)
    assert wte == tensors["wte.weight"].tobytes().hex()  # the weights are the cached ones


def test_a_missing_hub_id_gives_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'no-org/no-model' is not a local path and not in the Hugging "
                                                r"Face cache .*hf download no-org/no-model"):
        hub_snapshot("no-org/no-model", cache_dir=tmp_path, allow_download=False)


def test_a_missing_hub_id_with_downloads_allowed_names_the_failed_download(tmp_path):
    # Unknown repo (or no network, as in CI): either way the download fails and the error says so.
    with pytest.raises(FileNotFoundError, match=r"downloading it failed .*hf download"):
        hub_snapshot("ie-jax-test/no-such-model-3f9c", cache_dir=tmp_path, allow_download=True)


def test_a_missing_local_path_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model at"):
        load_model(tmp_path / "nothing-here")
