"""Running a stack of identical blocks under one `jax.lax.scan`, recording each block's input and output.

Every architecture stores its blocks as ONE nnx module whose parameters carry a leading layer axis
(built with nnx.vmap), so compile time stays flat in depth and per-block states come out of the scan.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def select_positions(h: jnp.ndarray, positions) -> jnp.ndarray:
    """h[B, T, d] at positions: None (all) -> [B, T, d]; [P] ints -> [B, P, d]; [B, P] ints -> [B, P, d]."""
    if positions is None:
        return h
    positions = jnp.asarray(positions)
    if positions.ndim == 1:
        return jnp.take(h, positions, axis=1)
    return jnp.take_along_axis(h, positions[:, :, None], axis=1)


def scan_blocks(blocks: nnx.Module, h: jnp.ndarray, apply_block, positions=None):
    """Runs `apply_block(block_l, h) -> h` for l = 0..L-1 under a scan.

    blocks: nnx module whose parameters are stacked on a leading axis of length L.
    Returns (h_out[B, T, d], block_inputs[L, B, P, d], block_outputs[L, B, P, d]), P = the selected positions
    (all T when positions is None); selecting inside the scan keeps only [L, B, P, d] in memory.
    """
    graphdef, stacked = nnx.split(blocks)

    def step(h, layer_state):
        h_next = apply_block(nnx.merge(graphdef, layer_state), h)
        return h_next, (select_positions(h, positions), select_positions(h_next, positions))

    h_out, (block_inputs, block_outputs) = jax.lax.scan(step, h, stacked)
    return h_out, block_inputs, block_outputs


def layer_block(blocks: nnx.Module, layer) -> nnx.Module:
    """Block `layer` of a stacked-blocks module, as a module of its own (for running one block alone)."""
    graphdef, stacked = nnx.split(blocks)
    return nnx.merge(graphdef, jax.tree.map(lambda leaf: leaf[layer], stacked))
