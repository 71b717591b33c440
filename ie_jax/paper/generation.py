"""Text from a causal LM on the capture path: next-token logits, greedy or sampled continuations, and the
log-probability of a continuation. One compiled forward (`ie_jax.models.capture.logits`) per buffer shape; no
KV cache, so meant for short continuations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ie_jax.models.capture import logits


def _check_causal(lm):
    if lm.arch == "bert":
        raise ValueError(f"{lm.name} is an encoder (bidirectional): next-token logits need a causal LM")


def next_token_logits(lm, token_ids, pos: int) -> np.ndarray:
    """Next-token logits [B, vocab] after token_ids[:, :pos + 1] of a causal LM (token_ids [B, T], T > pos).

    Tokens after `pos` do not reach it (causal mask), so a fixed-size buffer serves every step.
    """
    _check_causal(lm)
    return np.asarray(logits(lm, np.asarray(token_ids, np.int32))[:, pos])


def generate(lm, prompts, n_new: int, *, temperature: float = 0.0, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Continue prompts [N, P] (token ids) by n_new tokens: greedy (temperature 0) or sampled -> [N, P + n_new]."""
    prompts = np.asarray(prompts, np.int32)
    n, p = prompts.shape
    out = np.concatenate([prompts, np.zeros((n, n_new), np.int32)], axis=1)
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch_size):
        buf = out[start: start + batch_size]
        for t in range(p, p + n_new):
            z = next_token_logits(lm, buf, t - 1).astype(np.float64)
            if temperature == 0:
                buf[:, t] = z.argmax(-1)
            else:
                z = z / temperature
                prob = np.exp(z - z.max(-1, keepdims=True))
                prob /= prob.sum(-1, keepdims=True)
                buf[:, t] = [rng.choice(len(row), p=row) for row in prob]
        out[start: start + batch_size] = buf
    return out


def continuation_logprob(lm, token_ids, start: int, *, batch_size: int = 32) -> np.ndarray:
    """[N] mean log-probability (nats/token) of token_ids[:, start:] under the causal LM, given what precedes."""
    _check_causal(lm)
    out = []
    for i in range(0, len(token_ids), batch_size):
        ids = np.asarray(token_ids[i: i + batch_size])
        logp = jax.nn.log_softmax(logits(lm, ids)[:, start - 1: -1].astype(jnp.float32), axis=-1)
        picked = jnp.take_along_axis(logp, jnp.asarray(ids[:, start:])[..., None], axis=-1)[..., 0]
        out.append(np.asarray(picked.mean(axis=1)))
    return np.concatenate(out)
