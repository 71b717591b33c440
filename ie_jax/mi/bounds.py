"""Variational lower bounds on mutual information, as pure functions of critic scores.

A critic f(x, y) scores pairs. `joint_scores` are scores of pairs drawn from p(x, y) (the same sample),
`marginal_scores` are scores of pairs drawn from p(x) p(y) (y shuffled against x). Every function
returns nats, is differentiable, and works under `jax.jit` and `jax.vmap` (vmap over a leading problem
or seed axis; the functions themselves reduce over all elements of their score arguments).

Scores in bfloat16 are promoted to float32 before any reduction, so the loss is always computed in
at least float32.

References
- Donsker & Varadhan (1983); Belghazi et al., "MINE: Mutual Information Neural Estimation", ICML 2018.
- Nguyen, Wainwright & Jordan, "Estimating divergence functionals ...", IEEE Trans. IT 2010 (NWJ).
- van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018 (InfoNCE);
  Poole et al., "On Variational Bounds of Mutual Information", ICML 2019.
- Song & Ermon, "Understanding the Limitations of Variational Mutual Information Estimators", ICLR 2020 (SMILE).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

BOUNDS = ("dv", "nwj", "infonce", "smile")


def _scores(scores, name: str) -> jax.Array:
    scores = jnp.asarray(scores)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        scores = scores.astype(jnp.float32)
    # bf16 critics still get an fp32 loss: logsumexp/mean in bf16 lose ~2 significant digits.
    scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
    if scores.size == 0:
        raise ValueError(f"{name} is empty: the bound needs at least one score")
    return scores


def _log_mean_exp(scores: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(scores) - math.log(scores.size)


def dv_bound(joint_scores, marginal_scores) -> jax.Array:
    """Donsker-Varadhan bound (the paper's, MINE's value): E_p[f] - log E_{p x p}[e^f].

    joint_scores: [B] (or any shape; all elements are used) scores f(x_i, y_i).
    marginal_scores: [M] (any shape) scores f(x_i, y_pi(i)) of shuffled pairs.
    Returns a scalar in nats: mean(joint) - (logsumexp(marginal) - log M).
    """
    joint = _scores(joint_scores, "joint_scores")
    marginal = _scores(marginal_scores, "marginal_scores")
    return jnp.mean(joint) - _log_mean_exp(marginal)


def nwj_bound(joint_scores, marginal_scores) -> jax.Array:
    """Nguyen-Wainwright-Jordan (f-divergence, "MINE-f") bound: E_p[f] - E_{p x p}[e^(f - 1)].

    Shapes as `dv_bound`. Scalar in nats. Never above `dv_bound` for the same scores, since
    log z <= z/e for all z > 0; unbiased minibatch estimate, but higher variance than DV.
    """
    joint = _scores(joint_scores, "joint_scores")
    marginal = _scores(marginal_scores, "marginal_scores")
    return jnp.mean(joint) - jnp.mean(jnp.exp(marginal - 1.0))


def infonce_bound(scores) -> jax.Array:
    """InfoNCE (CPC) bound from a dense score matrix: log B + mean_i(s_ii - logsumexp_j s_ij).

    scores: [B, B] with scores[i, j] = f(x_i, y_j); the joint pairs are on the diagonal and each row
    is the classification of y_i among the B candidates y_j for x_i.
    Returns a scalar in nats, never above `infonce_cap(B)` = log B: InfoNCE cannot report more than
    log B whatever the true MI. Not symmetric in x and y: the transposed matrix (classify x_j for y_i)
    gives a different value in general, though also a valid bound.
    """
    scores = _scores(scores, "scores")
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"infonce_bound needs a square [B, B] score matrix, got shape {scores.shape}")
    batch = scores.shape[0]
    log_softmax_diag = jnp.diagonal(scores) - jax.nn.logsumexp(scores, axis=1)
    return math.log(batch) + jnp.mean(log_softmax_diag)


def infonce_cap(batch_size: int) -> float:
    """The largest value InfoNCE can report with `batch_size` candidates: log(batch_size) nats."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return math.log(int(batch_size))


def _js_fgan_bound(joint: jax.Array, marginal: jax.Array) -> jax.Array:
    # Jensen-Shannon f-GAN objective (Nowozin et al. 2016), used by SMILE only for its gradient.
    return -jnp.mean(jax.nn.softplus(-joint)) - jnp.mean(jax.nn.softplus(marginal))


