"""GGUF files (llama.cpp's format): config, dequantised tensors under HF names, and the tokenizer.

Tensors are dequantised with `gguf.quants.dequantize` (Q4_1, Q8_0, ... -> float32) and renamed to the HF
checkpoint names, so the architecture's ordinary WEIGHT_MAP applies. Architectures: llama, qwen2, qwen3,
gemma2, gemma3 (text), phi3, olmo2. What llama.cpp's converter changed is undone here: for Llama it
permutes the rows of q_proj/k_proj (interleaved rotary pairs; `unpermute_rows` restores HF's half-split
layout), for Gemma it stores norm scales as 1 + w.
"""

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from ie_jax.models.tokenizer import Tokenizer

# GGUF tensor name -> HF name, per GGUF architecture ("{i}" is the layer index), following llama.cpp's
# gguf-py tensor_mapping. The same GGUF name can mean different HF norms: "ffn_norm" is the norm before the
# MLP, i.e. Llama's post_attention_layernorm but Gemma 2's pre_feedforward_layernorm.
_COMMON = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}
_QKV = {f"blk.{{i}}.attn_{p}.{kind}": f"model.layers.{{i}}.self_attn.{p}_proj.{kind}"
        for p in "qkv" for kind in ("weight", "bias")}
_GATE_UP = {"blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
            "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight"}
_QK_NORM = {"blk.{i}.attn_q_norm.weight": "model.layers.{i}.self_attn.q_norm.weight",
            "blk.{i}.attn_k_norm.weight": "model.layers.{i}.self_attn.k_norm.weight"}
_PRE_NORMS = {"blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
              "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight"}
_POST_NORMS = {"blk.{i}.post_attention_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
               "blk.{i}.post_ffw_norm.weight": "model.layers.{i}.post_feedforward_layernorm.weight"}
_LLAMA_NAMES = {**_COMMON, **_QKV, **_GATE_UP, **_PRE_NORMS}
_GEMMA2_NAMES = {**_COMMON, **_QKV, **_GATE_UP, **_QK_NORM, **_POST_NORMS,
                 "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
                 "blk.{i}.ffn_norm.weight": "model.layers.{i}.pre_feedforward_layernorm.weight"}
TENSOR_NAMES = {
    "llama": _LLAMA_NAMES,
    "qwen2": _LLAMA_NAMES,
    "qwen3": {**_LLAMA_NAMES, **_QK_NORM},
    "gemma2": _GEMMA2_NAMES,
    "gemma3": _GEMMA2_NAMES,
    "phi3": {**_COMMON, **_PRE_NORMS, "blk.{i}.attn_qkv.weight": "model.layers.{i}.self_attn.qkv_proj.weight",
             "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.gate_up_proj.weight"},
    "olmo2": {**_COMMON, **_QKV, **_GATE_UP, **_QK_NORM, **_POST_NORMS},
}
# GGUF general.architecture -> HF model_type.
MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2", "gemma3": "gemma3_text",
               "phi3": "phi3", "olmo2": "olmo2"}
# llama.cpp stores Gemma's RMSNorm scale w as 1 + w (its norm multiplies by the weight as is).
_NORM_SHIFTED = ("gemma2", "gemma3")
# llama.cpp hard-codes these for Gemma: every `pattern`-th layer global, the rest sliding; the local rope base.
_GEMMA_SLIDING_PATTERN = {"gemma2": 2, "gemma3": 6}
_GEMMA3_LOCAL_ROPE_THETA = 10000.0


# Text splitting before BPE, by tokenizer.ggml.pre, following llama.cpp's llama-vocab.cpp.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _pre_tokenizer(pre: str | None):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in (None, "default", "gpt2"):
        return byte_level
    if pre == "smollm":  # every digit on its own, then GPT-2's split
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("llama3", "llama-v3", "llama-bpe"):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported; supported: default, gpt2, smollm, llama3.")


def _decimal(value):
    """A float32 metadata value as the decimal it was written from (1e-06, not 9.99999997e-07); None stays."""
    return None if value is None else float(str(np.float32(value)))


