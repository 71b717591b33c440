"""IE ground truth: truths against brute-force counting, enumeration, dense covariances and the noise estimator;
signs of synergy and token-wise IE for any parameters; shapes, dtypes, determinism and memory at sweep sizes."""

import itertools
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ie_jax.mi.discrete import distinct_states, exact_discrete_mi, plugin_entropy
from ie_jax.mi.ie_groundtruth import (
    IESample, InjectiveBlock, LinearGaussianBlock, SynergyBlock, TokenMap, TokenMapBlock, TokenwiseBlock,
    _ROTATE_IN, _ROTATE_OUT, _Rotation, entropy_nats, standard_suite, token_probabilities,
)

SMALL = standard_suite(("small",))


def _law_entropy(outcomes, probs) -> float:
    """Entropy (nats) of a law given as (outcome, probability) pairs, outcomes possibly repeated."""
    law = {}
    for o, p in zip(outcomes, probs):
        law[o] = law.get(o, 0.0) + p
    return entropy_nats(list(law.values()))


def _sequences(vocab, seq_len, p, last=None):
    """Every sequence of token ids with its probability (brute force)."""
    laws = [p] * (seq_len - 1) + [p if last is None else last]
    for seq in itertools.product(*(range(len(q)) for q in laws)):
        yield seq, math.prod(q[s] for q, s in zip(laws, seq))


def _counted(x, y, truth, **kw):
    """Plug-in MI of sampled states agrees with the population truth: 4 delta-method stderrs plus the plug-in bias
    (about (K - 1) / 2N nats for the few states these tests use)."""
    est = exact_discrete_mi(x, y, **kw)
    assert abs(est.value - truth) <= 4 * est.stderr + 0.005, (est.value, est.stderr, truth)
    return est


