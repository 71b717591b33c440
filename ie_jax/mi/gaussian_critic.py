"""The Gaussian critic: the closed-form log density ratio of a Gaussian fitted to the training pairs.

f(x, y) = log N(y; mu_y + A (x - mu_x), S) - log N(y; mu_y, Sigma_yy), with A = Sigma_yx Sigma_xx^-1 and
S = Sigma_yy - A Sigma_xy, is the optimal critic when (x, y) is jointly Gaussian. On other data it is one
more critic: its held-out Donsker-Varadhan bound is a lower bound like a neural critic's (up to the
log-mean-exp bias near the ln(B(B-1)) ceiling), never the overestimate the plug-in Gaussian formula gives
on clustered states. The fast protocol trains it next to the neural critic as a check: a held-out bound
clearly above the neural one shows the neural critic misses dependence (measured: a d = 128 spiral with
I = 2 nats, neural 0.08, Gaussian critic 0.43). It is not the readout: its scores are unbounded, and under
SMILE's clipped partition term they overshoot (12 nats on a K = 16 mixture whose MI is ln 16 = 2.8), while
the DV readout has no such cap; and at d = 768, N = 20,000 it overfits like any dense linear fit.

Covariances are shrunk towards their diagonal, (1 - lam) Sigma + lam diag(Sigma), with lam picked on
the validation batch from SHRINKAGE. Everything runs on the device, vmapped over problems and shrinkages
(`heldout_bounds_batch`): the [N, d] products in float32, the [d, d] solves, inverses and log-determinants
in float64, because at lam = 0 the covariance of d = 768 transformer states is ill-conditioned (only RIDGE
keeps it invertible), so float32 factorisations would lose every digit of S^-1.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from ie_jax.mi import bounds as _bounds
from ie_jax.mi import linalg

SHRINKAGE = (0.0, 0.01, 0.03, 0.1, 0.3, 0.6)
RIDGE = 1e-6  # keeps constant columns (zero variance) invertible
MAX_TRAIN_BATCHES = 8  # training-set bound for the train/test gap: the mean over this many batches


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianCritic:
    mean_x: jax.Array
    mean_y: jax.Array
    slope: jax.Array  # A [dy, dx]
    cond_precision: jax.Array  # S^-1 [dy, dy]
    marg_precision: jax.Array  # Sigma_yy^-1 [dy, dy]
    log_norm: jax.Array  # 1/2 (log det Sigma_yy - log det S)


def _covariance(x, y):
    """Means (float32) and covariance (float32 products, float64 result) of the pairs x [N, dx], y [N, dy]."""
    z = jnp.concatenate([x.astype(jnp.float32), y.astype(jnp.float32)], axis=1)
    mean = z.mean(axis=0)
    z = z - mean
    return mean, (z.T @ z).astype(jnp.float64) / max(1, z.shape[0] - 1)


def _fit_from_covariance(mean, cov, dx: int, shrinkage) -> GaussianCritic:
    """The critic of the shrunk covariance; float64 linear algebra, float32 parameters. Needs x64 enabled."""
    diagonal = jnp.diag(jnp.diag(cov))
    cov = (1.0 - shrinkage) * cov + shrinkage * diagonal + RIDGE * jnp.eye(cov.shape[0], dtype=cov.dtype)
    s_xx, s_xy, s_yy = cov[:dx, :dx], cov[:dx, dx:], cov[dx:, dx:]
    slope = linalg.solve(s_xx, s_xy).T  # Sigma_yx Sigma_xx^-1 (Sigma_xx symmetric)
    cond = s_yy - slope @ s_xy
    cond = (cond + cond.T) / 2.0
    log_norm = 0.5 * (linalg.logdet(s_yy) - linalg.logdet(cond))
    f32 = lambda a: a.astype(jnp.float32)
    return GaussianCritic(mean[:dx], mean[dx:], f32(slope), f32(linalg.inv(cond)), f32(linalg.inv(s_yy)),
                          f32(log_norm))


def fit(x, y, shrinkage: float = 0.0) -> GaussianCritic:
    """Fit the critic to training pairs x [N, dx], y [N, dy] (one problem; see `heldout_bounds_batch`)."""
    with jax.enable_x64(True):
        return _fit(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), shrinkage)


@jax.jit
def _fit(x, y, shrinkage):
    mean, cov = _covariance(x, y)
    return _fit_from_covariance(mean, cov, x.shape[1], shrinkage)


def scores(critic, x, y):
    """[B, B] matrix f(x_i, y_j), float32 (joint pairs on the diagonal), as a separable critic's."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    u = (x - critic.mean_x) @ critic.slope.T  # predicted y - mu_y, [B, dy]
    v = y - critic.mean_y
    pv = v @ critic.cond_precision
    # (v_j - u_i)' P (v_j - u_i) = v_j' P v_j - 2 u_i' P v_j + u_i' P u_i
    quad = (jnp.sum(v * pv, axis=1)[None, :] - 2.0 * u @ pv.T
            + jnp.sum((u @ critic.cond_precision) * u, axis=1)[:, None])
    marg = jnp.sum((v @ critic.marg_precision) * v, axis=1)
    return critic.log_norm - 0.5 * quad + 0.5 * marg[None, :]


