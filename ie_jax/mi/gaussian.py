"""Closed-form Gaussian mutual information from (cross-)covariances: an estimator-free baseline.

For jointly Gaussian x, y: I(x; y) = 1/2 (log det C_xx + log det C_yy - log det C) = -1/2 sum_i log(1 - rho_i^2),
with rho_i the canonical correlations (CCA) of x and y. Applied to non-Gaussian data it is the MI of the
Gaussian with the same covariance: exact on Gaussian data (up to sampling error), but neither a lower nor
an upper bound in general. It is blind to non-linear dependence (spirals) and overshoots on discrete
mixtures, so use it as a cross-check, never alone.

Computed in float64 numpy: these are small d x d problems where precision matters more than speed.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from ie_jax.mi import inputs

__all__ = ["gaussian_mi", "gaussian_copula_mi", "gaussian_mi_from_cov", "gaussian_mi_bias_nats", "canonical_correlations"]


def _as_samples(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, d] (samples x features), got shape {a.shape}; "
                         "reshape a single feature with a[:, None]")
    # NaN/inf and (N, 0) refused; the covariance is standardised in float64, so only columns beyond
    # float32's safe range are recentred and rescaled (exactly, by a power of two) first.
    return inputs.prepare(a, name, rank=2, invariance="affine", dtype=np.float64)


def _standardised_cov(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Joint correlation matrix of [x, y]; constant columns become all-zero rows/columns."""
    z = np.concatenate([x, y], axis=1)
    z = z - z.mean(axis=0)
    std = z.std(axis=0)
    # Standardising makes `ridge` dimensionless and the result invariant to per-feature scale.
    z = z / np.where(std > 0, std, 1.0)
    return z.T @ z / (z.shape[0] - 1)


def gaussian_mi(x, y, *, ridge: float = 1e-6, bias_corrected: bool = False) -> float:
    """Gaussian (CCA) mutual information of samples, in nats.

    x: [N, dx], y: [N, dy] (numpy or jax arrays). Features are standardised, then `ridge` is added to the
    diagonal of the joint correlation matrix: this keeps rank-deficient or constant features finite but caps
    each canonical pair's MI near -1/2 log(2 ridge) (6.6 nats at 1e-6) and lowers pairs with 1 - rho^2
    not far above 2 ridge (a 5-nat pair loses 0.02 nats at 1e-6). Pass ridge=0 for the exact plug-in.
    Raises ValueError for N <= dx + dy with ridge == 0: the sample covariance of [x, y] then has rank
    < dx + dy, some canonical correlation is exactly 1 and the MI is infinite.

    Bias: on Gaussian data the plug-in value overestimates by `gaussian_mi_bias_nats(dx, dy, N)`, about
    dx*dy / (2N) nats (14.7 nats at dx = dy = 768, N = 20,000). bias_corrected=True subtracts it (exact in
    expectation for Gaussian data with ridge=0; the result may then be slightly negative).
    """
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    n, dx = x.shape
    dy = y.shape[1]
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    if ridge == 0 and n <= dx + dy:
        raise ValueError(f"N = {n} samples <= dx + dy = {dx + dy} features: the covariance is singular and the "
                         "Gaussian MI infinite; use more samples or pass ridge > 0")
    cov = _standardised_cov(x, y)
    mi = gaussian_mi_from_cov(cov[:dx, :dx], cov[dx:, dx:], cov[:dx, dx:], ridge=ridge)
    return mi - gaussian_mi_bias_nats(dx, dy, n) if bias_corrected else mi


def _expected_logdet_bias(dim: int, n: int) -> float:
    # (N - 1) S ~ Wishart(Sigma, N - 1): E[log det S] - log det Sigma = sum_i psi((N - i) / 2) + dim log(2 / (N - 1)).
    dof = n - 1
    return float(np.sum(special.digamma((dof - np.arange(dim)) / 2.0)) + dim * np.log(2.0 / dof))


