"""Synthetic blocks whose Information Emergence and both of its terms are known (bmi-style, one level up).

IE = MI(macro_output; macro_input) - (1/T) sum_t MI(micro_output_t; micro_input_t) (README, "What IE is").
Every task is a small frozen dataclass with `seq_len` (T), `dim` (d), `discrete` (token inputs: the states take
finitely many values, so counting applies), its truths `mi_macro_nats`, `mi_micro_nats` (T values) and
`ie_nats`, and `sample(key_or_seed, n) -> IESample`: for n sequences, macro_input / macro_output [n, d] and
micro_input / micro_output [T, n, d], float32 numpy, deterministic in `key_or_seed` (an int, a numpy Generator
or a JAX key). The fixed parts of a block (embeddings, maps) come from the task's own `seed`.

Why the token truths are exact. A deterministic block maps each distinct input to one output, so the MI of its input
and output is the entropy of the output, H(f(input)), whatever the (continuous) geometry of the states: the
population truth is an entropy over the token law, computed exactly here, not a sample statistic. The states
are continuous embeddings (no [V, d] table: each sampled id's row is a hash of (seed, id)); distinct inputs
give distinct states (generic Gaussian embeddings, injective maps), so counting the states of N >> #states
samples reproduces the truth. Where the truth exceeds ln N no estimator on N samples can reach it: that is
the saturating case a sweep meets (macro states of T tokens over a vocabulary of V: T ln V nats).

Tasks
- `InjectiveBlock`: the macro output is an injective map of the whole sequence: macro MI = T H(p), micro MI =
  H(p), IE = (T - 1) H(p) (p: the token law, uniform or Zipf).
- `SynergyBlock`: the macro output is the sequence's sum mod K (parity for K = 2), which no single token
  determines; each token alone gives a coarser class of itself: IE = H(sum mod K) - H(class) > 0.
- `TokenwiseBlock`: the macro output is a per-token map of the last token (which may come from a smaller
  vocabulary, e.g. a delimiter): IE = (T - 1)/T (H(last) - H(p)) <= 0.
- `LinearGaussianBlock`: a noisy linear block on Gaussian token states; every MI is a closed form, both the
  plain one and the noise-regularised I(x + sigma s_x Z; y + sigma s_y Z') of `ie_jax.mi.noise`
  (`noise_truth(sigma)`).
- `TokenMap` (a `groundtruth.Sampler`: one micro problem) and `TokenMapBlock` (its IE task): V token states in
  d dimensions through a fixed nonlinear injective map, exact repeated rows (MI = ln V) or with small
  within-state noise (MI within `mi_gap_bound_nats` of ln V).
`standard_suite(sizes)` lists small, medium and sweep-sized instances.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Protocol

import numpy as np
from scipy import special

from ie_jax.mi.groundtruth import check_n, conditional_entropy_bound, min_distance, seeded_rng

__all__ = [
    "IETask", "IESample", "IETruth", "InjectiveBlock", "SynergyBlock", "TokenwiseBlock", "LinearGaussianBlock",
    "TokenMap", "TokenMapBlock", "SUITE_SIZES", "standard_suite", "token_probabilities", "entropy_nats",
]

# Fewer dimensions let two distinct generic states fall within a counting tolerance (rtol 1e-4) by chance.
MIN_DIM = 4
# Lipschitz constant of the nonlinear part of the block map: below 1, so x -> x + tanh(L x Q) is injective.
_MAP_LIPSCHITZ = 0.9
# Rows per step when filling [n, d] outputs: bounds the float64 temporaries at any n, d.
_ROW_CHUNK = 2048
# Hash-normal elements per step (uint64 temporaries).
_HASH_CHUNK = 1 << 22
# Largest vocabulary of a continuous `TokenMap`: its error bound needs the V x V distances of the states.
MAX_CONTINUOUS_VOCAB = 4096

# Namespaces of the hashed parts of a block, so that embeddings, gates and class tables never coincide.
_TOKENS, _GATES, _MACRO_CLASSES, _MICRO_CLASSES, _MAP, _ROTATE_IN, _ROTATE_OUT = range(7)


# ----------------------------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class IESample:
    """One sample of a block: n sequences of T tokens.

    macro_input, macro_output: [n, d] float32, the last token's state with the whole context, before and after
    the block; micro_input, micro_output: [T, n, d] float32, token t processed alone; tokens: [n, T] int64 ids
    (None for continuous token states).
    """

    macro_input: np.ndarray
    macro_output: np.ndarray
    micro_input: np.ndarray
    micro_output: np.ndarray
    tokens: np.ndarray | None = None

    def problems(self) -> tuple[np.ndarray, np.ndarray]:
        """The 1 + T MI problems stacked as `Estimator`s take them: xs, ys [1 + T, n, d] = [macro, micro_0..]."""
        return (np.concatenate([self.macro_input[None], self.micro_input]),
                np.concatenate([self.macro_output[None], self.micro_output]))


@dataclasses.dataclass(frozen=True)
class IETruth:
    """The truths of one block in nats: macro MI, the T micro MIs, and IE = macro - mean(micro)."""

    macro_nats: float
    micro_nats: tuple[float, ...]

    @property
    def micro_mean_nats(self) -> float:
        return float(math.fsum(self.micro_nats) / len(self.micro_nats))

    @property
    def ie_nats(self) -> float:
        return self.macro_nats - self.micro_mean_nats


class IETask(Protocol):
    seq_len: int
    dim: int
    discrete: bool
    truth: IETruth
    mi_macro_nats: float
    mi_micro_nats: tuple[float, ...]
    ie_nats: float

    def sample(self, key_or_seed, n: int) -> IESample: ...


class _Truths:
    """`mi_macro_nats`, `mi_micro_nats` and `ie_nats` from a task's `truth` (an IETruth)."""

    @property
    def mi_macro_nats(self) -> float:
        return self.truth.macro_nats

    @property
    def mi_micro_nats(self) -> tuple[float, ...]:
        return self.truth.micro_nats

    @property
    def ie_nats(self) -> float:
        return self.truth.ie_nats


