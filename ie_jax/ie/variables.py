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

import numpy as np

from ie_jax.ie.data import GaussianData, TokenData

MICRO_MODES = ("isolated", "in_context")
GAUSSIAN_BATCH_ROWS = 16384  # token rows per compiled block call on Gaussian states (at least capture_batch seqs)


@dataclasses.dataclass(frozen=True)
class Variables:
    """Hidden states for the MI problems of a sweep, as float32 numpy arrays or jax arrays on the device.

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
    def on_device(self) -> bool:
        """Whether the states are jax arrays on the device (else host numpy arrays)."""
        return not isinstance(self.context_input, np.ndarray)

    @property
    def nbytes(self) -> int:
        arrays = (self.context_input, self.context_output, self.micro_input, self.micro_output)
        return sum(a.nbytes for a in arrays if a is not None)


def extract(lm, data, *, layers=None, micro: str = "isolated", token_curve: bool = True, batch_size: int = 64,
            progress: bool = False, on_device: bool = False) -> Variables:
    """Capture the block inputs/outputs a sweep needs.

    lm: LoadedModel; data: TokenData ([N, T] token ids) or GaussianData (states drawn on the device and fed
    into each block). layers: block indices (default all); token_curve: keep every position (for E(t)), else
    only the last. on_device: keep the states as jax arrays on the default device (the sweep decides by
    device memory, `ie_jax.ie.measure.states_on_device`), else copy them into host numpy arrays; the numbers are
    the same either way.
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
    if not on_device:
        check_host_memory(states_nbytes(lm, data, layers=layers, micro=micro, token_curve=token_curve))
    if isinstance(data, GaussianData):
        out = _extract_gaussian(lm, data, layers, positions, micro, batch_size, progress, on_device)
    elif isinstance(data, TokenData):
        out = _extract_tokens(lm, data.token_ids, layers, positions, micro, batch_size, progress, on_device)
    else:
        raise TypeError(f"data must be TokenData or GaussianData (see ie_jax.ie.data.load_data), got "
                        f"{type(data).__name__}")
    if on_device:  # the capture's seconds are spent here, not in whatever first reads the states
        import jax

        jax.block_until_ready([out.context_input, out.context_output, out.micro_input, out.micro_output])
    return out


def states_nbytes(lm, data, *, layers=None, micro: str = "isolated", token_curve: bool = True) -> int:
    """Bytes of the float32 states `extract` keeps (context input/output and isolated micro input/output)."""
    n_layers = lm.config.num_layers if layers is None else len(layers)
    T, d = data.seq_len, lm.config.hidden_size
    positions = T if token_curve or micro == "in_context" else 1
    rows = 0
    if micro == "isolated":  # token states are kept once per distinct token, Gaussian ones per sample
        rows = len(np.unique(data.token_ids)) if isinstance(data, TokenData) else data.n_samples * T
    return 2 * 4 * n_layers * d * (data.n_samples * positions + rows)


def check_context(lm, seq_len: int) -> None:
    max_len = getattr(lm.config, "max_position_embeddings", None)
    if max_len is not None and seq_len > max_len:
        raise ValueError(f"sequences of {seq_len} tokens exceed {lm.name}'s context of {max_len} positions: "
                         f"use a shorter --seq-len")


class _Sink:
    """A float32 array filled block by block: host numpy, or a device array updated in place (donated)."""

    def __init__(self, shape, on_device: bool):
        import jax.numpy as jnp

        self.on_device = on_device
        self.array = jnp.zeros(shape, jnp.float32) if on_device else np.empty(shape, np.float32)

    def write(self, block, start: tuple[int, ...]) -> None:
        """array[start[0]:start[0] + block.shape[0], ...] = block (block: a jax array of the same rank)."""
        if self.on_device:
            self.array = _update(self.array, block, tuple(np.int32(s) for s in start))
        else:
            self.array[tuple(slice(s, s + n) for s, n in zip(start, block.shape))] = np.asarray(block)


def _update(array, block, start):
    import jax

    global _UPDATE
    if _UPDATE is None:
        # donated: the device writes the block into the array where it is, instead of copying the whole array
        _UPDATE = jax.jit(lambda a, b, s: jax.lax.dynamic_update_slice(a, b.astype(a.dtype), s), donate_argnums=0)
    return _UPDATE(array, block, start)


_UPDATE = None


def _batch_starts(n: int, batch: int) -> list[int]:
    """Starts of fixed-size batches covering 0..n-1: one compiled shape serves all. The last batch ends at n and
    may overlap the one before (its rows are computed again, to the same values), so nothing is padded."""
    starts = list(range(0, n - batch + 1, batch))
    return starts + [n - batch] if starts[-1] + batch < n else starts