def gaussian_mi_bias_nats(dx: int, dy: int, n: int) -> float:
    """E[plug-in Gaussian MI] - true MI for N = n Gaussian samples (nats); does not depend on the covariance.

    From the Wishart log-determinant expectation applied to 1/2 (log det S_xx + log det S_yy - log det S).
    """
    if n <= dx + dy:
        raise ValueError(f"the bias is defined for N > dx + dy only, got N = {n}, dx + dy = {dx + dy}")
    return 0.5 * (_expected_logdet_bias(dx, n) + _expected_logdet_bias(dy, n) - _expected_logdet_bias(dx + dy, n))


def gaussian_copula_mi(x, y, *, ridge: float = 1e-6) -> float:
    """Gaussian-copula MI in nats: `gaussian_mi` of the per-feature normal scores ndtri(rank / (N + 1)).

    x: [N, dx], y: [N, dy]. Invariant to strictly increasing element-wise maps (cubic, asinh, CDFs), so it is
    exact (up to sampling error) on any element-wise transform of Gaussian data; still blind to
    non-element-wise curvature (spirals) and to cluster structure. Ties get their average rank.
    """
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    n = x.shape[0]
    scores = lambda a: special.ndtri(stats.rankdata(a, axis=0) / (n + 1))
    return gaussian_mi(scores(x), scores(y), ridge=ridge)


def _logdet(a: np.ndarray, name: str) -> float:
    sign, logdet = np.linalg.slogdet(a)
    if sign <= 0 or not np.isfinite(logdet):
        raise ValueError(f"{name} is singular or not positive definite (constant or collinear features?); "
                         "pass ridge > 0 or drop the redundant features")
    return float(logdet)


def gaussian_mi_from_cov(cov_xx, cov_yy, cov_xy, *, ridge: float = 0.0) -> float:
    """Gaussian MI in nats from covariance blocks: 1/2 (log det C_xx + log det C_yy - log det C).

    cov_xx: [dx, dx], cov_yy: [dy, dy], cov_xy: [dx, dy] (= E[(x - mu_x)(y - mu_y)^T]).
    ridge: added to the diagonal of the joint covariance (in the covariance's units).
    Equals -1/2 sum log(1 - rho_i^2) over `canonical_correlations`.
    """
    cov_xx, cov_yy, cov_xy = (np.asarray(c, dtype=np.float64) for c in (cov_xx, cov_yy, cov_xy))
    dx, dy = cov_xx.shape[0], cov_yy.shape[0]
    if cov_xx.shape != (dx, dx) or cov_yy.shape != (dy, dy) or cov_xy.shape != (dx, dy):
        raise ValueError(f"covariance blocks do not fit: cov_xx {cov_xx.shape}, cov_yy {cov_yy.shape}, "
                         f"cov_xy {cov_xy.shape}; expected [dx, dx], [dy, dy], [dx, dy]")
    cov = np.block([[cov_xx, cov_xy], [cov_xy.T, cov_yy]]) + ridge * np.eye(dx + dy)
    mi = 0.5 * (_logdet(cov[:dx, :dx], "cov_xx") + _logdet(cov[dx:, dx:], "cov_yy") - _logdet(cov, "joint covariance"))
    # Round-off can leave tiny negatives for independent features; MI is >= 0.
    return max(mi, 0.0)


def canonical_correlations(cov_xx, cov_yy, cov_xy, *, ridge: float = 0.0) -> np.ndarray:
    """Canonical correlations rho_1 >= ... >= rho_min(dx,dy) in [0, 1] of x and y from covariance blocks.

    The singular values of C_xx^{-1/2} C_xy C_yy^{-1/2} (whitened with Cholesky factors); each contributes
    -1/2 log(1 - rho^2) nats to the Gaussian MI.
    """
    cov_xx, cov_yy, cov_xy = (np.asarray(c, dtype=np.float64) for c in (cov_xx, cov_yy, cov_xy))
    try:
        lx = np.linalg.cholesky(cov_xx + ridge * np.eye(cov_xx.shape[0]))
        ly = np.linalg.cholesky(cov_yy + ridge * np.eye(cov_yy.shape[0]))
    except np.linalg.LinAlgError as e:
        raise ValueError("cov_xx or cov_yy is not positive definite; pass ridge > 0") from e
    whitened = np.linalg.solve(lx, np.linalg.solve(ly, cov_xy.T).T)
    return np.clip(np.linalg.svd(whitened, compute_uv=False), 0.0, 1.0)