def smile_bound(joint_scores, marginal_scores, clip: float = 5.0, *, js_gradient: bool = False) -> jax.Array:
    """SMILE (Song & Ermon 2020): DV with the partition term's scores clipped to [-clip, clip].

    mean(joint) - log mean(exp(clip(marginal, -clip, clip))): clipping e^f to [e^-clip, e^clip] bounds
    the variance of the partition estimate (plain DV/NWJ variance grows like e^MI). Biased, not a strict
    lower bound; clip -> infinity recovers `dv_bound`. Shapes as `dv_bound`; scalar in nats.

    js_gradient: if True, the value is unchanged but the gradient is that of the Jensen-Shannon f-GAN
    objective, as in Song & Ermon's reference code (train with JS, read out with clipped DV).
    """
    if not clip > 0:
        raise ValueError(f"clip must be positive, got {clip!r}")
    joint = _scores(joint_scores, "joint_scores")
    marginal = _scores(marginal_scores, "marginal_scores")
    value = jnp.mean(joint) - _log_mean_exp(jnp.clip(marginal, -clip, clip))
    if not js_gradient:
        return value
    js = _js_fgan_bound(joint, marginal)
    return js + jax.lax.stop_gradient(value - js)


def mine_loss(joint_scores, marginal_scores, ema_exp_marginal, ema_decay: float = 0.99):
    """MINE loss with the moving-average bias-corrected gradient (Belghazi et al. 2018, Sec. 3.2).

    The DV gradient is E_p[grad f] - E_q[e^f grad f] / E_q[e^f]; estimating the denominator with the same
    minibatch biases it. MINE divides by an exponential moving average of mean(e^f) over steps instead.

    joint_scores: [B]; marginal_scores: [M]; ema_exp_marginal: scalar, the running average of
    mean(exp(marginal)) from the previous step. Pass 0 (or any value <= 0) at the first step: a
    non-positive average is replaced by the current minibatch mean (no bias towards the initial value).
    ema_decay: weight of the old average.

    Returns (loss, dv_value, new_ema):
    - loss: scalar to minimise; its value equals -dv_value, its gradient is MINE's corrected one,
      -(mean(grad joint) - mean(e^marginal grad marginal) / new_ema).
    - dv_value: `dv_bound(joint, marginal)` in nats (what MINE reports).
    - new_ema: the updated average (no gradient), to feed back at the next step.
    Overflows (inf) only if mean(exp(marginal)) itself exceeds the float range, i.e. scores above ~88.
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
    joint = _scores(joint_scores, "joint_scores")
    marginal = _scores(marginal_scores, "marginal_scores")
    ema = jnp.asarray(ema_exp_marginal, marginal.dtype)
    log_mean_exp = _log_mean_exp(marginal)
    batch_mean_exp = jax.lax.stop_gradient(jnp.exp(log_mean_exp))
    new_ema = jnp.where(ema > 0, ema_decay * ema + (1.0 - ema_decay) * batch_mean_exp, batch_mean_exp)
    new_ema = jax.lax.stop_gradient(new_ema)
    # ratio = mean(e^m) / ema, computed in log space; its gradient is mean(e^m grad m) / ema.
    ratio = jnp.exp(log_mean_exp - jnp.log(new_ema))
    # Value log mean(e^m) (so loss == -DV), gradient that of ratio.
    partition = jax.lax.stop_gradient(log_mean_exp) + ratio - jax.lax.stop_gradient(ratio)
    dv_value = jnp.mean(joint) - log_mean_exp
    loss = -(jnp.mean(joint) - partition)
    return loss, jax.lax.stop_gradient(dv_value), new_ema


def split_scores(scores) -> tuple[jax.Array, jax.Array]:
    """A dense [B, B] score matrix -> (joint [B]: the diagonal, marginal [B(B-1)]: every off-diagonal entry)."""
    off_diagonal = np.nonzero(~np.eye(scores.shape[0], dtype=bool))  # static indices: fine under jit
    return jnp.diagonal(scores), scores[off_diagonal]


def dense_scores_bound(name: str, scores, *, clip: float = 5.0) -> jax.Array:
    """Any bound from a dense [B, B] score matrix scores[i, j] = f(x_i, y_j) (e.g. a separable critic).

    The diagonal holds the B joint scores; the B(B-1) off-diagonal entries serve as marginal scores
    for "dv", "nwj" and "smile" (pairs x_i, y_j with i != j are draws from p(x)p(y)). "infonce" uses
    the full matrix. Scalar in nats.
    """
    scores = _scores(scores, "scores")
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 2:
        raise ValueError(f"dense_scores_bound needs a square [B, B] score matrix with B >= 2, got {scores.shape}")
    if name == "infonce":
        return infonce_bound(scores)
    joint, marginal = split_scores(scores)
    if name == "dv":
        return dv_bound(joint, marginal)
    if name == "nwj":
        return nwj_bound(joint, marginal)
    if name == "smile":
        return smile_bound(joint, marginal, clip)
    raise ValueError(f"unknown bound {name!r}: use one of {BOUNDS}")
