"""Critic networks f(x, y) for neural MI bounds, as pure functions over parameter pytrees.

A critic is a pair (init, apply):
  - `init(key, dx, dy) -> params` (a pytree of float32 arrays, so P problems' params stack on a
    leading axis with `jax.vmap(init)` and train together);
  - concat critics: `apply(params, x[B, dx], y[B, dy], marginal_index[M]) -> (joint[B], marginal[M])`
    where marginal pair m is (x[m], y[marginal_index[m]]) (M == B: one permutation of y);
  - separable critics: `apply(params, x[B, dx], y[B, dy]) -> scores[B, B]`, scores[i, j] = f(x_i, y_j),
    every pair of the batch for 2B network evaluations (joint pairs on the diagonal).

Concat critics compute the first layer's x-part (x @ W_x) and y-part (y @ W_y) once and reuse them:
the marginal pairs only permute rows of y @ W_y, so the first layer costs two [B, d] x [d, h1]
matmuls instead of the reference's [2B, 2d] x [2d, h1] (a 2x saving on the largest layer).

`compute_dtype=jnp.bfloat16` runs every matmul on bf16 inputs with float32 accumulation inside the
matmul, as torch autocast: hidden-layer outputs, biases and LeakyReLU activations are bf16 (critic training
is memory-bound, so halving the activation bytes measured 1.96x per step on an H200, benchmarks/README.md);
the final scores, and so the loss, are float32. With float32 every array stays float32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

# The reference critic (Chen et al. 2025 code, MINE_for_LLMs.py): 2d -> 768 -> ... -> 3 -> 1.
PAPER_HIDDEN = (768, 384, 192, 96, 48, 24, 12, 6, 3)
LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU default


@dataclasses.dataclass(frozen=True)
class Critic:
    """A critic family: `separable` says whether `apply` returns the dense [B, B] score matrix."""

    name: str
    init: Callable[..., Any]
    apply: Callable[..., Any]
    separable: bool


def xavier_normal(key, fan_in: int, fan_out: int) -> jax.Array:
    """Glorot/Xavier normal [fan_in, fan_out], std = sqrt(2 / (fan_in + fan_out)) (torch's xavier_normal_)."""
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return std * jax.random.normal(key, (fan_in, fan_out), jnp.float32)


def _matmul(a, w, compute_dtype, out_dtype=jnp.float32):
    return jnp.matmul(a.astype(compute_dtype), w.astype(compute_dtype), preferred_element_type=out_dtype)


def _hidden(a, w, b, compute_dtype):
    """A hidden layer's pre-activation a @ w + b in compute_dtype (bf16 activations under bf16)."""
    return _matmul(a, w, compute_dtype, compute_dtype) + b.astype(compute_dtype)


def _leaky_relu(h):
    return jnp.where(h >= 0, h, LEAKY_SLOPE * h)


def _mlp_init(key, sizes: tuple[int, ...]) -> list[dict[str, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": xavier_normal(k, n_in, n_out), "b": jnp.zeros((n_out,), jnp.float32)}
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])
    ]


def _mlp_apply(layers, h, compute_dtype, *, activate_last: bool):
    """Hidden layers in compute_dtype; a linear last layer (activate_last=False) returns float32."""
    for i, layer in enumerate(layers):
        if activate_last or i < len(layers) - 1:
            h = _leaky_relu(_hidden(h, layer["w"], layer["b"], compute_dtype))
        else:
            h = _matmul(h, layer["w"], compute_dtype) + layer["b"]
    return h


