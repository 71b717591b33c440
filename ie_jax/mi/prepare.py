"""Preparation of MI problems on the device: split, marginal normalisation and input checks.

Everything here is jitted and vmapped over the leading problem axis [P, N, d], so a chunk of problems is
prepared where it will be trained (sharded like the critics) and never visits the host. The numbers equal
the host path this replaces (scipy `rankdata` + `ndtri`, numpy z-scores) up to float32 rounding; the rank
normal scores are bit-identical (see `normal_score_table`).

- `split_indices`: the held-out split, a function of (N, seed) only (host; N integers).
- `rank_normal_scores`: the copula transform: per column, normal scores Phi^-1((rank - 1/2) / N) of the
  ranks, ties sharing their average rank exactly as `scipy.stats.rankdata(method="average")`.
- `prepare`: both of the above plus z-scoring, and per-column constant flags for the warnings.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

MARGINAL_NORMALIZATIONS = ("rank", "zscore", "none")


def marginal_normalization(how) -> str:
    """Canonical name of a `standardize=` setting: True is "zscore" (the older spelling), False/None "none"."""
    how = {True: "zscore", False: "none", None: "none"}.get(how, how)
    if how not in MARGINAL_NORMALIZATIONS:
        raise ValueError(f"unknown standardize={how!r}: use one of {MARGINAL_NORMALIZATIONS}")
    return how


def split_indices(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out split from `seed` alone, so every problem and every batch-mate gets the same one.

    Returns (train rows sorted, test rows in permutation order), int32 (N ints: negligible host work)."""
    if n_test == 0:
        return np.arange(n, dtype=np.int32), np.arange(0, dtype=np.int32)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]).astype(np.int32), order[:n_test].astype(np.int32)


@functools.lru_cache(maxsize=16)
def normal_score_table(n: int) -> np.ndarray:
    """float32 [2n - 1]: entry k is the normal score of average rank k / 2 + 1 among n values.

    Average ranks are multiples of 1/2 in [1, n], so the device only computes the integer k = first + last
    sorted position of a tie group and looks its score up here. The table is computed in float64 exactly as
    the host path did (`ndtri((rank - 0.5) / n)`, then float32), so the scores are bit-identical to it."""
    from scipy import special

    ranks = np.arange(2 * n - 1) / 2.0 + 1.0
    return special.ndtri((ranks - 0.5) / n).astype(np.float32)


def rank_normal_scores(a, table):
    """Normal scores of the column ranks of a [N, d] (ties averaged); table = `normal_score_table(N)`.

    Each column is sorted along with its row numbers; a tie group spanning sorted positions first..last
    gets average rank (first + last) / 2 + 1, found with a forward running max of group starts and a
    backward running min of group ends. A second sort by row number puts the scores back in row order
    (2x faster than a scatter on the CPU). Columns are sorted as rows of a.T: XLA sorts the minor axis."""
    columns = a.T  # [d, N]
    n = columns.shape[1]
    position = jax.lax.broadcasted_iota(jnp.int32, columns.shape, 1)
    values, rows = jax.lax.sort((columns, position), dimension=1, num_keys=1, is_stable=False)
    differs = values[:, 1:] != values[:, :-1]  # a new value starts at sorted position i + 1
    true_column = jnp.ones((columns.shape[0], 1), bool)
    starts = jnp.concatenate([true_column, differs], axis=1)
    ends = jnp.concatenate([differs, true_column], axis=1)
    first = jax.lax.cummax(jnp.where(starts, position, 0), axis=1)
    last = jax.lax.cummin(jnp.where(ends, position, n - 1), axis=1, reverse=True)
    _, scores = jax.lax.sort((rows, table[first + last]), dimension=1, num_keys=1, is_stable=False)
    return scores.T


def zscore(train, test):
    """Z-score each column of train [N, d] / test [Nt, d] with training mean and std (ddof 0).

    A column constant on the training rows carries no information the critic could learn: it becomes 0 in
    both train and test (not NaN from 0/0, nor the small rounding residue x - mean)."""
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True)
    constant = train.max(axis=0, keepdims=True) == train.min(axis=0, keepdims=True)
    scale = jnp.where(constant, 0.0, 1.0 / jnp.where(constant, 1.0, std))
    return (train - mean) * scale, (test - mean) * scale


def _prepare_one(a, train_idx, test_idx, table, how: str):
    """One variable of one problem: a [N, d] -> (train [Nt, d], test, constant columns [d] bool)."""
    constant = a.max(axis=0) == a.min(axis=0)
    if how == "rank":
        # Ranks over all N rows = ranks over train and test pooled: only the marginal enters, never the pairing.
        a = rank_normal_scores(a, table)
    train, test = a[train_idx], a[test_idx]
    if how == "zscore":
        train, test = zscore(train, test)
    return train, test, constant


@functools.partial(jax.jit, static_argnames=("how",))
def prepare(x, y, train_idx, test_idx, table, *, how: str):
    """Split and normalise P problems at once: x [P, N, dx], y [P, N, dy] float32 (on the device, sharded or
    not); train_idx / test_idx from `split_indices`; table = `normal_score_table(N)` (used for how="rank").

    Returns a dict: x_train [P, N - Nt, dx], y_train, x_test [P, Nt, dx], y_test, and constant_x [P, dx],
    constant_y [P, dy] (columns constant over all N rows)."""
    one = jax.vmap(functools.partial(_prepare_one, how=how), in_axes=(0, None, None, None))
    x_train, x_test, constant_x = one(x, train_idx, test_idx, table)
    y_train, y_test, constant_y = one(y, train_idx, test_idx, table)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "constant_x": constant_x, "constant_y": constant_y}


# Temporary float32 words of `prepare` per input word, by normalisation: the rank transform sorts every column
# with its row numbers, finds tie groups and sorts the scores back (3.5 per input word compiled on the CPU).
_PREPARE_TEMP = {"rank": 4.5, "zscore": 2.5, "none": 1.5}


def prepare_bytes(n: int, dx: int, dy: int, how: str) -> int:
    """Temporary device memory of `prepare` for one problem of N samples, its outputs (the train/test rows, as
    many bytes as the input) not included: an upper bound of the compiled program's (tests/mi/test_chunks.py)."""
    return int(_PREPARE_TEMP[marginal_normalization(how)] * 4 * n * (dx + dy))
