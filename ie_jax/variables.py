"""Macro and micro variables of an IE sweep: block inputs and outputs at the positions IE needs.

For block l (input h_l, output h_{l+1} of the residual stream):
- context, position t: h_l[t], h_{l+1}[t] from the pass over the whole sequence (t = T-1: the macro variable,
  the last token with its whole context);
- micro, token t: the same block's input and output for token t processed alone (`micro="isolated"`, the paper's
  definition: a length-1 input at position 0), or position t of the full pass (`micro="in_context"`, as the
  authors' code does; then micro is context and no extra states are kept).

Isolated token states depend only on the token id, so they are computed once per distinct token and looked up
(`micro_index`); Gaussian inputs are continuous, so their isolated states are kept per sample.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ie_jax.data import GaussianData, TokenData
from ie_jax.sharding import pad_problems

MICRO_MODES = ("isolated", "in_context")


@dataclasses.dataclass(frozen=True)
class Variables:
    """Hidden states for the MI problems of a sweep, as float32 numpy arrays.

    context_input/context_output: [L, N, P, d] at `positions` of the full-context pass.
    micro_input/micro_output: [L, M, d] rows of isolated states; micro_index: [N, T] row for sample n, token t.
    Both None with micro="in_context".
    """

    layers: tuple[int, ...]
    positions: tuple[int, ...]
    seq_len: int
    micro_mode: str
    context_input: np.ndarray
    context_output: np.ndarray
    micro_input: np.ndarray | None = None
    micro_output: np.ndarray | None = None
    micro_index: np.ndarray | None = None

    def context_pair(self, layer_index: int, position_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(block input [N, d], block output [N, d]) at context position `positions[position_index]`."""
        return self.context_input[layer_index, :, position_index], self.context_output[layer_index, :, position_index]

    def macro_pair(self, layer_index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.context_pair(layer_index, len(self.positions) - 1)

    def micro_pair(self, layer_index: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(block input [N, d], block output [N, d]) of token t as a micro variable."""
        if self.micro_mode == "in_context":
            return self.context_pair(layer_index, self.positions.index(t))
        rows = self.micro_index[:, t]
        return self.micro_input[layer_index, rows], self.micro_output[layer_index, rows]

    @property
    def nbytes(self) -> int:
        arrays = (self.context_input, self.context_output, self.micro_input, self.micro_output)
        return sum(a.nbytes for a in arrays if a is not None)


def extract(lm, data, *, layers=None, micro: str = "isolated", token_curve: bool = True, batch_size: int = 64,
            progress: bool = False) -> Variables:
    """Capture the block inputs/outputs a sweep needs.

    lm: LoadedModel; data: TokenData ([N, T] token ids) or GaussianData (states fed into each block).
    layers: block indices (default all); token_curve: keep every position (for E(t)), else only the last.
    """
    if micro not in MICRO_MODES:
        raise ValueError(f"micro must be one of {MICRO_MODES}, got {micro!r}")
    num_layers = lm.config.num_layers
    layers = tuple(range(num_layers)) if layers is None else tuple(int(l) for l in layers)
    bad = [l for l in layers if not 0 <= l < num_layers]
    if bad or not layers:
        raise ValueError(f"layers {bad or '[]'} out of range: {lm.name} has blocks 0..{num_layers - 1}")
    T = data.seq_len
    check_context(lm, T)
    positions = tuple(range(T)) if token_curve or micro == "in_context" else (T - 1,)
    _check_memory(len(layers), data.n_samples, len(positions), lm.config.hidden_size)
    if isinstance(data, GaussianData):
        return _extract_gaussian(lm, data, layers, positions, micro, batch_size, progress)
    if isinstance(data, TokenData):
        return _extract_tokens(lm, data.token_ids, layers, positions, micro, batch_size, progress)
    raise TypeError(f"data must be TokenData or GaussianData (see ie_jax.data.load_data), got {type(data).__name__}")


def check_context(lm, seq_len: int) -> None:
    max_len = getattr(lm.config, "max_position_embeddings", None)
    if max_len is not None and seq_len > max_len:
        raise ValueError(f"sequences of {seq_len} tokens exceed {lm.name}'s context of {max_len} positions: "
                         f"use a shorter --seq-len")


def _extract_tokens(lm, token_ids, layers, positions, micro, batch_size, progress):
    from ie_jax.models import capture

    N, T = token_ids.shape
    sel = np.asarray(layers)
    ctx_in, ctx_out = _batched(
        lambda ids: capture(lm, ids, positions=None if len(positions) == T else list(positions)),
        token_ids, sel, batch_size, progress, "capture (context)")
    if micro == "in_context":
        return Variables(layers, positions, T, micro, ctx_in, ctx_out)
    vocab, index = np.unique(token_ids, return_inverse=True)
    # A token fed alone as a length-1 sequence: the paper's isolated micro variable (position id 0).
    mic_in, mic_out = _batched(lambda ids: capture(lm, ids), vocab[:, None].astype(np.int32), sel, batch_size,
                               progress, "capture (tokens alone)")
    return Variables(layers, positions, T, micro, ctx_in, ctx_out, mic_in[:, :, 0], mic_out[:, :, 0],
                     index.reshape(N, T).astype(np.int64))


def _batched(fn, token_ids, sel, batch_size, progress, desc):
    """Run capture over batches of a fixed size (the last one padded, so one compiled shape serves all)."""
    from tqdm.auto import tqdm

    N = token_ids.shape[0]
    B = min(batch_size, N)
    out_in = out_out = None
    for start in tqdm(range(0, N, B), desc=desc, disable=not progress, unit="batch"):
        ids = token_ids[start : start + B]
        n = ids.shape[0]
        if n < B:
            ids = pad_problems(ids, B)
        cap = fn(ids)
        bi = np.asarray(cap.block_input)[sel, :n]
        bo = np.asarray(cap.block_output)[sel, :n]
        if out_in is None:
            out_in = np.empty((len(sel), N) + bi.shape[2:], np.float32)
            out_out = np.empty_like(out_in)
        out_in[:, start : start + n] = bi
        out_out[:, start : start + n] = bo
    return out_in, out_out


def _extract_gaussian(lm, data, layers, positions, micro, batch_size, progress):
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from ie_jax.models import run_block

    N, T, d = data.n_samples, data.seq_len, lm.config.hidden_size
    B = min(batch_size, N)
    pos = np.asarray(positions)
    ctx_in = np.empty((len(layers), N, len(pos), d), np.float32)
    ctx_out = np.empty_like(ctx_in)
    isolated = micro == "isolated"
    if isolated:
        mic_in = np.empty((len(layers), N * T, d), np.float32)
        mic_out = np.empty_like(mic_in)
    for i, layer in enumerate(tqdm(layers, desc="blocks on Gaussian states", disable=not progress, unit="layer")):
        states = data.states(layer, d)
        ctx_in[i] = states[:, pos]
        for start in range(0, N, B):
            h = pad_problems(states[start : start + B], B)
            out = np.asarray(run_block(lm, layer, jnp.asarray(h)))
            n = min(B, N - start)
            ctx_out[i, start : start + n] = out[:n][:, pos]
        if isolated:
            flat = states.reshape(N * T, 1, d)
            mic_in[i] = flat[:, 0]
            BT = min(batch_size * T, N * T)
            zeros = jnp.zeros((BT, 1), jnp.int32)
            for start in range(0, N * T, BT):
                h = pad_problems(flat[start : start + BT], BT)
                out = np.asarray(run_block(lm, layer, jnp.asarray(h), position_ids=zeros))
                n = min(BT, N * T - start)
                mic_out[i, start : start + n] = out[:n, 0]
    if not isolated:
        return Variables(layers, positions, T, micro, ctx_in, ctx_out)
    return Variables(layers, positions, T, micro, ctx_in, ctx_out, mic_in, mic_out,
                     np.arange(N * T, dtype=np.int64).reshape(N, T))


def _check_memory(n_layers: int, n_samples: int, n_positions: int, hidden: int) -> None:
    need = 2 * n_layers * n_samples * n_positions * hidden * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > 0.6 * total:
        raise ValueError(f"the hidden states would take {need / 2**30:.1f} GiB of {total / 2**30:.1f} GiB memory: "
                         f"measure fewer layers or samples, or pass token_curve=False to keep only the last position")
