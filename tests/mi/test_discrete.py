"""Exact counting MI: distinct states, plug-in entropies, hand-computed values, refusals."""

import math

import numpy as np
import pytest

from ie_jax.mi.discrete import distinct_states, distinct_states_batch, exact_discrete_mi, plugin_entropy, state_scale


def _embed(labels, k, d=5, seed=0, jitter=1e-9):
    """States of discrete labels: k far-apart points in R^d plus float-noise-sized jitter."""
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((k, d)) * 3.0
    return points[np.asarray(labels)] + jitter * rng.standard_normal((len(labels), d))


def test_distinct_states_merges_float_noise_and_separates_real_differences():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((50, 64))
    x = base[rng.integers(0, 50, 1000)]
    scale = state_scale(x)
    noisy = x + 1e-7 * scale / 8 * rng.standard_normal(x.shape)  # |noise| ~ 1e-7 scale: same state
    labels, n = distinct_states(noisy)
    assert n == len(np.unique(x, axis=0))
    # a copy moved by 1e-2 x scale (100 x the tolerance) is a new state
    moved = np.concatenate([x, x[:1] + 1e-2 * scale * np.eye(64)[0]])
    assert distinct_states(moved)[1] == n + 1


def test_distinct_states_chains_and_numbers_by_first_appearance():
    x = np.zeros((5, 3))
    x[:, 0] = [10.0, 0.0, 0.0 + 4e-4, 0.0 + 8e-4, 10.0]  # steps of 4e-4 < tol, ends 8e-4 apart > tol
    scale = state_scale(x)
    labels, n = distinct_states(x, rtol=5e-4 / scale)
    assert n == 2 and labels.tolist() == [0, 1, 1, 1, 0]


def test_distinct_states_constant_offset_and_rotation_invariance():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((7, 16))
    idx = rng.integers(0, 7, 300)
    x = base[idx]
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    shifted = x + 1e4 * np.ones(16)  # a massive constant offset must not swamp the tolerance
    for variant in (x, x @ q, shifted.astype(np.float32)):
        labels, n = distinct_states(variant)
        assert n == len(np.unique(idx))
        assert np.array_equal(labels, distinct_states(x)[0])


def test_distinct_states_constant_and_bad_input():
    labels, n = distinct_states(np.full((10, 4), 3.0))
    assert n == 1 and not labels.any()
    with pytest.raises(ValueError, match="rtol"):
        distinct_states(np.zeros((3, 2)), rtol=0)
    with pytest.raises(ValueError, match="NaN"):
        distinct_states(np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="shape"):
        distinct_states(np.zeros((2, 2, 2)))


def test_distinct_states_at_sweep_size():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((19_244, 576)).astype(np.float32)
    idx = np.concatenate([np.arange(19_244), rng.integers(0, 19_244, 756)])
    labels, n = distinct_states(base[idx] + 1e-6)
    assert n == 19_244
    np.testing.assert_array_equal(labels[19_244:], labels[idx[19_244:]])  # each repeat joins its original


def test_batch_distinct_states_equal_the_host_pass():
    """The device-screened batch gives `distinct_states`' labels: continuous, near ties, many ties, constant."""
    rng = np.random.default_rng(4)
    n, d = 600, 24
    continuous = rng.standard_normal((n, d))
    near = continuous.copy()
    pick = rng.choice(n, 40, replace=False)
    near[pick[20:]] = near[pick[:20]] + 1e-7 * rng.standard_normal((20, d))  # 20 pairs in one state each
    step = 0.4e-4 * state_scale(near) * np.eye(d)[0]  # a chain: 3 states 0.4 tol apart in a row merge
    near[pick[1]], near[pick[2]] = near[pick[3]] + step, near[pick[3]] + 2 * step  # (breaks 2 pairs above)
    offset = near + 1e3  # a massive offset: the float32 margin must still catch every close pair
    many_ties = _embed(rng.integers(0, 5, n), 5, d=d)  # windows longer than the device compares: host pass
    constant = np.full((n, d), 2.5)
    variables = np.stack([continuous, near, offset, many_ties, constant]).astype(np.float32)
    got = distinct_states_batch(variables)
    for v, (labels, count) in zip(variables, got):
        want, want_count = distinct_states(v)
        assert count == want_count and np.array_equal(labels, want)
    assert [c for _, c in got] == [n, n - 20, n - 20, 5, 1]
    with pytest.raises(ValueError, match="NaN"):
        distinct_states_batch(np.array([[[0.0], [np.nan]]]))
    with pytest.raises(ValueError, match=r"\[V, N, d\]"):
        distinct_states_batch(np.zeros((3, 2)))


