"""Architecture name -> module, HF model_type -> architecture, and named real shapes for random models.

Every architecture module (ie_jax/models/<arch>.py) satisfies the `Architecture` protocol and its model
class the `LanguageModel` protocol; `get_architecture` checks a module once, on first use, and names any
missing member.
"""

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

class LanguageModel(Protocol):
    """What capture, run_block and the sweep call on a model (an nnx.Module)."""

    config: Any
    dtype: Any

    def embed(self, token_ids, position_ids=None):
        """token_ids [B, T] -> residual stream h [B, T, d] entering block 0."""

    def run_blocks(self, h, position_ids, mask, positions=None):
        """h [B, T, d] -> (h_out [B, T, d], block_inputs [L, B, P, d], block_outputs [L, B, P, d])."""

    def run_block(self, layer, h, position_ids, mask):
        """Block `layer` alone: h [B, T, d] -> [B, T, d]."""

    def head(self, h):
        """Final norm and LM head (identity for encoders): h [B, T, d] -> logits [B, T, vocab]."""

    def __call__(self, token_ids, position_ids=None, mask=None):
        """token_ids [B, T] -> logits (decoders) or last hidden state (encoders)."""


class Architecture(Protocol):
    """An architecture module: its config class (a frozen dataclass with `from_hf(dict)`), its model class
    (built as MODEL_CLASS(config, dtype=..., rngs=...)), the weight map as data (see weights.py), extra named
    weight transforms, whether attention is causal, and the checkpoint keys it deliberately ignores."""

    CONFIG_CLASS: type
    MODEL_CLASS: Callable[..., LanguageModel]
    WEIGHT_MAP: Sequence[tuple[str, str, str]]
    TRANSFORMS: Mapping[str, Callable]
    CAUSAL: bool

    def ignored_keys(self, config) -> tuple[str, ...]:
        """Regexes of checkpoint keys that carry nothing the model needs."""


_ARCHITECTURE_MEMBERS = ("CONFIG_CLASS", "MODEL_CLASS", "WEIGHT_MAP", "TRANSFORMS", "CAUSAL", "ignored_keys")
_MODEL_METHODS = ("embed", "run_blocks", "run_block", "head", "__call__")

ARCHITECTURES = {
    "llama": "ie_jax.models.llama",
    "gpt2": "ie_jax.models.gpt2",
    "gemma": "ie_jax.models.gemma",
    "bert": "ie_jax.models.bert",
}

# HF config.json `model_type` (and GGUF general.architecture) -> our architecture name.
MODEL_TYPES = {
    "llama": "llama",
    "gpt2": "gpt2",
    "gemma": "gemma",
    "bert": "bert",
}

# Real shapes as HF config dicts (read by each architecture's from_hf), for random-weight benchmarks.
NAMED_SHAPES: dict[str, tuple[str, dict]] = {
    **{
        name: ("gpt2", {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_positions": 1024,
                        "n_ctx": 1024, "vocab_size": 50257, "layer_norm_epsilon": 1e-5, "model_type": "gpt2"})
        for name, n_layer, n_embd, n_head in [
            ("gpt2", 12, 768, 12),
            ("gpt2-medium", 24, 1024, 16),
            ("gpt2-large", 36, 1280, 20),
            ("gpt2-xl", 48, 1600, 25),
        ]
    },
    "openllama-3b": ("llama", {
        "model_type": "llama", "num_hidden_layers": 26, "hidden_size": 3200, "intermediate_size": 8640,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": False,
    }),
    **{
        name: ("gemma", {
            "model_type": "gemma", "num_hidden_layers": n_layer, "hidden_size": d, "intermediate_size": ff,
            "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": 256, "vocab_size": 256000,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "hidden_activation": "gelu_pytorch_tanh",
        })
        for name, n_layer, d, ff, heads, kv in [("gemma-2b", 18, 2048, 16384, 8, 1), ("gemma-7b", 28, 3072, 24576, 16, 16)]
    },
    **{
        name: ("llama", {
            "model_type": "llama", "num_hidden_layers": n_layer, "hidden_size": d, "intermediate_size": ff,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": 49152,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": theta,
            "tie_word_embeddings": True,
        })
        for name, n_layer, d, ff, heads, kv, theta in [
            ("smollm2-135m", 30, 576, 1536, 9, 3, 100000.0),
            ("smollm2-360m", 32, 960, 2560, 15, 5, 100000.0),
            ("smollm2-1.7b", 24, 2048, 8192, 32, 32, 130000.0),
        ]
    },
}


def list_architectures() -> list[str]:
    """Architecture names whose module is importable in this installation."""
    found = []
    for name in ARCHITECTURES:
        try:
            get_architecture(name)
        except ValueError:
            continue
        found.append(name)
    return found


@functools.cache
def get_architecture(name: str) -> Architecture:
    """The module implementing architecture `name` (see ARCHITECTURES), checked against `Architecture`."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; supported: {sorted(ARCHITECTURES)}.")
    try:
        module = importlib.import_module(ARCHITECTURES[name])
    except ModuleNotFoundError as err:
        if err.name != ARCHITECTURES[name]:
            raise
        raise ValueError(f"Architecture {name!r} is not available in this installation ({err}).") from err
    check_architecture(module)
    return module


def check_architecture(module) -> None:
    """Raises TypeError naming every member of the Architecture/LanguageModel protocols `module` lacks."""
    missing = [member for member in _ARCHITECTURE_MEMBERS if member not in vars(module)]
    model_class = vars(module).get("MODEL_CLASS")
    if model_class is not None:
        missing += [f"MODEL_CLASS.{method}" for method in _MODEL_METHODS if not callable(getattr(model_class, method, None))]
    if missing:
        raise TypeError(f"Architecture module {module.__name__} lacks {missing} (see registry.Architecture).")


def architecture_for_model_type(model_type: str | None) -> str:
    """Our architecture name for an HF `model_type` or GGUF `general.architecture`."""
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"Unsupported model_type {model_type!r}; supported: {sorted(MODEL_TYPES)}. "
            "Other architectures need a module in ie_jax/models/ and an entry in registry.MODEL_TYPES."
        )
    return MODEL_TYPES[model_type]
