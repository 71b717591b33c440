"""Public neural MI estimation: `estimate(x, y)` for one problem, `estimate_batch(x, y)` for P at once.

The data stay on the device from input to readout: preparation (`ie_jax.mi.prepare`: split, rank
normalisation), critic training (`ie_jax.mi.train`), the checks (half-N critics, another critic family, the
Gaussian critic) and the readout statistics are jitted programs over a chunk of problems, sharded over the
device mesh; the host only plans chunks, formats results and issues warnings after the one transfer back.
Problem p of `estimate_batch` gets exactly the computation `estimate(x[p], y[p])` would (same split, same
seeds, same keys), so batching, chunking and the device count never change a number.

Readouts (nats inside, converted to `units` at the end):
  "heldout" (default): the final critic's bound on held-out batches; stderr over held-out batches
      and seeds; 95% CI = value +- 1.96 stderr. The value is not clipped: below 0 it is a failed estimate
      (diagnostics heldout_negative and a note), since a constant critic already scores 0.
  "paper": the reference's number: max over steps of the training-set bound, floored at 0, up to
      the first non-finite step; with several seeds the mean, stderr over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ie_jax import distributed, sharding
from ie_jax.mi import chunks, gaussian_critic, inputs, prepare, selection
from ie_jax.mi.protocols import resolve
from ie_jax.mi.result import (CHECK_FRACTION, CHECK_NATS, SATURATION_MARGIN_NATS, Z95, MIEstimate, MIEstimates,
                              check_units, convert, saturated as is_saturated, with_flags)
from ie_jax.mi.train import TrainConfig, seed_keys, train_critics, training_bytes

OVERFIT_NATS = 0.1
OVERFIT_FRACTION = 0.1
# Other critic families for the critic check (`critic_check=` run option).
CRITIC_CHECKS = {"concat": dict(critic="concat", hidden=(256, 256), skip=False),
                 "separable": dict(critic="separable", hidden=(256,), embed_dim=64, skip=True)}
MARGINAL_NORMALIZATIONS = prepare.MARGINAL_NORMALIZATIONS


def estimate(x, y, *, protocol: str = "fast", seed: int = 0, seeds=None, units: str = "nats", mesh=None,
             timings: dict | None = None, **overrides) -> MIEstimate:
    """Estimate I(x; y) from paired samples x [N, dx], y [N, dy] (numpy or jax arrays).

    protocol: "fast" (default) or "paper" (see `ie_jax.mi.protocols`); seed: the data split and the
    critic's seed; seeds: several critic seeds trained together (their spread enters stderr/CI);
    units: "nats" or "bits"; overrides: any protocol setting (bound=, critic=, steps=, batch_size=,
    lr=, readout="heldout"|"paper", dtype="float32"|"bfloat16", test_fraction=, ...); timings: as
    `estimate_batch`.
    """
    x, y = _as_problem_arrays(x, y, rank=2, standardize=resolve(protocol, overrides)[1]["standardize"])
    return estimate_batch(x[None], y[None], protocol=protocol, seed=seed, seeds=seeds, units=units, mesh=mesh,
                          timings=timings, **overrides)[0]


def estimate_batch(x, y, *, protocol: str = "fast", seed: int = 0, seeds=None, units: str = "nats", mesh=None,
                   pad_problems_to: int | None = None, timings: dict | None = None, **overrides) -> MIEstimates:
    """Estimate P independent MI problems x [P, N, dx], y [P, N, dy] in one compiled program per chunk.

    x, y: numpy arrays, or jax arrays (sharded or not: they are never copied to the host). Problem p's
    result equals `estimate(x[p], y[p])` with the same arguments. `mesh`: a mesh from
    `ie_jax.sharding.make_mesh` to shard the problem axis over (default: all devices, at most P).
    `pad_problems_to`: plan chunks as if there were this many problems (padding repeats the last one), so
    that calls with fewer problems, such as a sweep's last chunk, reuse the same compiled programs.
    Chunks (`ie_jax.mi.chunks`): `max_problems_per_chunk=`, else the caller's plan (`chunks.planned`), else as
    many problems as `memory_budget_bytes=` (per device; default `chunks.default_memory_budget()`) holds at
    `bytes_per_problem` each.
    `timings`: a dict to receive the seconds of each phase (setup_s, prepare_s, train_s, gaussian_s,
    readout_s, transfer_s, format_s, summed over chunks); each phase then waits for the device, which
    costs the overlap of host and device work, so pass it for profiling only.
    Returns `MIEstimates` with values [P], stderrs [P], ci95s [P, 2] in `units` and per-problem diagnostics.
    """
    clock = _PhaseClock(timings)
    check_units(units)
    cfg, options = resolve(protocol, overrides)
    prepare.marginal_normalization(options["standardize"])  # a bad standardize= fails here, before any work
    readout = options["readout"]
    x, y = _as_problem_arrays(x, y, rank=3, standardize=options["standardize"])
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (seed,)))
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    n_problems, n, dx = x.shape
    dy = y.shape[2]
    layout = _layout(cfg, options, n)
    n_test, n_train, eval_batch, n_select = layout.n_test, layout.n_train, layout.eval_batch, layout.n_select
    if cfg.batch_size is not None and n_train < cfg.batch_size:
        raise ValueError(f"N={n} gives {n_train} training pairs, below batch_size={cfg.batch_size}: "
                         "pass more samples or a smaller batch_size")
    if readout == "heldout" and n_test < 2:
        raise ValueError(f"N={n} with test_fraction={options['test_fraction']} leaves {n_test} held-out pairs: "
                         "need at least 2")
    slots = max(n_problems, int(pad_problems_to or 0))
    mesh = mesh if mesh is not None else sharding.make_mesh(distributed.mesh_size(slots))
    chunk = _chunk_size(cfg, options, slots, n, dx, dy, len(seeds), mesh.devices.size)
    run = chunk_program(cfg, options, n, seed, seeds, mesh)
    outputs = []
    for start in range(0, slots, chunk):
        xc, yc = (_chunk_on_mesh(a, start, chunk, mesh) for a in (x, y))
        clock.lap("setup_s", (xc, yc))
        outputs.append(run(xc, yc, clock=clock))
    outputs = distributed.to_host(outputs)  # the one transfer back (across hosts: all-gathered): [P] statistics and flags, no data
    clock.lap("transfer_s")
    stats = {k: np.concatenate([o[k] for o in outputs])[:n_problems] for k in outputs[0]}

    ceilings = _ceilings(cfg, readout, n_train, n_test, eval_batch)
    selecting = bool(options["select"] and readout == "heldout")
    # Repeated rows (token-like data): counted exactly where the sample covers the states, and never read by
    # nearest-neighbour candidates (ties break their distances, jitter or not).
    discrete = selection.discrete_structure(x, y)[:n_problems] if selecting else [None] * n_problems
    results = []
    for p in range(n_problems):
        constant = _warn_constant(stats["constant_x"][p], stats["constant_y"][p], p)
        one = {k: v[p] for k, v in stats.items()}
        value, stderr, diagnostics = _diagnose(cfg, readout, one, n, n_train, n_test, constant, ceilings,
                                               options["test_fraction"], eval_batch,
                                               bool(options["select"] and readout == "heldout"))
        ci = (value - Z95 * stderr, value + Z95 * stderr)
        if options["select"] and readout == "heldout":  # the paper readout has no held-out batches to select on
            value, stderr, ci, diagnostics = selection.select(one, value, stderr, diagnostics, n_select, dx, dy,
                                                              n_train, eval_batch, constant, discrete[p])
        results.append((value, stderr, ci, diagnostics))
    estimator = f"{cfg.bound}/{cfg.critic}/{readout}" + ("/selected" if options["select"] and readout == "heldout" else "")
    values_nats = np.array([r[0] for r in results])
    stderrs_nats = np.array([r[1] for r in results])
    ci95s_nats = np.array([r[2] for r in results], dtype=float).reshape(n_problems, 2)
    estimates = MIEstimates(
        values=convert(values_nats, "nats", units), stderrs=convert(stderrs_nats, "nats", units),
        ci95s=convert(ci95s_nats, "nats", units), units=units, estimator=estimator,
        diagnostics=[{**r[3], "protocol": protocol} for r in results],
    )
    clock.lap("format_s")
    return estimates


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What a chunk of N-sample problems runs, from the protocol's settings (`estimate_batch` and its memory)."""

    n_test: int
    n_train: int
    eval_batch: int  # held-out batch size (0: no held-out pairs)
    n_select: int  # held-out batches the selection reads (0: no selection)
    half_check: bool  # the half-N critics (sample-size check)
    alt_cfg: TrainConfig | None  # the other critic family (critic check)
    gaussian_bound: str | None  # the Gaussian critic's bound (Gaussian check), None without it


