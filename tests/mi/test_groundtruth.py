"""Ground-truth samplers: shapes, determinism, marginals, known MI, transforms, discrete mixtures, staircase."""

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import special

from ie_jax.mi.gaussian import gaussian_mi
from ie_jax.mi.groundtruth import (
    Asinh, Cubic, DiscreteMixture, GaussianPairs, NormalCDF, Orthogonal, Spiral, Staircase, Transformed,
    correlated_gaussian, independent, rho_for_mi, rotated_gaussian, sparse_gaussian, staircase,
)

SAMPLERS = {
    "correlated": correlated_gaussian(6, 2.0),
    "sparse": sparse_gaussian(6, 2, 2.0),
    "rotated": rotated_gaussian(6, 2.0),
    "independent": independent(6, 3),
    "cubic_spiral": Transformed(correlated_gaussian(6, 2.0), Cubic(), Spiral(0.3)),
    "cdf_asinh": Transformed(rotated_gaussian(6, 2.0), NormalCDF(), Asinh()),
    "mixture": DiscreteMixture(8, 6, 3),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_shapes_dtype_determinism(name):
    sampler = SAMPLERS[name]
    x, y = sampler.sample(7, 100)
    assert x.shape == (100, sampler.dim_x) and y.shape == (100, sampler.dim_y)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    again = sampler.sample(7, 100)
    np.testing.assert_array_equal(x, again[0])
    np.testing.assert_array_equal(y, again[1])
    assert not np.array_equal(x, sampler.sample(8, 100)[0])
    assert isinstance(sampler.mi_nats, float)


def test_seed_kinds():
    sampler = correlated_gaussian(3, 1.0)
    typed, raw = jax.random.key(4), jax.random.PRNGKey(4)
    np.testing.assert_array_equal(sampler.sample(typed, 10)[0], sampler.sample(typed, 10)[0])
    np.testing.assert_array_equal(sampler.sample(raw, 10)[0], sampler.sample(raw, 10)[0])
    assert not np.array_equal(sampler.sample(jax.random.key(5), 10)[0], sampler.sample(typed, 10)[0])
    np.testing.assert_array_equal(sampler.sample(np.random.default_rng(2), 10)[0], sampler.sample(2, 10)[0])


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 30.0), st.integers(3, 800))
def test_mi_and_rho_round_trip(mi_nats, dim):
    sampler = correlated_gaussian(dim, mi_nats)
    assert sampler.mi_nats == pytest.approx(mi_nats, rel=1e-12, abs=1e-12)
    assert sampler.rhos[0] == pytest.approx(rho_for_mi(mi_nats, dim), rel=1e-12)
    assert -dim / 2 * math.log1p(-rho_for_mi(mi_nats, dim) ** 2) == pytest.approx(mi_nats, rel=1e-6, abs=1e-12)


