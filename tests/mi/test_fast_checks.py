"""The fast protocol's safeguards: the Gaussian critic, rank normalisation, the zero-init skip critic and
the check logic that turns paired held-out differences into flags."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import ie_jax.mi as mi
from ie_jax.mi import gaussian_critic, groundtruth
from ie_jax.mi.critics import separable_mlp
from ie_jax.mi.protocols import resolve

est = importlib.import_module("ie_jax.mi.estimate")  # the module; ie_jax.mi.estimate is the function


def _gaussian_pairs(dim, mi_nats, n, seed):
    x, y = groundtruth.correlated_gaussian(dim, mi_nats).sample(seed, n)
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def test_gaussian_critic_scores_equal_the_log_density_ratio():
    x, y = _gaussian_pairs(3, 1.5, 4000, 0)
    critic = gaussian_critic.fit(x, y, shrinkage=0.0)
    xs, ys = x[:6], y[:6]
    # Naive reference: the fitted joint Gaussian's conditional density over the marginal, pair by pair.
    z = np.concatenate([x, y], 1)
    mean, cov = z.mean(0), np.cov(z.T)
    dx = x.shape[1]
    s_xx, s_xy, s_yy = cov[:dx, :dx], cov[:dx, dx:], cov[dx:, dx:]
    a = s_xy.T @ np.linalg.inv(s_xx)
    cond = s_yy - a @ s_xy
    want = np.array([[stats.multivariate_normal(mean[dx:] + a @ (xi - mean[:dx]), cond).logpdf(yj)
                      - stats.multivariate_normal(mean[dx:], s_yy).logpdf(yj) for yj in ys] for xi in xs])
    np.testing.assert_allclose(np.asarray(gaussian_critic.scores(critic, xs, ys)), want, atol=2e-3, rtol=1e-3)


def _heldout_one(bound, x_train, y_train, x_test, y_test, eval_batch):
    """`heldout_bounds_batch` on one problem, as host values."""
    as_batch = lambda a: jnp.asarray(a, jnp.float32)[None]  # noqa: E731
    out = gaussian_critic.heldout_bounds_batch(bound, *map(as_batch, (x_train, y_train, x_test, y_test)), eval_batch)
    return {"heldout_batches": np.asarray(out["heldout_batches"][0]),
            "shrinkage": gaussian_critic.SHRINKAGE[int(out["shrinkage_index"][0])]}


@pytest.mark.parametrize("mi_nats", [0.0, 2.0])
def test_gaussian_critic_heldout_bound_matches_closed_form(mi_nats):
    x, y = _gaussian_pairs(4, mi_nats, 12_000, 1)
    res = _heldout_one("dv", x[:8000], y[:8000], x[8000:], y[8000:], eval_batch=500)
    assert res["heldout_batches"].shape == (7,)
    assert res["shrinkage"] in gaussian_critic.SHRINKAGE
    assert abs(float(res["heldout_batches"].mean()) - mi_nats) < max(0.1, 0.05 * mi_nats)


def _numpy_heldout_bounds(bound, x_train, y_train, x_test, y_test, eval_batch):
    """Float64 numpy reference: one problem, one shrinkage at a time (the loop the device version replaced)."""
    dx = x_train.shape[1]
    z = np.concatenate([x_train, y_train], 1).astype(np.float64)
    mean, cov = z.mean(0), np.cov(z.T)

    def value(lam, xs, ys):
        c = (1 - lam) * cov + lam * np.diag(np.diag(cov)) + gaussian_critic.RIDGE * np.eye(len(cov))
        s_xx, s_xy, s_yy = c[:dx, :dx], c[:dx, dx:], c[dx:, dx:]
        a = np.linalg.solve(s_xx, s_xy).T
        cond = s_yy - a @ s_xy
        u, v = (xs - mean[:dx]) @ a.T, ys - mean[dx:]
        diff = v[None, :, :] - u[:, None, :]  # [B, B, dy]: y_j minus x_i's prediction
        f = (0.5 * (np.linalg.slogdet(s_yy)[1] - np.linalg.slogdet(cond)[1])
             - 0.5 * np.einsum("ijk,kl,ijl->ij", diff, np.linalg.inv(cond), diff)
             + 0.5 * np.einsum("jk,kl,jl->j", v, np.linalg.inv(s_yy), v)[None, :])
        if bound == "infonce":
            return np.log(len(f)) + np.mean(np.diag(f) - special.logsumexp(f, axis=1))
        off = f[~np.eye(len(f), dtype=bool)]
        return np.mean(np.diag(f)) - (special.logsumexp(off) - np.log(off.size))

    batch = lambda a, i: a[i * eval_batch:(i + 1) * eval_batch]
    lam = max(gaussian_critic.SHRINKAGE, key=lambda s: value(s, batch(x_test, 0), batch(y_test, 0)))
    heldout = [value(lam, batch(x_test, i), batch(y_test, i)) for i in range(1, len(x_test) // eval_batch)]
    return lam, np.array(heldout)


@pytest.mark.parametrize("bound", ["dv", "infonce"])
def test_batched_gaussian_critic_equals_a_float64_loop(bound):
    # Three problems of one batch: Gaussian, a cube (non-Gaussian), independent.
    x, y = (np.stack(a) for a in zip(*(_gaussian_pairs(3, m, 1200, s) for s, m in ((3, 1.0), (4, 2.0), (5, 0.0)))))
    y[1] = y[1] ** 3
    split = lambda a: (a[:, :800], a[:, 800:])
    (x_train, x_test), (y_train, y_test) = split(x), split(y)
    out = gaussian_critic.heldout_bounds_batch(bound, x_train, y_train, x_test, y_test, eval_batch=100)
    assert out["heldout_batches"].shape == (3, 3)
    for p in range(3):
        lam, heldout = _numpy_heldout_bounds(bound, x_train[p], y_train[p], x_test[p], y_test[p], 100)
        assert gaussian_critic.SHRINKAGE[int(out["shrinkage_index"][p])] == lam
        np.testing.assert_allclose(np.asarray(out["heldout_batches"][p]), heldout, rtol=1e-4, atol=1e-4)


def test_gaussian_critic_infonce_respects_log_b():
    x, y = _gaussian_pairs(4, 10.0, 6000, 2)
    res = _heldout_one("infonce", x[:4000], y[:4000], x[4000:], y[4000:], eval_batch=250)
    assert np.all(res["heldout_batches"] <= math.log(250) + 1e-4)
    assert res["heldout_batches"].mean() > math.log(250) - 0.5  # saturated: MI 10 >> ln 250 = 5.5


def test_rank_normalisation_makes_monotone_maps_invisible():
    x, y = _gaussian_pairs(3, 1.0, 600, 3)
    x, y = x.astype(np.float32)[None], y.astype(np.float32)[None]
    plain = est.normalize_marginals(x[:, :500], x[:, 500:], "rank")
    cubed = est.normalize_marginals(x[:, :500] ** 3, x[:, 500:] ** 3, "rank")
    np.testing.assert_array_equal(plain[0], cubed[0])
    np.testing.assert_array_equal(plain[1], cubed[1])
    # Normal scores: each pooled column is the same set of quantiles.
    pooled = np.sort(np.concatenate(plain, axis=1)[0, :, 0])
    np.testing.assert_allclose(pooled, stats.norm.ppf((np.arange(600) + 0.5) / 600), atol=1e-5)
    with pytest.raises(ValueError, match="standardize"):
        est.normalize_marginals(x, x, "minmax")


@pytest.mark.slow
def test_fast_estimate_ignores_a_cube_of_the_inputs():
    x, y = _gaussian_pairs(2, 1.0, 1500, 4)
    quick = dict(steps=60, batch_size=64, eval_every=30, gaussian_check=False, critic_check=None)
    a = mi.estimate(x, y, **quick)
    b = mi.estimate(x ** 3, np.arcsinh(y), **quick)
    assert a.value == pytest.approx(b.value, abs=1e-5)


def test_skip_critic_starts_at_zero_scores():
    critic = separable_mlp((16,), 8, skip=True)
    params = critic.init(jax.random.key(0), 5, 7)
    rng = np.random.default_rng(0)
    scores = critic.apply(params, rng.standard_normal((9, 5)).astype(np.float32),
                          rng.standard_normal((9, 7)).astype(np.float32))
    assert scores.shape == (9, 9)
    assert float(np.abs(np.asarray(scores)).max()) == 0.0
    # ... yet the gradient is not zero (h's last layer sees g's random output).
    trace = lambda p: critic.apply(p, np.ones((3, 5), np.float32), np.ones((3, 7), np.float32)).trace()
    grads = jax.grad(trace)(params)
    assert any(float(np.abs(np.asarray(g)).max()) > 0 for g in jax.tree.leaves(grads))


def test_clearly_higher_needs_the_gain_above_half_the_bar_plus_two_stderr():
    b = np.zeros(16)
    noise = np.tile([-0.01, 0.01], 8)
    assert est._clearly_higher(b + 0.2 + noise, b, 1.0)[2]  # 0.2 > 0.05 + 2 * 0.0026
    assert not est._clearly_higher(b + 0.04 + noise, b, 0.1)[2]  # under 0.05 nat
    assert not est._clearly_higher(b + 0.4 + noise, b, 10.0)[2]  # under 5% of 10 nats
    gain, stderr, clear = est._clearly_higher(b + 0.2 + 40 * noise, b, 1.0)  # too noisy to tell
    assert float(gain) == pytest.approx(0.2) and stderr > 0.075 and not clear


def test_sample_size_check_flags_a_gain_or_an_emerging_fit():
    full = np.full(8, 1.0) + np.tile([-0.01, 0.01], 4)
    steps = np.array([500, 600])
    assert est._sample_size_check(1.0, full, full - 0.3, steps, steps)["sample_limited"]
    assert not est._sample_size_check(1.0, full, full - 0.01, steps, steps)["sample_limited"]
    # No gain, but at N/2 nothing generalised (readout step 0 = the untrained critic) and at N it did.
    assert est._sample_size_check(1.0, full, full, steps, np.array([0, 0]))["sample_limited"]


def test_gaussian_check_pairs_the_same_batches():
    neural = np.tile([[0.0, 1.0, 1.0, 1.0, 1.0]], (2, 1)) + np.tile([-0.01, 0.01, -0.01, 0.01, 0.0], (2, 1))
    higher, same = np.full(4, 1.5), np.full(4, 1.0)
    d = est._gaussian_check(1.0, neural, higher)
    assert d["gaussian_critic_limited"] and float(d["gaussian_critic_gain_nats"]) == pytest.approx(0.5, abs=0.01)
    assert float(d["value_gaussian_critic_nats"]) == pytest.approx(1.5)
    # Batch 0 (the neural critics' validation batch, value 0 here) is dropped, so equal batches give no gain.
    assert not est._gaussian_check(1.0, neural, same)["gaussian_critic_limited"]


@pytest.mark.parametrize("overrides, applies", [
    ({}, True),                                   # fast: separable SMILE, checked by a concat critic
    ({"critic": "concat"}, False),                # same family as the check
    ({"bound": "infonce"}, False),                # a concat critic cannot train InfoNCE's B x B pairs
    ({"critic_check": None}, False),
    ({"readout": "paper", "test_fraction": 0.0}, False),
])
def test_critic_check_applies_only_where_it_can(overrides, applies):
    cfg, options = resolve("fast", overrides)
    check = est._critic_check_config(cfg, options)
    assert (check is not None) == applies
    if applies:
        assert check.critic == "concat" and check.bound == cfg.bound and check.steps == cfg.steps


def test_bad_check_settings_name_the_problem():
    with pytest.raises(ValueError, match="critic_check"):
        resolve("fast", {"critic_check": "mlp"})
    with pytest.raises(ValueError, match="standardize"):
        resolve("fast", {"standardize": "minmax"})