def _layout(cfg: TrainConfig, options: dict, n: int) -> _Layout:
    n_test = int(round(n * options["test_fraction"]))
    n_train = n - n_test
    # held-out batches of eval_batch_size, at most the training batch (a smaller batch_size= shrinks both)
    eval_batch = min(int(options["eval_batch_size"] or n_test), int(cfg.batch_size or n_test), n_test) if n_test else 0
    gaussian_bound = None
    if options["gaussian_check"] and options["readout"] == "heldout" and eval_batch and n_test // eval_batch >= 2:
        # The closed-form Gaussian critic, read out on the same held-out batches (ie_jax.mi.gaussian_critic).
        gaussian_bound = "infonce" if cfg.bound == "infonce" else "dv"
    # A critic of another family on the same pairs (`_critic_check_config`): all held-out bounds are lower
    # bounds, so one that scores clearly higher shows the main critic is too weak for this dependence (a spiral).
    return _Layout(n_test, n_train, eval_batch, _selection_batches(cfg, options, n_test, eval_batch),
                   _convergence_check_applies(cfg, options, n_train), _critic_check_config(cfg, options),
                   gaussian_bound)


def bytes_per_problem(n: int, dx: int, dy: int, *, protocol: str = "fast", seeds=(0,), **overrides) -> int:
    """Device memory one problem of N samples needs in a chunk of `estimate_batch` (x [N, dx], y [N, dy]):
    a chunk of C problems needs at most C times this on each device (C / devices of them), what
    `ie_jax.mi.chunks.plan` sizes chunks by. Counted (`_chunk_bytes`): every program of a chunk, and the
    arrays kept between them."""
    cfg, options = resolve(protocol, overrides)
    return _chunk_bytes(cfg, options, n, dx, dy, len(tuple(seeds)))


