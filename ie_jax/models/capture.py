"""Per-block residual states in one compiled call: capture (token inputs) and run_block (given states).

block_input[l] is the residual stream entering block l and block_output[l] the stream leaving it
(block_output[l] == block_input[l+1]); the final norm is NOT applied, unlike HF's last hidden_states entry.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ie_jax.models import registry
from ie_jax.models.masks import make_mask


@dataclasses.dataclass
class Capture:
    """block_input, block_output: [L, B, P, d] in the model dtype; positions: [P] or [B, P] ints (P = T if all)."""

    block_input: jax.Array
    block_output: jax.Array
    positions: np.ndarray


def _natural_mask(lm) -> str:
    return "causal" if registry.get_architecture(lm.arch).CAUSAL else "bidirectional"


def _check_tokens(lm, token_ids) -> np.ndarray:
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2:
        raise ValueError(f"token_ids must be [batch, seq_len], got shape {token_ids.shape}.")
    if token_ids.size == 0:
        raise ValueError(f"Empty input: token_ids has shape {token_ids.shape}; give at least one token per row.")
    if not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(f"token_ids must be integers, got {token_ids.dtype}.")
    context = lm.config.max_position_embeddings
    if token_ids.shape[1] > context:
        raise ValueError(f"Input of {token_ids.shape[1]} tokens is longer than the model's context of {context}; "
                         "truncate or window it.")
    if token_ids.min() < 0 or token_ids.max() >= lm.config.vocab_size:
        raise ValueError(f"Token ids must lie in [0, {lm.config.vocab_size}), got [{token_ids.min()}, {token_ids.max()}].")
    return token_ids.astype(np.int32)


def _check_positions(positions, batch: int, seq_len: int) -> np.ndarray | None:
    if positions is None:
        return None
    positions = np.asarray(positions)
    if positions.ndim == 0:
        positions = positions[None]
    if not np.issubdtype(positions.dtype, np.integer) or positions.ndim > 2 or positions.size == 0:
        raise ValueError(f"positions must be a non-empty [P] or [B, P] array of ints, got {positions!r}.")
    if positions.ndim == 2 and positions.shape[0] != batch:
        raise ValueError(f"positions [B, P] must have B = {batch} rows, got {positions.shape}.")
    if positions.min() < -seq_len or positions.max() >= seq_len:
        raise ValueError(f"positions must lie in [-{seq_len}, {seq_len}) for {seq_len} tokens.")
    return (positions % seq_len).astype(np.int32)  # negatives count from the end, as in Python


@functools.partial(jax.jit, static_argnames=("graphdef", "mask_kind", "zero_position_ids"))
def _capture_core(graphdef, state, token_ids, positions, *, mask_kind, zero_position_ids):
    model = nnx.merge(graphdef, state)
    seq_len = token_ids.shape[1]
    position_ids = jnp.zeros_like(token_ids) if zero_position_ids else jnp.broadcast_to(
        jnp.arange(seq_len, dtype=jnp.int32), token_ids.shape)
    h = model.embed(token_ids, position_ids)
    _, block_input, block_output = model.run_blocks(h, position_ids, make_mask(mask_kind, seq_len), positions=positions)
    return block_input, block_output


def capture(lm, token_ids, *, positions=None, isolated: bool = False, isolated_position: str = "zero",
            mesh=None) -> Capture:
    """Residual stream before/after every block at chosen positions, in one compiled call.

    lm: LoadedModel; token_ids: [B, T] ints; positions: None (all T), [P] or [B, P] ints (negative = from end).
    isolated: each position attends only to itself, i.e. every token is processed alone; its position id
      is 0 with isolated_position="zero" (the token fed alone as a length-1 input) or its own index ("own").
    mesh: optional 1-D `ie_jax.sharding.make_mesh()`: sequences are split across its devices (B padded to a
      multiple of the device count, padding dropped), the weights replicated; results equal the unsharded call.
    Returns Capture with block_input/block_output [L, B, P, d].
    """
    if isolated_position not in ("zero", "own"):
        raise ValueError(f"isolated_position must be 'zero' or 'own', got {isolated_position!r}.")
    token_ids = _check_tokens(lm, token_ids)
    checked = _check_positions(positions, *token_ids.shape)
    graphdef, state = nnx.split(lm.module)
    batch = token_ids.shape[0]
    tokens, rows = jnp.asarray(token_ids), None if checked is None else jnp.asarray(checked)
    if mesh is not None:
        tokens, rows, state = _shard_sequences(token_ids, checked, state, mesh)
    block_input, block_output = _capture_core(
        graphdef, state, tokens, rows,
        mask_kind="isolated" if isolated else _natural_mask(lm),
        zero_position_ids=isolated and isolated_position == "zero",
    )
    if mesh is not None:
        block_input, block_output = block_input[:, :batch], block_output[:, :batch]
    shown = np.arange(token_ids.shape[1], dtype=np.int32) if checked is None else checked
    return Capture(block_input, block_output, shown)


def _shard_sequences(token_ids, positions, state, mesh):
    """Sequences split over the mesh (padded by repeating the last row), weights replicated on every device."""
    from ie_jax import sharding  # local: the models package does not otherwise need the MI side

    size = -(-token_ids.shape[0] // mesh.devices.size) * mesh.devices.size
    tokens = sharding.shard_problems(sharding.pad_problems(token_ids, size), mesh)
    if positions is not None and positions.ndim == 2:
        positions = sharding.shard_problems(sharding.pad_problems(positions, size), mesh)
    elif positions is not None:
        positions = jax.device_put(positions, sharding.replicated(mesh))
    return tokens, positions, jax.device_put(state, sharding.replicated(mesh))


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _run_block_core(graphdef, state, layer, states, position_ids, mask):
    return nnx.merge(graphdef, state).run_block(layer, states, position_ids, mask)


def run_block(lm, layer: int, states, *, position_ids=None, mask=None) -> jax.Array:
    """Block `layer` alone on given residual states [B, T, d] -> [B, T, d] (e.g. Gaussian inputs).

    position_ids: [B, T] ints, default 0..T-1; mask: "causal", "bidirectional", "isolated", a bool
    [B or 1, 1, T, T] array, or None for the architecture's own (causal for decoders).
    One compilation serves every layer (the layer index is traced).
    """
    if not 0 <= layer < lm.config.num_layers:
        raise ValueError(f"layer must lie in [0, {lm.config.num_layers}), got {layer}.")
    states = jnp.asarray(states)
    if states.ndim != 3 or states.shape[-1] != lm.config.hidden_size:
        raise ValueError(f"states must be [B, T, {lm.config.hidden_size}], got {states.shape}.")
    if states.shape[1] > lm.config.max_position_embeddings:
        raise ValueError(f"{states.shape[1]} positions exceed the context of {lm.config.max_position_embeddings}.")
    batch, seq_len, _ = states.shape
    if position_ids is None:
        position_ids = jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32), (batch, seq_len))
    graphdef, state = nnx.split(lm.module)
    mask = make_mask(_natural_mask(lm) if mask is None else mask, seq_len)
    return _run_block_core(graphdef, state, jnp.asarray(layer, jnp.int32), states.astype(lm.module.dtype),
                           jnp.asarray(position_ids, jnp.int32), mask)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _logits_core(graphdef, state, token_ids):
    return nnx.merge(graphdef, state)(token_ids)


def logits(lm, token_ids) -> jax.Array:
    """Next-token logits [B, T, vocab] of a causal LM for token_ids [B, T] (positions 0..T-1)."""
    token_ids = _check_tokens(lm, token_ids)
    graphdef, state = nnx.split(lm.module)
    return _logits_core(graphdef, state, jnp.asarray(token_ids))
