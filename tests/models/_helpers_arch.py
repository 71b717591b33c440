"""Shared helpers for the GPT-2 / Gemma / BERT parity tests (imported as a plain module: tests/ is no package)."""

import numpy as np
import torch
from _helpers_models import relative_error  # noqa: F401 - one definition, re-exported for the parity tests


def torch_reference(layers, run):
    """Run `run()` with forward hooks on every torch layer; return (output, block_inputs, block_outputs) as
    numpy arrays [L, B, T, d] taken straight from the layers' own inputs and outputs."""
    inputs, outputs = [], []

    def hook(module, args, kwargs, out):
        h = args[0] if args else kwargs["hidden_states"]
        inputs.append(h.detach().float().numpy())
        out = out[0] if isinstance(out, tuple) else out
        outputs.append(out.detach().float().numpy())

    handles = [layer.register_forward_hook(hook, with_kwargs=True) for layer in layers]
    try:
        with torch.no_grad():
            result = run()
    finally:
        for handle in handles:
            handle.remove()
    return result, np.stack(inputs), np.stack(outputs)
