"""Running a stack of identical blocks under one `jax.lax.scan`, recording each block's input and output.

Every architecture stores its blocks as ONE nnx module whose parameters carry a leading layer axis
(built by `stacked_blocks` with nnx.vmap), so compile time stays flat in depth and per-block states come
out of the scan. Blocks receive their layer index (traced), for per-layer settings such as Gemma 2's
alternating sliding-window and global attention.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def stacked_blocks(make_block, num_layers: int, rngs: nnx.Rngs) -> nnx.Module:
    """`make_block(rngs)` built `num_layers` times as one module with parameters stacked on axis 0."""

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def build(rngs):
        return make_block(rngs)

    return build(rngs)


def select_positions(h: jnp.ndarray, positions) -> jnp.ndarray:
    """h[B, T, d] at positions: None (all) -> [B, T, d]; [P] ints -> [B, P, d]; [B, P] ints -> [B, P, d]."""
    if positions is None:
        return h
    positions = jnp.asarray(positions)
    if positions.ndim == 1:
        return jnp.take(h, positions, axis=1)
    return jnp.take_along_axis(h, positions[:, :, None], axis=1)


def scan_blocks(blocks: nnx.Module, h: jnp.ndarray, apply_block, positions=None):
    """Runs `apply_block(block_l, h, l) -> h` for l = 0..L-1 under a scan (l is a traced int32).

    blocks: nnx module whose parameters are stacked on a leading axis of length L.
    Returns (h_out[B, T, d], block_inputs[L, B, P, d], block_outputs[L, B, P, d]), P = the selected positions
    (all T when positions is None); selecting inside the scan keeps only [L, B, P, d] in memory.
    """
    graphdef, stacked = nnx.split(blocks)
    num_layers = jax.tree.leaves(stacked)[0].shape[0]

    def step(h, layer_and_state):
        layer, layer_state = layer_and_state
        h_next = apply_block(nnx.merge(graphdef, layer_state), h, layer)
        return h_next, (select_positions(h, positions), select_positions(h_next, positions))

    layers = jnp.arange(num_layers, dtype=jnp.int32)
    h_out, (block_inputs, block_outputs) = jax.lax.scan(step, h, (layers, stacked))
    return h_out, block_inputs, block_outputs


def layer_block(blocks: nnx.Module, layer) -> nnx.Module:
    """Block `layer` of a stacked-blocks module, as a module of its own (for running one block alone)."""
    graphdef, stacked = nnx.split(blocks)
    return nnx.merge(graphdef, jax.tree.map(lambda leaf: leaf[layer], stacked))


def per_layer(values, layer) -> jnp.ndarray:
    """values[layer] for a per-layer constant tuple (e.g. which layers use a sliding window), layer traced."""
    return jnp.asarray(values)[layer]