def _extract_tokens(lm, token_ids, layers, positions, micro, batch_size, progress, on_device):
    from ie_jax.models import capture

    N, T = token_ids.shape
    sel = np.asarray(layers)
    ctx_in, ctx_out = _batched(
        lambda ids: capture(lm, ids, positions=None if len(positions) == T else list(positions)),
        token_ids, sel, batch_size, progress, "capture (context)", on_device)
    if micro == "in_context":
        return Variables(layers, positions, T, micro, ctx_in, ctx_out)
    vocab, index = np.unique(token_ids, return_inverse=True)
    # A token fed alone as a length-1 sequence: the paper's isolated micro variable (position id 0).
    mic_in, mic_out = _batched(lambda ids: capture(lm, ids), vocab[:, None].astype(np.int32), sel, batch_size,
                               progress, "capture (tokens alone)", on_device, squeeze=True)
    return Variables(layers, positions, T, micro, ctx_in, ctx_out, mic_in, mic_out,
                     index.reshape(N, T).astype(np.int64))


def _batched(fn, token_ids, sel, batch_size, progress, desc, on_device, squeeze=False):
    """Capture over batches of a fixed size -> ([L, N, P, d], [L, N, P, d]), or [L, N, d] with squeeze (P = 1)."""
    from tqdm.auto import tqdm

    N = token_ids.shape[0]
    B = min(batch_size, N)
    sinks = None
    for start in tqdm(_batch_starts(N, B), desc=desc, disable=not progress, unit="batch"):
        cap = fn(token_ids[start : start + B])
        # host states: select on the numpy view (no device gather); device states: select on the device
        blocks = [(a if on_device else np.asarray(a))[sel] for a in (cap.block_input, cap.block_output)]
        blocks = [b[:, :, 0] if squeeze else b for b in blocks]
        if sinks is None:
            sinks = [_Sink((len(sel), N) + b.shape[2:], on_device) for b in blocks]
        for sink, block in zip(sinks, blocks):
            sink.write(block, (0, start) + (0,) * (block.ndim - 2))
    return sinks[0].array, sinks[1].array


def _extract_gaussian(lm, data, layers, positions, micro, batch_size, progress, on_device):
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from ie_jax.models import run_block

    N, T, d = data.n_samples, data.seq_len, lm.config.hidden_size
    # One block on given states is cheap: batches of GAUSSIAN_BATCH_ROWS token rows keep the device busy
    # (64 sequences per call left an H200 idle between 313 calls per layer at N = 20,000).
    B = min(max(batch_size, GAUSSIAN_BATCH_ROWS // T), N)
    pos = np.asarray(positions)
    every = len(positions) == T
    ctx_in, ctx_out = (_Sink((len(layers), N, len(pos), d), on_device) for _ in range(2))
    isolated = micro == "isolated"
    if isolated:
        mic_in, mic_out = (_Sink((len(layers), N * T, d), on_device) for _ in range(2))
        zeros = jnp.zeros((B * T, 1), jnp.int32)
    for i, layer in enumerate(tqdm(layers, desc="blocks on Gaussian states", disable=not progress, unit="layer")):
        for start in _batch_starts(N, B):
            # drawn on the device, batch by batch: the states never pass through the host
            h = data.device_states(layer, d, start, B)
            out = run_block(lm, layer, h)
            ctx_in.write((h if every else h[:, pos])[None], (i, start, 0, 0))
            ctx_out.write((out if every else out[:, pos])[None], (i, start, 0, 0))
            if isolated:
                flat = h.reshape(B * T, 1, d)
                mic_in.write(flat[None, :, 0], (i, start * T, 0))
                mic_out.write(run_block(lm, layer, flat, position_ids=zeros)[None, :, 0], (i, start * T, 0))
    if not isolated:
        return Variables(layers, positions, T, micro, ctx_in.array, ctx_out.array)
    return Variables(layers, positions, T, micro, ctx_in.array, ctx_out.array, mic_in.array, mic_out.array,
                     np.arange(N * T, dtype=np.int64).reshape(N, T))


def check_host_memory(states_bytes: int) -> None:
    """Refuse states (`states_nbytes`) that would take more than 60% of the host's memory, with the fix."""
    from ie_jax.mi.chunks import host_memory

    total = host_memory()
    if total is not None and states_bytes > 0.6 * total:
        raise ValueError(f"the hidden states would take {states_bytes / 2**30:.1f} GiB of {total / 2**30:.1f} GiB "
                         "memory: measure fewer layers or samples, or pass token_curve=False to keep only the last "
                         "position")