def concat_mlp(hidden: tuple[int, ...] = PAPER_HIDDEN, *, compute_dtype=jnp.float32, name: str | None = None) -> Critic:
    """Concat critic f(x, y) = MLP([x, y]) with LeakyReLU(0.01), Xavier-normal weights, zero biases.

    `hidden` are the hidden widths; the output is one score. The first layer's weight is one
    Xavier-normal [dx + dy, h1] matrix (fan-in dx + dy, as torch's nn.Linear(dx + dy, h1)),
    stored split as w_x [dx, h1] and w_y [dy, h1].
    """
    hidden = tuple(int(h) for h in hidden)

    def init(key, dx: int, dy: int):
        k_first, k_rest = jax.random.split(key)
        w = xavier_normal(k_first, dx + dy, hidden[0])
        first = {"w_x": w[:dx], "w_y": w[dx:], "b": jnp.zeros((hidden[0],), jnp.float32)}
        return {"first": first, "rest": _mlp_init(k_rest, hidden + (1,))}

    def apply(params, x, y, marginal_index):
        first = params["first"]
        hx = _matmul(x, first["w_x"], compute_dtype, compute_dtype)  # [B, h1], shared by joint and marginal pairs
        hy = _hidden(y, first["w_y"], first["b"], compute_dtype)  # [B, h1]
        pre = jnp.concatenate([hx + hy, hx[: marginal_index.shape[0]] + hy[marginal_index]], axis=0)
        scores = _mlp_apply(params["rest"], _leaky_relu(pre), compute_dtype, activate_last=False)[:, 0]
        n_joint = x.shape[0]
        return scores[:n_joint], scores[n_joint:]

    return Critic(name or ("paper_concat" if hidden == PAPER_HIDDEN else f"concat{list(hidden)}"), init, apply, False)


def paper_concat(*, compute_dtype=jnp.float32) -> Critic:
    """The paper's critic exactly: 2d -> 768 -> 384 -> 192 -> 96 -> 48 -> 24 -> 12 -> 6 -> 3 -> 1."""
    return concat_mlp(PAPER_HIDDEN, compute_dtype=compute_dtype, name="paper_concat")


def separable_mlp(hidden: tuple[int, ...] = (256, 256), embed_dim: int = 64, *, skip: bool = False,
                  compute_dtype=jnp.float32) -> Critic:
    """Separable critic f(x, y) = g(x) . h(y) / sqrt(embed_dim) with two MLP encoders.

    g, h: d -> hidden... -> embed_dim (LeakyReLU between layers, linear output). Scores for all
    B x B pairs cost 2B encoder passes plus one [B, E] x [E, B] matmul. skip=True adds a linear map of the
    input to each embedding (g(x) = MLP(x) + x W), so the bilinear score x^T A y of jointly Gaussian data
    is one linear path rather than approximated by LeakyReLU pieces; it also starts the critic at the
    constant score 0 (see init).
    """
    hidden = tuple(int(h) for h in hidden)
    scale = 1.0 / math.sqrt(embed_dim)

    def init(key, dx: int, dy: int):
        kg, kh = jax.random.split(key)
        params = {"g": _mlp_init(kg, (dx,) + hidden + (embed_dim,)), "h": _mlp_init(kh, (dy,) + hidden + (embed_dim,))}
        if skip:
            # The untrained critic scores every pair 0 (bound exactly 0, as knowing nothing): h's output layer and
            # the skips start at zero, g stays random so that h's first gradient is not zero. A random start
            # scored -2.3 nats held-out at d = 768 and training never climbed back above 0.
            params["h"][-1]["w"] = jnp.zeros_like(params["h"][-1]["w"])
            params["skip_x"] = jnp.zeros((dx, embed_dim), jnp.float32)
            params["skip_y"] = jnp.zeros((dy, embed_dim), jnp.float32)
        return params

    def apply(params, x, y):
        gx = _mlp_apply(params["g"], x, compute_dtype, activate_last=False)
        hy = _mlp_apply(params["h"], y, compute_dtype, activate_last=False)
        if skip:
            gx = gx + _matmul(x, params["skip_x"], compute_dtype)
            hy = hy + _matmul(y, params["skip_y"], compute_dtype)
        return scale * _matmul(gx, hy.T, compute_dtype)

    return Critic(f"separable{list(hidden)}x{embed_dim}{'+skip' if skip else ''}", init, apply, True)


def make_critic(name: str, *, hidden: tuple[int, ...] | None = None, embed_dim: int = 64, skip: bool = False,
                compute_dtype=jnp.float32) -> Critic:
    """Critic by name: "paper" (the reference MLP), "concat" (configurable widths), "separable"."""
    if name == "paper":
        return paper_concat(compute_dtype=compute_dtype)
    if name == "concat":
        return concat_mlp(hidden or (256, 256), compute_dtype=compute_dtype)
    if name == "separable":
        return separable_mlp(hidden or (256, 256), embed_dim, skip=skip, compute_dtype=compute_dtype)
    raise ValueError(f"unknown critic {name!r}: use 'paper', 'concat' or 'separable'")


def n_params(params) -> int:
    return sum(int(a.size) for a in jax.tree.leaves(params))
