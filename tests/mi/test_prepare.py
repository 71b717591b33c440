"""Device preparation (ie_jax.mi.prepare): rank normal scores equal scipy's exactly (ties included), z-scores
equal numpy's, constant columns come out 0, the split is a partition fixed by the seed."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

from ie_jax.mi import prepare


def _scipy_scores(a: np.ndarray) -> np.ndarray:
    """The host path this replaces: average ranks per column, then float64 normal scores cast to float32."""
    ranks = stats.rankdata(a, method="average", axis=0)
    return special.ndtri((ranks - 0.5) / a.shape[0]).astype(np.float32)


# Few distinct values (heavy ties, +-0.0 included) or continuous ones; a handful of shapes keeps compiles few.
# No subnormals: XLA flushes them to zero (1e-45 ties with 0); ie_jax.mi.inputs rescales such columns first.
_values = st.one_of(st.sampled_from([-1.0, -0.0, 0.0, 0.5, 2.0]),
                    st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([(2, 1), (7, 3), (64, 5)]).flatmap(
    lambda shape: hnp.arrays(np.float32, shape, elements=_values)))
@pytest.mark.slow
def test_rank_normal_scores_equal_scipy_with_ties(a):
    got = prepare.rank_normal_scores(jnp.asarray(a), prepare.normal_score_table(a.shape[0]))
    np.testing.assert_array_equal(np.asarray(got), _scipy_scores(a))


def test_prepare_ranks_the_pooled_rows_and_splits_them():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (3, 101, 4)).astype(np.float32)  # ties everywhere
    x[:, :, 3] = 1.5  # a constant column
    y = rng.standard_normal((3, 101, 2)).astype(np.float32)
    train, test = prepare.split_indices(101, 20, seed=7)
    out = prepare.prepare(jnp.asarray(x), jnp.asarray(y), train, test, prepare.normal_score_table(101), how="rank")
    for p in range(3):
        pooled = _scipy_scores(np.concatenate([x[p, train], x[p, test]]))
        np.testing.assert_array_equal(np.asarray(out["x_train"][p]), pooled[:81])
        np.testing.assert_array_equal(np.asarray(out["x_test"][p]), pooled[81:])
    assert out["x_train"].shape == (3, 81, 4) and out["y_test"].shape == (3, 20, 2)
    assert (np.asarray(out["x_train"])[..., 3] == 0).all()  # the median's score: exactly 0
    np.testing.assert_array_equal(np.asarray(out["constant_x"]), np.tile([False, False, False, True], (3, 1)))
    assert not np.asarray(out["constant_y"]).any()


def test_zscore_uses_training_statistics_and_zeroes_constant_columns():
    rng = np.random.default_rng(1)
    x = (3.0 + 2.0 * rng.standard_normal((2, 200, 3))).astype(np.float32)
    x[:, :, 1] = 0.1  # constant: 0.1 is not exact in float32, so x - mean would leave a rounding residue
    train, test = prepare.split_indices(200, 50, seed=0)
    out = prepare.prepare(jnp.asarray(x), jnp.asarray(x), train, test, prepare.normal_score_table(200), how="zscore")
    x_train, x_test = np.asarray(out["x_train"]), np.asarray(out["x_test"])
    mean, std = x[:, train].mean(axis=1, keepdims=True), x[:, train].std(axis=1, keepdims=True)
    for got, rows in ((x_train, train), (x_test, test)):
        want = (x[:, rows] - mean) / std
        np.testing.assert_allclose(got[..., [0, 2]], want[..., [0, 2]], rtol=1e-5, atol=1e-5)
        assert (got[..., 1] == 0).all()
    assert np.isfinite(x_train).all()
    none = prepare.prepare(jnp.asarray(x), jnp.asarray(x), train, test, prepare.normal_score_table(200), how="none")
    np.testing.assert_array_equal(np.asarray(none["x_test"]), x[:, test])


def test_split_is_a_partition_fixed_by_the_seed():
    train, test = prepare.split_indices(50, 10, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(50)) and len(test) == 10
    assert (np.diff(train) > 0).all()
    again = prepare.split_indices(50, 10, seed=3)
    assert (again[0] == train).all() and (again[1] == test).all()
    assert not (prepare.split_indices(50, 10, seed=4)[1] == test).all()
    assert len(prepare.split_indices(50, 0, seed=3)[1]) == 0


def test_bad_settings():
    assert prepare.marginal_normalization(True) == "zscore" and prepare.marginal_normalization(None) == "none"
    with pytest.raises(ValueError, match="standardize"):
        prepare.marginal_normalization("minmax")
