"""k-nearest-neighbour mutual information: the KSG estimator, batched over problems and jitted.

KSG estimator 1 (Kraskov, Stoegbauer & Grassberger, "Estimating mutual information", Phys. Rev. E 69, 066138,
2004), in nats:

    I(x; y) ~ psi(k) + psi(N) - < psi(n_x(i) + 1) + psi(n_y(i) + 1) >_i

with the max-norm in every space; eps_i the distance from sample i to its k-th nearest neighbour in the joint
space (itself excluded), and n_x(i) the number of samples j != i with |x_j - x_i|_inf < eps_i (strictly), same
for n_y. Distances are float32 (or the inputs' wider float type).

Use it on low-dimensional continuous data: its bias grows quickly with the dimension, and it assumes no ties.
Discrete or duplicated samples (eps_i = 0, zero counts) make the estimate invalid; no jitter is added here, so
callers that might have ties should add their own tiny continuous noise. Non-finite inputs are not checked
(the compiled core does not look at values).

Memory: rows are processed in chunks of `row_chunk` against all N samples, so one problem needs
O(row_chunk * N) memory, not O(N^2); `ksg_batch` vmaps that over the problem axis.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["ksg_terms", "ksg_batch", "radial_features"]


def _float(a, name: str, rank: int) -> jax.Array:
    a = jnp.asarray(a)
    if a.ndim != rank:
        raise ValueError(f"{name} must have rank {rank}, got shape {a.shape}")
    # bf16 or integer inputs still get float32 distances.
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def _check(x, y, k: int, row_chunk: int) -> None:
    n = x.shape[-2]
    if y.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"x and y need the same problems and samples, got shapes {x.shape} and {y.shape}")
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N - 1] = [1, {n - 1}], got {k}")
    if row_chunk < 1:
        raise ValueError(f"row_chunk must be >= 1, got {row_chunk}")


def _max_norm_distances(rows, cols) -> jax.Array:
    """rows [R, d], cols [N, d] -> [R, N] max-norm distances (XLA fuses the broadcast into the reduction)."""
    return jnp.max(jnp.abs(rows[:, None, :] - cols[None, :, :]), axis=-1)


def _terms(x, y, k: int, row_chunk: int) -> jax.Array:
    """One problem: x [N, dx], y [N, dy] -> per-sample KSG terms [N] (nats)."""
    n = x.shape[0]
    row_chunk = min(row_chunk, n)
    n_chunks = -(-n // row_chunk)
    pad = n_chunks * row_chunk - n
    # Only rows are padded (with zeros); columns stay the N real samples, so padded rows never count as
    # neighbours, and their own results are sliced off below.
    x_rows = jnp.pad(x, ((0, pad), (0, 0))).reshape(n_chunks, row_chunk, x.shape[1])
    y_rows = jnp.pad(y, ((0, pad), (0, 0))).reshape(n_chunks, row_chunk, y.shape[1])
    row_index = jnp.arange(n_chunks * row_chunk).reshape(n_chunks, row_chunk)
    col_index = jnp.arange(n)

    def counts(chunk):
        x_chunk, y_chunk, index = chunk
        # +inf on the diagonal excludes each sample from its own neighbours and from its own counts.
        is_self = index[:, None] == col_index[None, :]
        dist_x = jnp.where(is_self, jnp.inf, _max_norm_distances(x_chunk, x))
        dist_y = jnp.where(is_self, jnp.inf, _max_norm_distances(y_chunk, y))
        neg_nearest, _ = jax.lax.top_k(-jnp.maximum(dist_x, dist_y), k)
        # min over all k rather than slicing column k - 1: XLA:CPU keeps its fast TopK only when the whole
        # top-k output is used (a slice of it turned into a full sort of every row, 50x slower).
        eps = -jnp.min(neg_nearest, axis=1, keepdims=True)
        return jnp.sum(dist_x < eps, axis=1), jnp.sum(dist_y < eps, axis=1)

    n_x, n_y = jax.lax.map(counts, (x_rows, y_rows, row_index))
    n_x, n_y = n_x.reshape(-1)[:n].astype(x.dtype), n_y.reshape(-1)[:n].astype(x.dtype)
    digamma = jax.scipy.special.digamma
    constant = digamma(jnp.asarray(k, x.dtype)) + digamma(jnp.asarray(n, x.dtype))
    return constant - digamma(n_x + 1) - digamma(n_y + 1)


_terms_jit = jax.jit(_terms, static_argnames=("k", "row_chunk"))


def ksg_terms(x, y, k: int = 3, row_chunk: int = 1024) -> jax.Array:
    """Per-sample KSG terms of one problem, in nats; their mean is the KSG estimate.

    x [N, dx], y [N, dy] float arrays -> [N]: psi(k) + psi(N) - psi(n_x(i) + 1) - psi(n_y(i) + 1), with
    eps_i the max-norm distance to the k-th nearest neighbour in the joint space (self excluded) and
    n_x(i) = #{j != i : |x_j - x_i|_inf < eps_i} (strict), same for n_y. Needs 1 <= k < N.
    """
    x, y = _float(x, "x", 2), _float(y, "y", 2)
    _check(x, y, k, row_chunk)
    dtype = jnp.promote_types(x.dtype, y.dtype)
    return _terms_jit(x.astype(dtype), y.astype(dtype), k=k, row_chunk=row_chunk)


@functools.partial(jax.jit, static_argnames=("k", "row_chunk"))
def _batch(x, y, k: int, row_chunk: int) -> dict[str, jax.Array]:
    terms = jax.vmap(functools.partial(_terms, k=k, row_chunk=row_chunk))(x, y)
    n = terms.shape[-1]
    return {"value": jnp.mean(terms, axis=-1), "stderr": jnp.std(terms, axis=-1, ddof=1) / jnp.sqrt(n)}


def ksg_batch(x, y, k: int = 3, row_chunk: int = 1024) -> dict[str, jax.Array]:
    """KSG estimates of P problems in one compiled program.

    x [P, N, dx], y [P, N, dy] (jax arrays, possibly sharded over P) -> {"value": [P] nats, the mean of the
    per-sample terms; "stderr": [P], their standard deviation (ddof 1) / sqrt(N)}, as device arrays. The
    stderr treats the terms as independent, which they are not quite (neighbours share points), so read it
    as a scale of the sampling noise, not an exact interval. Rows are processed `row_chunk` at a time against
    all N samples: memory O(row_chunk * N) per problem. The result does not depend on row_chunk.
    """
    x, y = _float(x, "x", 3), _float(y, "y", 3)
    _check(x, y, k, row_chunk)
    dtype = jnp.promote_types(x.dtype, y.dtype)
    return _batch(x.astype(dtype), y.astype(dtype), k=k, row_chunk=row_chunk)


def radial_features(a) -> jax.Array:
    """a [..., N, d] -> [..., N, 1]: log of each sample's Euclidean norm.

    For elliptical data sharing a scale, e.g. the multivariate Student-t x = z_x / sqrt(w / nu),
    y = z_y / sqrt(w / nu) with one w per sample, the coordinates can be uncorrelated while the norms carry
    the dependence: log|x| and log|y| both contain -1/2 log w. KSG on these features sees it. Normalise
    (centre, whiten) before calling; norms are floored at the dtype's smallest normal number so log(0) is finite.
    """
    a = jnp.asarray(a)
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    norm = jnp.linalg.norm(a, axis=-1, keepdims=True)
    return jnp.log(jnp.maximum(norm, jnp.finfo(a.dtype).tiny))
