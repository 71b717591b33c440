"""Test problems whose mutual information is known exactly (bmi-style samplers).

Every sampler is a small frozen dataclass with `dim_x`, `dim_y`, `mi_nats` and
`sample(key_or_seed, n) -> (x [n, dim_x], y [n, dim_y])` returning float32 numpy arrays. Sampling is
deterministic in `key_or_seed` (an int, a numpy Generator, or a JAX PRNG key).

MI is invariant to invertible maps of x and of y, so `Transformed` wraps any sampler with such maps
(`Cubic`, `Asinh`, `NormalCDF`, `Orthogonal`, `Spiral`) and keeps its `mi_nats`: one closed form serves
many problems with very different shapes (heavy tails, bounded support, dense mixing, non-element-wise
curvature).

Problems
- `GaussianPairs(pair_mi_nats)`: x ~ N(0, I), y_i = rho_i x_i + sqrt(1 - rho_i^2) e_i; MI = -1/2 sum log(1 - rho_i^2).
  Built by `correlated_gaussian` (same rho in every dimension), `sparse_gaussian` (k informative pairs
  among d), `rotated_gaussian` (dense random orthogonal mixing of x and of y), `independent` (MI 0).
- `DiscreteMixture`: x and y each sit at one of K far-apart centres (shared index) plus small noise, like
  LLM states of K distinct contexts; MI = ln K (within `mi_gap_bound_nats` <= 1e-3).
- `staircase`: the 20-D Gaussian whose MI steps up during training (Poole et al. 2019, Song & Ermon 2020).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Protocol

import numpy as np
from scipy import special

__all__ = [
    "MAX_PAIR_MI_NATS", "Sampler", "GaussianPairs", "Independent", "DiscreteMixture", "Transformed", "Staircase",
    "Cubic", "Asinh", "NormalCDF", "Orthogonal", "Spiral",
    "rho_for_mi", "correlated_gaussian", "sparse_gaussian", "rotated_gaussian", "independent", "staircase",
]


class Sampler(Protocol):
    dim_x: int
    dim_y: int
    mi_nats: float

    def sample(self, key_or_seed, n: int) -> tuple[np.ndarray, np.ndarray]: ...


def seeded_rng(key_or_seed) -> np.random.Generator:
    if isinstance(key_or_seed, np.random.Generator):
        return key_or_seed
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed))
    import jax  # only for JAX keys: the samplers are numpy

    key = key_or_seed
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


def check_n(n) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"n (number of samples) must be a positive integer, got {n!r}")
    return int(n)


def _finish(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.astype(np.float32), y.astype(np.float32)


def rho_for_mi(mi_nats: float, dim: int) -> float:
    """Per-dimension correlation giving total MI `mi_nats` over `dim` independent Gaussian pairs.

    Inverts MI = -dim/2 log(1 - rho^2): rho = sqrt(1 - exp(-2 MI / dim)).
    """
    _check_mi(mi_nats, dim)
    return math.sqrt(-math.expm1(-2.0 * mi_nats / dim))


def _check_mi(mi_nats: float, dim: int) -> None:
    if mi_nats < 0 or not math.isfinite(mi_nats):
        raise ValueError(f"mi_nats must be finite and >= 0, got {mi_nats}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")


# ---------------------------------------------------------------------------------------------------- Gaussians


# float32 output rounds y at ~3e-8 relative: a pair needs noise std e^-MI well above that to keep its MI.
MAX_PAIR_MI_NATS = 12.0


@dataclasses.dataclass(frozen=True)
class GaussianPairs:
    """Canonical correlated Gaussians: pair i of (x_i, y_i) carries pair_mi_nats[i], pairs independent.

    x ~ N(0, I_d); y_i = rho_i x_i + sqrt(1 - rho_i^2) e_i with e ~ N(0, I_d) and 1 - rho_i^2 = exp(-2 MI_i).
    Both marginals are N(0, I_d); MI = sum_i MI_i. Parametrised by MI rather than rho so that `mi_nats` is exact
    even where rho rounds to 1. Any jointly Gaussian (x, y) is this up to invertible linear maps (CCA), so with
    `Orthogonal` mixing it covers the Gaussian family. Each pair may carry at most MAX_PAIR_MI_NATS (12 nats):
    beyond that the float32 samples cannot hold the information.
    """

    pair_mi_nats: tuple[float, ...]

    def __post_init__(self):
        pair_mi = tuple(float(m) for m in self.pair_mi_nats)
        if not pair_mi:
            raise ValueError("pair_mi_nats is empty: give one MI per dimension")
        if not all(0.0 <= m <= MAX_PAIR_MI_NATS for m in pair_mi):
            raise ValueError(f"each pair's MI must lie in [0, {MAX_PAIR_MI_NATS}] nats (float32 samples cannot carry "
                             f"more), got {pair_mi}; spread the MI over more dimensions")
        object.__setattr__(self, "pair_mi_nats", pair_mi)

    @classmethod
    def from_rhos(cls, rhos) -> "GaussianPairs":
        """Pairs with correlations |rhos| (MI does not depend on the sign)."""
        rhos = tuple(float(r) for r in rhos)
        if not all(-1.0 < r < 1.0 for r in rhos):
            raise ValueError(f"every correlation must lie in (-1, 1) (|rho| = 1 means infinite MI), got {rhos}")
        return cls(tuple(-0.5 * math.log1p(-r * r) for r in rhos))

    @property
    def rhos(self) -> tuple[float, ...]:
        return tuple(math.sqrt(-math.expm1(-2.0 * m)) for m in self.pair_mi_nats)

    @property
    def dim_x(self) -> int:
        return len(self.pair_mi_nats)

    @property
    def dim_y(self) -> int:
        return len(self.pair_mi_nats)

    @property
    def mi_nats(self) -> float:
        return float(math.fsum(self.pair_mi_nats))

    def sample(self, key_or_seed, n: int) -> tuple[np.ndarray, np.ndarray]:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        rho, noise_std = np.asarray(self.rhos), np.exp(-np.asarray(self.pair_mi_nats))
        x = rng.standard_normal((n, self.dim_x))
        y = rho * x + noise_std * rng.standard_normal((n, self.dim_y))
        return _finish(x, y)


@dataclasses.dataclass(frozen=True)
class Independent:
    """x ~ N(0, I_dim_x) and y ~ N(0, I_dim_y) independent: MI = 0 exactly."""

    dim_x: int
    dim_y: int
    mi_nats: float = dataclasses.field(default=0.0, init=False)

    def __post_init__(self):
        if self.dim_x < 1 or self.dim_y < 1:
            raise ValueError(f"dimensions must be >= 1, got dim_x={self.dim_x}, dim_y={self.dim_y}")

    def sample(self, key_or_seed, n: int) -> tuple[np.ndarray, np.ndarray]:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        return _finish(rng.standard_normal((n, self.dim_x)), rng.standard_normal((n, self.dim_y)))


def correlated_gaussian(dim: int, mi_nats: float) -> GaussianPairs:
    """`dim` Gaussian pairs sharing one correlation, total MI `mi_nats` (MI = -dim/2 log(1 - rho^2))."""
    _check_mi(mi_nats, dim)
    return GaussianPairs((mi_nats / dim,) * dim)


def sparse_gaussian(dim: int, k: int, mi_nats: float) -> GaussianPairs:
    """`dim` Gaussian pairs of which the first `k` carry all `mi_nats` (equally); the rest are independent."""
    if not 1 <= k <= dim:
        raise ValueError(f"need 1 <= k <= dim informative pairs, got k={k}, dim={dim}")
    _check_mi(mi_nats, k)
    return GaussianPairs((mi_nats / k,) * k + (0.0,) * (dim - k))


def rotated_gaussian(dim: int, mi_nats: float, seed: int = 0) -> "Transformed":
    """`correlated_gaussian` with x and y each mixed by its own random orthogonal matrix (dense dependence)."""
    return Transformed(
        correlated_gaussian(dim, mi_nats),
        transform_x=Orthogonal(dim, seed=2 * seed),
        transform_y=Orthogonal(dim, seed=2 * seed + 1),
    )


def independent(dim_x: int, dim_y: int | None = None) -> Independent:
    """Independent standard Gaussians (MI 0); dim_y defaults to dim_x."""
    return Independent(dim_x, dim_x if dim_y is None else dim_y)


# -------------------------------------------------------------------------------- invertible transforms


class _Elementwise:
    """An element-wise bijection: `forward` applied to every coordinate, undone by `backward`."""

    forward: staticmethod
    backward: staticmethod

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.forward(z)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return self.backward(z)


@dataclasses.dataclass(frozen=True)
class Cubic(_Elementwise):
    """Element-wise z -> z^3 (heavy tails, zero derivative at 0, still a bijection of R)."""

    forward = staticmethod(lambda z: z ** 3)
    backward = staticmethod(np.cbrt)


@dataclasses.dataclass(frozen=True)
class Asinh(_Elementwise):
    """Element-wise z -> asinh(z) (compresses tails logarithmically)."""

    forward = staticmethod(np.arcsinh)
    backward = staticmethod(np.sinh)


@dataclasses.dataclass(frozen=True)
class NormalCDF(_Elementwise):
    """Element-wise standard normal CDF: N(0, 1) marginals become Uniform(0, 1) (a Gaussian copula)."""

    forward = staticmethod(special.ndtr)
    backward = staticmethod(special.ndtri)


@dataclasses.dataclass(frozen=True)
class Orthogonal:
    """z -> z Q^T with Q a Haar-random dim x dim orthogonal matrix drawn from `seed` (dense mixing)."""

    dim: int
    seed: int = 0

    @functools.cached_property
    def matrix(self) -> np.ndarray:
        g = np.random.default_rng(self.seed).standard_normal((self.dim, self.dim))
        q, r = np.linalg.qr(g)
        return q * np.sign(np.diag(r))  # sign fix makes Q Haar-distributed

    def _check(self, z: np.ndarray) -> None:
        if z.shape[-1] != self.dim:
            raise ValueError(f"Orthogonal({self.dim}) applied to data of width {z.shape[-1]}")

    def __call__(self, z: np.ndarray) -> np.ndarray:
        self._check(z)
        return z @ self.matrix.T

    def inverse(self, z: np.ndarray) -> np.ndarray:
        self._check(z)
        return z @ self.matrix


@dataclasses.dataclass(frozen=True)
class Spiral:
    """Non-element-wise diffeomorphism: rotate each plane (z_2i, z_2i+1) by the angle speed * |z|^2.

    Rotations keep |z|, so the inverse rotates back by the same angle (as bmi's spiral, with a
    block-diagonal generator; an odd last coordinate is left as is). Needs dim >= 2. For N(0, I_d) inputs
    |z|^2 = d +- sqrt(2d), so the angle varies across samples by about speed * sqrt(2d) radians: speed
    ~ 1 / sqrt(2d) gives a one-radian twist, much larger speeds scramble the planes (still invertible).
    """

    speed: float = 1.0

    def _rotate(self, z: np.ndarray, sign: float) -> np.ndarray:
        if z.shape[-1] < 2:
            raise ValueError("Spiral needs at least 2 dimensions to rotate in")
        angle = sign * self.speed * np.sum(z * z, axis=-1, keepdims=True)
        cos, sin = np.cos(angle), np.sin(angle)
        out = z.copy()
        even, odd = z[..., 0:-1:2], z[..., 1::2]
        out[..., 0:-1:2] = cos * even - sin * odd
        out[..., 1::2] = sin * even + cos * odd
        return out

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self._rotate(z, 1.0)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return self._rotate(z, -1.0)


@dataclasses.dataclass(frozen=True)
class Transformed:
    """A sampler with invertible maps applied to x and/or y; MI (and `mi_nats`) unchanged.

    transform_x / transform_y: callables [n, d] -> [n, d] with an `inverse` (None = identity). They are
    applied in float64 before the float32 cast.
    """

    base: Sampler
    transform_x: object = None
    transform_y: object = None

    @property
    def dim_x(self) -> int:
        return self.base.dim_x

    @property
    def dim_y(self) -> int:
        return self.base.dim_y

    @property
    def mi_nats(self) -> float:
        return self.base.mi_nats

    def sample(self, key_or_seed, n: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.base.sample(key_or_seed, n)
        x, y = x.astype(np.float64), y.astype(np.float64)
        if self.transform_x is not None:
            x = self.transform_x(x)
        if self.transform_y is not None:
            y = self.transform_y(y)
        return _finish(x, y)


# ---------------------------------------------------------------------------------------- discrete mixtures


def _normal_tail(z: np.ndarray) -> np.ndarray:
    return 0.5 * special.erfc(z / math.sqrt(2.0))


def conditional_entropy_bound(centres: np.ndarray, noise: float) -> float:
    """Upper bound (nats) on H(index | centre + noise) for equiprobable centres and isotropic noise.

    The maximum-likelihood classifier errs with probability Pe <= mean_c sum_{j != c} Q(|mu_c - mu_j| / 2 sigma)
    (union bound); Fano: H <= h(Pe) + Pe log(K - 1).
    """
    k = centres.shape[0]
    if noise == 0.0:
        return 0.0
    dist = np.sqrt(_squared_distances(centres))
    tails = _normal_tail(dist / (2.0 * noise))
    np.fill_diagonal(tails, 0.0)
    pe = min(float(tails.sum(axis=1).mean()), 1.0 - 1.0 / k)
    if pe == 0.0:
        return 0.0
    binary = -pe * math.log(pe) - (1.0 - pe) * math.log1p(-pe)
    return binary + pe * math.log(k - 1)


@dataclasses.dataclass(frozen=True)
class DiscreteMixture:
    """x and y each at one of K far-apart centres, chosen by one shared uniform index c, plus noise.

    x = mu_c + noise_x * e, y = nu_c + noise_y * e' with centres mu, nu ~ N(0, I) drawn from `seed` (so states
    are O(1), like normalised hidden states) and noise = noise_ratio * (smallest distance between two centres
    of that side). Then ln K - H(c|x) - H(c|y) <= I(x; y) <= ln K; `mi_gap_bound_nats` bounds H(c|x) + H(c|y)
    (union bound + Fano) and construction fails if it exceeds `tolerance_nats`. noise_ratio = 0 gives exactly
    K distinct states (I = ln K exactly). `mi_nats` = ln K. In wide states the noise's norm may exceed the
    spacing of the centres (dim 768: about 48 vs 35) while I stays ln K: only the noise along centre
    differences can confuse two centres.
    """

    k: int
    dim_x: int
    dim_y: int
    noise_ratio: float = 0.05
    seed: int = 0
    tolerance_nats: float = 1e-3

    def __post_init__(self):
        if self.k < 2:
            raise ValueError(f"need k >= 2 centres, got {self.k}")
        if self.dim_x < 1 or self.dim_y < 1:
            raise ValueError(f"dimensions must be >= 1, got dim_x={self.dim_x}, dim_y={self.dim_y}")
        if self.noise_ratio < 0:
            raise ValueError(f"noise_ratio must be >= 0, got {self.noise_ratio}")
        if self.mi_gap_bound_nats > self.tolerance_nats:
            raise ValueError(
                f"noise_ratio={self.noise_ratio} blurs the {self.k} centres: I(x; y) may fall "
                f"{self.mi_gap_bound_nats:.3g} nats below ln K (tolerance {self.tolerance_nats}); lower noise_ratio")

    @functools.cached_property
    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal((self.k, self.dim_x)), rng.standard_normal((self.k, self.dim_y))

    @functools.cached_property
    def noise(self) -> tuple[float, float]:
        """Noise standard deviation (absolute) of x and of y."""
        return tuple(self.noise_ratio * min_distance(c) for c in self.centres)

    @functools.cached_property
    def mi_gap_bound_nats(self) -> float:
        return sum(conditional_entropy_bound(c, s) for c, s in zip(self.centres, self.noise))

    @property
    def mi_nats(self) -> float:
        return math.log(self.k)

    def sample(self, key_or_seed, n: int) -> tuple[np.ndarray, np.ndarray]:
        n, rng = check_n(n), seeded_rng(key_or_seed)
        (mu, nu), (sx, sy) = self.centres, self.noise
        index = rng.integers(0, self.k, size=n)
        x = mu[index] + sx * rng.standard_normal((n, self.dim_x))
        y = nu[index] + sy * rng.standard_normal((n, self.dim_y))
        return _finish(x, y)


def _squared_distances(centres: np.ndarray) -> np.ndarray:
    """[K, K] squared distances via the Gram matrix (no [K, K, d] intermediate for wide states)."""
    sq_norm = np.sum(centres * centres, axis=1)
    return np.maximum(sq_norm[:, None] + sq_norm[None] - 2.0 * centres @ centres.T, 0.0)


def min_distance(centres: np.ndarray) -> float:
    sq = _squared_distances(centres)
    np.fill_diagonal(sq, np.inf)
    return float(np.sqrt(sq.min()))


# --------------------------------------------------------------------------------------------- staircase


@dataclasses.dataclass(frozen=True)
class Staircase:
    """Correlated Gaussians whose MI steps up over training (Poole et al. 2019; Song & Ermon 2020, Fig. 1).

    Level i (training steps [i * steps_per_level, (i + 1) * steps_per_level)) is
    `correlated_gaussian(dim, levels_nats[i])`. The original uses dim = 20, levels 2, 4, 6, 8, 10 nats,
    4,000 steps per level, batch 64; `transform_y=Cubic()` gives the "cubic" variant.
    """

    levels_nats: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0)
    steps_per_level: int = 4000
    dim: int = 20
    transform_y: object = None

    def __post_init__(self):
        object.__setattr__(self, "levels_nats", tuple(float(m) for m in self.levels_nats))
        if not self.levels_nats or self.steps_per_level < 1:
            raise ValueError("need at least one MI level and steps_per_level >= 1")

    @property
    def num_steps(self) -> int:
        return len(self.levels_nats) * self.steps_per_level

    @property
    def levels(self) -> tuple[Sampler, ...]:
        """One sampler per level (each with its own `mi_nats`), e.g. for `estimate_batch`."""
        gaussians = [correlated_gaussian(self.dim, m) for m in self.levels_nats]
        if self.transform_y is None:
            return tuple(gaussians)
        return tuple(Transformed(g, transform_y=self.transform_y) for g in gaussians)

    @property
    def mi_schedule_nats(self) -> np.ndarray:
        """[num_steps] true MI at each training step."""
        return np.repeat(np.asarray(self.levels_nats), self.steps_per_level)

    @property
    def rho_schedule(self) -> np.ndarray:
        """[num_steps] per-dimension correlation at each training step."""
        return np.repeat([rho_for_mi(m, self.dim) for m in self.levels_nats], self.steps_per_level)

    def sample(self, key_or_seed, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Fresh batches for every step: x, y [num_steps, batch_size, dim] float32 (ready for `lax.scan`)."""
        batch_size, rng = check_n(batch_size), seeded_rng(key_or_seed)
        xs, ys = zip(*(level.sample(rng, self.steps_per_level * batch_size) for level in self.levels))
        shape = (self.num_steps, batch_size, self.dim)
        return np.concatenate(xs).reshape(shape), np.concatenate(ys).reshape(shape)


def staircase(steps=(2.0, 4.0, 6.0, 8.0, 10.0), n_per_step: int = 4000, d: int = 20, transform_y=None) -> Staircase:
    """The Poole / Song & Ermon staircase: MI levels `steps` (nats), `n_per_step` training steps per level."""
    return Staircase(tuple(steps), n_per_step, d, transform_y)
