"""Boolean attention masks, shaped [B or 1, 1, T, T]; True means "query row may attend to key column".

The leading axis broadcasts over the batch and the second over heads, so every architecture's attention
uses them as `jnp.where(mask, scores, -inf)` without reshaping.
"""

import jax.numpy as jnp


def causal_mask(seq_len: int) -> jnp.ndarray:
    """[1, 1, T, T]: position t attends to positions <= t (decoder language models)."""
    return jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))[None, None]


def bidirectional_mask(seq_len: int, attention_mask=None) -> jnp.ndarray:
    """[B or 1, 1, T, T]: every position attends to every non-padding key (encoders such as BERT).

    attention_mask: optional [B, T] with 1/True for real tokens and 0/False for padding.
    """
    if attention_mask is None:
        return jnp.ones((1, 1, seq_len, seq_len), dtype=bool)
    keys = jnp.asarray(attention_mask, dtype=bool)[:, None, None, :]
    return jnp.broadcast_to(keys, (keys.shape[0], 1, seq_len, seq_len))


def isolated_mask(seq_len: int) -> jnp.ndarray:
    """[1, 1, T, T] identity: each position attends only to itself.

    With position ids set to 0 this reproduces feeding every token alone as a length-1 input, so a
    whole sequence of "token in isolation" states comes out of one pass.
    """
    return jnp.eye(seq_len, dtype=bool)[None, None]


MASKS = {"causal": causal_mask, "bidirectional": bidirectional_mask, "isolated": isolated_mask}


def make_mask(kind, seq_len: int) -> jnp.ndarray:
    """A mask from its name ("causal", "bidirectional", "isolated"), or an explicit boolean array as is."""
    if isinstance(kind, str):
        if kind not in MASKS:
            raise ValueError(f"Unknown mask {kind!r}; expected one of {sorted(MASKS)} or a boolean array.")
        return MASKS[kind](seq_len)
    mask = jnp.asarray(kind, dtype=bool)
    if mask.ndim != 4 or mask.shape[-2:] != (seq_len, seq_len):
        raise ValueError(f"A mask array must be shaped [B or 1, 1, {seq_len}, {seq_len}], got {mask.shape}.")
    return mask
