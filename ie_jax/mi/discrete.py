"""Exact mutual information for deterministic maps of discrete data, by counting distinct states.

A language model fed a discrete set of inputs (token sequences) is a deterministic map: each distinct
input gives one hidden state, so the states are themselves discrete and the mutual information between
two of them is the plug-in value from joint and marginal counts,
    I(x; y) = H(x) + H(y) - H(x, y),   H = -sum_k (n_k / N) ln(n_k / N).
Two states count as the same when they are closer than `rtol` times the states' scale (float noise from
batching or accumulation order must not create new states).

This is exact for the sample, not for the generating distribution: with N samples the plug-in MI cannot
exceed ln N, and when every sample is its own state (continuous data, e.g. Gaussian inputs) it equals
ln N whatever the true MI is. `exact_discrete_mi` refuses that case unless told the data are discrete.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ie_jax.mi.result import (SATURATION_MARGIN_NATS, MIEstimate, check_units, convert, saturated, saturation_ceiling,
                              with_flags)

# A centred scale this small relative to the uncentred one is float32 rounding, not variation.
_CONSTANT_RELATIVE_SCALE = 1e-6
_PROJECTION_DIMS = 16
_PAIR_CHUNK = 1 << 16


def _as_states(states, name: str) -> np.ndarray:
    a = np.asarray(states)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape [N, d] (or [N]); got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} has no {'samples' if a.shape[0] == 0 else 'columns'} (shape {a.shape}): give "
                         "at least one sample and one feature")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf: clean the states before estimating MI")
    return a


def as_state_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    """x [N, dx], y [N, dy] (or [N]) checked as states of the same N samples, as float64."""
    x, y = _as_states(x, "x"), _as_states(y, "y")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have the same number of samples; got {x.shape[0]} and {y.shape[0]}")
    return x, y


def state_scale(states) -> float:
    """Typical distance of a state from the sample mean: sqrt(mean_i |x_i - mean|^2), same units as x.

    Centred, so a large constant offset (e.g. massive activations) does not inflate it; two independent
    states lie about sqrt(2) scales apart. 0 for a constant variable (up to float32 rounding).
    """
    x = _as_states(states, "states")
    centred = x - x.mean(axis=0)
    scale = math.sqrt(float(np.mean(np.sum(centred**2, axis=1))))
    raw = math.sqrt(float(np.mean(np.sum(x**2, axis=1))))
    return 0.0 if scale <= _CONSTANT_RELATIVE_SCALE * raw else scale


def _compress(labels: np.ndarray) -> np.ndarray:
    while True:
        nxt = labels[labels]
        if np.array_equal(nxt, labels):
            return labels
        labels = nxt


def _union(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Merge the components of a[k] and b[k]; `labels` stays compressed (each entry its root, the min index)."""
    while True:
        ra, rb = labels[a], labels[b]
        differ = ra != rb
        if not differ.any():
            return labels
        ra, rb = ra[differ], rb[differ]
        np.minimum.at(labels, np.maximum(ra, rb), np.minimum(ra, rb))
        labels = _compress(labels)
        a, b = a[differ], b[differ]