# ------------------------------------------------------------------------------------------ entropies


def entropy_nats(p) -> float:
    """Entropy in nats of a probability vector p [K] (zeros allowed)."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return abs(float(-np.sum(p * np.log(p))))  # abs: a point mass gives +0.0


def token_probabilities(vocab: int, zipf: float = 0.0) -> np.ndarray:
    """[vocab] token law p_v proportional to (v + 1)^-zipf: uniform for zipf = 0, Zipf's law (decreasing) else."""
    p = np.arange(1, vocab + 1, dtype=np.float64) ** -float(zipf)
    return p / p.sum()


def _residues(p: np.ndarray, k: int) -> np.ndarray:
    """[k] law of v mod k for v ~ p."""
    return np.bincount(np.arange(len(p)) % k, weights=p, minlength=k)


def _sum_mod_law(p: np.ndarray, k: int, seq_len: int) -> np.ndarray:
    """[k] law of (sum of seq_len iid tokens ~ p) mod k, by cyclic convolution of the residue law."""
    q = _residues(p, k)
    law = np.zeros(k)
    law[0] = 1.0
    for _ in range(seq_len):
        full = np.convolve(law, q)  # [2k - 1]
        law = full[:k] + np.concatenate([full[k:], [0.0]])
    return law


def _coarse_classes(k: int, m: int) -> np.ndarray:
    """[k] the micro class of each residue: r -> floor(r m / k), m < k classes (not injective: pigeonhole)."""
    return (np.arange(k) * m) // k


