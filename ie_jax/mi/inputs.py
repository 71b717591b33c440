"""Scale-safe inputs for every MI estimator: checked in their own precision, made safe before a float32 cast.

Estimators train and score in float32. Cast naively, a float64 state of 1e40 becomes inf, a column at 1e18
overflows the float32 sum of squares behind a standard deviation, 1e-30 underflows to 0 and 1e18 + noise loses
its noise. `prepare(a, name, rank=..., invariance=...)` checks the array where it stands (numeric, no columns
refused, NaN/inf named), then handles the columns float32 cannot hold by what the estimator's MI is invariant to:

  "affine"  any per-column increasing affine map (rank or z-score standardisation, Gaussian MI): such a column
            is centred and divided by a power of two near its spread, in float64, before the cast;
  "scale"   one positive scale per variable and per-column shifts (the noise estimator's centred-std
            normaliser): the whole variable is centred and divided by one power of two;
  "none"    nothing (raw values: standardize="none", an absolute noise level): such a column is refused, named.

Columns inside the safe range are passed through untouched, so ordinary data give bit-identical numbers.
Dividing by a power of two is exact, so the rescaled values keep every digit they had.
"""

from __future__ import annotations

import numpy as np

INVARIANCES = ("affine", "scale", "none")
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Largest magnitude left as it is: N x d squares of it stay far below float32's 3.4e38.
SAFE_MAGNITUDE = 2.0**40
# Smallest nonzero spread left as it is: its squares stay normal float32 numbers.
SAFE_SPREAD = 2.0**-40
# A column this many spreads away from 0 keeps fewer than 8 of float32's 24 bits for its variation.
SAFE_OFFSET = 2.0**16


def invariance_of(standardize) -> str:
    """The invariance a neural estimate has under its `standardize` option."""
    return "none" if standardize in (False, None, "none") else "affine"


def prepare(a, name: str, *, rank: int, invariance: str, dtype=np.float32, keep_device: bool = False) -> np.ndarray:
    """`a` [..., N, d] as `dtype`, checked and, where float32 could not hold it, rescaled (see module doc).

    rank: 2 ([N, d]) or 3 ([P, N, d], each problem on its own). Raises ValueError naming the problem and
    the fix: no columns, NaN or inf (in the input itself, not made by a cast), a column float32 cannot hold
    where `invariance` is "none". A float32 jax array that needs nothing is returned as it is, on its devices,
    where dtype is float32, and with keep_device=True whatever dtype is (for callers that cast on the device:
    float32 values are exact in float64).
    """
    if invariance not in INVARIANCES:
        raise ValueError(f"unknown invariance {invariance!r}: use one of {INVARIANCES}")
    on_device = _safe_on_device(a, rank=rank, dtype=dtype, keep_device=keep_device)
    if on_device is not None:
        return on_device
    a = check(a, name, rank=rank)
    hi = a.max(axis=-2).astype(np.float64)  # [..., d]; no copy of the data
    lo = a.min(axis=-2).astype(np.float64)
    spread = hi - lo
    magnitude = np.maximum(np.abs(hi), np.abs(lo))
    tiny = (spread > 0) & (spread < SAFE_SPREAD)
    far = (spread > 0) & (np.sign(hi) == np.sign(lo)) & (np.minimum(np.abs(hi), np.abs(lo)) > SAFE_OFFSET * spread)
    far &= np.dtype(dtype) != np.float64  # a float64 result keeps the digits; its user centres in float64
    unsafe = (magnitude > SAFE_MAGNITUDE) | tiny | far
    if not unsafe.any():
        return a.astype(dtype, copy=False)
    if invariance == "none":
        _refuse(name, rank, unsafe, magnitude, spread)
    out = a.astype(np.float64)  # copy: only for inputs that need it
    centre = np.where(unsafe, (hi + lo) / 2, 0.0)
    if invariance == "affine":
        scale = np.where(unsafe, _power_of_two(spread), 1.0)
    else:  # one scale per variable (per problem): the largest column spread
        scale = np.where(unsafe.any(axis=-1, keepdims=True), _power_of_two(spread.max(axis=-1, keepdims=True)), 1.0)
        centre = np.where(unsafe.any(axis=-1, keepdims=True), (hi + lo) / 2, 0.0)
    out -= centre[..., None, :]
    out /= np.broadcast_to(scale, centre.shape)[..., None, :]
    return out.astype(dtype, copy=False)


