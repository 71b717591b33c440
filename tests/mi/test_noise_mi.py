"""Noise-regularised MI: ground truths (ln K, 0, linear-Gaussian closed form), limits, invariances, batching."""

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ie_jax.mi.discrete import exact_discrete_mi
from ie_jax.mi.noise import noise_mi, noise_mi_batch


def _separated(labels, k, d, seed, spread=10.0):
    points = np.random.default_rng(seed).standard_normal((k, d)) * spread
    return points[labels]


def _gaussian_channel_mi(a, s2, nx, ny):
    """I(x + nx Z; A x + ny Z') for x ~ N(0, s2 I): jointly Gaussian, I = 1/2 ln(|Sxx| |Syy| / |S|)."""
    dx, dy = a.shape[1], a.shape[0]
    sxx = s2 * np.eye(dx) + nx**2 * np.eye(dx)
    syy = s2 * a @ a.T + ny**2 * np.eye(dy)
    sxy = s2 * a.T
    joint = np.block([[sxx, sxy], [sxy.T, syy]])
    logdet = lambda m: np.linalg.slogdet(m)[1]
    return 0.5 * (logdet(sxx) + logdet(syy) - logdet(joint))


@pytest.mark.slow
def test_k_separated_points_small_sigma_is_ln_k():
    k, rng = 6, np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(k), 20))
    x, y = _separated(labels, k, 32, 1), _separated(labels, k, 8, 2)
    est = noise_mi(x, y, sigma=0.01, n_mc=64)
    assert est.value == pytest.approx(math.log(k), abs=1e-5)
    assert est.stderr < 1e-5
    d = est.diagnostics
    assert d["counting_nats"] == pytest.approx(math.log(k))
    # 20 copies of each state: the sample covers them, so ln k is the population's value, exact, not saturated
    assert d["covered"] and not d["saturated"] and not d["constant"] and not d["sample_specific"]
    assert d["normaliser"] == "centred_std" and d["n_distinct_joint"] == k
    # every sample its own state: the same small sigma gives ln N, the sample's size, a lower bound that leaving
    # each draw's own point out exposes
    unique = np.arange(120)
    d = noise_mi(_separated(unique, 120, 32, 1), _separated(unique, 120, 8, 2), sigma=0.01, n_mc=64).diagnostics
    assert not d["covered"] and d["saturated"] and d["sample_specific"]
    assert d["value_leave_one_out_nats"] < 0.0 and "sample_specific" in d["flags"]


def test_small_sigma_equals_counting_on_discrete_toy_data():
    pairs = np.array([(0, 0)] * 3 + [(0, 1)] + [(1, 0)] + [(1, 1)] * 3)
    x = _separated(pairs[:, 0], 2, 5, 3) + 1e-9
    y = _separated(pairs[:, 1], 2, 3, 4)
    counting = exact_discrete_mi(x, y).value
    # n_mc a multiple of N: the stratified anchors visit every sample equally often
    est = noise_mi(x, y, sigma=1e-3, n_mc=64)
    assert est.value == pytest.approx(counting, abs=1e-5)
    assert counting == pytest.approx(0.75 * math.log(1.5) - 0.25 * math.log(2.0))


def test_large_sigma_goes_to_zero_and_curve_never_increases():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 4))
    y = np.tanh(x @ rng.standard_normal((4, 3)))
    sigmas = [0.03, 0.1, 0.3, 1.0, 3.0, 1e3]
    curve = noise_mi(x, y, sigma=sigmas, n_mc=300)
    values = [e.value for e in curve]
    assert values[-1] < 1e-3
    for hi, lo in zip(curve, curve[1:]):  # data processing: more noise never adds information
        assert lo.value <= hi.value + 3 * math.hypot(hi.stderr, lo.stderr) + 1e-6
    assert all(0.0 <= v <= math.log(300) for v in values)
    assert values[0] <= curve[0].diagnostics["counting_nats"] + 1e-6
    assert [e.diagnostics["sigma"] for e in curve] == sigmas


def test_constant_input_is_zero_and_flagged():
    rng = np.random.default_rng(6)
    est = noise_mi(np.full((50, 4), 7.0), rng.standard_normal((50, 3)), sigma=0.1, n_mc=16)
    assert est.value == 0.0 and est.stderr == 0.0
    assert est.diagnostics["constant"] and not est.diagnostics["saturated"]