@pytest.mark.parametrize("name", SMALL)
def test_shapes_dtypes_determinism(name):
    task = SMALL[name]
    s = task.sample(7, 60)
    t, d = task.seq_len, task.dim
    assert s.macro_input.shape == s.macro_output.shape == (60, d)
    assert s.micro_input.shape == s.micro_output.shape == (t, 60, d)
    for a in (s.macro_input, s.macro_output, s.micro_input, s.micro_output):
        assert a.dtype == np.float32 and np.all(np.isfinite(a))
    again = task.sample(7, 60)
    for a, b in zip((s.macro_input, s.macro_output, s.micro_input, s.micro_output),
                    (again.macro_input, again.macro_output, again.micro_input, again.micro_output)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(s.micro_input, task.sample(8, 60).micro_input)
    assert len(task.mi_micro_nats) == t
    assert task.ie_nats == pytest.approx(task.mi_macro_nats - np.mean(task.mi_micro_nats), abs=1e-12)
    xs, ys = s.problems()
    assert xs.shape == ys.shape == (1 + t, 60, d)
    np.testing.assert_array_equal(xs[0], s.macro_input)
    np.testing.assert_array_equal(ys[1:], s.micro_output)


def test_seed_kinds():
    import jax

    task = SMALL["small/injective V=50 T=4 d=16"]
    key = jax.random.key(3)
    np.testing.assert_array_equal(task.sample(key, 20).tokens, task.sample(key, 20).tokens)
    np.testing.assert_array_equal(task.sample(np.random.default_rng(3), 20).tokens, task.sample(3, 20).tokens)


def test_embeddings_are_per_id_and_sample_independent():
    task = InjectiveBlock(vocab=7, seq_len=3, dim=8, seed=1)
    a, b = task.sample(0, 300), task.sample(1, 300)
    rows = {}
    for s in (a, b):
        for t in range(task.seq_len):
            for v, row in zip(s.tokens[:, t], s.micro_input[t]):
                rows.setdefault(int(v), row)
                np.testing.assert_array_equal(rows[int(v)], row)  # one state per id, whatever the sample/position
    assert len(rows) == 7
    other = InjectiveBlock(vocab=7, seq_len=3, dim=8, seed=2).sample(0, 300)
    assert not np.array_equal(other.micro_input, a.micro_input)  # the task's seed fixes the embedding


@pytest.mark.parametrize("zipf", [0.0, 1.3])
def test_injective_truth_by_counting(zipf):
    task = InjectiveBlock(vocab=2, seq_len=3, dim=8, zipf=zipf)
    n = 10_000  # >> 2^3 sequences: the plug-in values are within ~(K - 1)/2N of the population truth
    s = task.sample(0, n)
    seq_labels = s.tokens @ (2 ** np.arange(3))
    assert plugin_entropy(seq_labels) == pytest.approx(task.mi_macro_nats, abs=0.03)
    macro = _counted(s.macro_input, s.macro_output, task.mi_macro_nats)
    assert macro.diagnostics["n_distinct_x"] == macro.diagnostics["n_distinct_y"] == len(np.unique(seq_labels))
    for t in range(3):
        _counted(s.micro_input[t], s.micro_output[t], task.mi_micro_nats[t])
    h = entropy_nats(token_probabilities(2, zipf))
    assert task.ie_nats == pytest.approx(2 * h)


def test_large_vocab_states_are_distinct():
    # V^T >> N: every sequence its own state (the saturating case), micro states one per token id.
    task = InjectiveBlock(vocab=1000, seq_len=4, dim=16)
    s = task.sample(0, 3000)
    assert distinct_states(s.macro_input)[1] == distinct_states(s.macro_output)[1] == len({tuple(r) for r in s.tokens})
    for t in (0, 3):
        n_ids = len(np.unique(s.tokens[:, t]))
        assert distinct_states(s.micro_input[t])[1] == distinct_states(s.micro_output[t])[1] == n_ids
    assert task.mi_macro_nats == pytest.approx(4 * math.log(1000)) and task.mi_macro_nats > math.log(3000)


def test_synergy_and_tokenwise_truths_by_counting():
    n = 10_000
    synergy = SynergyBlock(vocab=5, seq_len=3, classes=3, micro_classes=2, dim=8, zipf=0.7)
    s = synergy.sample(1, n)
    _counted(s.macro_input, s.macro_output, synergy.mi_macro_nats, discrete=True)
    for t in range(3):
        _counted(s.micro_input[t], s.micro_output[t], synergy.mi_micro_nats[t])
    tokenwise = TokenwiseBlock(vocab=6, seq_len=3, last_vocab=2, dim=8)
    s = tokenwise.sample(2, n)
    assert set(np.unique(s.tokens[:, -1])) == {0, 1}
    _counted(s.macro_input, s.macro_output, math.log(2), discrete=True)
    for t in range(3):
        _counted(s.micro_input[t], s.micro_output[t], tokenwise.mi_micro_nats[t])


@settings(max_examples=40, deadline=None)
@given(vocab=st.integers(2, 6), seq_len=st.integers(2, 4), data=st.data(), zipf=st.floats(0.0, 2.0))
def test_synergy_truth_matches_enumeration(vocab, seq_len, data, zipf):
    classes = data.draw(st.integers(2, vocab))
    micro = data.draw(st.integers(1, classes - 1))
    task = SynergyBlock(vocab=vocab, seq_len=seq_len, classes=classes, micro_classes=micro, dim=4, zipf=zipf)
    p = token_probabilities(vocab, zipf)
    seqs, probs = zip(*_sequences(vocab, seq_len, p))
    assert task.mi_macro_nats == pytest.approx(_law_entropy([sum(s) % classes for s in seqs], probs), abs=1e-9)
    coarse = [((v % classes) * micro) // classes for v in range(vocab)]
    assert task.mi_micro_nats[0] == pytest.approx(_law_entropy(coarse, p), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(vocab=st.integers(2, 6), seq_len=st.integers(2, 4), data=st.data(), zipf=st.floats(0.0, 2.0))
def test_tokenwise_truth_matches_enumeration(vocab, seq_len, data, zipf):
    last = data.draw(st.integers(1, vocab))
    task = TokenwiseBlock(vocab=vocab, seq_len=seq_len, last_vocab=last, dim=4, zipf=zipf)
    p, q = token_probabilities(vocab, zipf), token_probabilities(last, zipf)
    seqs, probs = zip(*_sequences(vocab, seq_len, p, q))
    assert task.mi_macro_nats == pytest.approx(_law_entropy([s[-1] for s in seqs], probs), abs=1e-9)
    micro = [_law_entropy([s[t] for s in seqs], probs) for t in range(seq_len)]
    np.testing.assert_allclose(task.mi_micro_nats, micro, atol=1e-9)
    assert task.mi_macro_nats == pytest.approx(_law_entropy(seqs, probs) - _law_entropy([s[:-1] for s in seqs], probs))


@settings(max_examples=100, deadline=None)
@given(vocab=st.integers(2, 3000), seq_len=st.integers(2, 16), data=st.data(), zipf=st.floats(0.0, 3.0))
def test_emergence_signs_for_any_parameters(vocab, seq_len, data, zipf):
    classes = data.draw(st.integers(2, min(vocab, 512)))
    micro = data.draw(st.integers(1, classes - 1))
    synergy = SynergyBlock(vocab=vocab, seq_len=seq_len, classes=classes, micro_classes=micro, dim=4, zipf=zipf)
    assert synergy.ie_nats > 0
    tokenwise = TokenwiseBlock(vocab=vocab, seq_len=seq_len, last_vocab=data.draw(st.integers(1, vocab)), dim=4,
                               zipf=zipf)
    assert tokenwise.ie_nats <= 1e-12
    injective = InjectiveBlock(vocab=vocab, seq_len=seq_len, dim=4, zipf=zipf)
    assert injective.ie_nats == pytest.approx((seq_len - 1) * injective.mi_micro_nats[0])
    assert injective.mi_macro_nats == pytest.approx(seq_len * entropy_nats(token_probabilities(vocab, zipf)))


def _rotation_matrix(rotation: _Rotation) -> np.ndarray:
    return rotation(np.eye(rotation.dim))


def _dense_noise_mi(task: LinearGaussianBlock, term: str, sigma: float) -> float:
    """I_sigma from the full covariance of the rotated pair (log-determinants), independent of the closed form."""
    var_x, var_y, cov = task.moments(term)
    r_in, r_out = (_rotation_matrix(_Rotation(task.dim, task.seed, ns)) for ns in (_ROTATE_IN, _ROTATE_OUT))
    sxx, syy, sxy = r_in.T @ np.diag(var_x) @ r_in, r_out.T @ np.diag(var_y) @ r_out, r_in.T @ np.diag(cov) @ r_out
    d = task.dim
    sxx = sxx + sigma**2 * np.trace(sxx) / d * np.eye(d)
    syy = syy + sigma**2 * np.trace(syy) / d * np.eye(d)
    joint = np.block([[sxx, sxy], [sxy.T, syy]])
    logdet = lambda a: np.linalg.slogdet(a)[1]
    return 0.5 * (logdet(sxx) + logdet(syy) - logdet(joint))


@settings(max_examples=30, deadline=None)
@given(dim=st.integers(1, 6), gain=st.floats(-3, 3).filter(lambda g: abs(g) > 0.05),
       context_in=st.floats(-2, 2), context_out=st.floats(-2, 2), noise=st.floats(0.2, 5), decay=st.floats(0, 2),
       sigma=st.sampled_from([0.0, 0.1, 1.0, 3.0]))
def test_linear_gaussian_closed_form_matches_dense_covariance(dim, gain, context_in, context_out, noise, decay, sigma):
    task = LinearGaussianBlock(dim=dim, seq_len=3, gain=gain, context_in=context_in, context_out=context_out,
                               noise_std=noise, spectrum_decay=decay, seed=dim)
    truth = task.noise_truth(sigma)
    assert truth.macro_nats == pytest.approx(_dense_noise_mi(task, "macro", sigma), rel=1e-6, abs=1e-9)
    assert truth.micro_nats[0] == pytest.approx(_dense_noise_mi(task, "micro", sigma), rel=1e-6, abs=1e-9)


def test_linear_gaussian_samples_have_the_stated_law():
    """The sample's own covariance, with noise sigma x (its centred std pooled over dimensions), gives the truth."""
    task = LinearGaussianBlock(dim=3, seq_len=3, context_in=-0.5, noise_std=0.7, offset=4.0, seed=2)
    s = task.sample(0, 200_000)

    def empirical(x, y, sigma):
        c = np.cov(np.concatenate([x, y], axis=1).T.astype(np.float64))
        d = x.shape[1]
        sxx, syy = c[:d, :d], c[d:, d:]
        c[:d, :d] += sigma**2 * np.trace(sxx) / d * np.eye(d)
        c[d:, d:] += sigma**2 * np.trace(syy) / d * np.eye(d)
        logdet = lambda a: np.linalg.slogdet(a)[1]
        return 0.5 * (logdet(c[:d, :d]) + logdet(c[d:, d:]) - logdet(c))

    for sigma in (0.0, 0.5, 2.0):
        truth = task.noise_truth(sigma)
        assert empirical(s.macro_input, s.macro_output, sigma) == pytest.approx(truth.macro_nats, abs=0.01)
        assert empirical(s.micro_input[1], s.micro_output[1], sigma) == pytest.approx(truth.micro_nats[1], abs=0.01)
    assert abs(float(s.macro_output.mean()) - 4.0) < 0.05  # the offset is there; the truths ignore it


@pytest.mark.slow
def test_noise_estimator_targets_the_closed_form():
    """`ie_jax.mi.noise` on a large sample at small d agrees with noise_truth(sigma) within its CI, and the CI is
    tight enough to reject the near misses: a per-dimension or an uncentred normaliser."""
    from ie_jax.mi.noise import noise_mi_batch

    task = LinearGaussianBlock(dim=2, seq_len=2, context_in=-0.5, context_out=0.3, noise_std=0.5,
                               spectrum_decay=3.0, offset=3.0)
    xs, ys = task.sample(0, 4000).problems()
    (est,) = noise_mi_batch(xs[:2], ys[:2], sigma=(1.0,), n_mc=16384)
    truth = task.noise_truth(1.0)

    def wrong(term, scale):
        var_x, var_y, cov = task.moments(term)
        return float(-0.5 * np.sum(np.log1p(-cov**2 / ((var_x + scale(var_x)) * (var_y + scale(var_y))))))

    per_dimension = lambda v: v  # sigma = 1: noise of each dimension's own std
    uncentred = lambda v: v.mean() + task.offset**2  # the RMS of the offset states
    for term, e, target in zip(("macro", "micro"), est, (truth.macro_nats, truth.micro_nats[0])):
        assert e.ci95[0] - 0.005 <= target <= e.ci95[1] + 0.005, (term, e.value, e.ci95, target)
        for scale in (per_dimension, uncentred):
            assert not e.ci95[0] <= wrong(term, scale) <= e.ci95[1]


def test_token_map_discrete_and_continuous():
    discrete = TokenMap(vocab=8, dim=16)
    assert discrete.mi_nats == pytest.approx(math.log(8)) and discrete.mi_gap_bound_nats == 0.0
    x, y = discrete.sample(0, 4000)
    assert x.shape == y.shape == (4000, 16) and x.dtype == np.float32
    est = _counted(x, y, math.log(8))
    assert est.diagnostics["n_distinct_x"] == est.diagnostics["n_distinct_y"] == 8  # exact repeated rows
    assert not np.allclose(y, x) and not np.allclose(y - x, (y - x).mean(0))  # a nonlinear map, not a shift

    continuous = TokenMap(vocab=8, dim=16, noise_ratio=0.05)
    assert 0 < continuous.mi_gap_bound_nats <= continuous.tolerance_nats
    x, y = continuous.sample(0, 4000)
    assert distinct_states(x)[1] == 4000  # continuous: no ties
    table_x, table_y = continuous._tables
    nearest = lambda a, t: np.argmin(((a[:, None, :] - t[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest(x, table_x), nearest(y, table_y))  # the state is recoverable from either side
    with pytest.raises(ValueError, match="blurs"):
        TokenMap(vocab=8, dim=16, noise_ratio=0.5)
    assert TokenMap(vocab=50, dim=64).mi_nats == pytest.approx(3.912, abs=1e-3)  # the micro problem


def test_token_map_block():
    task = TokenMapBlock(TokenMap(vocab=5, dim=8), seq_len=3)
    s = task.sample(0, 100)
    np.testing.assert_array_equal(s.macro_input, s.micro_input[-1])  # layer 0: the last token alone
    assert task.ie_nats == 0.0 and task.mi_macro_nats == pytest.approx(math.log(5))
    noisy = TokenMapBlock(TokenMap(vocab=5, dim=8, noise_ratio=0.05), seq_len=3).sample(0, 100)
    assert not np.array_equal(noisy.macro_input, noisy.micro_input[-1])  # fresh within-state noise


def test_sweep_sizes_without_vocabulary_tables():
    """V = 50,257 at d = 4,096: a sample of a few sequences generates only its own ids' embeddings."""
    task = InjectiveBlock(vocab=50257, seq_len=8, dim=4096, zipf=1.0)
    tracemalloc.start()
    s = task.sample(0, 16)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert s.micro_input.shape == (8, 16, 4096)
    assert peak < 64 * 2**20  # a [V, d] float32 table alone would be 823 MB
    x, _ = TokenMap(vocab=50257, dim=4096).sample(0, 16)
    assert x.shape == (16, 4096)


@pytest.mark.parametrize("make", [
    lambda: InjectiveBlock(vocab=1),
    lambda: InjectiveBlock(vocab=4, seq_len=1),
    lambda: InjectiveBlock(vocab=4, dim=2),
    lambda: InjectiveBlock(vocab=4, zipf=-1.0),
    lambda: SynergyBlock(vocab=4, classes=5),
    lambda: SynergyBlock(vocab=8, classes=4, micro_classes=4),
    lambda: TokenwiseBlock(vocab=4, last_vocab=5),
    lambda: LinearGaussianBlock(dim=4, noise_std=0.0),
    lambda: TokenMap(vocab=5000, noise_ratio=0.01),
])
def test_bad_parameters_raise(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.slow
def test_standard_suite():
    suite = standard_suite(("small", "medium"))
    kinds = {(name.split("/")[0], type(t).__name__) for name, t in suite.items()}
    for size in ("small", "medium"):
        for kind in ("InjectiveBlock", "SynergyBlock", "TokenwiseBlock", "LinearGaussianBlock", "TokenMapBlock"):
            assert (size, kind) in kinds
    assert any(t.ie_nats > 0 for t in suite.values()) and any(t.ie_nats < 0 for t in suite.values())
    assert any(t.mi_macro_nats > math.log(2000) for t in suite.values())  # the saturating case
    with pytest.raises(ValueError, match="unknown suite size"):
        standard_suite(("huge",))
    assert isinstance(SMALL["small/synergy V=16 T=4 K=4 M=2 d=16"].sample(0, 3), IESample)
