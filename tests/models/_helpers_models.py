"""Tiny random HF Llama checkpoints, torch reference states and the relative error of the parity tests
(imported as a plain module)."""

import json
from pathlib import Path

import numpy as np
import torch

TINY_LLAMA = dict(
    model_type="llama", vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
    rope_theta=50000.0, tie_word_embeddings=False,
)


def tiny_llama(path: Path, seed: int = 0, **overrides):
    """Saves a random transformers LlamaForCausalLM (safetensors) under path; returns the torch model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{**TINY_LLAMA, **overrides})
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # HF inits norms to 1 exactly; random norms test the weight map properly
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1 + 0.1 * torch.randn_like(param))
    model.save_pretrained(path, safe_serialization=True)
    return model


def torch_block_states(model, token_ids: np.ndarray):
    """Per-block input/output [L, B, T, d], hidden_states and logits of an HF decoder, via forward hooks."""
    inputs, outputs = [], []
    hooks = []
    for layer in model.model.layers:
        hooks.append(layer.register_forward_pre_hook(
            lambda mod, args, kwargs: inputs.append(kwargs.get("hidden_states", args[0] if args else None)),
            with_kwargs=True))
        hooks.append(layer.register_forward_hook(
            lambda mod, args, out: outputs.append(out[0] if isinstance(out, tuple) else out)))
    try:
        with torch.no_grad():
            result = model(torch.as_tensor(token_ids, dtype=torch.long), output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    stack = lambda ts: np.stack([t.float().numpy() for t in ts])  # noqa: E731
    return stack(inputs), stack(outputs), stack(result.hidden_states), result.logits.float().numpy()


def relative_error(ours, reference, floor: float | None = None) -> float:
    """Largest per-element error max_i |ours_i - ref_i| / max(|ref_i|, floor).

    floor: an absolute magnitude below which an element counts as that size (so entries near zero do not
    blow the ratio up); default: the median |ref|, the size of an ordinary entry. Unlike dividing by the
    largest |ref|, an error the size of an ordinary state is not hidden by a few massive activations.
    """
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"shapes differ: {ours.shape} vs {reference.shape}")
    magnitude = np.abs(reference)
    floor = float(np.median(magnitude)) if floor is None else floor
    return float(np.max(np.abs(ours - reference) / np.maximum(magnitude, floor)))


def write_config(path: Path, **config):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
