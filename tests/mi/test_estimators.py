"""Every MI estimator through the one interface: same batched call, same numbers as its own function, bad
settings refused when the estimator is made."""

import math

import numpy as np
import pytest

from ie_jax import mi
from ie_jax.mi.discrete import exact_discrete_mi
from ie_jax.mi.gaussian import gaussian_mi
from ie_jax.mi.noise import noise_mi_batch


def _gaussian_pairs(p=3, n=300, d=2, rho=0.8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, n, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((p, n, d))
    return x.astype(np.float32), y.astype(np.float32), -d / 2 * math.log(1 - rho**2)


def _discrete_pairs(p=2, n=400, seed=1):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, (p, n, 1)).astype(np.float32)
    return a, np.concatenate([a, a**2], axis=-1)  # y a function of x: I = H(x) = ln 4 up to sampling


@pytest.mark.slow
def test_every_estimator_has_the_same_batched_call():
    x, y, true_mi = _gaussian_pairs()
    xd, yd = _discrete_pairs()
    cases = {
        "neural": (dict(steps=40, batch_size=64, eval_every=20, convergence_check=False, critic_check=None), x, y),
        "noise": (dict(sigma=0.5, n_mc=64), x, y),
        "exact_discrete": ({}, xd, yd),
        "gaussian": ({}, x, y),
    }
    assert set(cases) == set(mi.ESTIMATOR_NAMES)
    for name, (settings, a, b) in cases.items():
        est = mi.get_estimator(name, **settings)
        out = est(a, b)
        assert isinstance(out, mi.MIEstimates) and len(out) == len(a) and out.units == "nats", name
        assert np.isfinite(out.values).all(), name
        assert all("flags" in d and "reliable" in d for d in out.diagnostics) or name == "gaussian", name
        assert est.min_samples(a.shape[2], b.shape[2]) >= 2 and est.bytes_per_problem(a.shape[1], 2, 2) > 0
        assert est.setting_params[0]["estimator"] == name and len(est.settings) == 1
    gauss = mi.get_estimator("gaussian")(x, y)
    np.testing.assert_allclose(gauss.values, true_mi, atol=0.2)


@pytest.mark.slow
def test_interface_gives_the_estimators_own_numbers():
    x, y, _ = _gaussian_pairs(p=2, n=200)
    grid = mi.get_estimator("noise", sigma=[0.3, 1.0], n_mc=32, seed=4)
    assert grid.settings == ("noise sigma=0.3", "noise sigma=1")
    with pytest.raises(ValueError, match="has 2 settings .* use estimate_settings"):
        grid(x, y)
    direct = noise_mi_batch(x, y, sigma=[0.3, 1.0], n_mc=32, seed=4)
    for got, want in zip(grid.estimate_settings(x, y), direct):
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.stderrs, want.stderrs)
    xd, yd = _discrete_pairs()
    got = mi.get_estimator("exact_discrete")(xd, yd)
    assert [e.value for e in got] == [exact_discrete_mi(a, b).value for a, b in zip(xd, yd)]
    assert got[0].diagnostics["n_distinct_x"] == 4
    got = mi.get_estimator("gaussian", ridge=0.0)(x, y)
    assert list(got.values) == [gaussian_mi(a, b, ridge=0.0) for a, b in zip(x, y)]
    assert np.isnan(got.stderrs).all()  # the closed form has no error estimate: none is invented
    neural = dict(steps=30, batch_size=64, eval_every=10, convergence_check=False, critic_check=None)
    got = mi.get_estimator("neural", seeds=(0, 1), **neural)(x, y)
    want = mi.estimate_batch(x, y, seeds=(0, 1), **neural)
    np.testing.assert_array_equal(got.values, want.values)


@pytest.mark.parametrize("name, settings, message", [
    ("knn", {}, "unknown estimator 'knn'"),
    ("neural", dict(protocol="slow"), "unknown protocol 'slow'"),
    ("neural", dict(step=10), r"unknown setting\(s\) \['step'\]"),
    ("neural", dict(seeds=()), "at least one seed"),
    ("noise", dict(sigma=-1.0), "sigma must be a positive"),
    ("noise", dict(sigma=[]), "sigma must be a positive"),
    ("noise", dict(n_mc=1), "n_mc must be >= 2"),
    ("noise", dict(normaliser="max"), "unknown normaliser"),
    ("noise", dict(draws=10), r"unknown setting\(s\) \['draws'\] for estimator 'noise'"),
    ("exact_discrete", dict(rtol=0.0), "rtol must be > 0"),
    ("exact_discrete", dict(discrete=False), "Gaussian-input states are continuous"),
    ("gaussian", dict(ridge=-1.0), "ridge must be >= 0"),
    ("gaussian", dict(sigma=0.1), r"unknown setting\(s\) \['sigma'\] for estimator 'gaussian'"),
])
def test_bad_settings_are_refused_when_made(name, settings, message):
    with pytest.raises(ValueError, match=message):
        mi.get_estimator(name, **settings)


def test_bad_shapes_are_refused():
    est = mi.get_estimator("gaussian")
    with pytest.raises(ValueError, match=r"shape \[P, N, d\]"):
        est(np.zeros((10, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="must agree in P"):
        est(np.zeros((2, 10, 2)), np.zeros((3, 10, 2)))
