"""Noise-regularised mutual information: finite and well defined for deterministic states.

For a deterministic network the MI between continuous hidden states is degenerate (Goldfeld et al., ICML
2019, "Estimating Information Flow in Deep Neural Networks"). Adding isotropic Gaussian noise makes it
finite: with the sample as the data distribution (J uniform over the N samples),
    x~ = x_J + sigma s_x Z,   y~ = y_J + sigma s_y Z',   Z, Z' ~ N(0, I) independent,
every law is a Gaussian mixture with one component per sample, and
    I(x~; y~) = E_{J, Z, Z'}[ LSE_i(a_i + b_i) - LSE_i(a_i) - LSE_i(b_i) ] + ln N,
    a_i = -|x~ - x_i|^2 / (2 (sigma s_x)^2),  b_i = -|y~ - y_i|^2 / (2 (sigma s_y)^2).
s_x, s_y are each side's centred standard deviation pooled over dimensions (not the uncentred RMS, which
a large near-constant offset inflates). The expectation is a Monte Carlo average over draws (the anchor
sample J cycles through a random permutation, which stratifies the draws); its standard error gives the CI.

Limits: sigma -> 0 gives the counting value (`exact_discrete_mi` of the distinct states); sigma -> inf
gives 0; by data processing the value is at most the counting value <= ln N, and it never increases
with sigma.

Implementation: samples in the same state (`distinct_states`, tolerance rtol) are merged into one
component with weight n_k / N: exact for sigma >> rtol, cheaper, and it keeps the log-weights of
duplicated states exact (the matmul form |u|^2 - 2 u.v + |v|^2 has a rounding error of order
eps * d / sigma^2 in the logits, which then only affects components that neither dominate nor vanish).
The |x~|^2 term is common to every component and cancels between the joint and marginal terms, so logits
are x~.x_k - |x_k|^2 / 2 + ln w_k in noise units. Components are processed in chunks with a running
log-sum-exp; problems (layers x tokens) are a vmapped axis and sigmas a sequential one (lax.map) of
one jit-compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ie_jax.mi import inputs
from ie_jax.mi.discrete import (_CONSTANT_RELATIVE_SCALE, as_state_pair, coverage, distinct_states_batch, joint_labels,
                                plugin_entropy)
from ie_jax.mi.result import (SATURATION_MARGIN_NATS, Z95, MIEstimate, MIEstimates, check_tolerance, check_units, convert,
                              saturated, saturation_ceiling, with_flags)

NORMALISERS = ("centred_std", "none")
# Monte Carlo draws: at 1,024 the standard error of a value near 1 nat is about 0.035 nat, a third of the accuracy
# bar (at 512 a sigma-grid value of the IE ground truth missed its closed form by the bar through draws alone).
N_MC = 1024
_PAD_LOG_WEIGHT = -1e30  # finite, so padded chunks never produce inf - inf


@dataclasses.dataclass(frozen=True)
class _Problem:
    """One MI problem after merging duplicate states: one sample per distinct state, and the states' weights."""

    ix: np.ndarray  # [Kx] the first sample of each distinct x state, in label order
    iy: np.ndarray  # [Ky]
    log_wx: np.ndarray  # [Kx] ln(n_k / N)
    log_wy: np.ndarray  # [Ky]
    jx: np.ndarray  # [Kxy] x state of each distinct (x, y) pair
    jy: np.ndarray  # [Kxy]
    log_wxy: np.ndarray  # [Kxy]
    anchors: np.ndarray  # [n_mc] joint state of each Monte Carlo draw's anchor sample
    scale_x: float  # normaliser s_x (0 for a constant x)
    scale_y: float
    n_samples: int
    counting_nats: float  # plug-in MI of the merged states: the sigma -> 0 limit
    entropy_x_nats: float
    entropy_y_nats: float
    covered: bool  # the sample covers the joint states (`ie_jax.mi.discrete.coverage`): the counting MI is exact