def batch_bound(bound: str, score_matrix):
    """InfoNCE, or else the DV bound, of one [B, B] score matrix with all B(B-1) off-diagonal pairs as
    marginal samples (nats, a float32 scalar)."""
    if bound == "infonce":
        return _bounds.infonce_bound(score_matrix)
    return _bounds.dv_bound(*_bounds.split_scores(score_matrix))


def _heldout_one(bound: str, eval_batch: int, x_train, y_train, x_test, y_test) -> dict:
    """One problem, all shrinkages at once; see `heldout_bounds_batch`."""
    batches = lambda a, k: a[: k * eval_batch].reshape(k, eval_batch, a.shape[1])
    value_of = lambda critic, xs, ys: batch_bound(bound, scores(critic, xs, ys))
    n_batches = x_test.shape[0] // eval_batch
    n_train_batches = min(MAX_TRAIN_BATCHES, x_train.shape[0] // eval_batch)
    mean, cov = _covariance(x_train, y_train)
    fit_one = lambda lam: _fit_from_covariance(mean, cov, x_train.shape[1], lam)
    critics = jax.vmap(fit_one)(jnp.asarray(SHRINKAGE, jnp.float64))
    validation = jax.vmap(lambda c: value_of(c, x_test[:eval_batch], y_test[:eval_batch]))(critics)
    # The first shrinkage scoring strictly highest wins; NaN never wins (but stands if it came first, as a
    # loop keeping the first best would).
    best = jnp.where(jnp.isnan(validation[0]), 0, jnp.argmax(jnp.where(jnp.isnan(validation), -jnp.inf, validation)))
    critic = jax.tree.map(lambda a: a[best], critics)
    heldout = jax.vmap(lambda xs, ys: value_of(critic, xs, ys))(batches(x_test, n_batches)[1:],
                                                                batches(y_test, n_batches)[1:])
    train = jax.vmap(lambda xs, ys: value_of(critic, xs, ys))(batches(x_train, n_train_batches),
                                                              batches(y_train, n_train_batches))
    return {"validation_value": validation[best], "heldout_batches": heldout, "train_value": train.mean(),
            "shrinkage_index": best.astype(jnp.int32)}


@functools.partial(jax.jit, static_argnames=("bound", "eval_batch", "one_at_a_time"))
def _heldout_batch(x_train, y_train, x_test, y_test, *, bound: str, eval_batch: int, one_at_a_time: bool):
    one = functools.partial(_heldout_one, bound, eval_batch)
    if one_at_a_time:
        return jax.lax.map(lambda args: one(*args), (x_train, y_train, x_test, y_test))
    return jax.vmap(one)(x_train, y_train, x_test, y_test)


def heldout_bounds_batch(bound: str, x_train, y_train, x_test, y_test, eval_batch: int) -> dict:
    """P problems on the device: fit on the training pairs, pick the shrinkage on held-out batch 0
    (validation), read out on held-out batches 1..K-1 (the neural critics' readout batches).

    x_train [P, N, dx], y_train [P, N, dy], x_test [P, Nt, dx], y_test [P, Nt, dy] (jax arrays, sharded or
    not); bound: "infonce" or "dv"; K = Nt // eval_batch >= 2. Returns device arrays (nats):
    validation_value [P], heldout_batches [P, K - 1], train_value [P] (mean bound over up to
    MAX_TRAIN_BATCHES training batches of the same size), shrinkage_index [P] (into SHRINKAGE).
    """
    if x_test.shape[1] // eval_batch < 2:
        raise ValueError(f"{x_test.shape[1]} held-out pairs give fewer than 2 batches of {eval_batch}: "
                         "the Gaussian critic needs one to pick the shrinkage and one to read out")
    # XLA on the CPU was seen to stop progressing (threads idle) on these float64 solves vmapped over problems
    # (d = 50, 6 problems; d = 576 token states): there the problems go one at a time; accelerators batch them.
    one_at_a_time = jax.default_backend() == "cpu"
    with jax.enable_x64(True):
        return _heldout_batch(x_train, y_train, x_test, y_test, bound=bound, eval_batch=eval_batch,
                              one_at_a_time=one_at_a_time)


def heldout_bytes(n_train: int, n_test: int, dx: int, dy: int, eval_batch: int) -> int:
    """Device memory of `heldout_bounds_batch` for one problem, vmapped (as on accelerators): the centred
    training pairs (two float32 copies), the float64 covariance with its shrunk copies and solves for every
    SHRINKAGE (11 matrices of [dx + dy]^2), and for every held-out, validation and training batch 2 float32
    [B, B] score matrices and one [B, dx + dy]. An upper bound of the compiled program's `memory_analysis()`
    (tests/mi/test_chunks.py)."""
    d = dx + dy
    batches = (n_test // max(1, eval_batch)) + MAX_TRAIN_BATCHES + len(SHRINKAGE)
    return int(4 * 2 * n_train * d + 8 * 11 * d * d + 4 * batches * (2 * eval_batch**2 + eval_batch * d))