def test_plugin_entropy_by_hand():
    assert plugin_entropy([0, 0, 1, 2]) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert plugin_entropy([4, 4, 4]) == 0.0


def test_exact_mi_hand_counts_2x2():
    # joint counts (a,c)=3 (a,d)=1 (b,c)=1 (b,d)=3, N=8: all marginals 1/2
    pairs = [(0, 0)] * 3 + [(0, 1)] + [(1, 0)] + [(1, 1)] * 3
    lx, ly = np.array(pairs).T
    est = exact_discrete_mi(_embed(lx, 2, seed=0), _embed(ly, 2, seed=1))
    # I = 3/4 ln((3/8)/(1/4)) + 1/4 ln((1/8)/(1/4)) = 3/4 ln 1.5 - 1/4 ln 2
    expected = 0.75 * math.log(1.5) - 0.25 * math.log(2.0)
    assert est.value == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.130812, abs=1e-6)
    pmi = np.array([math.log(1.5)] * 6 + [math.log(0.5)] * 2)
    assert est.stderr == pytest.approx(pmi.std() / math.sqrt(8))
    d = est.diagnostics
    assert (d["n_distinct_x"], d["n_distinct_y"], d["n_distinct_joint"]) == (2, 2, 4)
    assert d["entropy_x_nats"] == pytest.approx(math.log(2))
    assert d["ceilings"]["ln_n_samples"] == pytest.approx(math.log(8))
    assert not d["saturated"] and not d["constant"]
    assert est.estimator == "exact_discrete"
    assert est.to("bits").value == pytest.approx(expected / math.log(2))
    assert exact_discrete_mi(_embed(lx, 2), _embed(ly, 2, seed=1), units="bits").value == pytest.approx(
        expected / math.log(2)
    )


def test_exact_mi_hand_counts_deterministic_merge():
    # x in {a, b, c} with counts 2, 1, 1; y = f(x) with f(a) = f(b) = u, f(c) = v: I = H(y) = H(3/4, 1/4)
    lx = np.array([0, 0, 1, 2])
    ly = np.array([0, 0, 0, 1])
    est = exact_discrete_mi(_embed(lx, 3), _embed(ly, 2, seed=4))
    assert est.value == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-12)
    assert est.diagnostics["n_distinct_joint"] == 3


def test_exact_mi_k_separated_points_is_ln_k_and_rotation_invariant():
    k, rng = 12, np.random.default_rng(5)
    labels = np.repeat(np.arange(k), 25)
    rng.shuffle(labels)
    x = _embed(labels, k, d=64, seed=6)
    y = np.tanh(_embed(labels, k, d=48, seed=7))
    est = exact_discrete_mi(x, y)
    assert est.value == pytest.approx(math.log(k), abs=1e-12)
    assert est.stderr == pytest.approx(0.0, abs=1e-12)
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    assert exact_discrete_mi(x @ q, y).value == est.value


def test_exact_mi_constant_is_zero_and_flagged():
    labels = np.arange(40) % 4
    est = exact_discrete_mi(np.ones((40, 8)), _embed(labels, 4))
    assert est.value == 0.0 and est.diagnostics["constant"]


def test_exact_mi_refuses_continuous_states():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((500, 16))
    y = x @ rng.standard_normal((16, 8))
    with pytest.raises(ValueError, match="no ties"):
        exact_discrete_mi(x, y)
    with pytest.raises(ValueError, match="noise_mi"):
        exact_discrete_mi(x, y, discrete=False)
    with pytest.raises(ValueError, match="same number"):
        exact_discrete_mi(x, y[:-1], discrete=True)
    # told they are discrete: the value is the sample-size artefact ln N, flagged saturated
    est = exact_discrete_mi(x, y, discrete=True)
    assert est.value == pytest.approx(math.log(500)) and est.diagnostics["saturated"]
