"""The fast protocol's default: one estimate chosen among several, on data it does not report on.

Candidates, each fitted on the training pairs (rank-normalised to normal scores, as the critics see them):
  copula  the Gaussian-copula MI: closed form of the training covariance, minus its exact Wishart bias
          (`ie_jax.mi.gaussian.gaussian_mi_bias_nats`). Exact for any element-wise monotone transform of
          Gaussian data at any width (d = 768 included) and far past ln(batch); blind to non-Gaussian
          dependence (spirals, a shared scale) and above the truth on clustered data.
  ksg     the Kraskov estimator (`ie_jax.mi.knn`), where dx + dy <= KSG_MAX_DIM: consistent for any
          continuous dependence, with a small bias at these widths.
  radial  KSG of the per-sample log norms of x and y: a lower bound (a function of x and of y) that sees a
          dependence carried by a shared scale (multivariate Student-t), which ranks and covariances miss.
  neural  the trained critic's held-out bound (a lower bound), read out on the readout batches.
  counting  the plug-in MI of the distinct rows (`ie_jax.mi.discrete.plugin_mi`), where the sample covers the
          discrete states of x and y (`ie_jax.mi.discrete.coverage`: token-like data, V states seen many times):
          exact up to its stderr, and then reported outright. Where rows repeat but are not covered, neither
          it nor the nearest-neighbour candidates (whose distances ties break) are read.

The choice reads the values of held-out *selection* batches only (held-out batch 1.. after the validation
batch 0), never those of the readout batches the neural value comes from; the standard errors that scale its
tolerances use the spread of single batches measured over the readout batches (for roughly normal batch
values the sample spread is independent of the sample mean that is reported). The copula stands unless the data refute it:
  too low:  a lower bound on the selection batches (the neural critic) or the radial KSG exceeds it by
            more than half the accuracy bar plus two standard errors;
  too high: the copula's own critic (the Gaussian critic, fitted on the same pairs) scores clearly less
            on the selection batches than the copula value allows: less than min(copula, ln(B(B-1)) - 1)
            minus the expected held-out loss of a fitted Gaussian critic (the Wishart bias again). By
            Donsker-Varadhan, a Gaussian critic's bound falls short of the Gaussian MI by the log partition
            term, which is 0 when the joint law is a Gaussian copula and large on clusters.
At low width (dx + dy <= KSG_MAX_DIM) KSG is a witness too. Refuted, the estimate is the highest of the
other candidates: the neural and radial values are lower bounds, and KSG at these widths errs low rather
than high (its bias grows with the MI and the width). `diagnostics["selection_note"]` says which candidate was reported and why.

Intervals (every candidate): value +- 1.96 stderr, widened on one side by the change from N/2 to N (the
half-sample value: split halves of the training pairs, or the half-N critics). If the bias falls like 1/N,
the estimate still misses about as much again as doubling N added, so the interval reaches to
value + (value - value_half_N) too. Stderr: the closed forms' spread over the two halves (|a - b| / 2 for
the full N) or the asymptotic one (copula: sum of squared canonical correlations / N; KSG: per-sample
terms), whichever is larger; the neural critic's over held-out batches and seeds.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ie_jax.mi import knn, linalg
from ie_jax.mi.gaussian import gaussian_mi_bias_nats
from ie_jax.mi.result import CHECK_NATS, FLAG_KEYS, Z95, check_tolerance, with_flags

KSG_MAX_DIM = 6  # KSG is a candidate up to dx + dy = 6; beyond, its bias grows quickly with the width
KSG_K = 3
JITTER = 1e-5  # breaks exact ties (discrete data) for the nearest-neighbour candidates
TIE_RTOL = 1e-6  # repeated rows: equal up to float rounding (the same token's state), relative to the scale
TIE_FRACTION = 0.01
RIDGE = 1e-6  # keeps constant columns invertible in the copula's covariance
CANDIDATES = ("copula", "ksg", "radial", "neural", "counting")


def discrete_structure(x, y) -> list[dict]:
    """Per problem of x [P, N, dx], y [P, N, dy] (numpy or device arrays): its distinct rows on each side (rows
    within TIE_RTOL of the scale are one), whether they repeat (ties: more than TIE_FRACTION of the samples share a
    row on a side; continuous data in one dimension has a few near-collisions, not that many) and whether the sample
    covers their joint states. Keys: n_samples, n_distinct_x, n_distinct_y, ties (a side
    repeats rows), covered, counting_nats and counting_stderr (the plug-in MI, where covered)."""
    from ie_jax.mi.discrete import coverage, distinct_states_batch, joint_labels, plugin_mi

    out = []
    n = x.shape[1]
    labels = lambda a: distinct_states_batch(a, rtol=TIE_RTOL)
    for (lx, nx), (ly, ny) in zip(labels(x), labels(y)):
        joint = coverage(joint_labels(lx, ly)[0])
        ties = bool(min(nx, ny) < (1.0 - TIE_FRACTION) * n)
        one = {"n_samples": n, "n_distinct_x": nx, "n_distinct_y": ny, "ties": ties,
               "covered": joint["covered"], "plugin_bias_nats": joint["plugin_bias_nats"]}
        if one["covered"]:
            one["counting_nats"], one["counting_stderr"] = plugin_mi(lx, ly)
        out.append(one)
    return out


def counting_candidate(discrete: dict) -> dict:
    """The counting candidate's summary (as `candidate_summary`) from a covered problem's `discrete_structure`:
    its interval reaches up by the plug-in's bias (K - 1) / 2N, what counting misses of an entropy at this N."""
    value, stderr = discrete["counting_nats"], discrete["counting_stderr"]
    low, high = bias_aware_interval(value, stderr, None)
    return {"value": value, "stderr": stderr, "value_half_n": math.nan,
            "ci95": (low, high + discrete["plugin_bias_nats"])}


