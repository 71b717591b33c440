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

import dataclasses
import math
import warnings

import jax
import numpy as np

from ie_jax.mi import gaussian_critic, inputs
from ie_jax.mi.protocols import resolve
from ie_jax.mi.result import LOWER_BOUND_FLAGS, MIEstimate, MIEstimates, check_units, convert
from ie_jax.mi.train import TrainConfig, train_batch

SATURATION_MARGIN_NATS = 0.1
# The sample-size and critic checks flag a gain above half the accuracy bar max(0.1 nat, 10%).
CHECK_NATS = 0.05
CHECK_FRACTION = 0.05
OVERFIT_NATS = 0.1
OVERFIT_FRACTION = 0.1
# Diagnostics that make an estimate a lower bound only rather than a measurement (`reliable` is False).
FLAG_KEYS = ("saturated", *LOWER_BOUND_FLAGS, "still_increasing")
# Other critic families for the critic check (`critic_check=` run option).
CRITIC_CHECKS = {"concat": dict(critic="concat", hidden=(256, 256), skip=False),
                 "separable": dict(critic="separable", hidden=(256,), embed_dim=64, skip=True)}
Z95 = 1.959963984540054


def estimate(x, y, *, protocol: str = "fast", seed: int = 0, seeds=None, units: str = "nats", mesh=None,
             **overrides) -> MIEstimate:
    """Estimate I(x; y) from paired samples x [N, dx], y [N, dy] (numpy or jax arrays).

    protocol: "fast" (default) or "paper" (see `ie_jax.mi.protocols`); seed: the data split and the
    critic's seed; seeds: several critic seeds trained together (their spread enters stderr/CI);
    units: "nats" or "bits"; overrides: any protocol setting (bound=, critic=, steps=, batch_size=,
    lr=, readout="heldout"|"paper", dtype="float32"|"bfloat16", test_fraction=, ...).
    """
    x, y = _as_problem_arrays(x, y, rank=2, standardize=resolve(protocol, overrides)[1]["standardize"])
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
    x, y = _as_problem_arrays(x, y, rank=3, standardize=options["standardize"])
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
    x_train, x_test = normalize_marginals(x_train, x_test, options["standardize"])
    y_train, y_test = normalize_marginals(y_train, y_test, options["standardize"])
    chunking = dict(mesh=mesh, max_problems_per_chunk=options["max_problems_per_chunk"],
                    memory_budget_bytes=options["memory_budget_bytes"])
    records = train_batch(cfg, x_train, y_train, x_test, y_test, seeds, **chunking)
    half_records = None
    if _convergence_check_applies(cfg, options, n_train):
        # The same critics trained on a random half of the training pairs, read out on the same held-out
        # batches: what doubling N added says whether the estimate is still limited by the sample size.
        half = np.sort(np.random.default_rng([seed, 1]).permutation(n_train)[: n_train // 2])
        half_records = train_batch(cfg, x_train[:, half], y_train[:, half], x_test, y_test, seeds, **chunking)
    alt_records = None
    alt_cfg = _critic_check_config(cfg, options)
    if alt_cfg is not None:
        # A critic of another family on the same pairs: all held-out bounds are lower bounds, so one that
        # scores clearly higher shows the main critic is too weak for this dependence (e.g. a spiral).
        alt_records = train_batch(alt_cfg, x_train, y_train, x_test, y_test, seeds, **chunking)
    gauss_records = [None] * n_problems
    if options["gaussian_check"] and options["readout"] == "heldout" and records["heldout_batches"].shape[-1]:
        # The closed-form Gaussian critic, read out on the same held-out batches (ie_jax.mi.gaussian_critic).
        eval_batch = min(int(cfg.batch_size or n_test), n_test)
        bound = "infonce" if cfg.bound == "infonce" else "dv"
        if n_test // eval_batch >= 2:
            gauss = gaussian_critic.heldout_bounds_batch(bound, x_train, y_train, x_test, y_test, eval_batch)
            gauss = jax.device_get(gauss)
            gauss_records = [{"heldout_batches": gauss["heldout_batches"][p],
                              "shrinkage": gaussian_critic.SHRINKAGE[int(gauss["shrinkage_index"][p])]}
                             for p in range(n_problems)]
    pick = lambda records, p: None if records is None else {k: v[p] for k, v in records.items()}
    results = [_readout(cfg, options["readout"], pick(records, p), n, n_train, n_test, constant[p],
                        pick(half_records, p), pick(alt_records, p), gauss_records[p],
                        test_fraction=options["test_fraction"])
               for p in range(n_problems)]
    estimator = f"{cfg.bound}/{cfg.critic}/{options['readout']}"
    values_nats = np.array([r[0] for r in results])
    stderrs_nats = np.array([r[1] for r in results])
    ci95s_nats = np.stack([values_nats - Z95 * stderrs_nats, values_nats + Z95 * stderrs_nats], axis=1)
    return MIEstimates(
        values=convert(values_nats, "nats", units), stderrs=convert(stderrs_nats, "nats", units),
        ci95s=convert(ci95s_nats, "nats", units), units=units, estimator=estimator,
        diagnostics=[{**r[2], "protocol": protocol} for r in results],
    )


def _as_problem_arrays(x, y, *, rank: int, standardize) -> tuple[np.ndarray, np.ndarray]:
    # Checked and made float32-safe as the standardisation allows (ie_jax.mi.inputs).
    invariance = inputs.invariance_of(standardize)
    x, y = (inputs.prepare(a, name, rank=rank, invariance=invariance) for name, a in (("x", x), ("y", y)))
    if x.shape[:-1] != y.shape[:-1]:
        what = "N (samples)" if rank == 2 or x.shape[0] == y.shape[0] else "P (problems)"
        raise ValueError(f"{what} differs between x {x.shape} and y {y.shape}: pass paired samples")
    if x.shape[-2] < 2:
        raise ValueError(f"need at least 2 samples, got N={x.shape[-2]}")
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


MARGINAL_NORMALIZATIONS = ("rank", "zscore", "none")


def normalize_marginals(train: np.ndarray, test: np.ndarray, how) -> tuple[np.ndarray, np.ndarray]:
    """Map every column of [P, N, d] train/test arrays by a monotone function; MI is invariant to it.

    how: "rank" (normal scores of the pooled ranks: the copula transform, which removes any element-wise
    monotone distortion such as a cube, and tames heavy tails and massive activations), "zscore" (training
    mean and std), "none" (False) or True (= "zscore", the older spelling).
    """
    how = {True: "zscore", False: "none", None: "none"}.get(how, how)
    if how not in MARGINAL_NORMALIZATIONS:
        raise ValueError(f"unknown standardize={how!r}: use one of {MARGINAL_NORMALIZATIONS}")
    if how == "none":
        return train, test
    if how == "rank":
        return _gaussianize(train, test)
    return _standardize(train, test)


def _gaussianize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal scores Phi^-1((rank - 1/2) / N) of each column, ranked over train and test together.

    Only the marginals of x (or of y) enter the ranks, never the pairing, so pooling the held-out rows
    leaks nothing about the dependence. Ties share their average rank: equal states stay equal.
    """
    from scipy import special, stats

    pooled = np.concatenate([train, test], axis=1)
    ranks = stats.rankdata(pooled, method="average", axis=1)
    scores = special.ndtri((ranks - 0.5) / pooled.shape[1]).astype(np.float32)
    return scores[:, : train.shape[1]], scores[:, train.shape[1]:]


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


def _convergence_check_applies(cfg: TrainConfig, options: dict, n_train: int) -> bool:
    return bool(options["convergence_check"] and options["readout"] == "heldout"
                and (cfg.batch_size is None or n_train // 2 >= cfg.batch_size))


def _critic_check_config(cfg: TrainConfig, options: dict) -> TrainConfig | None:
    """The critic-check config, or None where it does not apply: no check asked, paper readout, the same
    family as the main critic, or a bound the other family cannot train (InfoNCE needs all B x B pairs)."""
    name = options["critic_check"]
    if not name or options["readout"] != "heldout":
        return None
    other = CRITIC_CHECKS[name]
    if other["critic"] == cfg.critic or (cfg.bound == "infonce" and other["critic"] != "separable"):
        return None
    return dataclasses.replace(cfg, **other)


def _sample_size_check(value: float, batches: np.ndarray, half_batches: np.ndarray, readout_steps: np.ndarray,
                       half_readout_steps: np.ndarray) -> dict:
    """Diagnostics from the half-N critics: held-out batches [S * K] of the full- and half-N critics.

    The gain from N/2 to N is paired over the same held-out batches (so most held-out noise cancels). If the
    bias falls like 1/N, the estimate still misses about as much again as doubling N added (more for slower
    rates), so a gain above half the accuracy bar (max(0.05 nat, 5%)) plus two standard errors flags the
    estimate as sample-limited: a lower bound that more samples would raise.
    """
    gain, gain_stderr, clear = _clearly_higher(batches, half_batches, value)
    # At N/2 the untrained critic won (nothing generalised) but at N a trained one did: detection itself
    # still depends on N, so the estimate is at the edge of what this sample size resolves.
    emerged = bool(np.all(half_readout_steps == 0) and np.any(readout_steps > 0))
    return {"value_half_n_nats": float(half_batches.mean()), "gain_from_doubling_n_nats": gain,
            "gain_stderr_nats": gain_stderr, "sample_limited": clear or emerged}


def _critic_check(value: float, batches: np.ndarray, alt_batches: np.ndarray) -> dict:
    """Diagnostics from the other critic family, read out on the same held-out batches [S * K]."""
    gain, gain_stderr, clear = _clearly_higher(alt_batches, batches, value)
    return {"value_other_critic_nats": float(alt_batches.mean()), "other_critic_gain_nats": gain,
            "other_critic_gain_stderr_nats": gain_stderr, "critic_limited": clear}


def _gaussian_check(value: float, heldout_batches: np.ndarray, gauss: dict) -> dict:
    """Diagnostics from the Gaussian critic: neural held-out batches [S, K'] against its batches 1..K-1.

    Without early stopping the neural critics were read out on batch 0 too: that batch is dropped here so
    the two are paired batch by batch."""
    g = gauss["heldout_batches"]
    neural = heldout_batches[:, -g.size:]
    gain, gain_stderr, clear = _clearly_higher(np.tile(g, neural.shape[0]), neural.reshape(-1), value)
    return {"value_gaussian_critic_nats": float(g.mean()), "gaussian_critic_gain_nats": gain,
            "gaussian_critic_gain_stderr_nats": gain_stderr, "gaussian_critic_shrinkage": gauss["shrinkage"],
            "gaussian_critic_limited": clear}


def _clearly_higher(a: np.ndarray, b: np.ndarray, value: float) -> tuple[float, float, bool]:
    """Mean paired difference a - b over held-out batches, its stderr, and whether it exceeds
    max(0.05 nat, 5% of value) (half the accuracy bar) by two standard errors."""
    diff = a - b
    gain = float(diff.mean())
    gain_stderr = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else 0.0
    tolerance = max(CHECK_NATS, CHECK_FRACTION * abs(value))
    return gain, gain_stderr, bool(gain > tolerance + 2.0 * gain_stderr)


def _readout(cfg: TrainConfig, readout: str, rec: dict, n: int, n_train: int, n_test: int, constant: bool,
             half_rec: dict | None = None, alt_rec: dict | None = None, gauss_rec: dict | None = None,
             test_fraction: float | None = None):
    """One problem's (value_nats, stderr_nats, diagnostics) from its training records [S, ...].

    half_rec: the records of the same critics trained on half the training pairs (sample-size check);
    alt_rec: a critic of another family (critic check); gauss_rec: the Gaussian critic's held-out bounds."""
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
    # Training-set bound of the critic that is read out: the steps just before its checkpoint.
    width = cfg.eval_every or max(1, steps // 20)
    readout_steps = rec.get("readout_step", np.full(n_seeds, steps))
    windows = [train_values[s, max(0, int(r) - width):int(r)] for s, r in enumerate(readout_steps)]
    windows = np.concatenate([w for w in windows if w.size]) if any(w.size for w in windows) else np.array([np.nan])
    final_train = float(np.nanmean(windows)) if np.isfinite(windows).any() else math.nan
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
        "readout_step": int(np.min(readout_steps)),
        "n_samples": n,
        "n_train": n_train,
        "n_test": n_test,
        "seeds": n_seeds,
        "readout": readout,
        "heldout_negative": bool(readout == "heldout" and value < 0),
    }
    gap = diagnostics["train_test_gap"]
    diagnostics["overfit"] = bool(gap is not None and np.isfinite(gap) and gap > max(OVERFIT_NATS, OVERFIT_FRACTION * abs(value)))
    if half_rec is not None:
        diagnostics.update(_sample_size_check(value, batches, half_rec["heldout_batches"].reshape(-1),
                                              np.asarray(readout_steps),
                                              np.asarray(half_rec.get("readout_step", np.full(n_seeds, steps)))))
    if alt_rec is not None:
        diagnostics.update(_critic_check(value, batches, alt_rec["heldout_batches"].reshape(-1)))
    if gauss_rec is not None:
        diagnostics.update(_gaussian_check(value, rec["heldout_batches"], gauss_rec))
        diagnostics["critic_limited"] = bool(diagnostics.get("critic_limited") or diagnostics["gaussian_critic_limited"])
    # Early stopping kept the untrained critic: nothing learnt from the training pairs held up on new ones.
    diagnostics["no_fit"] = bool(cfg.early_stopping and readout == "heldout" and int(np.max(readout_steps)) == 0
                                 and not constant)
    flags = [k for k in FLAG_KEYS if diagnostics.get(k)]
    if diagnostics["nan_step"] is not None:
        flags.append("nan_step")
    diagnostics["flags"] = flags
    diagnostics["reliable"] = not flags
    if diagnostics["overfit"]:
        diagnostics["note"] = (f"the critic scores {gap:.2f} nats more on its training pairs than on held-out ones: "
                               "what it learnt only partly generalises at this N, the value is a lower bound")
    if diagnostics.get("sample_limited"):
        diagnostics["note"] = (f"doubling N raised the estimate by {diagnostics['gain_from_doubling_n_nats']:.2f} "
                               f"nats (from {diagnostics['value_half_n_nats']:.2f}): still limited by the sample "
                               "size, a lower bound that more samples would raise")
    if diagnostics["no_fit"]:
        diagnostics["note"] = ("no trained checkpoint beat the untrained critic (score 0) on validation pairs: the "
                               "critic found no dependence that generalises at this N and dimension; the MI may still "
                               "be > 0 (try more samples, fewer dimensions, or the Gaussian / noise estimators)")
    if diagnostics.get("critic_limited"):
        gain_key = max(("other_critic_gain_nats", "gaussian_critic_gain_nats"), key=lambda k: diagnostics.get(k, -math.inf))
        which = "the Gaussian critic" if gain_key.startswith("gaussian") else "a critic of another family"
        other = value + diagnostics[gain_key]
        diagnostics["note"] = (f"{which} scored {other:.2f} nats on the same held-out pairs, "
                               f"{diagnostics[gain_key]:.2f} more: this critic misses part of the dependence; both are "
                               "lower bounds, so the MI is at least the higher one")
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
    diagnostics["no_interval"] = not math.isfinite(stderr)
    if diagnostics["no_interval"]:  # a value without a spread to give it a CI: say why and what would
        note = _interval_note(cfg, readout, n, n_test, n_seeds, n_test / n if test_fraction is None else test_fraction)
        diagnostics["note"] = f"{diagnostics['note']}; {note}" if diagnostics.get("note") else note
    return value, stderr, diagnostics


def _interval_note(cfg: TrainConfig, readout: str, n: int, n_test: int, n_seeds: int, fraction: float) -> str:
    """Why an estimate has no CI (one held-out value: one batch of one seed) and the N or seeds that give one."""
    if readout == "paper":
        return ("no confidence interval: the paper readout's spread is over critic seeds and there is one: pass "
                "several seeds (--seeds 0,1,2)")

    def readout_batches(n_test: int) -> tuple[int, int, bool]:
        batch = min(int(cfg.batch_size or n_test), n_test)
        k = n_test // batch if batch else 0
        validation = bool(cfg.early_stopping and cfg.eval_every and k > 1)  # batch 0 picks the checkpoint
        return k - validation, batch, validation

    count, batch, validation = readout_batches(n_test)
    enough = lambda m: readout_batches(int(round(m * fraction)))[0] * n_seeds >= 2
    low, high = n, 2 * n  # the smallest N that is enough: doubling, then bisection (enough grows with N)
    while not enough(high) and high < 1 << 40:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    need = high
    return (f"no confidence interval: {n_test} held-out pairs make {count + validation} batch(es) of {batch}"
            + (" (the first one validates the checkpoint)" if validation else "")
            + f", so {n_seeds} seed(s) give {count * n_seeds} held-out value(s) and no spread: use N >= {need} "
            "samples (--samples) or several seeds (--seeds 0,1,2)")
