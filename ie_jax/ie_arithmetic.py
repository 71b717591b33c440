"""IE arithmetic: IE and E(t) as linear combinations of MI estimates, with stderr and 95% interval carried.

IE(l) = MI_macro(l) - (1/T) sum_t MI_micro_t(l), E_l(t) = MI_context_l(t) - (1/(t+1)) sum_{s<=t} MI_micro_l(s),
where MI_context_l(t) is the MI between block l's input and output at position t of the full-context pass
(MI_macro = MI_context at t = T-1) and MI_micro_l(t) that of token t processed alone (or, with
micro="in_context", the same as MI_context_l(t), so E(0) = 0).

Uncertainty: every derived number is a linear combination sum_k w_k MI_k of distinct estimates. Its stderr is
sqrt(sum_k w_k^2 stderr_k^2) and its 95% interval adds the (possibly asymmetric) half-widths in quadrature,
both ASSUMING THE ESTIMATES ARE INDEPENDENT (they share samples, so this is an approximation). An estimate that
appears twice (in-context micro = context) enters once with its summed weight, so E(0) = 0 exactly.
"""

from __future__ import annotations

import numpy as np

INDEPENDENCE_NOTE = ("stderr and 95% CI of IE, E(t) and totals combine the MI estimates' errors in quadrature, "
                     "assuming the estimates are independent (they share samples: an approximation)")


def linear_combination(weights, values, stderrs, ci_low, ci_high):
    """q = sum_k w_k v_k with stderr and 95% interval carried from independent estimates.

    weights: [..., K] (broadcast against the others); values, stderrs, ci_low, ci_high: [..., K].
    Returns (value, stderr, low, high) with the leading shape. Half-widths: a positive weight takes the
    estimate's lower half-width into the result's lower one, a negative weight its upper half-width.
    """
    w = np.asarray(weights, dtype=np.float64)
    v, se = np.asarray(values, np.float64), np.asarray(stderrs, np.float64)
    down, up = v - np.asarray(ci_low, np.float64), np.asarray(ci_high, np.float64) - v
    # Zero-weight terms must not turn a finite result into NaN (0 * NaN).
    used = w != 0
    sq = lambda a: np.where(used, (w * a) ** 2, 0.0)
    q = np.where(used, w * v, 0.0).sum(-1)
    stderr = np.sqrt(sq(se).sum(-1))
    low = q - np.sqrt(np.where(w > 0, sq(down), sq(up)).sum(-1))
    high = q + np.sqrt(np.where(w > 0, sq(up), sq(down)).sum(-1))
    return q, stderr, low, high


def ie_weights(seq_len: int, micro: str) -> tuple[np.ndarray, np.ndarray]:
    """Weights over one layer's distinct estimates [context_0..T-1, micro_0..T-1] (in_context: context only).

    Returns (w_ie[K], w_curve[T, K]) for IE and E(t); K = 2T (isolated) or T (in_context).
    """
    T = seq_len
    if micro == "in_context":
        w_curve = np.zeros((T, T))
        for t in range(T):
            w_curve[t, : t + 1] -= 1.0 / (t + 1)
            w_curve[t, t] += 1.0
        return w_curve[T - 1], w_curve
    w_curve = np.zeros((T, 2 * T))
    for t in range(T):
        w_curve[t, t] = 1.0
        w_curve[t, T : T + t + 1] = -1.0 / (t + 1)
    return w_curve[T - 1], w_curve


def estimate_arrays(rows):
    """Nested [L][K] MIEstimate -> (values, stderrs, low, high) float arrays [L, K]."""
    v = np.array([[e.value for e in r] for r in rows], dtype=np.float64)
    se = np.array([[e.stderr for e in r] for r in rows], dtype=np.float64)
    lo = np.array([[e.ci95[0] for e in r] for r in rows], dtype=np.float64)
    hi = np.array([[e.ci95[1] for e in r] for r in rows], dtype=np.float64)
    return v, se, lo, hi