@pytest.mark.parametrize("dx,dy", [(2, 2), (3, 2)])
def test_linear_gaussian_channel_matches_closed_form(dx, dy):
    rng = np.random.default_rng(7 + dx)
    n, s = 3000, 2.0
    a = rng.standard_normal((dy, dx))
    x = s * rng.standard_normal((n, dx))
    y = x @ a.T
    est = noise_mi(x, y, sigma=1.0, n_mc=3000, seed=1)
    d = est.diagnostics
    # the closed form for the population, with the noise levels the estimator actually used
    truth = _gaussian_channel_mi(a, s**2, d["noise_std_x"], d["noise_std_y"])
    assert d["scale_x"] == pytest.approx(np.sqrt(np.mean((x - x.mean(0)) ** 2)))
    assert est.value == pytest.approx(truth, abs=0.03 + 3 * est.stderr)
    lo, hi = est.ci95
    assert lo <= est.value <= hi
    assert not d["sample_specific"]  # at d = 2 the noise hides each sample among its neighbours


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_sparse_high_dimensional_states_are_flagged_sample_specific(sigma):
    """x ~ N(0, I_64), y = x: at these noise levels 3,000 samples in 64 dimensions lie too far apart for the noise
    to hide them, so the sample's own law gives a value far above the population's closed form. It must not read
    as a measurement: wherever it misses the closed form by more than the bar, it is flagged."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 64))
    est = noise_mi(x, x.copy(), sigma=sigma, n_mc=512, seed=2)
    d = est.diagnostics
    truth = _gaussian_channel_mi(np.eye(64), 1.0, d["noise_std_x"], d["noise_std_y"])
    if abs(est.value - truth) > max(0.1, 0.1 * truth):
        assert d["sample_specific"] or d["saturated"], (sigma, est.value, truth, d["value_leave_one_out_nats"])
        assert not d["reliable"]


def test_normaliser_is_centred_std_not_rms():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((200, 8))
    y = np.sin(x[:, :2])
    base = noise_mi(x, y, sigma=0.5, n_mc=200)
    shifted = noise_mi(x + 100.0, y - 50.0, sigma=0.5, n_mc=200)  # big offsets: same centred std
    assert shifted.value == pytest.approx(base.value, abs=1e-4)
    assert shifted.diagnostics["scale_x"] == pytest.approx(base.diagnostics["scale_x"])
    absolute = noise_mi(x, y, sigma=0.5, n_mc=200, normaliser="none")
    assert absolute.diagnostics["normaliser"] == "none" and absolute.diagnostics["noise_std_x"] == 0.5


@pytest.mark.parametrize("side", ["x", "y"])
def test_orthogonal_rotation_invariance(side):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((400, 6))
    y = np.tanh(x @ rng.standard_normal((6, 5)))
    q, _ = np.linalg.qr(rng.standard_normal((6 if side == "x" else 5,) * 2))
    base = noise_mi(x, y, sigma=0.3, n_mc=400)
    rotated = noise_mi(x @ q, y, sigma=0.3, n_mc=400) if side == "x" else noise_mi(x, y @ q, sigma=0.3, n_mc=400)
    # same law, different Monte Carlo frame for the noise: equal within MC error
    assert rotated.value == pytest.approx(base.value, abs=0.01 + 4 * math.hypot(base.stderr, rotated.stderr))


@settings(max_examples=8, deadline=None)
@given(k=st.integers(1, 12), sigma=st.floats(0.02, 20.0), seed=st.integers(0, 1000))
def test_value_within_zero_and_counting_ceiling(k, sigma, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, 40)
    x = _separated(labels, k, 4, seed, spread=1.0) + 0.3 * rng.standard_normal((40, 4))
    y = np.tanh(x[:, :2])
    est = noise_mi(x, y, sigma=sigma, n_mc=40, seed=seed)
    d = est.diagnostics
    # the raw Monte Carlo mean respects 0 <= I <= counting MI <= ln N up to its own error (n_mc = N:
    # each sample anchors one draw); the reported value is clipped to those bounds
    slack = 4 * est.stderr + 1e-5
    assert -slack <= d["mc_mean_nats"] <= d["counting_nats"] + slack
    assert 0.0 <= est.value <= d["counting_nats"] <= math.log(40) + 1e-9


@pytest.mark.slow
def test_batch_equals_loop_and_sharded_batch_equals_batch():
    rng = np.random.default_rng(11)
    xs, ys = [], []
    for k in (3, 40, 80):  # different numbers of distinct states: different padding in the batch
        labels = rng.integers(0, k, 80)
        xs.append(_separated(labels, k, 8, k, spread=1.0))
        ys.append(np.tanh(xs[-1][:, :4] * 2))
    x, y = np.stack(xs), np.stack(ys)
    batch = noise_mi_batch(x, y, sigma=0.2, n_mc=64, seed=3)
    loop = [noise_mi(x[p], y[p], sigma=0.2, n_mc=64, seed=3) for p in range(3)]
    np.testing.assert_allclose(batch.values, [e.value for e in loop], atol=1e-5)
    np.testing.assert_allclose(batch.stderrs, [e.stderr for e in loop], atol=1e-5)
    assert [d["n_distinct_x"] for d in batch.diagnostics] == [e.diagnostics["n_distinct_x"] for e in loop]
    mesh = jax.make_mesh((len(jax.devices()),), ("problems",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = noise_mi_batch(x, y, sigma=0.2, n_mc=64, seed=3, mesh=mesh)
    np.testing.assert_allclose(sharded.values, batch.values, atol=1e-5)
    curves = noise_mi_batch(x, y, sigma=[0.2, 1.0], n_mc=64, seed=3)
    np.testing.assert_allclose(curves[0].values, batch.values, atol=1e-5)
    assert len(curves) == 2 and len(curves[1]) == 3


@pytest.mark.slow
def test_float64_agrees_and_bad_arguments_raise():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((100, 4))
    y = x[:, :2] ** 3
    f32 = noise_mi(x, y, sigma=0.3, n_mc=100)
    f64 = noise_mi(x, y, sigma=0.3, n_mc=100, dtype="float64")
    assert f64.value == pytest.approx(f32.value, abs=1e-3)
    assert noise_mi(x, y, sigma=0.3, n_mc=100, units="bits").value == pytest.approx(f32.value / math.log(2))
    for kwargs, match in [
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=0.1, normaliser="rms"), "normaliser"),
        (dict(sigma=0.1, n_mc=1), "n_mc"),
        (dict(sigma=0.1, units="bans"), "units"),
        (dict(sigma=0.1, dtype="float16"), "dtype"),
    ]:
        with pytest.raises(ValueError, match=match):
            noise_mi(x, y, **kwargs)
    with pytest.raises(ValueError, match="same number"):
        noise_mi(x, y[:-1], sigma=0.1)
    with pytest.raises(ValueError, match="sigma"):
        noise_mi_batch(x[None], y[None], sigma=[])  # an empty grid


@pytest.mark.slow
def test_curve_batch_of_differently_scaled_problems_equals_each_problem_at_each_sigma():
    # Regression: several problems x several sigmas in one call once gave -24 nats where each alone gave 5.14.
    rng = np.random.default_rng(3)
    xs, ys = [], []
    for scale, n_states in ((1.0, 40), (60.0, 12), (0.01, 40)):  # different scales and distinct-state counts
        x = rng.standard_normal((40, 6))[rng.integers(0, n_states, 40)] * scale
        xs.append(x)
        ys.append((x @ rng.standard_normal((6, 5)) + 0.3 * scale * rng.standard_normal((40, 5))) * 7.0)
    xs, ys = np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)
    sigmas = (0.1, 0.5, 2.0)
    curves = noise_mi_batch(xs, ys, sigma=sigmas, n_mc=32, seed=1)
    for s, sigma in enumerate(sigmas):
        for p in range(3):
            alone = noise_mi(xs[p], ys[p], sigma=sigma, n_mc=32, seed=1)
            got = curves[s][p]
            assert got.diagnostics["scale_x"] == alone.diagnostics["scale_x"]
            assert got.diagnostics["mc_mean_nats"] == pytest.approx(alone.diagnostics["mc_mean_nats"], abs=1e-5)
            assert got.value == pytest.approx(alone.value, abs=1e-5)