def distinct_states(states, *, rtol: float = 1e-4) -> tuple[np.ndarray, int]:
    """Label the distinct states of a sample.

    Args:
      states: [N, d] (or [N]) array, any float dtype.
      rtol: two states are the same when |x_i - x_j| < rtol * state_scale(states) (Euclidean distance);
        "same" is closed under chains (connected components of that relation).
    Returns:
      labels: [N] int64 in 0..n_distinct-1, numbered in order of first appearance; n_distinct: int.

    Method (exact, not approximate): every pair closer than tol = rtol * scale is found and confirmed in
    the full space. A fixed random orthonormal projection P (d -> 16) is a contraction, so a close pair is
    also close in its first projected coordinate: after sorting by that coordinate, each state only needs
    comparing with the states inside a window of width tol after it. Pairs are visited by offset in the
    sorted order (all windows at once, vectorised), skipped when already in one component, filtered by
    the 16-d projected distance, then confirmed with the exact distance. Hidden states of distinct inputs
    are far apart relative to tol, so windows hold a handful of states and the cost is about one
    projection matmul (N x d x 16): well under a second for N = 20,000, d = 2,048.
    """
    if not rtol > 0:
        raise ValueError(f"rtol must be > 0; got {rtol}")
    x = _as_states(states, "states")
    n, d = x.shape
    scale = state_scale(x)
    if scale == 0.0:
        return np.zeros(n, dtype=np.int64), 1
    tol2 = (rtol * scale) ** 2
    x = x - x.mean(axis=0)
    k = min(d, _PROJECTION_DIMS)
    proj, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((d, k)))
    u = x @ proj
    order = np.argsort(u[:, 0], kind="stable")
    u, x = u[order], x[order]
    first = u[:, 0]
    end = np.searchsorted(first, first + rtol * scale, side="left")  # window of p is p+1 .. end[p]-1
    labels = np.arange(n)
    active = np.nonzero(end > np.arange(n) + 1)[0]
    offset = 1
    while active.size:
        p, q = active, active + offset
        keep = labels[p] != labels[q]
        p, q = p[keep], q[keep]
        keep = np.sum((u[p] - u[q]) ** 2, axis=1) < tol2
        p, q = p[keep], q[keep]
        for s in range(0, p.size, _PAIR_CHUNK):
            pc, qc = p[s : s + _PAIR_CHUNK], q[s : s + _PAIR_CHUNK]
            close = np.sum((x[pc] - x[qc]) ** 2, axis=1) < tol2
            if close.any():
                labels = _union(labels, pc[close], qc[close])
        offset += 1
        active = active[end[active] > active + offset]
    roots = np.empty(n, dtype=np.int64)
    roots[order] = labels  # root (a sorted position) of each original sample
    return _first_appearance(roots)