def test_gaussian_marginals_and_correlations():
    sampler = GaussianPairs.from_rhos((0.9, 0.0, 0.5))
    x, y = sampler.sample(0, 40_000)
    tol = 5 / math.sqrt(40_000)
    np.testing.assert_allclose(x.mean(0), 0, atol=tol)
    np.testing.assert_allclose(y.std(0), 1, atol=tol)
    corr = [np.corrcoef(x[:, i], y[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(corr, sampler.rhos, atol=tol)
    assert sampler.mi_nats == pytest.approx(-0.5 * (math.log(1 - 0.81) + math.log(1 - 0.25)))


def test_sparse_and_rotated():
    sparse = sparse_gaussian(10, 3, 4.0)
    assert sum(r != 0 for r in sparse.rhos) == 3 and sparse.mi_nats == pytest.approx(4.0)
    rotated = rotated_gaussian(10, 4.0, seed=2)
    x, y = rotated.sample(1, 40_000)
    # Orthogonal mixing keeps the N(0, I) marginal but spreads dependence over all coordinates.
    np.testing.assert_allclose(np.cov(x.T), np.eye(10), atol=0.05)
    cross = np.corrcoef(x.T, y.T)[:10, 10:]
    assert np.sum(np.abs(cross) > 0.05) > 50  # dense, unlike the diagonal cross-correlation of the base
    assert rotated.mi_nats == pytest.approx(4.0)
    assert gaussian_mi(x, y) == pytest.approx(4.0, abs=0.05)


@pytest.mark.parametrize("transform", [Cubic(), Asinh(), NormalCDF(), Orthogonal(4, seed=3), Spiral(0.7)],
                         ids=lambda t: type(t).__name__)
def test_transforms_are_invertible(transform):
    z = np.random.default_rng(0).standard_normal((500, 4))
    np.testing.assert_allclose(transform.inverse(transform(z)), z, rtol=1e-7, atol=1e-9)


def test_transform_properties():
    z = np.random.default_rng(1).standard_normal((20_000, 4))
    u = NormalCDF()(z)
    assert np.all((u > 0) & (u < 1))
    np.testing.assert_allclose([u.mean(), u.var()], [0.5, 1 / 12], atol=0.01)  # Uniform(0, 1)
    q = Orthogonal(4, seed=3).matrix
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-12)
    assert not np.allclose(q, Orthogonal(4, seed=4).matrix)
    spiral = Spiral(0.7)
    np.testing.assert_allclose(np.linalg.norm(spiral(z), axis=1), np.linalg.norm(z, axis=1), rtol=1e-12)
    # Not element-wise: moving coordinate 3 changes the radius and so rotates coordinates 0 and 1.
    moved = z[:1].copy()
    moved[0, 3] += 0.5
    assert not np.allclose(spiral(moved)[0, :2], spiral(z[:1])[0, :2])
    with pytest.raises(ValueError, match="2 dimensions"):
        spiral(z[:, :1])


def test_transformed_keeps_mi_and_applies_maps():
    base = correlated_gaussian(4, 3.0)
    sampler = Transformed(base, Cubic(), Spiral(0.5))
    assert sampler.mi_nats == base.mi_nats and sampler.dim_x == 4
    x, y = sampler.sample(3, 1_000)
    bx, by = base.sample(3, 1_000)
    np.testing.assert_array_equal(x, Cubic()(bx.astype(np.float64)).astype(np.float32))
    # Undoing the maps gives back Gaussian data with the known MI.
    x, y = sampler.sample(3, 50_000)
    recovered = gaussian_mi(np.cbrt(x.astype(np.float64)), Spiral(0.5).inverse(y.astype(np.float64)), ridge=0.0)
    assert recovered == pytest.approx(3.0, abs=0.05)
    # ...while the Gaussian closed form on the transformed data is far off: these problems are not Gaussian.
    assert abs(gaussian_mi(x, y) - 3.0) > 0.5


def _mixture_mi_monte_carlo(mixture, x, y):
    """E[log p(x, y) / (p(x) p(y))] with the exact mixture densities (normalisers cancel)."""
    (mu, nu), (sx, sy) = mixture.centres, mixture.noise
    x, y = x.astype(np.float64), y.astype(np.float64)
    log_a = -np.sum((x[:, None] - mu[None]) ** 2, -1) / (2 * sx * sx)
    log_b = -np.sum((y[:, None] - nu[None]) ** 2, -1) / (2 * sy * sy)
    pointwise = (math.log(mixture.k) + special.logsumexp(log_a + log_b, axis=1)
                 - special.logsumexp(log_a, axis=1) - special.logsumexp(log_b, axis=1))
    return pointwise.mean(), pointwise.std() / math.sqrt(len(pointwise))


def test_discrete_mixture_is_ln_k():
    mixture = DiscreteMixture(k=16, dim_x=3, dim_y=5, seed=1)
    assert mixture.mi_nats == pytest.approx(math.log(16))
    assert mixture.mi_gap_bound_nats < 1e-3
    x, y = mixture.sample(0, 20_000)
    mi, stderr = _mixture_mi_monte_carlo(mixture, x, y)
    assert abs(mi - math.log(16)) < 1e-3 and stderr < 1e-3
    # Nearest centre recovers the shared index on both sides.
    (mu, nu) = mixture.centres
    cx = np.argmin(np.sum((x[:, None] - mu[None]) ** 2, -1), axis=1)
    cy = np.argmin(np.sum((y[:, None] - nu[None]) ** 2, -1), axis=1)
    np.testing.assert_array_equal(cx, cy)
    assert len(np.unique(cx)) == 16


def test_discrete_mixture_gap_bound_holds_when_blurred():
    blurred = DiscreteMixture(k=4, dim_x=1, dim_y=1, noise_ratio=0.3, seed=0, tolerance_nats=10.0)
    gap = blurred.mi_gap_bound_nats
    mi, stderr = _mixture_mi_monte_carlo(blurred, *blurred.sample(0, 40_000))
    assert math.log(4) - gap - 4 * stderr <= mi <= math.log(4) + 4 * stderr
    assert mi < math.log(4) - 0.01  # the blur really costs information here
    with pytest.raises(ValueError, match="lower noise_ratio"):
        DiscreteMixture(k=4, dim_x=1, dim_y=1, noise_ratio=0.3, seed=0)


def test_discrete_mixture_without_noise_has_k_states():
    x, y = DiscreteMixture(k=5, dim_x=2, dim_y=2, noise_ratio=0.0).sample(0, 1_000)
    assert len(np.unique(x, axis=0)) == 5 and len(np.unique(y, axis=0)) == 5


def test_staircase_schedule():
    stairs = staircase(n_per_step=3)
    assert isinstance(stairs, Staircase) and stairs.dim == 20 and stairs.levels_nats == (2.0, 4.0, 6.0, 8.0, 10.0)
    np.testing.assert_array_equal(stairs.mi_schedule_nats, np.repeat([2.0, 4.0, 6.0, 8.0, 10.0], 3))
    np.testing.assert_allclose(-10 * np.log1p(-stairs.rho_schedule ** 2), stairs.mi_schedule_nats, rtol=1e-12)
    assert [level.mi_nats for level in stairs.levels] == pytest.approx([2, 4, 6, 8, 10])
    x, y = stairs.sample(0, 64)
    assert x.shape == y.shape == (15, 64, 20) and x.dtype == np.float32
    np.testing.assert_array_equal(x, stairs.sample(0, 64)[0])
    # Each level's pooled samples carry that level's correlation.
    for level in range(5):
        xs, ys = x[3 * level: 3 * level + 3].reshape(-1, 20), y[3 * level: 3 * level + 3].reshape(-1, 20)
        corr = np.mean([np.corrcoef(xs[:, i], ys[:, i])[0, 1] for i in range(20)])
        assert corr == pytest.approx(stairs.rho_schedule[3 * level], abs=0.03)
    cubic = staircase((1.0, 3.0), n_per_step=2, d=4, transform_y=Cubic())
    assert [level.mi_nats for level in cubic.levels] == pytest.approx([1.0, 3.0])
    assert cubic.sample(0, 8)[1].shape == (4, 8, 4)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(-1, 1\)"):
        GaussianPairs.from_rhos((0.5, 1.0))
    with pytest.raises(ValueError, match="more dimensions"):
        correlated_gaussian(1, 19.0)
    with pytest.raises(ValueError, match="k <= dim"):
        sparse_gaussian(3, 4, 1.0)
    with pytest.raises(ValueError, match="mi_nats"):
        correlated_gaussian(3, -1.0)
    with pytest.raises(ValueError, match="positive integer"):
        correlated_gaussian(3, 1.0).sample(0, 0)
    with pytest.raises(ValueError, match="width"):
        Orthogonal(3)(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="k >= 2"):
        DiscreteMixture(k=1, dim_x=1, dim_y=1)


def test_largest_pair_mi_survives_float32():
    x, y = correlated_gaussian(1, 12.0).sample(0, 100_000)
    assert gaussian_mi(x, y, ridge=0.0) == pytest.approx(12.0, abs=0.02)