def _chunk_bytes(cfg: TrainConfig, options: dict, n: int, dx: int, dy: int, n_seeds: int) -> int:
    """Per problem: the arrays a chunk keeps (the float32 inputs, their prepared copy, the half-N subsets, the
    critics' records) plus the largest working memory of one of its programs: preparation, each critic set's
    training (main, half-N, other family), the Gaussian critic, the readout and the selection's candidates
    (copula, nearest neighbours). Each term is an upper bound of that compiled program's `memory_analysis()`
    (tests/mi/test_chunks.py), counted for every problem of the chunk: programs that run one problem at a time
    (`lax.map`) are counted as if vmapped, since an accelerator's compiler may batch them."""
    how = prepare.marginal_normalization(options["standardize"])
    lay = _layout(cfg, options, n)
    training = functools.partial(training_bytes, n_test=lay.n_test, dx=dx, dy=dy, n_seeds=n_seeds,
                                 eval_batch=lay.eval_batch)
    critic_sets = [(cfg, lay.n_train)] + [(cfg, lay.n_train // 2)] * lay.half_check
    critic_sets += [(lay.alt_cfg, lay.n_train)] * (lay.alt_cfg is not None)
    programs = [prepare.prepare_bytes(n, dx, dy, how)] + [training(c, n_train=m) for c, m in critic_sets]
    if lay.gaussian_bound is not None:
        programs.append(gaussian_critic.heldout_bytes(lay.n_train, lay.n_test, dx, dy, lay.eval_batch))
    if lay.n_select:
        programs.append(selection.candidates_bytes(lay.n_train, dx, dy))
    raw = 4 * n * (dx + dy)
    records = 4 * n_seeds * (2 * cfg.steps + lay.n_test + 16)  # each critic set's, kept until the readout
    held = 2 * raw + 2 * (dx + dy) + len(critic_sets) * records  # inputs; prepared rows and constant flags
    if lay.half_check:
        held += 4 * (lay.n_train // 2) * (dx + dy)
    readout = 4 * 3 * records + 4096  # the readout reads every record once more; a few dozen [P] statistics
    fixed = 4 * (4 * n + 16)  # split and half indices, the normal-score table, keys: once, counted per problem
    return int(held + max(programs + [readout]) + fixed)


def _chunk_size(cfg: TrainConfig, options: dict, n_problems: int, n: int, dx: int, dy: int, n_seeds: int,
                n_devices: int) -> int:
    """Problems per chunk: `max_problems_per_chunk`, else the caller's plan (`ie_jax.mi.chunks.planned`: a
    sweep's chunk is one chunk here), else `ie_jax.mi.chunks.plan` from `_chunk_bytes` and the memory budget."""
    most = options["max_problems_per_chunk"] or chunks.planned_chunk()
    if most is not None:
        return chunks.balanced_chunk(n_problems, int(most), n_devices)
    return chunks.plan(n_problems, _chunk_bytes(cfg, options, n, dx, dy, n_seeds),
                       budget=options["memory_budget_bytes"], n_devices=n_devices,
                       what=f"one MI problem of N = {n} samples (dx = {dx}, dy = {dy})",
                       fix="fewer samples (--samples)")


def chunk_program(cfg: TrainConfig, options: dict, n: int, seed: int, seeds, mesh):
    """`run(x, y, clock=None)`: one chunk of `estimate_batch` (x [C, N, dx], y [C, N, dy] on `mesh`) with
    everything its problems share (split, half-N rows, keys, normal-score table) fixed: device arrays of [C]
    statistics. Also what tests/mi/test_chunks.py traces to hold `bytes_per_problem` to the compiled programs."""
    layout = _layout(cfg, options, n)
    how = prepare.marginal_normalization(options["standardize"])
    train_idx, test_idx = prepare.split_indices(n, layout.n_test, seed)
    half = None
    if layout.half_check:
        # The same critics trained on a random half of the training pairs, read out on the same held-out
        # batches: what doubling N added says whether the estimate is still limited by the sample size.
        order = np.random.default_rng([seed, 1]).permutation(layout.n_train)
        half = np.sort(order[: layout.n_train // 2]).astype(np.int32)
    fixed = dict(keys=seed_keys(tuple(seeds), mesh), train_idx=train_idx, test_idx=test_idx, half=half,
                 table=prepare.normal_score_table(n) if how == "rank" else np.zeros(1, np.float32), seed=seed)

    def run(x, y, clock=None):
        return _estimate_chunk(cfg, layout.alt_cfg, options["readout"], how, layout.gaussian_bound, layout.eval_batch,
                               layout.n_select, x, y, clock=clock or _PhaseClock(None), **fixed)

    return run


def _estimate_chunk(cfg, alt_cfg, readout, how, gaussian_bound, eval_batch, n_select, x, y, *, keys, train_idx,
                    test_idx, half, table, clock, seed) -> dict:
    """One chunk of problems, all on the device: prepare, train the critics and checks, readout statistics.
    Returns device arrays with leading axis = chunk size (nothing is waited for unless `clock` times phases)."""
    data = prepare.prepare(x, y, train_idx, test_idx, table, how=how)
    clock.lap("prepare_s", data)
    heldout = (data["x_test"], data["y_test"])
    train = functools.partial(train_critics, keys=keys, eval_batch=eval_batch)
    main = train(cfg, data["x_train"], data["y_train"], *heldout)
    half_rec = alt_rec = gauss = None
    if half is not None:
        half_rec = train(cfg, data["x_train"][:, half], data["y_train"][:, half], *heldout)
    if alt_cfg is not None:
        alt_rec = train(alt_cfg, data["x_train"], data["y_train"], *heldout)
    clock.lap("train_s", (main, half_rec, alt_rec))
    if gaussian_bound is not None:
        gauss = gaussian_critic.heldout_bounds_batch(gaussian_bound, data["x_train"], data["y_train"], *heldout,
                                                     eval_batch)
    clock.lap("gaussian_s", gauss)
    stats = _readout_stats(cfg, readout, main, half_rec, alt_rec, None if gauss is None else gauss["heldout_batches"],
                           n_select=n_select)
    if gauss is not None:
        stats["gaussian_critic_shrinkage_index"] = gauss["shrinkage_index"]
    clock.lap("readout_s", stats)
    if n_select:
        # The other candidates of the selection default, fitted on the same prepared training pairs.
        for name, fields in selection.closed_form_candidates(data["x_train"], data["y_train"], seed=seed).items():
            stats.update({f"candidate_{name}_{field}": v for field, v in fields.items()})
        clock.lap("selection_s", stats)
    return {**stats, "constant_x": data["constant_x"], "constant_y": data["constant_y"]}


class _PhaseClock:
    """Adds the seconds since the previous lap to timings[phase], after waiting for that phase's arrays;
    does nothing (and waits for nothing) when timings is None."""

    def __init__(self, timings: dict | None):
        self.timings, self.last = timings, time.perf_counter()

    def lap(self, phase: str, arrays=None):
        if self.timings is None:
            return
        jax.block_until_ready(arrays)
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self.last
        self.last = now


def _chunk_on_mesh(a, start: int, size: int, mesh) -> jax.Array:
    """Problems start..start + size of a [P, ...] (padded by repeating the last one) sharded over the mesh."""
    n_problems = a.shape[0]
    part = a[min(start, n_problems - 1): min(start + size, n_problems)]
    if isinstance(part, np.ndarray):
        part = jax.device_put(part)  # pad on the device: the host never copies the data
    return sharding.shard_problems(sharding.pad_problems(part, size), mesh)


def _as_problem_arrays(x, y, *, rank: int, standardize):
    """Checked float32 arrays, made float32-safe as the standardisation allows (`ie_jax.mi.inputs`); a safe
    float32 jax array stays on its devices (checked by device reductions)."""
    invariance = inputs.invariance_of(standardize)
    x, y = (inputs.prepare(a, name, rank=rank, invariance=invariance) for name, a in (("x", x), ("y", y)))
    if x.shape[:-1] != y.shape[:-1]:
        what = "N (samples)" if rank == 2 or x.shape[0] == y.shape[0] else "P (problems)"
        raise ValueError(f"{what} differs between x {x.shape} and y {y.shape}: pass paired samples")
    if x.shape[-2] < 2:
        raise ValueError(f"need at least 2 samples, got N={x.shape[-2]}")
    return x, y


def _warn_constant(constant_x: np.ndarray, constant_y: np.ndarray, problem: int) -> bool:
    """Warn about constant columns (masks [dx], [dy]); True if x or y is entirely constant (MI exactly 0)."""
    all_constant = False
    for name, mask in (("x", constant_x), ("y", constant_y)):
        constant_cols = np.flatnonzero(mask)
        if constant_cols.size:
            warnings.warn(f"problem {problem}: {name} has {constant_cols.size} constant column(s) "
                          f"(first {constant_cols[:5].tolist()}); they carry no information", stacklevel=3)
        all_constant |= constant_cols.size == mask.size
    return bool(all_constant)


def normalize_marginals(train, test, how):
    """Map every column of [P, N, d] train/test arrays by a monotone function; MI is invariant to it.

    how: "rank" (normal scores of the pooled ranks: the copula transform, which removes any element-wise
    monotone distortion such as a cube, and tames heavy tails and massive activations), "zscore" (training
    mean and std), "none" (False) or True (= "zscore", the older spelling). Runs `ie_jax.mi.prepare` on the
    device; returns jax arrays (numpy in, the same numbers as the host path had).
    """
    how = prepare.marginal_normalization(how)
    pooled = jnp.concatenate([jnp.asarray(train, jnp.float32), jnp.asarray(test, jnp.float32)], axis=1)
    n, n_train = pooled.shape[1], train.shape[1]
    table = prepare.normal_score_table(n) if how == "rank" else np.zeros(1, np.float32)
    out = prepare.prepare(pooled, pooled, np.arange(n_train, dtype=np.int32), np.arange(n_train, n, dtype=np.int32),
                          table, how=how)
    return out["x_train"], out["x_test"]


def _ceilings(cfg: TrainConfig, readout: str, n_train: int, n_test: int, eval_batch: int | None = None) -> dict[str, float]:
    """The most each readout can report at this sample size (nats); see DIAGNOSTIC_KEYS."""
    if readout == "paper":
        batch = n_train if cfg.batch_size is None else min(cfg.batch_size, n_train)
        n_data_name, n_data = "ln_n_train", n_train
    else:
        batch = eval_batch or (n_test if cfg.batch_size is None else min(cfg.batch_size, n_test))
        n_data_name, n_data = "ln_n_test", n_test
    if cfg.bound == "infonce":
        return {"ln_batch": math.log(batch), n_data_name: math.log(n_data)}
    pairs = batch * (batch - 1) if cfg.critic == "separable" else batch
    return {"ln_marginal_pairs": math.log(pairs), n_data_name: math.log(n_data)}


def _selection_batches(cfg: TrainConfig, options: dict, n_test: int, eval_batch: int) -> int:
    """Held-out batches the selection reads: a third of those after the validation batch (at least one),
    leaving at least one to read out; 0 where no selection applies (select off, no early stopping, K < 3)."""
    if not options["select"] or options["readout"] != "heldout" or not eval_batch:
        return 0
    k = n_test // eval_batch
    if not (cfg.early_stopping and cfg.eval_every) or k < 3:
        return 0
    return max(1, (k - 1) // 3)


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


# --- Readout statistics: pure jnp functions of one problem's records, vmapped over problems on the device.

def _mean_and_stderr(a, *, empty_stderr=jnp.nan):
    """Mean of all entries and its standard error (ddof 1); `empty_stderr` with fewer than 2 entries."""
    a = a.reshape(-1)
    stderr = a.std(ddof=1) / math.sqrt(a.size) if a.size > 1 else jnp.asarray(empty_stderr, a.dtype)
    return a.mean(), stderr


def _clearly_higher(a, b, value):
    """Mean paired difference a - b over held-out batches, its stderr, and whether it exceeds
    max(0.05 nat, 5% of value) (half the accuracy bar) by two standard errors."""
    gain, gain_stderr = _mean_and_stderr(jnp.asarray(a) - jnp.asarray(b), empty_stderr=0.0)
    tolerance = jnp.maximum(CHECK_NATS, CHECK_FRACTION * jnp.abs(value))
    return gain, gain_stderr, gain > tolerance + 2.0 * gain_stderr


def _sample_size_check(value, batches, half_batches, readout_steps, half_readout_steps) -> dict:
    """Diagnostics from the half-N critics: held-out batches [S * K] of the full- and half-N critics.

    The gain from N/2 to N is paired over the same held-out batches (so most held-out noise cancels). If the
    bias falls like 1/N, the estimate still misses about as much again as doubling N added (more for slower
    rates), so a gain above half the accuracy bar (max(0.05 nat, 5%)) plus two standard errors flags the
    estimate as sample-limited: a lower bound that more samples would raise.
    """
    gain, gain_stderr, clear = _clearly_higher(batches, half_batches, value)
    # At N/2 the untrained critic won (nothing generalised) but at N a trained one did: detection itself
    # still depends on N, so the estimate is at the edge of what this sample size resolves.
    emerged = jnp.all(jnp.asarray(half_readout_steps) == 0) & jnp.any(jnp.asarray(readout_steps) > 0)
    return {"value_half_n_nats": jnp.mean(half_batches), "gain_from_doubling_n_nats": gain,
            "gain_stderr_nats": gain_stderr, "sample_limited": clear | emerged}


def _critic_check(value, batches, alt_batches) -> dict:
    """Diagnostics from the other critic family, read out on the same held-out batches [S * K]."""
    gain, gain_stderr, clear = _clearly_higher(alt_batches, batches, value)
    return {"value_other_critic_nats": jnp.mean(alt_batches), "other_critic_gain_nats": gain,
            "other_critic_gain_stderr_nats": gain_stderr, "critic_limited": clear}


def _gaussian_check(value, heldout_batches, gaussian_batches) -> dict:
    """Diagnostics from the Gaussian critic: neural held-out batches [S, K'] against its batches 1..K-1 [K - 1].

    Without early stopping the neural critics were read out on batch 0 too: that batch is dropped here so
    the two are paired batch by batch."""
    g = jnp.asarray(gaussian_batches)
    neural = jnp.asarray(heldout_batches)[:, -g.size:]
    gain, gain_stderr, clear = _clearly_higher(jnp.tile(g, neural.shape[0]), neural.reshape(-1), value)
    return {"value_gaussian_critic_nats": g.mean(), "gaussian_critic_gain_nats": gain,
            "gaussian_critic_gain_stderr_nats": gain_stderr, "gaussian_critic_limited": clear}


def _selection_split(n_select: int, rec: dict, half_rec, alt_rec, gaussian_batches):
    """Selection statistics from the first n_select readout batches, and every record cut to the rest.

    The selection batches' means are the evidence `ie_jax.mi.selection.choose` reads; their stderrs come from
    the spread of single batches over the readout batches (NaN with one readout batch: then the evidence
    refutes nothing)."""
    cut = lambda r: None if r is None else {**r, "heldout_batches": r["heldout_batches"][:, n_select:]}
    per_batch_sd = lambda a: a.reshape(-1).std(ddof=1) if a.size > 1 else jnp.float32(jnp.nan)
    neural_select = rec["heldout_batches"][:, :n_select]
    stats = {"select_neural": neural_select.mean(),
             "select_neural_stderr": per_batch_sd(rec["heldout_batches"][:, n_select:]) / math.sqrt(neural_select.size)}
    if gaussian_batches is not None:
        stats["select_gaussian"] = gaussian_batches[:n_select].mean()
        stats["select_gaussian_stderr"] = per_batch_sd(gaussian_batches[n_select:]) / math.sqrt(n_select)
        gaussian_batches = gaussian_batches[n_select:]
    return stats, cut(rec), cut(half_rec), cut(alt_rec), gaussian_batches


def _problem_stats(cfg: TrainConfig, readout: str, rec: dict, half_rec, alt_rec, gaussian_batches,
                   n_select: int = 0) -> dict:
    """One problem's readout statistics (nats) from its records [S, ...]: value, stderr, the learning-curve
    and train/test numbers and the checks. Flags and notes are set from them on the host (`_diagnose`).
    n_select > 0: the first n_select readout batches are the selection batches (`_selection_split`)."""
    select_stats = {}
    if n_select:
        select_stats, rec, half_rec, alt_rec, gaussian_batches = _selection_split(n_select, rec, half_rec, alt_rec,
                                                                                  gaussian_batches)
    train_values = rec["train_values"]  # [S, steps], NaN after a stop
    n_seeds, steps = train_values.shape
    finite = jnp.isfinite(train_values)
    if readout == "paper":
        per_seed = jnp.where(finite.any(axis=1), jnp.maximum(0.0, jnp.nanmax(train_values, axis=1)), 0.0)
        value, stderr = _mean_and_stderr(per_seed)
    else:
        batches = rec["heldout_batches"].reshape(-1)  # [S * K]
        value, stderr = _mean_and_stderr(batches)
    window = max(1, steps // 10)
    last, previous = train_values[:, -window:], train_values[:, -2 * window:-window]
    rise = jnp.float32(0.0)
    if previous.size:
        rise = jnp.where(jnp.isfinite(previous).any(), jnp.nanmean(last) - jnp.nanmean(previous), 0.0)
    noise = jnp.where(jnp.isfinite(last).any(), jnp.nanstd(last) / math.sqrt(window), 0.0)
    # Training-set bound of the critic that is read out: the steps just before its checkpoint.
    width = cfg.eval_every or max(1, steps // 20)
    readout_steps = rec["readout_step"]
    t = jnp.arange(steps)[None, :]
    in_window = (t >= readout_steps[:, None] - width) & (t < readout_steps[:, None]) & finite
    count = in_window.sum()
    final_train = jnp.where(count > 0, jnp.where(in_window, train_values, 0.0).sum() / jnp.maximum(count, 1), jnp.nan)
    nan_steps = rec["nan_step"]
    stats = {"value": value, "stderr": stderr, "rise": rise, "noise": noise, "final_train": final_train,
             "nan_step": jnp.where((nan_steps >= 0).any(), jnp.min(jnp.where(nan_steps >= 0, nan_steps, steps)), -1),
             "readout_step_min": readout_steps.min(), "readout_step_max": readout_steps.max(),
             "seeds": jnp.int32(n_seeds)}
    if half_rec is not None:
        stats.update(_sample_size_check(value, batches, half_rec["heldout_batches"].reshape(-1), readout_steps,
                                        half_rec["readout_step"]))
    if alt_rec is not None:
        stats.update(_critic_check(value, batches, alt_rec["heldout_batches"].reshape(-1)))
    if gaussian_batches is not None:
        stats.update(_gaussian_check(value, rec["heldout_batches"], gaussian_batches))
    return {**stats, **select_stats}


@functools.partial(jax.jit, static_argnames=("cfg", "readout", "n_select"))
def _readout_stats(cfg: TrainConfig, readout: str, records, half_records=None, alt_records=None,
                   gaussian_batches=None, n_select: int = 0) -> dict:
    """`_problem_stats` for every problem of a chunk: records [P, S, ...] -> dict of [P] arrays."""
    one = functools.partial(_problem_stats, cfg, readout, n_select=n_select)
    return jax.vmap(one)(records, half_records, alt_records, gaussian_batches)


def _readout(cfg: TrainConfig, readout: str, rec: dict, n: int, n_train: int, n_test: int, constant: bool,
             half_rec: dict | None = None, alt_rec: dict | None = None, gauss_rec: dict | None = None,
             test_fraction: float | None = None):
    """One problem's (value_nats, stderr_nats, diagnostics) from its training records [S, ...] (host arrays).

    half_rec: the records of the same critics trained on half the training pairs (sample-size check);
    alt_rec: a critic of another family (critic check); gauss_rec: the Gaussian critic's held-out bounds
    ({"heldout_batches": [K - 1], "shrinkage": float})."""
    steps = rec["train_values"].shape[1]
    with_step = lambda r: None if r is None else {"readout_step": np.full(r["train_values"].shape[0], steps),
                                                  **{k: np.asarray(v) for k, v in r.items()}}
    batch = lambda r: None if r is None else jax.tree.map(lambda a: np.asarray(a)[None], r)
    gaussian_batches = None if gauss_rec is None else np.asarray(gauss_rec["heldout_batches"])[None]
    stats = distributed.to_host(_readout_stats(cfg, readout, batch(with_step(rec)), batch(with_step(half_rec)),
                                          batch(with_step(alt_rec)), gaussian_batches))
    stats = {k: v[0] for k, v in stats.items()}
    if gauss_rec is not None:
        stats["gaussian_critic_shrinkage_index"] = gaussian_critic.SHRINKAGE.index(gauss_rec["shrinkage"])
    return _diagnose(cfg, readout, stats, n, n_train, n_test, constant, _ceilings(cfg, readout, n_train, n_test),
                     test_fraction)


CHECK_KEYS = ("value_half_n_nats", "gain_from_doubling_n_nats", "gain_stderr_nats", "sample_limited",
              "value_other_critic_nats", "other_critic_gain_nats", "other_critic_gain_stderr_nats",
              "value_gaussian_critic_nats", "gaussian_critic_gain_nats", "gaussian_critic_gain_stderr_nats",
              "gaussian_critic_limited")


def _diagnose(cfg: TrainConfig, readout: str, stats: dict, n: int, n_train: int, n_test: int, constant: bool,
              ceilings: dict[str, float], test_fraction: float | None = None, eval_batch: int | None = None,
              select: bool = False):
    """(value_nats, stderr_nats, diagnostics) of one problem from its readout statistics (host scalars):
    flags, ceilings and the note that explains the most important flag."""
    value, stderr = float(stats["value"]), float(stats["stderr"])
    ceiling = min(ceilings.values())
    saturated = is_saturated(value, ceiling, constant=constant)
    rise, noise = float(stats["rise"]), float(stats["noise"])
    nan_step = int(stats["nan_step"])
    diagnostics = {
        "ceiling_nats": ceiling,
        "ceilings": dict(ceilings),
        "saturated": bool(saturated),
        "constant": constant,
        "still_increasing": bool(rise > max(0.02, 0.01 * abs(value), 3.0 * noise)),
        "nan_step": nan_step if nan_step >= 0 else None,
        "train_test_gap": float(stats["final_train"]) - value if readout == "heldout" else None,
        "readout_step": int(stats["readout_step_min"]),
        "n_samples": n,
        "n_train": n_train,
        "n_test": n_test,
        "seeds": int(stats["seeds"]),
        "readout": readout,
        "heldout_negative": bool(readout == "heldout" and value < 0),
        # the paper's readout (maximum over steps of the training-set bound) is the paper's estimator-defined
        # quantity: faithful to the reference, checked against nothing, so never read as a measurement
        "estimator_defined": readout == "paper",
    }
    gap = diagnostics["train_test_gap"]
    diagnostics["overfit"] = bool(gap is not None and np.isfinite(gap) and gap > max(OVERFIT_NATS, OVERFIT_FRACTION * abs(value)))
    for key in CHECK_KEYS:
        if key in stats:
            v = stats[key]
            diagnostics[key] = bool(v) if np.asarray(v).dtype == bool else float(v)
    if "critic_limited" in stats or "gaussian_critic_limited" in stats:
        diagnostics["critic_limited"] = bool(stats.get("critic_limited", False)
                                             or stats.get("gaussian_critic_limited", False))
    if "gaussian_critic_shrinkage_index" in stats:
        diagnostics["gaussian_critic_shrinkage"] = gaussian_critic.SHRINKAGE[int(stats["gaussian_critic_shrinkage_index"])]
    # Early stopping kept the untrained critic: nothing learnt from the training pairs held up on new ones.
    diagnostics["no_fit"] = bool(cfg.early_stopping and readout == "heldout" and int(stats["readout_step_max"]) == 0
                                 and not constant)
    diagnostics = with_flags(diagnostics)
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
        note = _interval_note(cfg, readout, n, n_test, int(stats["seeds"]), n_test / n if test_fraction is None else test_fraction,
                              eval_batch, select)
        diagnostics["note"] = f"{diagnostics['note']}; {note}" if diagnostics.get("note") else note
    return value, stderr, diagnostics


def _interval_note(cfg: TrainConfig, readout: str, n: int, n_test: int, n_seeds: int, fraction: float,
                   eval_batch: int | None = None, select: bool = False) -> str:
    """Why an estimate has no CI (one held-out value: one batch of one seed) and the N or seeds that give one."""
    if readout == "paper":
        return ("no confidence interval: the paper readout's spread is over critic seeds and there is one: pass "
                "several seeds (--seeds 0,1,2)")

    def readout_batches(n_test: int) -> tuple[int, int, bool]:
        batch = min(int(eval_batch or n_test), int(cfg.batch_size or n_test), n_test)
        k = n_test // batch if batch else 0
        validation = bool(cfg.early_stopping and cfg.eval_every and k > 1)  # batch 0 picks the checkpoint
        selecting = max(1, (k - 1) // 3) if select and validation and k >= 3 else 0  # `_selection_batches`
        return k - validation - selecting, batch, validation, selecting

    count, batch, validation, selecting = readout_batches(n_test)
    enough = lambda m: readout_batches(int(round(m * fraction)))[0] * n_seeds >= 2
    low, high = n, 2 * n  # the smallest N that is enough: doubling, then bisection (enough grows with N)
    while not enough(high) and high < 1 << 40:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    need = high
    return (f"no confidence interval: {n_test} held-out pairs make {count + validation + selecting} batch(es) of {batch}"
            + (" (the first one validates the checkpoint)" if validation else "")
            + (f" ({selecting} select the estimator)" if selecting else "")
            + f", so {n_seeds} seed(s) give {count * n_seeds} held-out value(s) and no spread: use N >= {need} "
            "samples (--samples) or several seeds (--seeds 0,1,2)")
