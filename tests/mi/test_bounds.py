"""MI bounds against hand-computed values (plain Python loops over math.*), plus properties."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from ie_jax.mi.bounds import (
    dense_scores_bound, dv_bound, infonce_bound, infonce_cap, mine_loss, nwj_bound, smile_bound,
)

JOINT = [1.0, 2.0, 3.0]
MARGINAL = [0.0, 1.0, -1.0, 0.5, 7.0]
SCORES = [[2.0, 0.5, -1.0], [0.0, 1.5, 3.0], [-2.0, 1.0, 0.25]]


def _mean(v):
    return sum(v) / len(v)


def _hand_dv(joint, marginal):
    return _mean(joint) - math.log(_mean([math.exp(m) for m in marginal]))


def _hand_nwj(joint, marginal):
    return _mean(joint) - _mean([math.exp(m - 1.0) for m in marginal])


def _hand_infonce(s):
    b = len(s)
    rows = [s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(b))) for i in range(b)]
    return math.log(b) + _mean(rows)


def _split(s):
    b = len(s)
    return [s[i][i] for i in range(b)], [s[i][j] for i in range(b) for j in range(b) if i != j]


def test_dv_hand():
    assert float(dv_bound(jnp.array(JOINT), jnp.array(MARGINAL))) == pytest.approx(_hand_dv(JOINT, MARGINAL), rel=1e-6)


def test_nwj_hand():
    assert float(nwj_bound(jnp.array(JOINT), jnp.array(MARGINAL))) == pytest.approx(_hand_nwj(JOINT, MARGINAL), rel=1e-6)


def test_infonce_hand_and_cap():
    assert float(infonce_bound(jnp.array(SCORES))) == pytest.approx(_hand_infonce(SCORES), rel=1e-6)
    assert infonce_cap(3) == pytest.approx(math.log(3))
    # A perfectly confident critic reaches the cap exactly.
    assert float(infonce_bound(100.0 * jnp.eye(5))) == pytest.approx(math.log(5), abs=1e-5)


def test_smile_hand():
    clip = 0.75
    clipped = [min(max(m, -clip), clip) for m in MARGINAL]
    expected = _mean(JOINT) - math.log(_mean([math.exp(m) for m in clipped]))
    got = smile_bound(jnp.array(JOINT), jnp.array(MARGINAL), clip)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # A clip above every score is plain DV.
    assert float(smile_bound(jnp.array(JOINT), jnp.array(MARGINAL), 100.0)) == pytest.approx(
        _hand_dv(JOINT, MARGINAL), rel=1e-6)


def test_smile_js_gradient():
    joint, marginal = jnp.array(JOINT), jnp.array(MARGINAL)
    value = smile_bound(joint, marginal, 0.75, js_gradient=True)
    assert float(value) == pytest.approx(float(smile_bound(joint, marginal, 0.75)), rel=1e-6)
    g_joint, g_marginal = jax.grad(lambda j, m: smile_bound(j, m, 0.75, js_gradient=True), argnums=(0, 1))(joint, marginal)
    # d/dj of -mean(softplus(-j)) = sigmoid(-j)/B; d/dm of -mean(softplus(m)) = -sigmoid(m)/M.
    sig = lambda t: 1.0 / (1.0 + math.exp(-t))
    np.testing.assert_allclose(g_joint, [sig(-j) / 3 for j in JOINT], rtol=1e-6)
    np.testing.assert_allclose(g_marginal, [-sig(m) / 5 for m in MARGINAL], rtol=1e-6)


def test_dense_scores_bound_hand():
    joint, marginal = _split(SCORES)
    s = jnp.array(SCORES)
    assert float(dense_scores_bound("dv", s)) == pytest.approx(_hand_dv(joint, marginal), rel=1e-6)
    assert float(dense_scores_bound("nwj", s)) == pytest.approx(_hand_nwj(joint, marginal), rel=1e-6)
    assert float(dense_scores_bound("infonce", s)) == pytest.approx(_hand_infonce(SCORES), rel=1e-6)
    clipped = [min(max(m, -1.0), 1.0) for m in marginal]
    expected = _mean(joint) - math.log(_mean([math.exp(m) for m in clipped]))
    assert float(dense_scores_bound("smile", s, clip=1.0)) == pytest.approx(expected, rel=1e-6)
    assert float(jax.jit(lambda s: dense_scores_bound("dv", s))(s)) == pytest.approx(_hand_dv(joint, marginal), rel=1e-6)
    with pytest.raises(ValueError, match="unknown bound"):
        dense_scores_bound("mine", s)


def test_dv_gradient_hand():
    g_joint, g_marginal = jax.grad(dv_bound, argnums=(0, 1))(jnp.array(JOINT), jnp.array(MARGINAL))
    total = sum(math.exp(m) for m in MARGINAL)
    np.testing.assert_allclose(g_joint, [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(g_marginal, [-math.exp(m) / total for m in MARGINAL], rtol=1e-5)


def test_mine_loss_value_ema_and_gradient():
    joint, marginal = jnp.array(JOINT), jnp.array(MARGINAL)
    batch_mean_exp = _mean([math.exp(m) for m in MARGINAL])
    ema_old, decay = 2.0, 0.9
    loss, dv, new_ema = mine_loss(joint, marginal, ema_old, decay)
    expected_ema = decay * ema_old + (1 - decay) * batch_mean_exp
    assert float(new_ema) == pytest.approx(expected_ema, rel=1e-6)
    assert float(dv) == pytest.approx(_hand_dv(JOINT, MARGINAL), rel=1e-6)
    assert float(loss) == pytest.approx(-_hand_dv(JOINT, MARGINAL), rel=1e-6)
    # MINE's corrected gradient: d loss / d m_k = e^{m_k} / (M * ema), not the minibatch softmax.
    g_joint, g_marginal = jax.grad(lambda j, m: mine_loss(j, m, ema_old, decay)[0], argnums=(0, 1))(joint, marginal)
    np.testing.assert_allclose(g_joint, [-1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(g_marginal, [math.exp(m) / (5 * expected_ema) for m in MARGINAL], rtol=1e-5)


def test_mine_ema_recursion_and_first_step():
    rng = np.random.default_rng(0)
    ema_hand, ema = 0.0, jnp.float32(0.0)
    for step in range(5):
        marginal = rng.normal(size=7)
        batch = _mean([math.exp(m) for m in marginal])
        ema_hand = batch if step == 0 else 0.99 * ema_hand + 0.01 * batch  # step 0: no bias to the init value
        _, _, ema = jax.jit(mine_loss)(jnp.zeros(3), jnp.array(marginal, jnp.float32), ema)
        assert float(ema) == pytest.approx(ema_hand, rel=1e-5)
    # At the first step the corrected gradient equals the plain DV gradient.
    m = jnp.array(MARGINAL)
    g_mine = jax.grad(lambda m: mine_loss(jnp.array(JOINT), m, 0.0)[0])(m)
    g_dv = jax.grad(lambda m: -dv_bound(jnp.array(JOINT), m))(m)
    np.testing.assert_allclose(g_mine, g_dv, rtol=1e-5)


def test_vmap_and_bf16():
    rng = np.random.default_rng(1)
    joint, marginal = rng.normal(size=(4, 6)), rng.normal(size=(4, 9))
    batched = jax.vmap(dv_bound)(jnp.array(joint), jnp.array(marginal))
    np.testing.assert_allclose(batched, [_hand_dv(j, m) for j, m in zip(joint, marginal)], rtol=1e-5)
    scores = jax.vmap(infonce_bound)(jnp.array(rng.normal(size=(3, 5, 5))))
    assert scores.shape == (3,)
    out = dv_bound(jnp.array(JOINT, jnp.bfloat16), jnp.array(MARGINAL, jnp.bfloat16))
    assert out.dtype == jnp.float32


def test_large_scores_are_stable():
    big = jnp.array([1000.0, 1001.0])
    assert math.isfinite(float(dv_bound(big, big)))
    assert math.isfinite(float(infonce_bound(jnp.array([[1000.0, -1000.0], [500.0, 900.0]]))))
    assert math.isfinite(float(mine_loss(big, big, 0.0)[1]))


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        infonce_bound(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        dv_bound(jnp.ones(3), jnp.ones(0))
    with pytest.raises(ValueError, match="batch_size"):
        infonce_cap(0)
    with pytest.raises(ValueError, match="clip"):
        smile_bound(jnp.ones(2), jnp.ones(2), clip=0.0)
    with pytest.raises(ValueError, match="ema_decay"):
        mine_loss(jnp.ones(2), jnp.ones(2), 1.0, ema_decay=1.0)


# Few distinct shapes: every new shape costs an XLA compile of each eager op.
score_matrices = st.sampled_from([1, 3, 8]).flatmap(
    lambda b: hnp.arrays(np.float32, (b, b), elements=st.floats(-30, 30, width=32)))


@settings(max_examples=60, deadline=None)
@given(score_matrices)
def test_infonce_never_exceeds_log_b(scores):
    b = scores.shape[0]
    assert float(infonce_bound(jnp.array(scores))) <= infonce_cap(b) + 1e-5
    assert float(infonce_bound(jnp.array(scores.T))) <= infonce_cap(b) + 1e-5


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.sampled_from([1, 6]), elements=st.floats(-10, 10, width=32)),
       hnp.arrays(np.float32, st.sampled_from([1, 9]), elements=st.floats(-10, 10, width=32)))
def test_dv_is_at_least_nwj(joint, marginal):
    # log z <= z / e for z > 0, so DV is the tighter bound for the same critic.
    dv, nwj = float(dv_bound(jnp.array(joint), jnp.array(marginal))), float(nwj_bound(jnp.array(joint), jnp.array(marginal)))
    assert dv >= nwj - 1e-5 * max(1.0, abs(nwj))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([2, 5]).flatmap(lambda b: hnp.arrays(np.float32, (b, b), elements=st.floats(-8, 8, width=32))))
def test_swapping_x_and_y(scores):
    # Swapping the roles of x and y transposes the score matrix. DV, NWJ and SMILE only see the diagonal
    # (joint) and the set of off-diagonal (marginal) scores, which the transpose keeps.
    s = jnp.array(scores)
    for name in ("dv", "nwj", "smile"):
        assert float(dense_scores_bound(name, s.T)) == pytest.approx(float(dense_scores_bound(name, s)), rel=1e-4, abs=1e-4)
    # InfoNCE classifies y given x (rows); its transpose (x given y) is a different bound, equal for symmetric scores.
    sym = s + s.T
    assert float(infonce_bound(sym.T)) == pytest.approx(float(infonce_bound(sym)), rel=1e-5, abs=1e-5)


def test_infonce_is_not_symmetric():
    s = jnp.array([[3.0, 0.0], [3.0, 0.0]])  # row 2 cannot tell y_1 from y_2; column 1 can tell nothing either
    rows, cols = float(infonce_bound(s)), float(infonce_bound(s.T))
    assert rows == pytest.approx(_hand_infonce([[3.0, 0.0], [3.0, 0.0]]), rel=1e-6)
    assert cols == pytest.approx(_hand_infonce([[3.0, 3.0], [0.0, 0.0]]), rel=1e-6)
    assert abs(rows - cols) > 0.1


# -- values against closed forms: the optimal critic of a Gaussian pair ------------------------------------------
# x, y standard normal with correlation rho: I = -ln(1 - rho^2) / 2 and the optimal critic is the log density
# ratio f*(x, y) = ln p(x, y) / (p(x) p(y)). DV(f* + c) = I for every c (a shift cancels); NWJ(f* + c) =
# I + c - e^(c - 1), equal to I only at c = 1. A suboptimal critic gives strictly less.
RHO, N_CLOSED = 0.5, 400_000
MI_CLOSED = -0.5 * math.log(1 - RHO**2)


def _log_ratio(x, y):
    return -0.5 * math.log(1 - RHO**2) - (RHO**2 * (x**2 + y**2) - 2 * RHO * x * y) / (2 * (1 - RHO**2))


@pytest.fixture(scope="module")
def optimal_scores():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N_CLOSED)
    y = RHO * x + math.sqrt(1 - RHO**2) * rng.standard_normal(N_CLOSED)
    y_independent = rng.standard_normal(N_CLOSED)  # draws from p(x) p(y)
    return _log_ratio(x, y), _log_ratio(x, y_independent)


@pytest.mark.parametrize("shift", [0.0, 1.0, 2.5])
def test_dv_of_the_optimal_critic_is_the_mi(optimal_scores, shift):
    joint, marginal = (jnp.asarray(s + shift, jnp.float32) for s in optimal_scores)
    assert float(dv_bound(joint, marginal)) == pytest.approx(MI_CLOSED, abs=0.01)


@pytest.mark.parametrize("shift", [0.0, 1.0, 2.0])
def test_nwj_of_the_shifted_optimal_critic_closed_form(optimal_scores, shift):
    joint, marginal = (jnp.asarray(s + shift, jnp.float32) for s in optimal_scores)
    expected = MI_CLOSED + shift - math.exp(shift - 1.0)
    assert float(nwj_bound(joint, marginal)) == pytest.approx(expected, abs=0.01)


def test_a_suboptimal_critic_stays_below_the_mi(optimal_scores):
    joint, marginal = (jnp.asarray(0.3 * s, jnp.float32) for s in optimal_scores)
    assert float(dv_bound(joint, marginal)) < MI_CLOSED - 0.02
    assert float(nwj_bound(joint + 1.0, marginal + 1.0)) < MI_CLOSED - 0.02
