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
    "gemma2": "ie_jax.models.gemma2",
    "phi3": "ie_jax.models.phi3",
    "olmo2": "ie_jax.models.olmo2",
}

# HF config.json `model_type` (and GGUF general.architecture) -> our architecture name.
MODEL_TYPES = {
    "llama": "llama",
    "gpt2": "gpt2",
    "gemma": "gemma",
    "bert": "bert",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma2": "gemma2",
    "gemma3_text": "gemma2",
    "phi3": "phi3",
    "olmo2": "olmo2",
}

# Relatives of the supported families whose extra mode we do not implement: model_type -> what is missing.
UNSUPPORTED_MODES = {
    "mixtral": "mixture-of-experts layers",
    "qwen2_moe": "mixture-of-experts layers",
    "qwen3_moe": "mixture-of-experts layers",
    "phimoe": "mixture-of-experts layers",
    "olmoe": "mixture-of-experts layers",
    "qwen2_vl": "a multimodal (vision) model",
    "qwen2_5_vl": "a multimodal (vision) model",
    "qwen3_vl": "a multimodal (vision) model",
    "mistral3": "a multimodal (vision) model",
    "paligemma": "a multimodal (vision) model",
    "gemma3": "the multimodal Gemma 3 (with a vision tower; text-only checkpoints have model_type gemma3_text)",
    "gemma3n": "Gemma 3n's per-layer embeddings and AltUp",
    "phi4_multimodal": "a multimodal (vision/audio) model",
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


# Today's families at their released shapes (HF config.json values); hub ids in the comments.
NAMED_SHAPES.update({
    **{
        name: ("llama", {
            "model_type": "qwen2", "num_hidden_layers": n_layer, "hidden_size": d, "intermediate_size": ff,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": tied,
        })
        for name, n_layer, d, ff, heads, kv, vocab, tied in [
            ("qwen2.5-0.5b", 24, 896, 4864, 14, 2, 151936, True),  # Qwen/Qwen2.5-0.5B
            ("qwen2.5-1.5b", 28, 1536, 8960, 12, 2, 151936, True),  # Qwen/Qwen2.5-1.5B
            ("qwen2.5-7b", 28, 3584, 18944, 28, 4, 152064, False),  # Qwen/Qwen2.5-7B
        ]
    },
    "qwen3-0.6b": ("llama", {  # Qwen/Qwen3-0.6B
        "model_type": "qwen3", "num_hidden_layers": 28, "hidden_size": 1024, "intermediate_size": 3072,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": True,
    }),
    "mistral-7b": ("llama", {  # mistralai/Mistral-7B-v0.1 (sliding window 4096)
        "model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
    }),
    "gemma-2-2b": ("gemma2", {  # google/gemma-2-2b
        "model_type": "gemma2", "num_hidden_layers": 26, "hidden_size": 2304, "intermediate_size": 9216,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 256000,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "sliding_window": 4096,
        "query_pre_attn_scalar": 256, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
    }),
    "gemma-3-1b": ("gemma2", {  # google/gemma-3-1b-pt
        "model_type": "gemma3_text", "num_hidden_layers": 26, "hidden_size": 1152, "intermediate_size": 6912,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "rope_local_base_freq": 1e4,
        "sliding_window": 512, "sliding_window_pattern": 6, "query_pre_attn_scalar": 256,
    }),
    "phi-3-mini": ("phi3", {  # microsoft/Phi-3-mini-4k-instruct
        "model_type": "phi3", "num_hidden_layers": 32, "hidden_size": 3072, "intermediate_size": 8192,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": False,
    }),
    "olmo-2-1b": ("olmo2", {  # allenai/OLMo-2-0425-1B
        "model_type": "olmo2", "num_hidden_layers": 16, "hidden_size": 2048, "intermediate_size": 8192,
        "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 100352, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "rope_theta": 500000.0, "tie_word_embeddings": False,
    }),
})


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
        missing += [f"MODEL_CLASS.{method}" for method in _MODEL_METHODS
                    if not callable(getattr(model_class, method, None))]
    if missing:
        raise TypeError(f"Architecture module {module.__name__} lacks {missing} (see registry.Architecture).")


def architecture_for_model_type(model_type: str | None) -> str:
    """Our architecture name for an HF `model_type` or GGUF `general.architecture`."""
    if model_type in UNSUPPORTED_MODES:
        raise ValueError(f"model_type {model_type!r} is {UNSUPPORTED_MODES[model_type]}, which ie_jax does not "
                         f"support; supported: {sorted(MODEL_TYPES)}.")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"Unsupported model_type {model_type!r}; supported: {sorted(MODEL_TYPES)}. "
            "Other architectures need a module in ie_jax/models/ and an entry in registry.MODEL_TYPES."
        )
    return MODEL_TYPES[model_type]