def _safe_on_device(a, *, rank: int, dtype, keep_device: bool = False):
    """A float32 jax array that needs nothing, checked by a few device reductions and returned as it is (the
    estimators keep states on the device); None sends it down the host path, which names any problem."""
    import jax

    if not isinstance(a, jax.Array) or a.ndim != rank or a.dtype != np.float32:
        return None
    if np.dtype(dtype) != np.float32 and not keep_device:
        return None
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        return None
    finite, hi, lo = jax.device_get(_device_stats(a))  # explicit: [..., d], small
    hi, lo = np.asarray(hi, np.float64), np.asarray(lo, np.float64)
    spread = hi - lo
    magnitude = np.maximum(np.abs(hi), np.abs(lo))
    tiny = (spread > 0) & (spread < SAFE_SPREAD)
    far = (spread > 0) & (np.sign(hi) == np.sign(lo)) & (np.minimum(np.abs(hi), np.abs(lo)) > SAFE_OFFSET * spread)
    far &= np.dtype(dtype) != np.float64  # as on the host: a float64 user centres in float64
    if not bool(finite) or ((magnitude > SAFE_MAGNITUDE) | tiny | far).any():
        return None
    return a


def _device_stats(a):
    import jax
    import jax.numpy as jnp

    global _DEVICE_STATS
    if _DEVICE_STATS is None:
        _DEVICE_STATS = jax.jit(lambda a: (jnp.isfinite(a).all(), a.max(axis=-2), a.min(axis=-2)))
    return _DEVICE_STATS(a)


_DEVICE_STATS = None


def check(a, name: str, *, rank: int) -> np.ndarray:
    """`a` as a numeric numpy array of rank `rank` with columns and finite entries (its dtype kept)."""
    a = np.asarray(a)
    shape_doc = "[N, d]" if rank == 2 else "[P, N, d]"
    if a.ndim != rank:
        fix = " (reshape a 1-D array with .reshape(-1, 1))" if a.ndim == rank - 1 else ""
        raise ValueError(f"{name} must have rank {rank} {shape_doc}, got shape {a.shape}{fix}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.shape[-1] == 0:
        raise ValueError(f"{name} has no columns (shape {a.shape}): give at least one feature per sample")
    if a.shape[-2] == 0:
        raise ValueError(f"{name} has no samples (shape {a.shape})")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        if bad.any():
            where = np.argwhere(bad)[0]
            problem = f" in problem {where[0]}" if rank == 3 else ""
            raise ValueError(f"{name} contains NaN or inf{problem} ({int(bad.sum())} entries, first at index "
                             f"{tuple(int(i) for i in where)}): drop or impute those samples")
    return a


def _power_of_two(x: np.ndarray) -> np.ndarray:
    """2^round(log2 x) for x > 0, 1 for x == 0 (a constant column stays 0 after centring)."""
    with np.errstate(divide="ignore"):
        return np.where(x > 0, np.exp2(np.round(np.log2(np.where(x > 0, x, 1.0)))), 1.0)


def _refuse(name: str, rank: int, unsafe: np.ndarray, magnitude: np.ndarray, spread: np.ndarray):
    index = tuple(int(i) for i in np.argwhere(unsafe)[0])
    column = f"column {index[-1]}" + (f" of problem {index[0]}" if rank == 3 and unsafe.shape[0] > 1 else "")
    m, s = magnitude[index], spread[index]
    if m > FLOAT32_MAX:
        what = f"holds {m:.3g}, beyond float32's range ({FLOAT32_MAX:.3g}): the cast would make it inf"
    elif m > SAFE_MAGNITUDE:
        what = f"holds values up to {m:.3g}: their squares overflow float32 arithmetic"
    elif s < SAFE_SPREAD:
        what = f"varies by only {s:.3g}: its squares underflow float32 arithmetic"
    else:
        what = f"varies by {s:.3g} around {m:.3g}: float32 keeps too few digits of that variation"
    raise ValueError(f"{name} {column} {what}; without standardisation the raw values are used, so rescale the "
                     "data or standardise it (standardize='zscore' or 'rank' for the neural estimators, "
                     "normaliser='centred_std' for the noise one): MI is unchanged")