def _first_appearance(keys: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank = np.empty(uniq.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(uniq.size)
    return rank[inverse.reshape(-1)], int(uniq.size)


def joint_labels(labels_x: np.ndarray, labels_y: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels of the distinct (x, y) pairs, given each side's labels."""
    lx, ly = np.asarray(labels_x, dtype=np.int64), np.asarray(labels_y, dtype=np.int64)
    return _first_appearance(lx * (int(ly.max()) + 1) + ly)


def plugin_mi(labels_x, labels_y) -> tuple[float, float]:
    """Plug-in MI (nats) of paired discrete labels [N] and its delta-method standard error sqrt(Var_i[pmi_i] / N),
    pmi_i = ln p(x_i, y_i) / (p(x_i) p(y_i)); exactly 0 (and 0) where a side is constant."""
    lx, ly = np.asarray(labels_x, dtype=np.int64), np.asarray(labels_y, dtype=np.int64)
    lxy, _ = joint_labels(lx, ly)
    cx, cy, cxy = (np.bincount(lab) for lab in (lx, ly, lxy))
    if cx.size == 1 or cy.size == 1:
        return 0.0, 0.0  # a constant side: exactly 0, not rounding
    pmi = np.log(lx.size) + np.log(cxy[lxy]) - np.log(cx[lx]) - np.log(cy[ly])
    return max(float(pmi.mean()), 0.0), float(pmi.std() / math.sqrt(lx.size))


def plugin_entropy(labels) -> float:
    """Plug-in (maximum-likelihood) entropy in nats of a sample of discrete labels [N]."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return abs(float(np.sum(p * np.log(p))))  # abs: a single state gives +0.0, not -0.0


# The sample covers a variable's discrete states when its plug-in entropy is the population's to within half the
# accuracy bar: Good-Turing's unseen mass (the share of samples whose state appears once) at most 1%, and
# Miller-Madow's bias (K - 1) / 2N at most 0.05 nat.
COVERAGE_UNSEEN_MASS = 0.01
COVERAGE_BIAS_NATS = 0.05


def coverage(labels) -> dict:
    """How well a sample of discrete labels [N] covers its states: n_distinct K, unseen_mass (Good-Turing: the
    share of samples seen once, an estimate of the probability of states the sample missed), plugin_bias_nats
    (Miller-Madow: (K - 1) / 2N, what the plug-in entropy misses), and covered (both small, see above).

    A deterministic map of covered discrete inputs (token embeddings of a vocabulary the sample covers) has its
    MI counted exactly; continuous or sequence-level states (every sample its own state) are never covered."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    counts = counts[counts > 0]
    n, k = int(counts.sum()), int(counts.size)
    unseen = float(np.sum(counts == 1)) / n
    bias = (k - 1) / (2.0 * n)
    return {"n_distinct": k, "unseen_mass": unseen, "plugin_bias_nats": bias,
            "covered": bool(unseen <= COVERAGE_UNSEEN_MASS and bias <= COVERAGE_BIAS_NATS)}


def exact_discrete_mi(
    x,
    y,
    *,
    rtol: float = 1e-4,
    units: str = "nats",
    discrete: bool | None = None,
    margin_nats: float = SATURATION_MARGIN_NATS,
) -> MIEstimate:
    """Plug-in mutual information between the distinct states of x [N, dx] and y [N, dy].

    Args:
      rtol: tolerance of `distinct_states`, relative to each side's scale.
      units: "nats" or "bits".
      discrete: None (default) checks for ties: if x or y has no two samples in the same state, the data
        cannot be told apart from continuous data, the plug-in value is then min(H(x), H(y)) = ln N (a
        sample-size artefact, not a measurement) and a ValueError is raised. A continuous variable has no
        ties with probability one, a discrete one with far fewer states than samples has many. True skips
        the check (you know the inputs are discrete, e.g. token sequences whose count is known); False
        always refuses (Gaussian-input mode).
      margin_nats: the result is flagged saturated when within this of a ceiling the sample sets (ln N, the
        sample entropies) and the sample does not cover the joint states (`coverage`).
    Returns:
      MIEstimate, estimator "exact_discrete". stderr is the delta-method standard error of the plug-in
      value, sqrt(Var_i[pmi_i] / N) with pmi_i = ln p(x_i, y_i) / (p(x_i) p(y_i)); ci95 is value +- 1.96 stderr,
      reaching up by the plug-in's bias of the joint states (K - 1) / 2N (`plugin_bias_nats`); a larger shortfall
      (a sample that does not cover its states) is what the `saturated` flag (lower bound only) covers. `covered`: the sample covers the joint states, so the value is exact for the population too.
      Diagnostics: n_distinct_x, n_distinct_y, n_distinct_joint, entropy_x_nats, entropy_y_nats,
      entropy_joint_nats (all over the sample), ceilings {"ln_n_samples", "entropy_x_sample",
      "entropy_y_sample"}, ceiling_nats, covered, saturated, constant, n_samples, rtol.
    """
    check_units(units)
    x, y = as_state_pair(x, y)
    n = x.shape[0]
    if discrete is False:
        raise ValueError(
            "exact_discrete_mi needs discrete states; for continuous states (Gaussian-input mode) use "
            "ie_jax.mi.noise.noise_mi or a neural estimator"
        )
    lx, nx = distinct_states(x, rtol=rtol)
    ly, ny = distinct_states(y, rtol=rtol)
    if discrete is None and n > 1 and (nx == n or ny == n):
        side = "x" if nx == n else "y"
        raise ValueError(
            f"every one of the {n} samples of {side} is a distinct state (no ties): the states look "
            f"continuous, and the plug-in MI would be ln N = {math.log(n):.3f} nats whatever the true MI. "
            "Use ie_jax.mi.noise.noise_mi (well defined for continuous states), or pass discrete=True if "
            "the inputs really are discrete"
        )
    lxy, nxy = joint_labels(lx, ly)
    value, stderr = plugin_mi(lx, ly)
    constant = nx == 1 or ny == 1
    hx, hy, hxy = plugin_entropy(lx), plugin_entropy(ly), plugin_entropy(lxy)
    ceilings = {"ln_n_samples": math.log(n), "entropy_x_sample": hx, "entropy_y_sample": hy}
    joint = coverage(lxy)
    covered = joint["covered"]
    diagnostics = {
        "n_samples": n,
        "rtol": rtol,
        "n_distinct_x": nx,
        "n_distinct_y": ny,
        "n_distinct_joint": nxy,
        "entropy_x_nats": hx,
        "entropy_y_nats": hy,
        "entropy_joint_nats": hxy,
        "ceilings": ceilings,
        "ceiling_nats": min(ceilings.values()),
        "covered": covered,
        "plugin_bias_nats": joint["plugin_bias_nats"],
        # Counting reaches the sample entropy of a deterministic map: exact where the sample covers the joint
        # states, a lower bound (the sample's size, not the data) where it does not.
        "saturated": n > 1 and saturated(value, saturation_ceiling(ceilings, covered), constant=constant,
                                         margin_nats=margin_nats),
        "constant": constant,
    }
    # the plug-in misses about (K - 1) / 2N of an entropy (Miller-Madow): the interval reaches up by it, as the
    # selection's counting candidate's does
    low, high = max(value - 1.96 * stderr, 0.0), value + 1.96 * stderr + joint["plugin_bias_nats"]
    c = lambda v: float(convert(v, "nats", units))
    return MIEstimate(
        value=c(value), stderr=c(stderr), ci95=(c(low), c(high)), units=units,
        estimator="exact_discrete", diagnostics=with_flags(diagnostics),
    )


# Sorted neighbours each state is compared with on the device by `distinct_states_batch` (at N = 20,000
# Gaussian states of d = 768 about 25 fall within the tolerance window at the densest point).
_NEIGHBOURS = 128


@functools.partial(jax.jit, static_argnames=("neighbours",))
def _screen(states, proj, rtol, *, neighbours: int):
    """Device pass of `distinct_states_batch` over V variables [V, N, d], one after another (lax.map: the
    [N, K, 16] comparisons of one variable at a time).

    Per variable: scale and raw scale (as `state_scale`), the order of the states by their first projected
    coordinate, a mask [N, K] of the pairs (sorted i, sorted i + k + 1) whose projected distance is within
    tol plus a float32 margin (candidates), and whether K neighbours covered every state's window.
    """

    def one(x):
        x = x.astype(jnp.float32)
        n, d = x.shape
        centred = x - x.mean(axis=0)
        scale = jnp.sqrt(jnp.mean(jnp.sum(centred**2, axis=1)))
        raw = jnp.sqrt(jnp.mean(jnp.sum(x**2, axis=1)))
        # float32 rounding of a projected coordinate: about eps x log2(d) x |x| for a tree-summed dot product
        # (centring adds eps |x|); 8x that, plus the rounding of the scale itself, keeps the screen conservative.
        eps = float(np.finfo(np.float32).eps)
        largest = jnp.sqrt(jnp.max(jnp.sum(x**2, axis=1)))
        reach = rtol * scale * (1 + 1e-4) + 8 * eps * (math.ceil(math.log2(d)) + 2) * largest
        u = centred @ proj
        order = jnp.argsort(u[:, 0], stable=True)
        u = u[order]
        ahead = jnp.arange(n)[:, None] + jnp.arange(1, neighbours + 1)[None, :]  # [N, K]
        d2 = jnp.sum((u[:, None, :] - u[jnp.minimum(ahead, n - 1)]) ** 2, axis=-1)
        candidates = (ahead < n) & (d2 < reach**2)
        last = jnp.arange(n) + neighbours
        covered = jnp.all((last >= n) | (u[jnp.minimum(last, n - 1), 0] - u[:, 0] >= reach))
        return scale, raw, order, candidates, covered

    return jax.lax.map(one, states)


def distinct_states_batch(states, *, rtol: float = 1e-4) -> list[tuple[np.ndarray, int]]:
    """`distinct_states` of V variables at once: states [V, N, d] -> V (labels [N], n_distinct), same labels.

    One compiled device pass finds, per variable, the pairs that could be closer than tol (each state against
    its next `_NEIGHBOURS` in the order of the first projected coordinate, with a float32 margin so no close
    pair is missed); the host confirms only those with exact float64 distances. Continuous states (every
    state distinct) thus cost one device pass instead of a float64 host pass each. A variable whose windows
    hold more states than the device compares (many ties: small discrete data) goes through
    `distinct_states` on the host.
    """
    if not rtol > 0:
        raise ValueError(f"rtol must be > 0; got {rtol}")
    states = np.asarray(states) if not isinstance(states, jax.Array) else states
    if states.ndim != 3 or states.shape[1] == 0:
        raise ValueError(f"states must have shape [V, N, d] with N >= 1; got {states.shape}")
    v, n, d = states.shape
    k = min(d, _PROJECTION_DIMS)
    proj, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((d, k)))
    scale, raw, order, candidates, covered = jax.device_get(
        _screen(states, proj.astype(np.float32), float(rtol), neighbours=max(1, min(_NEIGHBOURS, n - 1))))
    on_device = isinstance(states, jax.Array)
    scales64 = None
    out = []
    for i in range(v):
        host = lambda: _as_states(np.asarray(states[i]), "states")
        if not np.isfinite(scale[i]):
            host()  # raises the NaN / inf error of `distinct_states`
        if scale[i] <= _CONSTANT_RELATIVE_SCALE * raw[i] or not covered[i]:
            out.append(distinct_states(host(), rtol=rtol))  # (near-)constant or many ties: the host's exact pass
            continue
        p, off = np.nonzero(candidates[i])
        if p.size == 0:
            out.append((np.arange(n, dtype=np.int64), n))
            continue
        a, b = order[i][p], order[i][p + off + 1]
        if on_device:
            # Only the candidate rows cross to the host (a device-to-host copy of every variable was most of a
            # token sweep's preparation); the scale and the distances in float64, as for float64 input.
            if scales64 is None:
                scales64 = _scales64(states)
            rows, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
            x = np.asarray(jnp.take(states[i], jnp.asarray(rows, jnp.int32), axis=0), np.float64)
            tol2 = (rtol * float(scales64[i])) ** 2
            close = np.sum((x[inverse[: a.size]] - x[inverse[a.size :]]) ** 2, axis=1) < tol2
        else:
            x = host()
            tol2 = (rtol * state_scale(x)) ** 2
            close = np.sum((x[a] - x[b]) ** 2, axis=1) < tol2
        labels = _union(np.arange(n), a[close], b[close]) if close.any() else np.arange(n)
        out.append(_first_appearance(labels))
    return out


def _scales64(states) -> np.ndarray:
    """`state_scale` of V device variables [V, N, d] at once, in float64 on the device -> [V] (host)."""
    with jax.enable_x64(True):
        return np.asarray(_centred_scales(states))


def screen_bytes(n: int, d: int) -> int:
    """Device memory of `distinct_states_batch` for one variable of N states [N, d], its input not included,
    counted as if vmapped (its programs run one variable at a time): the larger of `_screen` (a float32 centred
    copy, the projections, and the projected neighbours [N, _NEIGHBOURS, k] with their distances, which XLA
    materialises) and the float64 scales (two float64 copies). An upper bound of the compiled programs
    (tests/mi/test_chunks.py)."""
    k = min(d, _PROJECTION_DIMS)
    screen = 4 * n * d + 4 * n * _NEIGHBOURS * (k + 4) + 4 * 6 * n * k + 8 * n
    return int(max(screen, 2 * 8 * n * d))


@jax.jit
def _centred_scales(states):
    def one(x):  # one variable at a time: float64 copies of [N, d], not of the whole batch
        x = x.astype(jnp.float64)
        centred = x - x.mean(axis=0)
        return jnp.sqrt(jnp.mean(jnp.sum(centred**2, axis=-1)))

    return jax.lax.map(one, states)
