"""Closed-form Gaussian / CCA MI: formulas, known-MI samplers at d = 1, 20, 128, invariances, bad input."""

import math

import numpy as np
import pytest
from scipy import special

from ie_jax.mi.gaussian import (
    canonical_correlations, gaussian_copula_mi, gaussian_mi, gaussian_mi_bias_nats, gaussian_mi_from_cov,
)
from ie_jax.mi.groundtruth import Asinh, Cubic, NormalCDF, Transformed, independent, rotated_gaussian, sparse_gaussian


def _expected_logdet_bias(dim: int, n: int) -> float:
    """E[log det S] - log det Sigma for the sample covariance S of n Gaussian samples (Wishart, n - 1 dof)."""
    dof = n - 1
    return sum(special.digamma((dof - i + 1) / 2) for i in range(1, dim + 1)) + dim * math.log(2 / dof)


def _expected_plugin_bias(dx: int, dy: int, n: int) -> float:
    # MI = 1/2 (logdet C_xx + logdet C_yy - logdet C), and E[logdet S] - logdet Sigma does not depend on Sigma.
    return 0.5 * (_expected_logdet_bias(dx, n) + _expected_logdet_bias(dy, n) - _expected_logdet_bias(dx + dy, n))


def test_from_cov_one_pair():
    for rho in (0.0, 0.3, -0.9, 0.999):
        assert gaussian_mi_from_cov([[1.0]], [[1.0]], [[rho]]) == pytest.approx(-0.5 * math.log(1 - rho * rho), abs=1e-12)
    # Scale does not matter: var 4 and 9, covariance 6 * 0.5.
    assert gaussian_mi_from_cov([[4.0]], [[9.0]], [[3.0]]) == pytest.approx(-0.5 * math.log(0.75), rel=1e-12)


def test_from_cov_equals_cca_sum():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 7))
    cov = a @ a.T + 0.5 * np.eye(7)
    cxx, cyy, cxy = cov[:4, :4], cov[4:, 4:], cov[:4, 4:]
    rho = canonical_correlations(cxx, cyy, cxy)
    assert rho.shape == (3,) and np.all(rho <= 1) and np.all(np.diff(rho) <= 0)
    assert gaussian_mi_from_cov(cxx, cyy, cxy) == pytest.approx(-0.5 * np.sum(np.log1p(-rho ** 2)), rel=1e-10)


@pytest.mark.parametrize("dim, mi_nats, n", [(1, 1.0, 200_000), (20, 10.0, 100_000), (128, 20.0, 50_000)])
def test_known_mi(dim, mi_nats, n):
    x, y = rotated_gaussian(dim, mi_nats, seed=1).sample(0, n) if dim > 1 else sparse_gaussian(1, 1, mi_nats).sample(0, n)
    estimate = gaussian_mi(x, y, ridge=0.0)
    bias = _expected_plugin_bias(dim, dim, n)
    rho2 = -math.expm1(-2 * mi_nats / dim)
    std = math.sqrt(dim * rho2 / n)  # delta method: Var[-1/2 log(1 - r^2)] ~ rho^2 / n per canonical pair
    assert abs(estimate - (mi_nats + bias)) < 5 * std, (estimate, mi_nats, bias, std)


def test_independent_is_near_zero():
    x, y = independent(6, 4).sample(3, 20_000)
    estimate = gaussian_mi(x, y)
    assert 0.0 <= estimate < 4 * _expected_plugin_bias(6, 4, 20_000)


def test_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(5)
    x, y = sparse_gaussian(5, 3, 2.0).sample(1, 5_000)
    y = y[:, :3]  # dx != dy
    a = rng.normal(size=(5, 5)) + 3 * np.eye(5)
    b = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    mapped_x, mapped_y = x @ a + rng.normal(size=5), 10.0 * y @ b - 7.0
    exact = gaussian_mi(x, y, ridge=0.0)
    assert gaussian_mi(mapped_x, mapped_y, ridge=0.0) == pytest.approx(exact, rel=1e-6)
    assert gaussian_mi(mapped_x, mapped_y) == pytest.approx(exact, rel=1e-3)
    assert gaussian_mi(y, x, ridge=0.0) == pytest.approx(exact, rel=1e-9)  # symmetric


def test_too_few_samples_needs_ridge():
    x, y = rotated_gaussian(8, 3.0).sample(0, 16)
    with pytest.raises(ValueError, match="ridge"):
        gaussian_mi(x, y, ridge=0.0)
    assert math.isfinite(gaussian_mi(x, y, ridge=1e-3))


def test_constant_column():
    x, y = sparse_gaussian(3, 1, 1.0).sample(0, 5_000)
    with_constant = np.concatenate([x, np.full((len(x), 1), 4.0, np.float32)], axis=1)
    with pytest.raises(ValueError, match="singular"):
        gaussian_mi(with_constant, y, ridge=0.0)
    assert gaussian_mi(with_constant, y) == pytest.approx(gaussian_mi(x, y, ridge=0.0), abs=1e-4)


def test_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        gaussian_mi(x, np.zeros((9, 2)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_mi(np.full((10, 2), np.nan), x)
    with pytest.raises(ValueError, match="2-D"):
        gaussian_mi(np.zeros(10), x)
    with pytest.raises(ValueError, match="do not fit"):
        gaussian_mi_from_cov(np.eye(2), np.eye(3), np.zeros((3, 2)))


def test_copula_mi_undoes_elementwise_maps():
    sampler = Transformed(rotated_gaussian(4, 2.0, seed=2), Cubic(), NormalCDF())
    x, y = sampler.sample(0, 20_000)
    x_plain, y_plain = rotated_gaussian(4, 2.0, seed=2).sample(0, 20_000)
    # Ranks are unchanged by increasing maps: identical to the copula MI of the untransformed data.
    assert gaussian_copula_mi(x, y) == pytest.approx(gaussian_copula_mi(x_plain, y_plain), abs=1e-6)
    assert gaussian_copula_mi(x, y) == pytest.approx(2.0, abs=0.06)
    assert abs(gaussian_mi(x, y) - 2.0) > 0.3  # the plain Gaussian form is fooled by the maps
    assert gaussian_copula_mi(Asinh()(x_plain), y_plain) == pytest.approx(gaussian_copula_mi(x_plain, y_plain), abs=1e-6)


def test_bias_correction():
    assert gaussian_mi_bias_nats(7, 3, 1_000) == pytest.approx(_expected_plugin_bias(7, 3, 1_000), rel=1e-10)
    assert gaussian_mi_bias_nats(768, 768, 20_000) == pytest.approx(768 * 768 / 40_000, rel=0.1)
    # d = 128 with N = 2,000: the plug-in overshoots by ~4 nats; the corrected value is on target.
    n, dim, mi_nats = 2_000, 128, 5.0
    x, y = rotated_gaussian(dim, mi_nats, seed=4).sample(1, n)
    std = math.sqrt(dim * -math.expm1(-2 * mi_nats / dim) / n)
    assert gaussian_mi(x, y, ridge=0.0) - mi_nats > 3.0
    assert gaussian_mi(x, y, ridge=0.0, bias_corrected=True) == pytest.approx(mi_nats, abs=5 * std)