def halves(n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of the training rows (host; from the seed alone, like the split)."""
    order = np.random.default_rng([seed, 2]).permutation(n_train)
    half = n_train // 2
    return np.sort(order[:half]).astype(np.int32), np.sort(order[half: 2 * half]).astype(np.int32)


def _copula_one(x, y, bias_full, bias_half, a_idx, b_idx):
    """One problem's Gaussian-copula candidate (float64 algebra): full, the two halves, asymptotic stderr."""
    dx = x.shape[1]

    def gaussian(xs, ys):
        z = jnp.concatenate([xs, ys], axis=1).astype(jnp.float32)
        z = z - z.mean(axis=0)
        cov = (z.T @ z).astype(jnp.float64) / max(1, z.shape[0] - 1)
        std = jnp.sqrt(jnp.maximum(jnp.diag(cov), 1e-30))
        corr = cov / std[:, None] / std[None, :] + RIDGE * jnp.eye(cov.shape[0], dtype=cov.dtype)
        c_xx, c_yy, c_xy = corr[:dx, :dx], corr[dx:, dx:], corr[:dx, dx:]
        mi = 0.5 * (linalg.logdet(c_xx) + linalg.logdet(c_yy) - linalg.logdet(corr))
        # sum of squared canonical correlations: tr(C_xx^-1 C_xy C_yy^-1 C_yx); var(MI) ~ that / N
        rho2 = jnp.trace(linalg.solve(c_xx, c_xy) @ linalg.solve(c_yy, c_xy.T))
        return mi, rho2

    mi, rho2 = gaussian(x, y)
    mi_a, _ = gaussian(x[a_idx], y[a_idx])
    mi_b, _ = gaussian(x[b_idx], y[b_idx])
    f32 = lambda v: v.astype(jnp.float32)
    return {"value": f32(mi - bias_full), "half_a": f32(mi_a - bias_half), "half_b": f32(mi_b - bias_half),
            "asymptotic_stderr": f32(jnp.sqrt(jnp.maximum(rho2, 0.0) / x.shape[0]))}


@jax.jit
def _copula_batch(x, y, bias_full, bias_half, a_idx, b_idx):
    # One problem after another (lax.map, not vmap): XLA on the CPU was seen to hang on vmapped float64
    # solves, and the [d, d] algebra is small next to the [N, d] products either way.
    one = lambda xy: _copula_one(xy[0], xy[1], bias_full, bias_half, a_idx, b_idx)
    return jax.lax.map(one, (x, y))


def _knn_candidate(x, y, a_idx, b_idx):
    """KSG value, per-term stderr and the two half-sample values for P problems (device arrays).

    One problem at a time (lax.map): each holds [row_chunk, N] distance blocks, so memory does not grow with P."""
    def one(xy):
        xs, ys = xy[0][None], xy[1][None]
        full = knn.ksg_batch(xs, ys, k=KSG_K)
        half_a = knn.ksg_batch(xs[:, a_idx], ys[:, a_idx], k=KSG_K)
        half_b = knn.ksg_batch(xs[:, b_idx], ys[:, b_idx], k=KSG_K)
        return {"value": full["value"][0], "half_a": half_a["value"][0], "half_b": half_b["value"][0],
                "asymptotic_stderr": full["stderr"][0]}

    return jax.lax.map(one, (x, y))


@functools.partial(jax.jit, static_argnames=("use_ksg",))
def _nearest_neighbour_batch(x, y, a_idx, b_idx, key, *, use_ksg: bool):
    jitter = lambda a, k: a + JITTER * jax.random.normal(k, a.shape, a.dtype)
    kx, ky = jax.random.split(key)
    x, y = jitter(x.astype(jnp.float32), kx), jitter(y.astype(jnp.float32), ky)
    out = {"radial": _knn_candidate(knn.radial_features(x), knn.radial_features(y), a_idx, b_idx)}
    if use_ksg:
        out["ksg"] = _knn_candidate(x, y, a_idx, b_idx)
    return out


def closed_form_candidates(x_train, y_train, *, seed: int) -> dict:
    """Every candidate but the neural one, for P problems of prepared training pairs [P, N, d] (device).

    Returns {name: {"value", "half_a", "half_b", "asymptotic_stderr"}} of [P] device arrays (nats)."""
    from ie_jax.mi.gaussian import gaussian_mi_bias_nats

    _, n, dx = x_train.shape
    dy = y_train.shape[2]
    a_idx, b_idx = halves(n, seed)
    bias = lambda m: gaussian_mi_bias_nats(dx, dy, m) if m > dx + dy + 1 else math.nan
    with jax.enable_x64(True):
        copula = _copula_batch(x_train, y_train, bias(n), bias(len(a_idx)), a_idx, b_idx)
    out = _nearest_neighbour_batch(x_train, y_train, a_idx, b_idx, jax.random.key(seed),
                                   use_ksg=dx + dy <= KSG_MAX_DIM)
    return {"copula": copula, **out}


def candidates_bytes(n_train: int, dx: int, dy: int, row_chunk: int = 1024) -> int:
    """Device memory of `closed_form_candidates` for one problem, the larger of its two programs, counted as if
    vmapped (they run one problem at a time, but an accelerator's compiler may batch them): the copula's
    float32 [N, dx + dy] copies (2.5) and float64 [dx + dy]^2 algebra (6 matrices); the nearest neighbours'
    jittered float32 copies (2) and 4 [row_chunk, N] distance blocks. An upper bound of the compiled programs'
    `memory_analysis()` (tests/mi/test_chunks.py)."""
    d = dx + dy
    copula = 4 * 2.5 * n_train * d + 8 * 6 * d * d
    neighbours = 4 * 2 * n_train * d + 4 * 4 * min(row_chunk, n_train) * n_train + 4 * 8 * n_train
    return int(max(copula, neighbours))


def candidate_summary(value: float, half_a: float, half_b: float, asymptotic_stderr: float) -> dict:
    """Value, stderr and bias-aware 95% CI of a closed-form candidate from its full and half-sample values."""
    half = 0.5 * (half_a + half_b)
    stderr = max(asymptotic_stderr, abs(half_a - half_b) / 2.0) if math.isfinite(half) else asymptotic_stderr
    return {"value": value, "stderr": stderr, "value_half_n": half,
            "ci95": bias_aware_interval(value, stderr, half)}


def bias_aware_interval(value: float, stderr: float, value_half_n: float | None) -> tuple[float, float]:
    """value +- 1.96 stderr, reaching also to the 1/N extrapolation value + (value - value_half_n); MI >= 0.
    No stderr (NaN: one held-out value), no interval: NaN ends rather than a falsely narrow one."""
    if not math.isfinite(stderr):
        return math.nan, math.nan
    ends = [value]
    if value_half_n is not None and math.isfinite(value_half_n):
        ends.append(2.0 * value - value_half_n)
    spread = Z95 * stderr
    return max(0.0, min(ends) - spread), max(0.0, max(ends) + spread)


def choose(candidates: dict, evidence: dict) -> tuple[str, str]:
    """(name of the candidate to report, why) from the candidates' summaries and the selection evidence.

    candidates: name -> summary (`candidate_summary`; "neural" included when it was read out);
    evidence: "neural" / "gaussian_critic": (mean bound, stderr) on the selection batches or None;
    "gaussian_expected": what the Gaussian critic should score there if the copula holds (None: no check)."""
    if "counting" in candidates:
        c = candidates["counting"]
        return "counting", (f"counting {c['value']:.3f} nats: the sample covers the discrete states of x and y, so the "
                            "plug-in MI of the distinct rows is exact (up to its stderr)")
    copula = candidates.get("copula")
    if copula is None or not math.isfinite(copula["value"]):
        return "neural", "the copula has no value here (N too small for the covariance): the neural critic"
    c = copula["value"]
    witnesses = []
    if evidence.get("neural") is not None:
        witnesses.append(("the neural critic's held-out bound", *evidence["neural"]))
    if "radial" in candidates:
        witnesses.append(("the radial KSG (a lower bound)", candidates["radial"]["value"], candidates["radial"]["stderr"]))
    if "ksg" in candidates:
        witnesses.append(("KSG", candidates["ksg"]["value"], candidates["ksg"]["stderr"]))
    # an unknown spread (NaN) refutes nothing
    spread = lambda se: se if math.isfinite(se) else math.inf
    too_low = [(name, v) for name, v, se in witnesses
               if math.isfinite(v) and v > c + float(check_tolerance(c)) + 2.0 * math.hypot(spread(se), spread(copula["stderr"]))]
    too_high = None
    expected = evidence.get("gaussian_expected")
    if evidence.get("gaussian_critic") is not None and expected is not None and math.isfinite(expected):
        g, g_se = evidence["gaussian_critic"]
        if math.isfinite(g) and g < expected - float(check_tolerance(expected)) - 2.0 * spread(g_se):
            too_high = g
    if not too_low and too_high is None:
        return "copula", (f"copula {c:.3f} nats: no lower bound on the selection batches exceeds it and the "
                          "Gaussian critic realises it on held-out pairs")
    if too_low:
        name, v = max(too_low, key=lambda t: t[1])
        why = f"{name} ({v:.3f}) exceeds the copula ({c:.3f}): the dependence is not a Gaussian copula"
    else:
        why = (f"the Gaussian critic scores {too_high:.3f} on held-out pairs where the copula {c:.3f} predicts "
               f"{expected:.3f}: the joint law is not a Gaussian copula (clusters?), the copula overstates")
    others = [(n, candidates[n]["value"]) for n in ("ksg", "radial", "neural")
              if n in candidates and math.isfinite(candidates[n]["value"])]
    if not others:
        return "copula", why + "; no other candidate has a value: the copula is reported all the same"
    best = max(others, key=lambda t: t[1])[0]
    return best, why + f"; reported: the highest of the others ({best})"


def select(stats: dict, value: float, stderr: float, diagnostics: dict, n_select: int, dx: int, dy: int,
            n_train: int, eval_batch: int, constant: bool, discrete: dict | None = None):
    """The selection default for one problem: (value, stderr, ci95, diagnostics) of the candidate reported, from
    the chunk's statistics `stats` (candidate_*, select_*) and the neural critic's value and diagnostics.

    The neural critic's flags and note move to neural_flags / neural_note when another candidate is reported;
    the reported candidate's own flags replace them."""
    half_n = diagnostics.get("value_half_n_nats")
    neural = {"value": value, "stderr": stderr, "value_half_n": half_n,
              "ci95": bias_aware_interval(value, stderr, half_n)}
    if not n_select or constant:
        why = ("x or y is constant: the MI is 0" if constant else
               f"no selection: fewer than 3 held-out batches of {eval_batch} (one validates, one selects, one reads "
               "out); the neural critic's bound is reported")
        return value, stderr, neural["ci95"], {**diagnostics, "selected": "neural", "selection_note": why}
    candidates = {"neural": neural}
    if discrete is not None and discrete["covered"]:
        candidates["counting"] = counting_candidate(discrete)
    for name in ("copula", "ksg", "radial"):
        if name in ("ksg", "radial") and discrete is not None and discrete["ties"]:
            continue  # nearest-neighbour distances mean nothing among repeated rows
        if f"candidate_{name}_value" in stats:
            fields = {f: float(stats[f"candidate_{name}_{f}"]) for f in ("value", "half_a", "half_b", "asymptotic_stderr")}
            candidates[name] = candidate_summary(**fields)
    cap = math.log(eval_batch * (eval_batch - 1))  # the DV bound's ceiling on one held-out batch
    evidence = {"neural": (float(stats["select_neural"]), float(stats["select_neural_stderr"]))}
    if "select_gaussian" in stats and "copula" in candidates and n_train > dx + dy + 1:
        evidence["gaussian_critic"] = (float(stats["select_gaussian"]), float(stats["select_gaussian_stderr"]))
        # the copula's own critic, fitted on n_train pairs, loses about the Wishart bias on new pairs
        evidence["gaussian_expected"] = min(candidates["copula"]["value"], cap - 1.0) - gaussian_mi_bias_nats(dx, dy, n_train)
    chosen, why = choose(candidates, evidence)
    if discrete is not None and discrete["ties"] and chosen != "counting":
        why += (f"; x and y repeat rows ({discrete['n_distinct_x']} and {discrete['n_distinct_y']} distinct of "
                f"{discrete['n_samples']}), which the sample does not cover well enough to count: the nearest-"
                "neighbour candidates are left out")
    out = {**diagnostics, "selected": chosen, "selection_note": why,
           "candidates": {k: {f: v for f, v in c.items()} for k, c in candidates.items()},
           "selection_evidence": {k: list(v) if isinstance(v, tuple) else v for k, v in evidence.items()},
           "selection_batches": n_select}
    if chosen == "neural":
        return value, stderr, neural["ci95"], out
    pick = candidates[chosen]
    if discrete is not None:
        out.update(n_distinct_x=discrete["n_distinct_x"], n_distinct_y=discrete["n_distinct_y"],
                   covered=discrete["covered"])
    v = max(0.0, pick["value"])  # MI >= 0: a bias-corrected closed form may dip below it by noise
    out["neural_flags"], out["neural_note"] = diagnostics["flags"], diagnostics.get("note")
    out.pop("note", None)
    for key in FLAG_KEYS:
        out[key] = False
    growth = pick["value"] - pick["value_half_n"]
    out["sample_limited"] = bool(math.isfinite(growth) and growth > float(check_tolerance(v)) + 2.0 * math.sqrt(2.0) * pick["stderr"])
    # The copula is a model: say so where no held-out check could have refuted it from above. Beyond the data
    # ceiling (ln N_test, ln B(B-1)) no bound reaches it; and where a fitted Gaussian critic is expected to
    # realise less than half of it on new pairs (its Wishart loss at large d / N, e.g. d = 768), clusters would
    # go unseen (measured: a K = 4 mixture at d = 768 reads 5.0 nats for ln 4 = 1.39).
    ceiling = min(diagnostics["ceilings"].values())
    expected = evidence.get("gaussian_expected")
    beyond = chosen == "copula" and v > ceiling - 1.0
    blind = chosen == "copula" and v > CHECK_NATS and (expected is None or expected < 0.5 * min(v, cap - 1.0))
    out["unverified"] = bool(beyond or blind)
    out["no_interval"] = False
    out = with_flags(out)
    ci = pick["ci95"]
    if out["unverified"]:
        # A model-based value: the interval reaches down to what the lower bounds (neural, radial) guarantee, so
        # it holds the truth where the model is wrong (clusters: the copula reads 23 nats for ln 8 at d = 768).
        floors = [c["ci95"][0] for n, c in candidates.items() if n in ("neural", "radial") and math.isfinite(c["ci95"][0])]
        ci = (max(0.0, min([ci[0], *([max(floors)] if floors else [0.0])])), ci[1])
    if out["sample_limited"]:
        out["note"] = (f"the {chosen} estimate rose by {growth:.2f} nats from N/2 to N: still limited by the sample size")
    if blind:
        out["note"] = (f"the copula value {v:.2f} nats could not be checked: a Gaussian critic fitted on {n_train} pairs "
                       f"at dx = {dx}, dy = {dy} is expected to realise only "
                       + ("(no Gaussian critic ran)" if expected is None else f"{expected:.2f} nats")
                       + " of it on held-out pairs, so clusters or other non-Gaussian structure would go unseen; it "
                       "rests on the Gaussian-copula model (more samples or fewer dimensions make it checkable)")
    if beyond:
        out["note"] = (f"the copula value {v:.2f} nats is beyond what a held-out bound can check at this N "
                       f"(ceiling {ceiling:.2f} - 1 nat): it rests on the Gaussian-copula model")
    return v, pick["stderr"], ci, out