@jax.jit
def _scales(x):
    """[P, N, d] -> centred and raw scales [P] in float64, as `ie_jax.mi.discrete.state_scale` computes them."""
    x = x.astype(jnp.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    return jnp.sqrt(jnp.mean(jnp.sum(centred**2, axis=-1), axis=-1)), jnp.sqrt(jnp.mean(jnp.sum(x**2, axis=-1), axis=-1))


@functools.partial(jax.jit, static_argnames=("dtype",))
def _centred_rows(x, index, valid, *, dtype):
    """Rows `index` [P, K] of the centred states x [P, N, d] (float64 arithmetic), 0 where not `valid`; in dtype."""
    x = x.astype(jnp.float64)
    rows = jnp.take_along_axis(x, index[..., None], axis=1) - x.mean(axis=1, keepdims=True)
    return jnp.where(valid[..., None], rows, 0.0).astype(dtype)


def _normaliser(centred_norm: float, raw_norm: float, d: int, normaliser: str) -> float:
    """Centred standard deviation pooled over dimensions, sqrt(mean_{i,d} (x_id - mean_d)^2); 0 if constant.

    centred_norm, raw_norm: the centred and raw scales of `_scales` (constant: as `state_scale` decides)."""
    if centred_norm <= _CONSTANT_RELATIVE_SCALE * raw_norm:
        return 0.0
    if normaliser == "none":
        return 1.0
    return centred_norm / math.sqrt(d)


def _prepare(lx, ly, scale_x: float, scale_y: float, *, n_mc: int, seed: int, anchor_samples=None) -> _Problem:
    """One problem from the labels of its distinct x and y states [N] and its normalisers.

    anchor_samples: [n_mc] the sample each draw starts from; default a seeded permutation, cycled."""
    n = len(lx)
    lxy, _ = joint_labels(lx, ly)
    first = lambda lab: np.unique(lab, return_index=True)[1]  # one sample per state, in label order
    cx, cy, cxy = np.bincount(lx), np.bincount(ly), np.bincount(lxy)
    fxy = first(lxy)
    if anchor_samples is None:
        anchor_samples = np.random.default_rng(seed).permutation(n)[np.arange(n_mc) % n]
    counting = float(np.mean(np.log(n) + np.log(cxy[lxy]) - np.log(cx[lx]) - np.log(cy[ly])))
    return _Problem(
        ix=first(lx), iy=first(ly),
        log_wx=np.log(cx / n), log_wy=np.log(cy / n),
        jx=lx[fxy], jy=ly[fxy], log_wxy=np.log(cxy / n),
        anchors=lxy[anchor_samples],
        scale_x=scale_x, scale_y=scale_y,
        n_samples=n, counting_nats=max(counting, 0.0),
        entropy_x_nats=plugin_entropy(lx), entropy_y_nats=plugin_entropy(ly),
        covered=coverage(lxy)["covered"],
    )


def _lse_chunks(products_fn, logits_fn, chunks, inv, init):
    """Running log-sum-exp over the component axis at S noise levels, of all components and of all but the
    draw's own one.

    products_fn(chunk) -> the [M, chunk] products every noise level shares (the matmuls: the only part whose
    cost grows with d); logits_fn(products, inv_s, chunk) -> (logits [M, chunk], own [M, chunk] bool) at one
    noise level; chunks: a pytree with leading [n_chunks, chunk]; inv: a pytree of [S] arrays (one entry per
    noise level, run one after another so memory stays [M, chunk]). Returns [S, 2, M] (all, others)."""

    def step(acc, chunk):
        products = products_fn(chunk)

        def one(inv_s):
            logits, own = logits_fn(products, inv_s, chunk)
            return jnp.stack([jax.nn.logsumexp(logits, axis=-1),
                              jax.nn.logsumexp(jnp.where(own, -jnp.inf, logits), axis=-1)])

        return jnp.logaddexp(acc, jax.lax.map(one, inv)), None

    return jax.lax.scan(step, init, chunks)[0]


def _draw_values(xs, ys, log_wx, log_wy, jx, jy, log_wxy, anchors, inv_x, inv_y, n, zx, zy, *, chunk):
    """Per-draw values LSE(a+b) - LSE(a) - LSE(b) in nats, for one problem at S noise levels, over the sample's
    law and over the law with the draw's own sample left out.

    xs [Kx, dx], ys [Ky, dy] centred states; log_w* [K] (padding: very negative); jx, jy, log_wxy [Kxy];
    anchors [M]; inv_x = 1 / (sigma s_x), inv_y [S]; n the number of samples; zx [M, dx], zy [M, dy] standard
    normal (common to every noise level). Kx, Ky, Kxy are multiples of `chunk`. Returns [S, 2, M]: the
    sample's law, and leave-one-out (each mixture without the anchor's own sample: weights
    (n_k - [k = own]) / (N - 1)).

    In noise units the logit of component k for a draw anchored at state j is
    -inv^2 |x_j - x_k|^2 / 2 + inv z.(x_k - x_j) = inv^2 (x_j.x_k - |x_k|^2/2 - |x_j|^2/2) + inv (z.x_k - z.x_j),
    relative to the anchor's own state (a constant per draw, which cancels) and set to exactly 0 for k = j. The
    products x_j.x_k and z.x_k do not depend on sigma: one matmul per chunk serves every noise level. The terms
    are of order d / sigma^2, so float32 rounding there is far larger than the log-weights; pinning the anchor's
    own state to 0 keeps every dominant logit exact (hence the sigma -> 0 limit), and the rounding (about
    eps * d / sigma^2 nats) only reaches components near, but not at, the anchor.
    """
    half_x, half_y = 0.5 * jnp.sum(xs**2, axis=-1), 0.5 * jnp.sum(ys**2, axis=-1)
    sx, sy = jx[anchors], jy[anchors]  # [M] the anchor's x and y states
    n_draws = anchors.shape[0]
    # anchor states and noise stacked: one [2M, d] x [d, chunk] product gives both x_j.x_k and z.x_k
    lhs_x, lhs_y = jnp.concatenate([xs[sx], zx]), jnp.concatenate([ys[sy], zy])
    za_x, za_y = jnp.sum(zx * xs[sx], axis=-1), jnp.sum(zy * ys[sy], axis=-1)  # z.x_j [M]
    init = jnp.full((inv_x.shape[0], 2, n_draws), -jnp.inf, dtype=xs.dtype)
    split = lambda a: a.reshape((-1, chunk) + a.shape[1:])

    def side(products, inv, half_k, half_anchor, z_anchor, k, state_anchor):
        gram, z_k = products[:n_draws], products[n_draws:]
        logits = inv**2 * (gram - half_k[None, :] - half_anchor[:, None]) + inv * (z_k - z_anchor[:, None])
        own = k[None, :] == state_anchor[:, None]
        return jnp.where(own, 0.0, logits), own

    def marginal(lhs, half, z_anchor, state_anchor):
        def logits(products, inv, c):
            rel, own = side(products, inv, c[1], half[state_anchor], z_anchor, c[2], state_anchor)
            return rel + c[3], own
        return lambda c: lhs @ c[0].T, logits

    def joint_products(c):
        return lhs_x @ xs[c[0]].T, lhs_y @ ys[c[1]].T

    def joint_logits(products, inv, c):
        kx, ky, lw, k = c
        x_part, _ = side(products[0], inv[0], half_x[kx], half_x[sx], za_x, kx, sx)
        y_part, _ = side(products[1], inv[1], half_y[ky], half_y[sy], za_y, ky, sy)
        return x_part + y_part + lw, k[None, :] == anchors[:, None]

    def leave_one_out(lse, own_log_weight):
        # the own state keeps n_own - 1 of its samples; every weight is renormalised from N to N - 1
        own_count = jnp.round(jnp.exp(own_log_weight) * n)  # an integer: float rounding must not leave 1e-7 of it
        own = own_log_weight + jnp.log(jnp.maximum(own_count - 1.0, 0.0) / own_count)
        return jnp.logaddexp(lse[:, 1], own[None, :]) + jnp.log(n / (n - 1.0))

    index = lambda a: jnp.arange(a.shape[0])
    lse_x = _lse_chunks(*marginal(lhs_x, half_x, za_x, sx), tuple(map(split, (xs, half_x, index(xs), log_wx))),
                        inv_x, init)
    lse_y = _lse_chunks(*marginal(lhs_y, half_y, za_y, sy), tuple(map(split, (ys, half_y, index(ys), log_wy))),
                        inv_y, init)
    lse_xy = _lse_chunks(joint_products, joint_logits, (split(jx), split(jy), split(log_wxy), split(index(jx))),
                         (inv_x, inv_y), init)
    sample = lse_xy[:, 0] - lse_x[:, 0] - lse_y[:, 0]
    loo = (leave_one_out(lse_xy, log_wxy[anchors]) - leave_one_out(lse_x, log_wx[sx])
           - leave_one_out(lse_y, log_wy[sy]))
    return jnp.stack([sample, loo], axis=1)


@functools.partial(jax.jit, static_argnames=("chunk",))
def _batch_draw_values(xs, ys, log_wx, log_wy, jx, jy, log_wxy, anchors, inv_x, inv_y, n, zx, zy, *, chunk):
    """`_draw_values` vmapped over problems [P, ...] with noise levels inv_x/inv_y [P, S]; returns [P, S, 2, M]
    (the sample's law and leave-one-out). The noise levels share each chunk's matmuls and run one after another
    inside it, so memory is that of one level."""
    per_problem = jax.vmap(functools.partial(_draw_values, chunk=chunk),
                           in_axes=(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None))
    return per_problem(xs, ys, log_wx, log_wy, jx, jy, log_wxy, anchors, inv_x, inv_y, n, zx, zy)


def _pad_to(a: np.ndarray, k: int, fill) -> np.ndarray:
    pad = [(0, k - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return np.pad(a, pad, constant_values=fill)


def _round_up(k: int, m: int) -> int:
    return -(-k // m) * m


def _run(
    problems: list[_Problem], x, y, sigmas: np.ndarray, *, n_mc: int, seed: int, chunk: int, mesh,
    dtype: str = "float32",
) -> np.ndarray:
    """Per-draw values [P, S, 2, n_mc] in nats (the sample's law, leave-one-out) for P prepared problems of states
    x [P, N, dx], y [P, N, dy] (on the device) and S noise levels."""
    fdtype = np.float64 if dtype == "float64" else np.float32
    kmax = max(max(len(p.ix), len(p.iy), len(p.jx)) for p in problems)
    chunk = min(chunk, _round_up(kmax, 8))
    kx = _round_up(max(len(p.ix) for p in problems), chunk)
    ky = _round_up(max(len(p.iy) for p in problems), chunk)
    kxy = _round_up(max(len(p.jx) for p in problems), chunk)
    stack = lambda f, k, fill, dt: np.stack([_pad_to(f(p), k, fill) for p in problems]).astype(dt)
    valid = lambda f, k: np.stack([np.arange(k) < len(f(p)) for p in problems])
    safe = lambda s: s if s > 0 else 1.0  # constant sides: value overwritten by 0 afterwards
    with jax.enable_x64(True):  # centred in float64 as before, then cast: the states never leave the device
        xs = _centred_rows(x, stack(lambda p: p.ix, kx, 0, np.int32), valid(lambda p: p.ix, kx), dtype=fdtype)
        ys = _centred_rows(y, stack(lambda p: p.iy, ky, 0, np.int32), valid(lambda p: p.iy, ky), dtype=fdtype)
    arrays = [
        xs,
        ys,
        stack(lambda p: p.log_wx, kx, _PAD_LOG_WEIGHT, fdtype),
        stack(lambda p: p.log_wy, ky, _PAD_LOG_WEIGHT, fdtype),
        stack(lambda p: p.jx, kxy, 0, np.int32),
        stack(lambda p: p.jy, kxy, 0, np.int32),
        stack(lambda p: p.log_wxy, kxy, _PAD_LOG_WEIGHT, fdtype),
        np.stack([p.anchors for p in problems]).astype(np.int32),
        np.array([[1.0 / (s * safe(p.scale_x)) for s in sigmas] for p in problems], dtype=fdtype),
        np.array([[1.0 / (s * safe(p.scale_y)) for s in sigmas] for p in problems], dtype=fdtype),
        np.array([p.n_samples for p in problems], dtype=fdtype),
    ]
    rng = np.random.default_rng([seed, 1])
    dx, dy = x.shape[2], y.shape[2]
    zx = rng.standard_normal((n_mc, dx)).astype(fdtype)
    zy = rng.standard_normal((n_mc, dy)).astype(fdtype)
    # float64 (slower; on GPUs much slower) removes the eps * d / sigma^2 rounding of the logits.
    with jax.enable_x64(dtype == "float64"):
        if mesh is not None:
            arrays, zx, zy = _shard(arrays, zx, zy, mesh)
        values = _batch_draw_values(*arrays, zx, zy, chunk=chunk)
        return np.asarray(values, dtype=np.float64)[: len(problems)]


def bytes_per_problem(n: int, dx: int, dy: int, *, n_sigmas: int = 1, n_mc: int = N_MC, chunk: int = 2048,
                      dtype: str = "float32") -> int:
    """Device memory of one problem in `noise_mi_batch` (P problems of x [N, dx], y [N, dy]): P problems
    need at most P times this. Held: the states (as float64, as host inputs reach the device), their centred
    rows (one per distinct state, at most N padded to the component chunk) and the per-state weights and
    labels; plus the largest program: the distinct-state screen (`ie_jax.mi.discrete.screen_bytes`), the
    float64 scales and centred rows (2 float64 copies of one side) or the Monte Carlo draws of one noise level
    (the rows of every component, gathered at once, the noisy draws and [n_mc, chunk] logits). An upper bound
    of the compiled programs' `memory_analysis()` (tests/mi/test_chunks.py)."""
    from ie_jax.mi.discrete import screen_bytes

    itemsize = 8 if dtype == "float64" else 4
    c = min(chunk, _round_up(n, 8))
    k = _round_up(n, c)  # distinct states, padded to whole chunks
    held = 8 * n * (dx + dy) + itemsize * k * (dx + dy) + (4 + 1 + itemsize) * 3 * k + 4 * n_mc + 16 * n_sigmas
    draws = itemsize * (1.25 * k * (dx + dy) + 4 * n_mc * (dx + dy) + 8 * n_mc * c + 3 * c * (dx + dy)
                        + 2 * n_sigmas * n_mc + 8 * k)
    programs = [screen_bytes(n, max(dx, dy)), 2 * 8 * k * max(dx, dy), draws]
    return int(held + max(programs))


def _shard(arrays, zx, zy, mesh):
    """Split the problem axis over every device of `mesh` (padded with copies of the last problem)."""
    from ie_jax.sharding import pad_problems

    from jax.sharding import NamedSharding, PartitionSpec

    p = arrays[0].shape[0]
    padded = _round_up(p, mesh.size)
    spread = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    replicated = NamedSharding(mesh, PartitionSpec())
    arrays = [jax.device_put(pad_problems(np.asarray(a), padded), spread) for a in arrays]
    return arrays, jax.device_put(zx, replicated), jax.device_put(zy, replicated)


def _mc_value(problem: _Problem, draws: np.ndarray) -> tuple[float, float, float]:
    """(value, stderr, raw Monte Carlo mean) of one problem at one noise level from its draws [n_mc] (nats): the
    mean clipped to the exact bounds 0 <= I <= counting MI (data processing)."""
    if problem.scale_x == 0.0 or problem.scale_y == 0.0:
        return 0.0, 0.0, 0.0
    mean = float(draws.mean())
    stderr = float(draws.std(ddof=1) / math.sqrt(draws.size)) if draws.size > 1 else float("nan")
    return min(max(mean, 0.0), problem.counting_nats), stderr, mean


def _estimates(
    problems, draws, sigmas, *, units, normaliser, n_mc, seed, rtol, margin_nats, dtype, sample_check=True
) -> list[list[MIEstimate]]:
    """[P][S] MIEstimates from per-draw values [P, S, 2, n_mc] (the sample's law, leave-one-out)."""
    c = lambda v: float(convert(v, "nats", units))
    out = []
    for p, (problem, per_sigma) in enumerate(zip(problems, draws)):
        constant = problem.scale_x == 0.0 or problem.scale_y == 0.0
        ln_n = math.log(problem.n_samples)
        row = []
        for s, (sigma, v) in enumerate(zip(sigmas, per_sigma)):
            value, stderr, mean = _mc_value(problem, v[0])
            ceilings = {"ln_n_samples": ln_n, "counting_mi": problem.counting_nats}
            diagnostics = {
                "n_samples": problem.n_samples,
                "sigma": float(sigma),
                "normaliser": normaliser,
                "scale_x": problem.scale_x,
                "scale_y": problem.scale_y,
                "noise_std_x": float(sigma) * problem.scale_x,
                "noise_std_y": float(sigma) * problem.scale_y,
                "n_mc": n_mc,
                "seed": seed,
                "dtype": dtype,
                "rtol": rtol,
                "n_distinct_x": len(problem.ix),
                "n_distinct_y": len(problem.iy),
                "n_distinct_joint": len(problem.jx),
                "entropy_x_nats": problem.entropy_x_nats,
                "entropy_y_nats": problem.entropy_y_nats,
                "counting_nats": problem.counting_nats,
                "covered": problem.covered,
                "mc_mean_nats": mean,
                "ceilings": ceilings,
                "ceiling_nats": min(ceilings.values()),
                # Near the counting MI of a sample that does not cover its states, the noise cannot hide what
                # tells the samples apart: the value is the sample's (ln N), a lower bound.
                "saturated": saturated(value, saturation_ceiling(ceilings, problem.covered), constant=constant,
                                       margin_nats=margin_nats),
                "constant": constant,
            }
            low = value
            if sample_check and not constant:
                diagnostics.update(_leave_one_out_check(value, v))
                # the distribution's value lies at or below the sample's: the interval reaches down to leaving out
                low = min(value, max(diagnostics["value_leave_one_out_nats"], 0.0))
            row.append(MIEstimate(
                value=c(value), stderr=c(stderr),
                ci95=(c(max(low - Z95 * stderr, 0.0)), c(min(value + Z95 * stderr, problem.counting_nats))),
                units=units, estimator="noise", diagnostics=with_flags(diagnostics),
            ))
        out.append(row)
    return out


def _leave_one_out_check(value: float, draws: np.ndarray) -> dict:
    """Compare the value with the same noise level over the sample's law without each draw's own sample.

    draws: [2, n_mc] per-draw values (the sample's law, leave-one-out). Where the noise hides the sample's
    points among their neighbours, leaving one out changes nothing; where it does not (sparse continuous
    states, one state per sequence), the value is IE(sigma) of these N samples, set by which points the sample
    happened to hold, and the distribution they come from would give less: flag `sample_specific` when the
    leave-one-out value is lower by more than half the accuracy bar plus two standard errors (paired draws)."""
    gap = draws[0] - draws[1]
    gap_stderr = float(gap.std(ddof=1) / math.sqrt(gap.size)) if gap.size > 1 else 0.0
    loo = float(draws[1].mean())
    return {"value_leave_one_out_nats": loo, "leave_one_out_gap_nats": value - loo,
            "leave_one_out_gap_stderr_nats": gap_stderr,
            "sample_specific": bool(value - loo > float(check_tolerance(value)) + 2.0 * gap_stderr)}


DTYPES = ("float32", "float64")


def check_settings(sigmas, *, n_mc: int = N_MC, units: str = "nats", normaliser: str = "centred_std",
                   rtol: float = 1e-4, chunk: int = 2048, dtype: str = "float32") -> np.ndarray:
    """Raise ValueError on a bad setting of the noise estimator; returns the sigmas as a 1-D float array."""
    if not rtol > 0:
        raise ValueError(f"rtol must be > 0; got {rtol}")
    return _check_args(sigmas, n_mc, units, normaliser, chunk, dtype)


def _check_args(sigmas, n_mc, units, normaliser, chunk, dtype):
    check_units(units)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {DTYPES}")
    if normaliser not in NORMALISERS:
        raise ValueError(f"unknown normaliser {normaliser!r}: use one of {NORMALISERS}")
    sigmas = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    if sigmas.ndim != 1 or sigmas.size == 0 or not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
        raise ValueError(f"sigma must be a positive finite number (or a 1-D list of them); got {sigmas}")
    if n_mc < 2:
        raise ValueError(f"n_mc must be >= 2 for a standard error; got {n_mc}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    return sigmas


def _prepare_batch(x, y, *, n_mc, seed, normaliser, rtol, anchor_samples=None):
    """(problems, x, y on the device) for states x [P, N, dx], y [P, N, dy] (numpy, or float32 jax arrays)."""
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of samples; got {x.shape[1]} and {y.shape[1]}")
    for name, a in (("x", x), ("y", y)):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    # float32 states go to the device once; their distinct states, scales and centred rows are computed there
    # (other dtypes travel as they are, so float64 inputs keep their precision in the float64 steps)
    xd, yd = (jax.device_put(a) if a.dtype == np.float32 else a for a in (x, y))
    labels_x, labels_y = distinct_states_batch(xd, rtol=rtol), distinct_states_batch(yd, rtol=rtol)
    with jax.enable_x64(True):
        (cx, rx), (cy, ry) = jax.device_get(_scales(xd)), jax.device_get(_scales(yd))
    problems = [
        _prepare(lx, ly, _normaliser(cx[p], rx[p], x.shape[2], normaliser),
                 _normaliser(cy[p], ry[p], y.shape[2], normaliser), n_mc=n_mc, seed=seed,
                 anchor_samples=anchor_samples)
        for p, ((lx, _), (ly, _)) in enumerate(zip(labels_x, labels_y))
    ]
    return problems, xd, yd


def _batch(x, y, sigmas, *, n_mc, seed, units, normaliser, rtol, chunk, mesh, margin_nats, dtype,
           sample_check=True):
    sigmas = _check_args(sigmas, n_mc, units, normaliser, chunk, dtype)
    if np.ndim(x) != 3 or np.ndim(y) != 3:
        raise ValueError(f"batched x and y must have shape [P, N, d]; got {np.shape(x)} and {np.shape(y)}")
    # Centred-std noise is invariant to one scale per variable: huge or tiny states are rescaled exactly.
    invariance = "scale" if normaliser == "centred_std" else "none"
    # float32 device states stay where they are: the float64 steps below cast them on the device
    x, y = (inputs.prepare(a, n, rank=3, invariance=invariance, dtype=np.float64, keep_device=True)
            for n, a in (("x", x), ("y", y)))
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of problems; got {len(x)} and {len(y)}")
    problems, xd, yd = _prepare_batch(x, y, n_mc=n_mc, seed=seed, normaliser=normaliser, rtol=rtol)
    draws = _run(problems, xd, yd, sigmas, n_mc=n_mc, seed=seed, chunk=chunk, mesh=mesh, dtype=dtype)
    return _estimates(
        problems, draws, sigmas, units=units, normaliser=normaliser, n_mc=n_mc, seed=seed, rtol=rtol,
        margin_nats=margin_nats, dtype=dtype, sample_check=sample_check and x.shape[1] > 1,
    )


def noise_mi(
    x, y, *, sigma, n_mc: int = N_MC, seed: int = 0, units: str = "nats", normaliser: str = "centred_std",
    rtol: float = 1e-4, chunk: int = 2048, mesh=None, margin_nats: float = SATURATION_MARGIN_NATS, dtype: str = "float32",
    sample_check: bool = True,
):
    """I(x + sigma s_x Z; y + sigma s_y Z') over the sample's empirical law, by Monte Carlo: `noise_mi_batch` on
    one problem.

    Args:
      x: [N, dx], y: [N, dy] states (numpy or jax). sigma: noise level relative to the normaliser, a number or a
        grid (every level in one compiled call, with common random numbers).
      n_mc: Monte Carlo draws (anchors cycle through a seeded permutation of the samples).
      normaliser: "centred_std" (s = each side's centred std pooled over dimensions) or "none" (s = 1:
        sigma is absolute). rtol: states closer than rtol x scale are merged (keep sigma >> rtol).
      chunk: mixture components per step (memory ~ n_mc x chunk per problem). mesh: optional device mesh
        (the problem axis is split over all its devices). dtype: "float32" (default; logits of components
        near but not at a draw's own state carry about eps * d / sigma^2 nats of rounding, < 0.03 nats for
        d <= 2048 and sigma >= 0.1) or "float64" (exact to rounding, slower).
    Returns:
      MIEstimate for a number sigma (a list of them, in grid order, for a grid): estimator "noise", value in
      [0, counting MI] (<= ln N) in `units`, the Monte Carlo mean clipped to those exact bounds; stderr from the
      MC draws; ci95 value +- 1.96 stderr, reaching down to the leave-one-out value where that is lower (with
      sample_check).
      Diagnostics: sigma, normaliser, scale_x/scale_y (the normaliser values), noise_std_x/noise_std_y,
      counting_nats (the sigma -> 0 limit, an upper bound), mc_mean_nats (before clipping at 0),
      n_distinct_*, covered, ceilings, ceiling_nats, saturated, constant; with sample_check value_leave_one_out_nats,
      leave_one_out_gap_nats, leave_one_out_gap_stderr_nats, sample_specific.
    """
    out = noise_mi_batch(
        np.asarray(x)[None], np.asarray(y)[None], sigma=sigma, n_mc=n_mc, seed=seed, units=units,
        normaliser=normaliser, rtol=rtol, chunk=chunk, mesh=mesh, margin_nats=margin_nats, dtype=dtype,
        sample_check=sample_check,
    )
    return out[0] if np.ndim(sigma) == 0 else [est[0] for est in out]


def noise_mi_batch(
    x, y, *, sigma, n_mc: int = N_MC, seed: int = 0, units: str = "nats", normaliser: str = "centred_std",
    rtol: float = 1e-4, chunk: int = 2048, mesh=None, margin_nats: float = SATURATION_MARGIN_NATS, dtype: str = "float32",
    sample_check: bool = True,
):
    """`noise_mi` for P problems at once: x [P, N, dx], y [P, N, dy] (e.g. layers x tokens).

    One compiled program vmapped over problems (sharded over `mesh` when given) and shared by every sigma of a
    grid; problem p equals `noise_mi(x[p], y[p])` with the same arguments (up to float rounding). Working memory
    is about P x (N x (dx + dy) + 3 x n_mc x chunk) floats per noise level; lower `chunk` to fit.
    Returns MIEstimates for a number sigma, one MIEstimates per sigma (grid order) for a grid.
    """
    rows = _batch(
        x, y, sigma, n_mc=n_mc, seed=seed, units=units, normaliser=normaliser, rtol=rtol, chunk=chunk,
        mesh=mesh, margin_nats=margin_nats, dtype=dtype, sample_check=sample_check,
    )
    per_sigma = [MIEstimates.stack([row[s] for row in rows]) for s in range(len(rows[0]))]
    return per_sigma[0] if np.ndim(sigma) == 0 else per_sigma


def pointwise_noise_mi(
    x, y, *, sigma: float, n_draws: int = 4, seed: int = 0, normaliser: str = "centred_std", rtol: float = 1e-4,
    chunk: int = 2048, dtype: str = "float32",
) -> np.ndarray:
    """Per-sample noise-regularised MI [n_draws, N] (nats) of x [N, dx], y [N, dy].

    Draw k of sample n is LSE(a + b) - LSE(a) - LSE(b) + ln N (the `noise_mi` integrand) anchored at sample n,
    so the mean over samples and draws estimates `noise_mi(x, y, sigma=sigma)`. A constant side gives 0.
    """
    x, y = as_state_pair(x, y)
    _check_args(sigma, max(n_draws, 2), "nats", normaliser, chunk, dtype)
    if np.ndim(sigma) != 0:
        raise ValueError("pointwise_noise_mi takes one sigma")
    n = x.shape[0]
    (problem,), xd, yd = _prepare_batch(x[None], y[None], n_mc=n_draws * n, seed=seed, normaliser=normaliser,
                                        rtol=rtol, anchor_samples=np.tile(np.arange(n), n_draws))
    if problem.scale_x == 0.0 or problem.scale_y == 0.0:
        return np.zeros((n_draws, n))
    draws = _run([problem], xd, yd, np.array([float(sigma)]), n_mc=n_draws * n, seed=seed, chunk=chunk, mesh=None,
                 dtype=dtype)
    return draws[0, 0, 0].reshape(n_draws, n)  # the log-weights ln(n_k / N) already carry the + ln N
