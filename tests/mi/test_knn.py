"""KSG estimator (ie_jax.mi.knn): a cKDTree reference, closed forms, batching, radial features on Student-t."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from scipy import spatial, special, stats

from ie_jax.mi.knn import ksg_batch, ksg_terms, radial_features

GRID = 2.0**-16


def _grid_normal(rng, shape):
    """Normal samples rounded to multiples of 2^-16: float32 holds them and their differences exactly, so the
    float32 estimator and the float64 reference see the same distances and the strict `<` means the same."""
    return (np.round(rng.standard_normal(shape) / GRID) * GRID).astype(np.float32)


def ksg_reference_terms(x, y, k):
    """KSG estimator 1 the direct way: cKDTree in float64 with the max-norm."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    n = len(x)
    joint = np.hstack([x, y])
    eps = spatial.cKDTree(joint).query(joint, k=k + 1, p=np.inf)[0][:, -1]  # k + 1: the first is the sample itself
    # query_ball_point counts distance <= r; distances are multiples of GRID, so r = eps - GRID / 4 means < eps.
    radius = eps - GRID / 4
    n_x = spatial.cKDTree(x).query_ball_point(x, radius, p=np.inf, return_length=True) - 1  # minus the sample itself
    n_y = spatial.cKDTree(y).query_ball_point(y, radius, p=np.inf, return_length=True) - 1
    return special.digamma(k) + special.digamma(n) - special.digamma(n_x + 1) - special.digamma(n_y + 1)


@pytest.mark.parametrize("dx, dy, k, row_chunk", [(1, 1, 3, 128), (2, 3, 1, 97), (3, 1, 5, 1024), (2, 2, 3, 499)])
def test_terms_equal_the_kdtree_reference(dx, dy, k, row_chunk):
    rng = np.random.default_rng(dx * 10 + dy)
    n = 500
    x = _grid_normal(rng, (n, dx))
    # Dependent y: a noisy linear map of x, so the counts are not those of independent data.
    y = _grid_normal(rng, (n, dy)) * 0.5 + (x @ rng.standard_normal((dx, dy))).astype(np.float32)
    y = (np.round(y / GRID) * GRID).astype(np.float32)
    expected = ksg_reference_terms(x, y, k)
    got = np.asarray(ksg_terms(jnp.asarray(x), jnp.asarray(y), k=k, row_chunk=row_chunk))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert abs(got.mean() - expected.mean()) < 1e-4


def test_gaussian_closed_form_and_independence():
    rng = np.random.default_rng(0)
    n, rho = 3000, 0.8
    x = rng.standard_normal((2, n, 1))
    noise = rng.standard_normal((2, n, 1))
    y = np.stack([rho * x[0] + np.sqrt(1 - rho**2) * noise[0], noise[1]])  # problem 1: y independent of x
    result = ksg_batch(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    value = np.asarray(result["value"])
    assert abs(value[0] - (-0.5 * np.log(1 - rho**2))) < 0.05
    assert abs(value[1]) < 0.03
    assert np.all(np.asarray(result["stderr"]) > 0)


def test_batch_equals_one_problem_at_a_time_for_any_row_chunk():
    rng = np.random.default_rng(1)
    p, n = 3, 400
    x = rng.standard_normal((p, n, 2)).astype(np.float32)
    y = (x[..., :1] ** 3 + rng.standard_normal((p, n, 1))).astype(np.float32)
    terms = [np.asarray(ksg_terms(jnp.asarray(x[i]), jnp.asarray(y[i]), k=4)) for i in range(p)]
    expected_value = np.array([t.mean() for t in terms])
    expected_stderr = np.array([t.std(ddof=1) / np.sqrt(n) for t in terms])
    for row_chunk in (64, 150, 400, 1024):
        result = ksg_batch(jnp.asarray(x), jnp.asarray(y), k=4, row_chunk=row_chunk)
        np.testing.assert_allclose(np.asarray(result["value"]), expected_value, atol=1e-5)
        np.testing.assert_allclose(np.asarray(result["stderr"]), expected_stderr, rtol=1e-4)


def test_batch_sharded_over_problems():
    devices = np.array(jax.devices())
    p, n = len(devices), 200
    rng = np.random.default_rng(2)
    x = rng.standard_normal((p, n, 1)).astype(np.float32)
    y = (x + 0.5 * rng.standard_normal((p, n, 1))).astype(np.float32)
    sharding = NamedSharding(Mesh(devices, ("problems",)), PartitionSpec("problems"))
    sharded = ksg_batch(jax.device_put(x, sharding), jax.device_put(y, sharding), row_chunk=64)
    local = ksg_batch(jnp.asarray(x), jnp.asarray(y), row_chunk=64)
    np.testing.assert_allclose(np.asarray(sharded["value"]), np.asarray(local["value"]), atol=1e-6)


def test_rejects_bad_shapes_and_k():
    x = jnp.zeros((10, 1))
    with pytest.raises(ValueError, match="k must be"):
        ksg_terms(x, x, k=10)
    with pytest.raises(ValueError, match="same problems and samples"):
        ksg_terms(x, jnp.zeros((9, 1)))
    with pytest.raises(ValueError, match="rank 3"):
        ksg_batch(x, x)


def test_radial_features_are_log_norms_with_a_floor():
    a = np.array([[[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]]], np.float32)
    got = np.asarray(radial_features(jnp.asarray(a)))
    assert got.shape == (1, 3, 1)
    np.testing.assert_allclose(got[0, [0, 2], 0], np.log([5.0, 1e-3]), rtol=1e-6)
    assert np.isfinite(got[0, 1, 0])


def _student_t_pair(rng, n, d, nu, shared_scale):
    w_x = rng.chisquare(nu, size=(n, 1))
    w_y = w_x if shared_scale else rng.chisquare(nu, size=(n, 1))
    return rng.standard_normal((n, d)) / np.sqrt(w_x / nu), rng.standard_normal((n, d)) / np.sqrt(w_y / nu)


def _student_t_mi_nats(nu, dx, dy):
    """MI of a multivariate Student-t pair with identity dispersion (Arellano-Valle et al., 2013)."""
    f = lambda a: special.gammaln(a / 2) - a / 2 * special.digamma(a / 2)  # noqa: E731
    return f(nu) + f(nu + dx + dy) - f(nu + dx) - f(nu + dy)


def test_radial_features_see_the_shared_scale_of_a_student_t_pair():
    rng = np.random.default_rng(3)
    n, d, nu = 3000, 3, 2.0
    x, y = _student_t_pair(rng, n, d, nu, shared_scale=True)
    # The coordinates are uncorrelated (a sign flip of z_x leaves the law unchanged). With nu = 2 their variance
    # is infinite, so the sample Pearson correlation is dominated by a few huge samples; ranks are the stable check.
    rank_corr = stats.spearmanr(x, y).statistic[:d, d:]
    assert np.abs(rank_corr).max() < 0.06
    x_ind, y_ind = _student_t_pair(rng, n, d, nu, shared_scale=False)
    features_x = radial_features(jnp.asarray(np.stack([x, x_ind]), jnp.float32))
    features_y = radial_features(jnp.asarray(np.stack([y, y_ind]), jnp.float32))
    shared, separate = np.asarray(ksg_batch(features_x, features_y)["value"])
    assert shared > 0.1
    # A function of (x, y) carries no more information than (x, y) themselves.
    assert shared < _student_t_mi_nats(nu, d, d) + 0.05
    assert abs(separate) < 0.03  # separate scales: the norms are independent
