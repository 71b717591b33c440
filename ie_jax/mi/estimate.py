"""Public neural MI estimation: `estimate(x, y)` for one problem, `estimate_batch(x, y)` for P at once.

Python here only validates and prepares arrays and formats results; all training runs in the one
compiled program of `ie_jax.mi.train`. Problem p of `estimate_batch` gets exactly the computation
`estimate(x[p], y[p])` would (same split, same seeds, same keys), so batching never changes a number.

Readouts (nats inside, converted to `units` at the end):
  "heldout" (default): the final critic's bound on held-out batches; stderr over held-out batches
      and seeds; 95% CI = value +- 1.96 stderr. The value is not clipped: below 0 it is a failed estimate
      (diagnostics heldout_negative and a note), since a constant critic already scores 0.
  "paper": the reference's number: max over steps of the training-set bound, floored at 0, up to
      the first non-finite step; with several seeds the mean, stderr over seeds.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ie_jax.mi.protocols import resolve
from ie_jax.mi.result import MIEstimate, MIEstimates, check_units, convert
from ie_jax.mi.train import TrainConfig, train_batch

SATURATION_MARGIN_NATS = 0.1
Z95 = 1.959963984540054


def estimate(x, y, *, protocol: str = "fast", seed: int = 0, seeds=None, units: str = "nats", mesh=None,
             **overrides) -> MIEstimate:
    """Estimate I(x; y) from paired samples x [N, dx], y [N, dy] (numpy or jax arrays).

    protocol: "fast" (default) or "paper" (see `ie_jax.mi.protocols`); seed: the data split and the
    critic's seed; seeds: several critic seeds trained together (their spread enters stderr/CI);
    units: "nats" or "bits"; overrides: any protocol setting (bound=, critic=, steps=, batch_size=,
    lr=, readout="heldout"|"paper", dtype="float32"|"bfloat16", test_fraction=, ...).
    """
    x, y = _as_problem_arrays(x, y, rank=2)
    return estimate_batch(x[None], y[None], protocol=protocol, seed=seed, seeds=seeds, units=units, mesh=mesh,
                          **overrides)[0]


def estimate_batch(x, y, *, protocol: str = "fast", seed: int = 0, seeds=None, units: str = "nats", mesh=None,
                   **overrides) -> MIEstimates:
    """Estimate P independent MI problems x [P, N, dx], y [P, N, dy] in one compiled program.

    Problem p's result equals `estimate(x[p], y[p])` with the same arguments. `mesh`: a mesh from
    `ie_jax.sharding.make_mesh` to shard the problem axis over (default: all devices).
    Returns `MIEstimates` with values [P], stderrs [P], ci95s [P, 2] in `units` and per-problem diagnostics.
    """
    check_units(units)
    cfg, options = resolve(protocol, overrides)
    x, y = _as_problem_arrays(x, y, rank=3)
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (seed,)))
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    n_problems, n = x.shape[:2]
    n_test = int(round(n * options["test_fraction"]))
    n_train = n - n_test
    if cfg.batch_size is not None and n_train < cfg.batch_size:
        raise ValueError(f"N={n} gives {n_train} training pairs, below batch_size={cfg.batch_size}: "
                         "pass more samples or a smaller batch_size")
    if options["readout"] == "heldout" and n_test < 2:
        raise ValueError(f"N={n} with test_fraction={options['test_fraction']} leaves {n_test} held-out pairs: "
                         "need at least 2")
    constant = [_warn_constant(x[p], y[p], p) for p in range(n_problems)]

    train_idx, test_idx = _split(n, n_test, seed)
    x_train, y_train, x_test, y_test = x[:, train_idx], y[:, train_idx], x[:, test_idx], y[:, test_idx]
    if options["standardize"]:
        x_train, x_test = _standardize(x_train, x_test)
        y_train, y_test = _standardize(y_train, y_test)
    records = train_batch(cfg, x_train, y_train, x_test, y_test, seeds, mesh=mesh,
                          max_problems_per_chunk=options["max_problems_per_chunk"],
                          memory_budget_bytes=options["memory_budget_bytes"])
    results = [
        _readout(cfg, options["readout"], {k: v[p] for k, v in records.items()}, n, n_train, n_test, constant[p])
        for p in range(n_problems)
    ]
    estimator = f"{cfg.bound}/{cfg.critic}/{options['readout']}"
    values_nats = np.array([r[0] for r in results])
    stderrs_nats = np.array([r[1] for r in results])
    ci95s_nats = np.stack([values_nats - Z95 * stderrs_nats, values_nats + Z95 * stderrs_nats], axis=1)
    return MIEstimates(
        values=convert(values_nats, "nats", units), stderrs=convert(stderrs_nats, "nats", units),
        ci95s=convert(ci95s_nats, "nats", units), units=units, estimator=estimator,
        diagnostics=[{**r[2], "protocol": protocol} for r in results],
    )


def _as_problem_arrays(x, y, *, rank: int) -> tuple[np.ndarray, np.ndarray]:
    shape_doc = "[N, d]" if rank == 2 else "[P, N, d]"
    arrays = []
    for name, a in (("x", x), ("y", y)):
        a = np.asarray(a)
        if a.ndim != rank:
            fix = " (reshape a 1-D array with .reshape(-1, 1))" if a.ndim == rank - 1 else ""
            raise ValueError(f"{name} must have rank {rank} {shape_doc}, got shape {a.shape}{fix}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        arrays.append(a.astype(np.float32))
    x, y = arrays
    if x.shape[:-1] != y.shape[:-1]:
        what = "N (samples)" if rank == 2 or x.shape[0] == y.shape[0] else "P (problems)"
        raise ValueError(f"{what} differs between x {x.shape} and y {y.shape}: pass paired samples")
    if x.shape[-2] < 2:
        raise ValueError(f"need at least 2 samples, got N={x.shape[-2]}")
    for name, a in (("x", x), ("y", y)):
        bad = ~np.isfinite(a)
        if bad.any():
            where = np.argwhere(bad)[0]
            problem = f" in problem {where[0]}" if rank == 3 else ""
            raise ValueError(f"{name} contains NaN or inf{problem} ({int(bad.sum())} entries, first at index "
                             f"{tuple(int(i) for i in where)}): drop or impute those samples")
    return x, y


def _warn_constant(x: np.ndarray, y: np.ndarray, problem: int) -> bool:
    """Warn about constant columns; True if x or y is entirely constant (then the MI is exactly 0)."""
    all_constant = False
    for name, a in (("x", x), ("y", y)):
        constant_cols = np.flatnonzero(np.ptp(a, axis=0) == 0)
        if constant_cols.size:
            warnings.warn(f"problem {problem}: {name} has {constant_cols.size} constant column(s) "
                          f"(first {constant_cols[:5].tolist()}); they carry no information", stacklevel=3)
        all_constant |= constant_cols.size == a.shape[1]
    return bool(all_constant)


def _split(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out split from `seed` alone, so every problem and every batch-mate gets the same one."""
    if n_test == 0:
        return np.arange(n), np.arange(0)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), order[:n_test]


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score every column with training statistics (MI is invariant to it; optimisation is not)."""
    mean = train.mean(axis=1, keepdims=True)
    std = train.std(axis=1, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def _ceilings(cfg: TrainConfig, readout: str, n_train: int, n_test: int) -> dict[str, float]:
    """The most each readout can report at this sample size (nats); see DIAGNOSTIC_KEYS."""
    if readout == "paper":
        batch = n_train if cfg.batch_size is None else min(cfg.batch_size, n_train)
        n_data_name, n_data = "ln_n_train", n_train
    else:
        batch = n_test if cfg.batch_size is None else min(cfg.batch_size, n_test)
        n_data_name, n_data = "ln_n_test", n_test
    if cfg.bound == "infonce":
        return {"ln_batch": math.log(batch), n_data_name: math.log(n_data)}
    pairs = batch * (batch - 1) if cfg.critic == "separable" else batch
    return {"ln_marginal_pairs": math.log(pairs), n_data_name: math.log(n_data)}


def _readout(cfg: TrainConfig, readout: str, rec: dict, n: int, n_train: int, n_test: int, constant: bool):
    """One problem's (value_nats, stderr_nats, diagnostics) from its training records [S, ...]."""
    train_values = rec["train_values"]  # [S, steps], NaN after a stop
    n_seeds, steps = train_values.shape
    nan_steps = [int(s) for s in rec["nan_step"] if s >= 0]
    if readout == "paper":
        per_seed = np.array([max(0.0, float(np.nanmax(v))) if np.isfinite(v).any() else 0.0 for v in train_values])
        value = float(per_seed.mean())
        stderr = float(per_seed.std(ddof=1) / math.sqrt(n_seeds)) if n_seeds > 1 else math.nan
    else:
        batches = rec["heldout_batches"].reshape(-1)  # [S * K]
        value = float(batches.mean())
        stderr = float(batches.std(ddof=1) / math.sqrt(batches.size)) if batches.size > 1 else math.nan
    window = max(1, steps // 10)
    last, previous = train_values[:, -window:], train_values[:, -2 * window:-window]
    rise = float(np.nanmean(last) - np.nanmean(previous)) if previous.size and np.isfinite(previous).any() else 0.0
    noise = float(np.nanstd(last) / math.sqrt(window)) if np.isfinite(last).any() else 0.0
    final_train = float(np.nanmean(train_values[:, -max(1, steps // 20):])) if np.isfinite(last).any() else math.nan
    ceilings = _ceilings(cfg, readout, n_train, n_test)
    ceiling = min(ceilings.values())
    saturated = value >= ceiling - SATURATION_MARGIN_NATS
    diagnostics = {
        "ceiling_nats": ceiling,
        "ceilings": ceilings,
        "saturated": bool(saturated),
        "constant": constant,
        "still_increasing": bool(rise > max(0.02, 0.01 * abs(value), 3.0 * noise)),
        "nan_step": min(nan_steps) if nan_steps else None,
        "train_test_gap": final_train - value if readout == "heldout" else None,
        "n_samples": n,
        "n_train": n_train,
        "n_test": n_test,
        "seeds": n_seeds,
        "readout": readout,
        "heldout_negative": bool(readout == "heldout" and value < 0),
    }
    if diagnostics["heldout_negative"]:
        # A constant critic scores exactly 0 on any data, so a bound below 0 means the trained critic ranks
        # held-out pairs worse than knowing nothing: e.g. on y = 0.1 x + noise at d = 768 (3.82 nats spread over
        # 768 coordinates) the fast protocol gave -0.45 held-out while its training bound reached 0.92.
        diagnostics["note"] = (f"held-out bound {value:.2f} nats < 0: a failed estimate, not an MI (only I >= 0 "
                               f"is known). Train-test gap {diagnostics['train_test_gap']:.2f} nats: the critic "
                               "fits its training pairs but not new ones; try more samples, fewer steps, a smaller "
                               "critic, or the noise / Gaussian estimators")
    if saturated:
        diagnostics["note"] = (f"within {SATURATION_MARGIN_NATS} nat of the {ceiling:.2f}-nat ceiling this sample "
                               "size and bound allow: a lower bound on the MI, not a measurement")
    return value, stderr, diagnostics