def unpermute_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k permutation: per head, rows interleaved as (x0, y0, x1, y1, ...) -> (x..., y...).

    weight: [num_heads * head_dim, in]. llama.cpp applied reshape(h, 2, hd/2, in).swapaxes(1, 2).
    """
    rows = weight.shape[0]
    return weight.reshape(num_heads, rows // num_heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


class GGUFFile:
    """An opened GGUF file: `.metadata` (dict), `.hf_config` (HF-style config dict), `.tensors` (lazy mapping
    HF name -> float32 array, dequantised on access) and `.tokenizer()`."""

    def __init__(self, path: str | Path):
        import gguf

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        try:
            self.reader = gguf.GGUFReader(str(path))
        except Exception as err:  # the reader raises ValueError/struct/IndexError/... on damaged files
            raise ValueError(f"{path} is not a readable GGUF file (corrupt or truncated?): {err}") from err
        self.path = path
        self.metadata = {name: field.contents() for name, field in self.reader.fields.items()
                         # token lists are read only when the tokenizer is built
                         if not name.startswith("tokenizer.ggml.") or name.endswith(("_id", ".model", ".pre"))}
        self.arch = self.metadata.get("general.architecture")
        if self.arch not in TENSOR_NAMES:
            raise ValueError(f"GGUF architecture {self.arch!r} is not supported; supported: {sorted(TENSOR_NAMES)}.")
        self._by_hf_name = {}
        unknown = []
        for tensor in self.reader.tensors:
            hf = self._hf_name(tensor.name)
            if hf is None:
                unknown.append(tensor.name)
            else:
                self._by_hf_name[hf] = tensor
        if unknown:
            raise ValueError(f"{path}: tensors with no known meaning for {self.arch!r} (e.g. rope_freqs for "
                             f"Llama-3.1 scaling is not supported): {unknown[:10]}")
        self.hf_config = self._hf_config()

    def _hf_name(self, name: str) -> str | None:
        for gguf_pattern, hf_pattern in TENSOR_NAMES[self.arch].items():
            regex = re.escape(gguf_pattern).replace(r"\{i\}", r"(\d+)")
            match = re.fullmatch(regex, name)
            if match:
                return hf_pattern.format(i=match.group(1)) if match.groups() else hf_pattern
        return None

    def _hf_config(self) -> dict:
        meta, a = self.metadata, self.arch

        def need(key):
            if f"{a}.{key}" not in meta:
                raise ValueError(f"{self.path}: GGUF metadata lacks {a}.{key}; cannot build the model config.")
            return meta[f"{a}.{key}"]

        num_heads, hidden = need("attention.head_count"), need("embedding_length")
        config = {
            "model_type": MODEL_TYPES[a],
            "num_hidden_layers": need("block_count"),
            "hidden_size": hidden,
            "intermediate_size": need("feed_forward_length"),
            "num_attention_heads": num_heads,
            "num_key_value_heads": meta.get(f"{a}.attention.head_count_kv", num_heads),
            "max_position_embeddings": need("context_length"),
            "rms_norm_eps": _decimal(need("attention.layer_norm_rms_epsilon")),
            "rope_theta": _decimal(meta.get(f"{a}.rope.freq_base", 10000.0)),
            "vocab_size": meta.get(f"{a}.vocab_size") or len(self.reader.fields["tokenizer.ggml.tokens"].data),
            # llama.cpp writes no output.weight when the head shares the embedding matrix.
            "tie_word_embeddings": "lm_head.weight" not in self._by_hf_name,
        }
        rope_dims = meta.get(f"{a}.rope.dimension_count")
        head_dim = meta.get(f"{a}.attention.key_length") or (rope_dims if a == "llama" else None) or hidden // num_heads
        config["head_dim"] = head_dim
        if rope_dims and rope_dims != head_dim:
            config["partial_rotary_factor"] = rope_dims / head_dim
        if f"{a}.attention.sliding_window" in meta:
            config["sliding_window"] = meta[f"{a}.attention.sliding_window"]
        if a in _GEMMA_SLIDING_PATTERN:
            config.update(self._gemma_config(config))
        scaling = meta.get(f"{a}.rope.scaling.type")
        if scaling not in (None, "none"):
            if scaling != "linear":
                raise ValueError(f"{self.path}: GGUF rope scaling {scaling!r} is not supported (only linear).")
            config["rope_scaling"] = {"rope_type": "linear", "factor": _decimal(meta[f"{a}.rope.scaling.factor"])}
        return config

    def _gemma_config(self, config: dict) -> dict:
        """Gemma 2/3 settings that llama.cpp derives rather than stores (see its llama-model.cpp)."""
        meta, a = self.metadata, self.arch
        layers, pattern = config["num_hidden_layers"], _GEMMA_SLIDING_PATTERN[a]
        # The 27B models scale queries by (hidden / heads)**-0.5, the others by head_dim**-0.5.
        big = layers == {"gemma2": 46, "gemma3": 62}[a]
        extra = {
            "query_pre_attn_scalar": (config["hidden_size"] // config["num_attention_heads"] if big
                                      else config["head_dim"]),
            "layer_types": ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)],
            "attn_logit_softcapping": _decimal(meta.get(f"{a}.attn_logit_softcapping")),
            "final_logit_softcapping": _decimal(meta.get(f"{a}.final_logit_softcapping")),
        }
        if a == "gemma3":
            extra["rope_local_base_freq"] = _GEMMA3_LOCAL_ROPE_THETA
        return extra

    @property
    def tensors(self) -> "Mapping[str, np.ndarray]":
        return _DequantisedTensors(self)

    def dequantised(self, hf_name: str) -> np.ndarray:
        import gguf

        tensor = self._by_hf_name[hf_name]
        try:
            weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except Exception as err:
            raise ValueError(f"{self.path}: cannot dequantise {tensor.name} ({tensor.tensor_type.name}): {err}") from err
        weight = np.asarray(weight, dtype=np.float32)
        if self.arch == "llama" and hf_name.endswith("self_attn.q_proj.weight"):  # only Llama's rows are permuted
            weight = unpermute_rows(weight, self.hf_config["num_attention_heads"])
        elif self.arch == "llama" and hf_name.endswith("self_attn.k_proj.weight"):
            weight = unpermute_rows(weight, self.hf_config["num_key_value_heads"])
        elif self.arch in _NORM_SHIFTED and hf_name.endswith("norm.weight"):
            weight = weight - 1.0
        return weight

    def tokenizer(self) -> Tokenizer:
        """The byte-level BPE tokenizer described by tokenizer.ggml.* (tokens, merges, token types, pre)."""
        fields, meta = self.reader.fields, self.metadata
        kind = meta.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise ValueError(f"{self.path}: GGUF tokenizer model {kind!r} is not supported (only byte-level BPE 'gpt2').")
        tokens = fields["tokenizer.ggml.tokens"].contents()
        merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"].contents()]
        types = fields["tokenizer.ggml.token_type"].contents() if "tokenizer.ggml.token_type" in fields else []
        backend = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False))
        backend.pre_tokenizer = _pre_tokenizer(meta.get("tokenizer.ggml.pre"))
        backend.decoder = decoders.ByteLevel()
        # Token type 3 = CONTROL (e.g. <|im_start|>): matched whole in text and never split by BPE.
        control = [tokenizers.AddedToken(t, special=True, normalized=False)
                   for t, kind in zip(tokens, types) if kind == 3]
        backend.add_special_tokens(control)
        return Tokenizer(backend, bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
                         eos_token_id=meta.get("tokenizer.ggml.eos_token_id"))


class _DequantisedTensors(Mapping):
    def __init__(self, file: GGUFFile):
        self.file = file

    def __getitem__(self, key: str) -> np.ndarray:
        return self.file.dequantised(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.file._by_hf_name)

    def __len__(self) -> int:
        return len(self.file._by_hf_name)