# -------------------------------------------------------------------------------------- hashed states


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014), element-wise on uint64 (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _hash_key(seed: int, namespace: int) -> np.uint64:
    with np.errstate(over="ignore"):
        z = _splitmix64(np.array([seed], dtype=np.uint64) * _GOLDEN + np.uint64(namespace))
        return _splitmix64(z + _GOLDEN)[0]


def _hash_normal(seed: int, namespace: int, ids, dim: int, dtype=np.float64) -> np.ndarray:
    """[len(ids), dim] standard normal rows (in dtype); row i depends on (seed, namespace, ids[i]) only.

    The same id gets the same row in every sample and every call, so a vocabulary of 50k ids in 4,096
    dimensions needs no [V, d] table: only the ids a sample holds are generated. Each element is the
    SplitMix64 hash of a counter (row key + column), turned into a uniform in (0, 1) and then a normal by the
    inverse CDF.
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    out = np.empty((ids.size, dim), dtype=dtype)
    key = _hash_key(seed, namespace)
    cols = np.arange(dim, dtype=np.uint64) * _GOLDEN
    step = max(1, _HASH_CHUNK // max(dim, 1))
    with np.errstate(over="ignore"):
        for start in range(0, ids.size, step):
            rows = _splitmix64(ids[start : start + step].astype(np.uint64) * _GOLDEN ^ key)
            bits = _splitmix64(rows[:, None] + cols[None, :])
            out[start : start + step] = special.ndtri(((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53)
    return out


@dataclasses.dataclass(frozen=True)
class _Rotation:
    """A fixed orthogonal map of R^dim in O(dim) memory: signed permutation, then a Householder reflection.

    z -> h(z[:, perm] * signs), h(w) = w - 2 (w.u) u with |u| = 1: dense mixing (every output coordinate
    depends on every input one) without a [dim, dim] matrix.
    """

    dim: int
    seed: int
    namespace: int

    @functools.cached_property
    def parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.namespace])
        u = rng.standard_normal(self.dim)
        return rng.permutation(self.dim), rng.choice([-1.0, 1.0], self.dim), u / np.linalg.norm(u)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        perm, signs, u = self.parts
        w = z[:, perm] * signs
        return w - 2.0 * (w @ u)[:, None] * u


@dataclasses.dataclass(frozen=True)
class _BlockMap:
    """The block's fixed nonlinear map y = x + tanh(L x Q) (Q orthogonal, L = 0.9).

    Injective on all of R^dim: the nonlinear part is L-Lipschitz with L < 1, so y(x) = y(x') forces
    |x - x'| = |g(x) - g(x')| <= L |x - x'|, i.e. x = x'. Distinct states stay distinct, hence every MI through
    it is the entropy of its input.
    """

    dim: int
    seed: int

    @functools.cached_property
    def rotation(self) -> _Rotation:
        return _Rotation(self.dim, self.seed, _MAP)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x + np.tanh(_MAP_LIPSCHITZ * self.rotation(x))


def _rows(n: int, fill) -> None:
    """Call fill(start, stop) over row chunks of [0, n)."""
    for start in range(0, n, _ROW_CHUNK):
        fill(start, min(n, start + _ROW_CHUNK))


class _TokenStates:
    """Token embeddings e(v) ~ N(0, I_d) (hashed), position gates, the block map, for a (seed, dim)."""

    def __init__(self, seed: int, dim: int, ids: np.ndarray):
        self.seed, self.dim = seed, dim
        self.unique, self.index = np.unique(ids, return_inverse=True)  # only the ids this sample holds
        self.index = self.index.reshape(ids.shape)
        # [U, d] float32, U <= min(V, ids.size): never larger than the sample's own [T, n, d] states
        self.embedding = _hash_normal(seed, _TOKENS, self.unique, dim, np.float32)
        self.block_map = _BlockMap(dim, seed)

    def mapped(self) -> np.ndarray:
        """[U, d] float32 f(e(v)) of every id held."""
        return _mapped_rows(self.block_map, self.embedding)

    def sequence_states(self, seq_len: int) -> np.ndarray:
        """[n, d] the last token's state with its context: sum_t r_t * e(s_t) / sqrt(T), float32.

        r_t ~ N(0, I_d) (hashed per position). Injective on sequences with probability 1: two sequences give the
        same state only if a nonzero combination sum_v (sum_{t in A_v} r_t - sum_{t in B_v} r_t) * e(v) of
        independent continuous vectors vanishes.
        """
        gates = _hash_normal(self.seed, _GATES, np.arange(seq_len), self.dim)
        n = self.index.shape[0]
        out = np.empty((n, self.dim), dtype=np.float32)

        def fill(a, b):
            acc = np.zeros((b - a, self.dim))
            for t in range(seq_len):
                acc += gates[t] * self.embedding[self.index[a:b, t]]
            out[a:b] = acc / math.sqrt(seq_len)

        _rows(n, fill)
        return out


def _per_token(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """[T, n, d] float32 rows table[index[:, t]] for index [n, T] (gathered in float32: no float64 copy)."""
    return np.asarray(table, np.float32)[np.ascontiguousarray(index.T)]


def _mapped_rows(block_map: _BlockMap, x: np.ndarray) -> np.ndarray:
    """block_map(x) row chunk by row chunk, float32 [n, d]."""
    out = np.empty_like(x)

    def fill(a, b):
        out[a:b] = block_map(x[a:b].astype(np.float64))

    _rows(len(x), fill)
    return out


def _check_tokens(vocab: int, seq_len: int, dim: int, zipf: float) -> None:
    if vocab < 2:
        raise ValueError(f"vocab must be >= 2 token states, got {vocab}")
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 (a macro state needs context), got {seq_len}")
    if dim < MIN_DIM:
        raise ValueError(f"dim must be >= {MIN_DIM}: in fewer dimensions distinct states may fall within a "
                         f"counting tolerance of each other; got {dim}")
    if not (zipf >= 0 and math.isfinite(zipf)):
        raise ValueError(f"zipf must be a finite exponent >= 0, got {zipf}")


def _draw_tokens(rng: np.random.Generator, p: np.ndarray, n: int, seq_len: int, last_p=None) -> np.ndarray:
    """[n, seq_len] iid token ids ~ p (the last position ~ last_p when given)."""
    tokens = rng.choice(len(p), size=(n, seq_len), p=p)
    if last_p is not None:
        tokens[:, -1] = rng.choice(len(last_p), size=n, p=last_p)
    return tokens


# ------------------------------------------------------------------------------------------- token blocks


@dataclasses.dataclass(frozen=True)
class InjectiveBlock(_Truths):
    """Discrete tokens through a deterministic block whose macro output determines the whole sequence.

    Sequences of T iid tokens ~ p (`token_probabilities(vocab, zipf)`). macro_input: the gated sum of the
    token embeddings (one state per sequence), macro_output = f(macro_input) with f the injective block map;
    micro: e(s_t) -> f(e(s_t)).
    Truths (exact): each output is an injective function of its input, which is an injective function of the
    tokens it sees, so MI = H(tokens seen): macro T H(p), micro H(p), IE = (T - 1) H(p). T H(p) is T ln V for
    uniform tokens and soon exceeds ln N: then no estimator on N samples can reach it (plug-in counting
    gives ln N, flagged saturated).
    """

    vocab: int
    seq_len: int = 4
    dim: int = 16
    zipf: float = 0.0
    seed: int = 0
    discrete = True

    def __post_init__(self):
        _check_tokens(self.vocab, self.seq_len, self.dim, self.zipf)

    @property
    def label(self) -> str:
        return f"injective V={self.vocab} T={self.seq_len} d={self.dim}" + (f" zipf={self.zipf:g}" if self.zipf else "")

    @functools.cached_property
    def truth(self) -> IETruth:
        h = entropy_nats(token_probabilities(self.vocab, self.zipf))
        return IETruth(self.seq_len * h, (h,) * self.seq_len)

    def sample(self, key_or_seed, n: int) -> IESample:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        tokens = _draw_tokens(rng, token_probabilities(self.vocab, self.zipf), n, self.seq_len)
        states = _TokenStates(self.seed, self.dim, tokens)
        macro_input = states.sequence_states(self.seq_len)
        return IESample(macro_input, _mapped_rows(states.block_map, macro_input),
                        _per_token(states.embedding, states.index), _per_token(states.mapped(), states.index), tokens)


@dataclasses.dataclass(frozen=True)
class SynergyBlock(_Truths):
    """A block whose macro output is a function of the whole context that no single token determines.

    Sequences of T iid tokens ~ p. macro_input: the sequence state (as `InjectiveBlock`); macro_output: the
    embedding of c = (sum_t s_t) mod K (K = 2: parity); micro: e(s_t) -> embedding of the coarse class
    floor((s_t mod K) M / K), M < K classes (the block applied to a token alone keeps less of it).
    Truths (exact): outputs are functions of their inputs, so macro MI = H(c), computed by cyclic convolution
    of the residue law; micro MI = H(class). IE > 0 for any parameters with vocab >= K: H(c) >= H(c | s_<T) =
    H(s_T mod K) (adding an independent residue mod K is a bijection), and the class is a non-injective function
    of s mod K whose K residues all have positive probability, so H(class) < H(s_T mod K).
    """

    vocab: int
    seq_len: int = 4
    classes: int = 4
    micro_classes: int = 2
    dim: int = 16
    zipf: float = 0.0
    seed: int = 0
    discrete = True

    def __post_init__(self):
        _check_tokens(self.vocab, self.seq_len, self.dim, self.zipf)
        if not 2 <= self.classes <= self.vocab:
            raise ValueError(f"need 2 <= classes <= vocab (every residue must occur), got classes={self.classes}, "
                             f"vocab={self.vocab}")
        if not 1 <= self.micro_classes < self.classes:
            raise ValueError(f"need 1 <= micro_classes < classes (a lossy micro map), got {self.micro_classes}")

    @property
    def label(self) -> str:
        return (f"synergy V={self.vocab} T={self.seq_len} K={self.classes} M={self.micro_classes} d={self.dim}"
                + (f" zipf={self.zipf:g}" if self.zipf else ""))

    @functools.cached_property
    def truth(self) -> IETruth:
        p = token_probabilities(self.vocab, self.zipf)
        macro = entropy_nats(_sum_mod_law(p, self.classes, self.seq_len))
        coarse = np.bincount(_coarse_classes(self.classes, self.micro_classes), weights=_residues(p, self.classes))
        return IETruth(macro, (entropy_nats(coarse),) * self.seq_len)

    def sample(self, key_or_seed, n: int) -> IESample:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        tokens = _draw_tokens(rng, token_probabilities(self.vocab, self.zipf), n, self.seq_len)
        states = _TokenStates(self.seed, self.dim, tokens)
        macro_class = tokens.sum(axis=1) % self.classes
        micro_class = _coarse_classes(self.classes, self.micro_classes)[tokens % self.classes]
        macro_table = _hash_normal(self.seed, _MACRO_CLASSES, np.arange(self.classes), self.dim)
        micro_table = _hash_normal(self.seed, _MICRO_CLASSES, np.arange(self.micro_classes), self.dim)
        return IESample(states.sequence_states(self.seq_len), macro_table.astype(np.float32)[macro_class],
                        _per_token(states.embedding, states.index), _per_token(micro_table, micro_class), tokens)


@dataclasses.dataclass(frozen=True)
class TokenwiseBlock(_Truths):
    """A block whose macro output is a per-token map of the last token: no emergence.

    Tokens t < T ~ p; the last token ~ p restricted to the first `last_vocab` ids (1: a constant delimiter such
    as the "," closing an ICL list; vocab: no restriction). macro_input: the sequence state; macro_output:
    f(e(s_T)); micro: e(s_t) -> f(e(s_t)) (f the injective block map).
    Truths (exact): macro MI = H(s_T) = H(p_last); micro MI = H(p) for t < T, H(p_last) at t = T, so
    IE = (T - 1)/T (H(p_last) - H(p)) <= 0: restricting a decreasing law (uniform or Zipf) to its first ids
    never raises its entropy (adding a smallest mass q <= 1/(k+1) to k ids adds h(q) - q H >= q (ln(1/q) - ln k)
    > 0).
    """

    vocab: int
    seq_len: int = 4
    last_vocab: int | None = None
    dim: int = 16
    zipf: float = 0.0
    seed: int = 0
    discrete = True

    def __post_init__(self):
        _check_tokens(self.vocab, self.seq_len, self.dim, self.zipf)
        last = self.vocab if self.last_vocab is None else int(self.last_vocab)
        if not 1 <= last <= self.vocab:
            raise ValueError(f"need 1 <= last_vocab <= vocab, got {self.last_vocab}")
        object.__setattr__(self, "last_vocab", last)

    @property
    def label(self) -> str:
        return (f"tokenwise V={self.vocab} T={self.seq_len} last={self.last_vocab} d={self.dim}"
                + (f" zipf={self.zipf:g}" if self.zipf else ""))

    def _laws(self) -> tuple[np.ndarray, np.ndarray]:
        p = token_probabilities(self.vocab, self.zipf)
        return p, token_probabilities(self.last_vocab, self.zipf)  # p restricted to the first ids, renormalised

    @functools.cached_property
    def truth(self) -> IETruth:
        p, last = (entropy_nats(q) for q in self._laws())
        return IETruth(last, (p,) * (self.seq_len - 1) + (last,))

    def sample(self, key_or_seed, n: int) -> IESample:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        p, last = self._laws()
        tokens = _draw_tokens(rng, p, n, self.seq_len, last)
        states = _TokenStates(self.seed, self.dim, tokens)
        mapped = states.mapped()
        return IESample(states.sequence_states(self.seq_len), mapped[states.index[:, -1]],
                        _per_token(states.embedding, states.index), _per_token(mapped, states.index), tokens)


# ------------------------------------------------------------------------------------------- token maps


@dataclasses.dataclass(frozen=True)
class TokenMap:
    """One token-like micro problem (a `groundtruth.Sampler`): x one of V states in d dims, y = f(x).

    v ~ uniform on V ids; x = e(v) + noise_x, y = f(e(v)) + noise_y with e the hashed N(0, I_d) embedding and f
    the injective block map x + tanh(0.9 x Q).
    noise_ratio = 0: x and y are exact repeated rows (V distinct states each): MI = H(v) = ln V exactly.
    noise_ratio > 0: independent isotropic noise of std noise_ratio x (smallest distance between two states of
    that side), as `groundtruth.DiscreteMixture`: ln V - H(v|x) - H(v|y) <= I(x; y) <= ln V, and
    `mi_gap_bound_nats` (union bound + Fano over the V x V distances) bounds the gap; construction fails if it
    exceeds `tolerance_nats`. The bound needs the V x V distances: vocab <= MAX_CONTINUOUS_VOCAB there.
    `mi_nats` = ln V.
    """

    vocab: int
    dim: int = 64
    noise_ratio: float = 0.0
    seed: int = 0
    tolerance_nats: float = 1e-3

    def __post_init__(self):
        _check_tokens(self.vocab, 2, self.dim, 0.0)
        if not self.noise_ratio >= 0:
            raise ValueError(f"noise_ratio must be >= 0, got {self.noise_ratio}")
        if self.noise_ratio > 0 and self.vocab > MAX_CONTINUOUS_VOCAB:
            raise ValueError(f"a continuous TokenMap's error bound needs the V x V state distances: vocab <= "
                             f"{MAX_CONTINUOUS_VOCAB}, got {self.vocab} (use noise_ratio=0 for exact repeated rows)")
        if self.mi_gap_bound_nats > self.tolerance_nats:
            raise ValueError(f"noise_ratio={self.noise_ratio} blurs the {self.vocab} states: I(x; y) may fall "
                             f"{self.mi_gap_bound_nats:.3g} nats below ln V (tolerance {self.tolerance_nats})")

    @property
    def dim_x(self) -> int:
        return self.dim

    @property
    def dim_y(self) -> int:
        return self.dim

    @property
    def discrete(self) -> bool:
        return self.noise_ratio == 0

    @property
    def label(self) -> str:
        return f"tokenmap V={self.vocab} d={self.dim} " + ("discrete" if self.discrete else f"noise={self.noise_ratio:g}")

    @property
    def mi_nats(self) -> float:
        return math.log(self.vocab)

    @functools.cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Every state e(v), f(e(v)) [V, d] (continuous variant only: the bound needs all of them)."""
        x = _hash_normal(self.seed, _TOKENS, np.arange(self.vocab), self.dim)
        return x, _BlockMap(self.dim, self.seed)(x)

    @functools.cached_property
    def noise(self) -> tuple[float, float]:
        """Noise standard deviation (absolute) of x and of y."""
        if self.noise_ratio == 0:
            return 0.0, 0.0
        return tuple(self.noise_ratio * min_distance(t) for t in self._tables)

    @functools.cached_property
    def mi_gap_bound_nats(self) -> float:
        if self.noise_ratio == 0:
            return 0.0
        return sum(conditional_entropy_bound(t, s) for t, s in zip(self._tables, self.noise))

    def states(self, rng: np.random.Generator, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x, y [*tokens.shape, d] float32 for token ids of any shape."""
        states = _TokenStates(self.seed, self.dim, tokens.reshape(-1, 1))
        index = states.index[:, 0]
        x, y = states.embedding[index], states.mapped()[index]
        if self.noise_ratio > 0:
            sx, sy = self.noise

            def fill(a, b):
                x[a:b] += sx * rng.standard_normal((b - a, self.dim), dtype=np.float32)
                y[a:b] += sy * rng.standard_normal((b - a, self.dim), dtype=np.float32)

            _rows(len(x), fill)
        shape = tokens.shape + (self.dim,)
        return x.reshape(shape), y.reshape(shape)

    def sample(self, key_or_seed, n: int) -> tuple[np.ndarray, np.ndarray]:
        """x, y [n, d] float32."""
        n, rng = check_n(n), seeded_rng(key_or_seed)
        return self.states(rng, rng.integers(0, self.vocab, size=n))


@dataclasses.dataclass(frozen=True)
class TokenMapBlock(_Truths):
    """A token-wise block at its first layer: every term is the `TokenMap` micro problem.

    T iid uniform tokens, each position through the token map on its own (fresh within-state noise per
    position). The macro state is the last token's state before any context is mixed in (layer 0 of a model),
    so it is token T's map: every MI is ln V (continuous: within `token_map.mi_gap_bound_nats` below) and
    IE = 0 (within that bound either way).
    """

    token_map: TokenMap
    seq_len: int = 4

    def __post_init__(self):
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {self.seq_len}")

    @property
    def dim(self) -> int:
        return self.token_map.dim

    @property
    def discrete(self) -> bool:
        return self.token_map.discrete

    @property
    def label(self) -> str:
        return f"{self.token_map.label} T={self.seq_len}"

    @property
    def truth(self) -> IETruth:
        return IETruth(self.token_map.mi_nats, (self.token_map.mi_nats,) * self.seq_len)

    def sample(self, key_or_seed, n: int) -> IESample:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        tokens = rng.integers(0, self.token_map.vocab, size=(n, self.seq_len))
        x, y = self.token_map.states(rng, np.concatenate([tokens[:, -1:], tokens], axis=1).T)  # [1 + T, n, d]
        return IESample(x[0], y[0], x[1:], y[1:], tokens)


# --------------------------------------------------------------------------------------- linear Gaussian


@dataclasses.dataclass(frozen=True)
class LinearGaussianBlock(_Truths):
    """A noisy linear attention block on Gaussian token states: every MI and IE(sigma) in closed form.

    Token states u_t ~ N(0, diag(lam)), t = 1..T iid, lam_j proportional to j^-spectrum_decay (mean 1); the
    context c = sum_{t<T} u_t / sqrt(T - 1). With gain g, context_in k, context_out b, noise_std eta:
      macro_input  x = u_T + k c                      (the last token's state has already mixed in context)
      macro_output y = g (u_T + (k + b) c) + eta e     (the block adds context of its own, and noise)
      micro_input  u_t, micro_output g (1 + k + b) u_t + eta e_t   (a token alone attends to itself)
    Then inputs are rotated by one fixed orthogonal map and outputs by another, and `offset` is added to every
    state: neither changes any MI, nor the noise-regularised one (isotropic noise, rotation-invariant pooled
    std; the normaliser is centred).
    Truths (exact): each pair is jointly Gaussian with diagonal covariances (before the rotations), so
    I = -1/2 sum_j ln(1 - cov_j^2 / (var_x_j var_y_j)). `noise_truth(sigma)` is the same with var_x_j + sigma^2
    s_x^2 and var_y_j + sigma^2 s_y^2, s^2 = mean_j var_j (each side's centred variance pooled over dimensions),
    i.e. the population value of `ie_jax.mi.noise`'s I(x + sigma s_x Z; y + sigma s_y Z'); sigma = 0 gives the
    plain MI (finite because eta > 0).
    """

    dim: int
    seq_len: int = 4
    gain: float = 1.0
    context_in: float = 1.0
    context_out: float = 0.5
    noise_std: float = 0.5
    spectrum_decay: float = 1.0
    offset: float = 0.0
    seed: int = 0
    discrete = False

    def __post_init__(self):
        if self.dim < 1 or self.seq_len < 2:
            raise ValueError(f"need dim >= 1 and seq_len >= 2, got dim={self.dim}, seq_len={self.seq_len}")
        if not self.noise_std > 0:
            raise ValueError(f"need noise_std > 0 (else the MI is infinite), got {self.noise_std}")
        if not all(math.isfinite(v) for v in (self.gain, self.context_in, self.context_out, self.noise_std,
                                              self.spectrum_decay, self.offset)):
            raise ValueError(f"parameters must be finite, got {self}")

    @property
    def label(self) -> str:
        return (f"linear-gaussian d={self.dim} T={self.seq_len} ctx_in={self.context_in:g} ctx_out={self.context_out:g} "
                f"noise={self.noise_std:g}" + (f" offset={self.offset:g}" if self.offset else ""))

    @property
    def spectrum(self) -> np.ndarray:
        """[d] token variance per dimension, mean 1."""
        lam = np.arange(1, self.dim + 1, dtype=np.float64) ** -float(self.spectrum_decay)
        return lam / lam.mean()

    def moments(self, term: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(var_x, var_y, cov_xy) [d] per dimension before rotation, for term "macro" or "micro"."""
        lam, g, k, b, eta2 = self.spectrum, self.gain, self.context_in, self.context_out, self.noise_std**2
        if term == "macro":
            return lam * (1 + k * k), g * g * lam * (1 + (k + b) ** 2) + eta2, g * lam * (1 + k * (k + b))
        if term == "micro":
            a = g * (1 + k + b)
            return lam, a * a * lam + eta2, a * lam
        raise ValueError(f"term must be 'macro' or 'micro', got {term!r}")

    def noise_truth(self, sigma: float) -> IETruth:
        """Population IE(sigma) and its terms (nats) as `ie_jax.mi.noise` defines them; sigma = 0: the plain MI."""
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be finite and >= 0, got {sigma}")

        def mi(term):
            var_x, var_y, cov = self.moments(term)
            var_x = var_x + sigma**2 * var_x.mean()
            var_y = var_y + sigma**2 * var_y.mean()
            return float(-0.5 * np.sum(np.log1p(-cov * cov / (var_x * var_y))))

        return IETruth(mi("macro"), (mi("micro"),) * self.seq_len)

    @property
    def truth(self) -> IETruth:
        return self.noise_truth(0.0)

    def sample(self, key_or_seed, n: int) -> IESample:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        t_len, d = self.seq_len, self.dim
        g, k, b, eta = self.gain, self.context_in, self.context_out, self.noise_std
        rotate_in, rotate_out = _Rotation(d, self.seed, _ROTATE_IN), _Rotation(d, self.seed, _ROTATE_OUT)
        std = np.sqrt(self.spectrum)
        macro_in, macro_out = np.empty((n, d), np.float32), np.empty((n, d), np.float32)
        micro_in, micro_out = np.empty((t_len, n, d), np.float32), np.empty((t_len, n, d), np.float32)

        def fill(lo, hi):
            u = std * rng.standard_normal((t_len, hi - lo, d))
            c = u[:-1].sum(axis=0) / math.sqrt(t_len - 1)
            noise = eta * rng.standard_normal((t_len + 1, hi - lo, d))
            macro_in[lo:hi] = rotate_in(u[-1] + k * c) + self.offset
            macro_out[lo:hi] = rotate_out(g * (u[-1] + (k + b) * c) + noise[0]) + self.offset
            for t in range(t_len):
                micro_in[t, lo:hi] = rotate_in(u[t]) + self.offset
                micro_out[t, lo:hi] = rotate_out(g * (1 + k + b) * u[t] + noise[1 + t]) + self.offset

        _rows(n, fill)
        return IESample(macro_in, macro_out, micro_in, micro_out)


# --------------------------------------------------------------------------------------------------- suite

SUITE_SIZES = ("small", "medium", "sweep")


def standard_suite(sizes=SUITE_SIZES) -> dict[str, IETask]:
    """The standard IE tasks, name -> task, names "SIZE/label".

    small: a few token states, d = 16-64, T = 4 (a CPU benchmark at N of a few thousand);
    medium: V = 1,000 (Zipf tokens in part), d = 64-256, T = 8;
    sweep: GPT-2-sized vocabularies (V = 50,257) and widths (d = 768 to 4,096), T = 8-16, for N up to 100k.
    Each size holds every kind of task: injective (T ln V, saturating where it exceeds ln N), synergy (IE > 0),
    token-wise (IE <= 0), linear-Gaussian (closed-form IE(sigma)) and the token map (discrete and continuous).
    """
    unknown = set(sizes) - set(SUITE_SIZES)
    if unknown:
        raise ValueError(f"unknown suite size(s) {sorted(unknown)}: use any of {SUITE_SIZES}")
    tasks = {
        "small": [
            InjectiveBlock(vocab=2, seq_len=4, dim=16),
            InjectiveBlock(vocab=50, seq_len=4, dim=16),
            SynergyBlock(vocab=16, seq_len=4, classes=4, micro_classes=2, dim=16),
            TokenwiseBlock(vocab=16, seq_len=4, last_vocab=2, dim=16),
            LinearGaussianBlock(dim=4, seq_len=4, noise_std=1.0),
            LinearGaussianBlock(dim=4, seq_len=4, context_in=-0.5, context_out=0.0, noise_std=0.5),
            TokenMapBlock(TokenMap(vocab=50, dim=64), seq_len=4),
            TokenMapBlock(TokenMap(vocab=50, dim=64, noise_ratio=0.05), seq_len=4),
        ],
        "medium": [
            InjectiveBlock(vocab=1000, seq_len=8, dim=64, zipf=1.0),
            SynergyBlock(vocab=1000, seq_len=8, classes=64, micro_classes=8, dim=64),
            TokenwiseBlock(vocab=1000, seq_len=8, last_vocab=1, dim=64, zipf=1.0),
            LinearGaussianBlock(dim=64, seq_len=8, noise_std=8.0, offset=5.0),
            LinearGaussianBlock(dim=64, seq_len=8, context_in=-0.5, context_out=0.0, noise_std=4.0),
            TokenMapBlock(TokenMap(vocab=1000, dim=256), seq_len=4),
            TokenMapBlock(TokenMap(vocab=1000, dim=256, noise_ratio=0.05), seq_len=4),
        ],
        "sweep": [
            InjectiveBlock(vocab=50257, seq_len=8, dim=768, zipf=1.0),
            SynergyBlock(vocab=50257, seq_len=8, classes=1024, micro_classes=32, dim=768),
            TokenwiseBlock(vocab=50257, seq_len=16, last_vocab=24, dim=2048, zipf=1.0),
            LinearGaussianBlock(dim=4096, seq_len=8, noise_std=32.0, offset=5.0),
            LinearGaussianBlock(dim=4096, seq_len=8, context_in=-0.5, context_out=0.0, noise_std=16.0),
            TokenMapBlock(TokenMap(vocab=50257, dim=4096), seq_len=8),
            TokenMapBlock(TokenMap(vocab=4096, dim=768, noise_ratio=0.05), seq_len=8),
        ],
    }
    return {f"{size}/{task.label}": task for size in SUITE_SIZES if size in sizes for task in tasks[size]}
