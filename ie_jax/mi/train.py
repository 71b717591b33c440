"""Critic training for P MI problems x S seeds as one compiled program.

`train_critics` trains one critic per (problem, seed): parameters and optimiser states are stacked
on leading [P, S] axes and trained with `jax.vmap`; the steps run in `lax.scan` (no host round-trip
inside the loop). Every step records the training-set bound (nats) with the parameters *before*
that step's update, exactly as the reference loop logs `info`; every `eval_every` steps, and at the
end, the critic is scored on held-out data.

The reference protocol (Chen et al. 2025 code) in these terms: full batch, a fresh random
permutation of y per step for the marginal pairs, Adam 1e-4 with a cubic polynomial decay to 1e-8
after 5 linear warm-up steps (HF `get_polynomial_decay_schedule_with_warmup`), training stops at the
first non-finite bound. A stopped critic keeps its last finite parameters; later steps record NaN.

`training_bytes` is the program's working memory per problem (what `ie_jax.mi.chunks` plans chunks with);
Chunks of problems are planned and run by `ie_jax.mi.estimate.estimate_batch` (`ie_jax.mi.chunks`), never here.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax

from ie_jax.mi import bounds as _bounds
from ie_jax.mi.critics import Critic, make_critic

TRAIN_BOUNDS = ("dv", "nwj", "infonce", "smile", "mine")
SCHEDULES = ("paper", "constant", "cosine")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything the compiled training program depends on (hashable: a static jit argument).

    batch_size: None = full batch (every step uses all training pairs, as the reference).
    eval_every: steps between held-out evaluations of the learning curve (0 = only at the end).
    dtype: matmul input dtype ("bfloat16" = bf16 inputs, fp32 accumulation); the loss is fp32.
    loss_scale: the loss is -bound * loss_scale; the reference minimises bits (1 / ln 2), which under
        Adam changes the steps only through eps.
    early_stopping: read out with the checkpoint (among the `eval_every` ones) that scored best on the
        first held-out batch, and report the other held-out batches only (that batch is a validation set).
    """

    critic: str = "paper"
    hidden: tuple[int, ...] | None = None
    embed_dim: int = 64
    skip: bool = False
    bound: str = "dv"
    smile_clip: float = 5.0
    mine_ema_decay: float = 0.99
    steps: int = 10_000
    batch_size: int | None = None
    lr: float = 1e-4
    schedule: str = "paper"
    warmup_steps: int = 5
    end_lr: float = 1e-8
    power: float = 3.0
    dtype: str = "float32"
    eval_every: int = 0
    loss_scale: float = 1.0
    early_stopping: bool = False

    def __post_init__(self):
        if self.bound not in TRAIN_BOUNDS:
            raise ValueError(f"unknown bound {self.bound!r}: use one of {TRAIN_BOUNDS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: use one of {SCHEDULES}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}: use one of {tuple(DTYPES)}")
        if self.critic not in ("paper", "concat", "separable"):
            raise ValueError(f"unknown critic {self.critic!r}: use 'paper', 'concat' or 'separable'")
        if self.bound == "infonce" and self.critic != "separable":
            raise ValueError("bound='infonce' scores all B x B pairs: use critic='separable' with it")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size is not None and int(self.batch_size) < 2:
            raise ValueError(f"batch_size must be >= 2 (or None for full batch), got {self.batch_size}")
        if self.hidden is not None:
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def make_critic(self) -> Critic:
        return make_critic(self.critic, hidden=self.hidden, embed_dim=self.embed_dim, skip=self.skip,
                           compute_dtype=DTYPES[self.dtype])


def paper_schedule(lr: float, steps: int, warmup_steps: int = 5, end_lr: float = 1e-8, power: float = 3.0):
    """HF `get_polynomial_decay_schedule_with_warmup` as an optax schedule (step count -> learning rate).

    Linear warm-up from 0 over `warmup_steps` (so step 0 has learning rate 0), then
    (lr - end_lr) * (1 - (t - warmup) / (steps - warmup))**power + end_lr, and end_lr after `steps`.
    """

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        warm = lr * t / max(1, warmup_steps)
        remaining = jnp.clip(1.0 - (t - warmup_steps) / max(1, steps - warmup_steps), 0.0, 1.0)
        decay = (lr - end_lr) * remaining**power + end_lr
        return jnp.where(t < warmup_steps, warm, jnp.where(t > steps, end_lr, decay))

    return schedule


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Adam (torch defaults: b1 0.9, b2 0.999, eps 1e-8) with the configured schedule."""
    if cfg.schedule == "paper":
        lr = paper_schedule(cfg.lr, cfg.steps, cfg.warmup_steps, cfg.end_lr, cfg.power)
    elif cfg.schedule == "cosine":
        warmup = min(cfg.warmup_steps, cfg.steps // 2)  # short runs keep half their steps for the decay
        lr = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(cfg.steps, warmup + 1), end_value=cfg.lr * 0.01)
    else:
        lr = cfg.lr
    return optax.adam(lr)


def batch_bound(cfg: TrainConfig, critic: Critic, params, x, y, marginal_index, ema):
    """Bound of one batch. Returns (loss to minimise, (value in nats, new MINE average)).

    x [B, dx], y [B, dy]; marginal_index [B] pairs x[m] with y[marginal_index[m]] (concat critics;
    separable critics use all B(B-1) off-diagonal pairs instead).
    """
    if critic.separable:
        scores = critic.apply(params, x, y)
        if cfg.bound == "infonce":
            value = _bounds.infonce_bound(scores)
            return -value, (value, ema)
        joint, marginal = _bounds.split_scores(scores)
    else:
        joint, marginal = critic.apply(params, x, y, marginal_index)
    if cfg.bound == "mine":
        loss, value, new_ema = _bounds.mine_loss(joint, marginal, ema, cfg.mine_ema_decay)
        return loss, (value, new_ema)
    if cfg.bound == "dv":
        value = _bounds.dv_bound(joint, marginal)
    elif cfg.bound == "nwj":
        value = _bounds.nwj_bound(joint, marginal)
    else:
        # Song & Ermon train SMILE with the Jensen-Shannon gradient: the clipped-DV gradient alone lets the
        # joint scores grow without limit once every marginal score is clipped.
        value = _bounds.smile_bound(joint, marginal, cfg.smile_clip, js_gradient=True)
    return -value, (value, ema)


def _heldout_value(cfg, critic, params, x, y):
    """Bound on one held-out batch, with the derangement i -> i+1 as the marginal pairing (concat)."""
    marginal_index = jnp.roll(jnp.arange(x.shape[0]), -1)
    # MINE's value is the DV bound; the moving average only shapes its gradient.
    eval_cfg = dataclasses.replace(cfg, bound="dv") if cfg.bound == "mine" else cfg
    return batch_bound(eval_cfg, critic, params, x, y, marginal_index, jnp.float32(0.0))[1][0]


def _train_one(cfg: TrainConfig, x, y, x_test, y_test, key, *, eval_batch: int, critic: Critic | None = None):
    """One critic: x [N, dx], y [N, dy], x_test [Nt, dx], key -> dict of per-critic records."""
    critic = cfg.make_critic() if critic is None else critic
    optimizer = make_optimizer(cfg)
    n, dx = x.shape
    dy = y.shape[1]
    k_init, k_steps = jax.random.split(key)
    params = critic.init(k_init, dx, dy)
    full_batch = cfg.batch_size is None or cfg.batch_size >= n
    batch = n if full_batch else int(cfg.batch_size)
    n_test = x_test.shape[0]
    n_eval_batches = n_test // eval_batch if eval_batch else 0
    def scaled_loss(*args):
        loss, aux = batch_bound(cfg, critic, *args)
        return cfg.loss_scale * loss, aux

    loss_grad = jax.value_and_grad(scaled_loss, has_aux=True)

    def step(carry, t):
        params, opt_state, ema, stopped, nan_step = carry
        k_batch, k_perm = jax.random.split(jax.random.fold_in(k_steps, t))
        if full_batch:
            xb, yb = x, y
        else:
            idx = jax.random.permutation(k_batch, n)[:batch]
            xb, yb = x[idx], y[idx]
        marginal_index = jax.random.permutation(k_perm, batch)
        (_, (value, new_ema)), grads = loss_grad(params, xb, yb, marginal_index, ema)
        finite = jnp.isfinite(value) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        stop = stopped | ~finite
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        keep = lambda old, new: jax.tree.map(lambda a, b: jnp.where(stop, a, b), old, new)
        carry = (keep(params, new_params), keep(opt_state, new_opt_state), jnp.where(stop, ema, new_ema), stop,
                 jnp.where(stop & ~stopped, t, nan_step))
        return carry, jnp.where(stopped | ~jnp.isfinite(value), jnp.nan, value)

    def heldout(params, i):
        xb = jax.lax.dynamic_slice_in_dim(x_test, i * eval_batch, eval_batch)
        yb = jax.lax.dynamic_slice_in_dim(y_test, i * eval_batch, eval_batch)
        return _heldout_value(cfg, critic, params, xb, yb)

    carry = (params, optimizer.init(params), jnp.float32(0.0), jnp.array(False), jnp.int32(-1))
    evaluating = bool(cfg.eval_every and n_eval_batches)
    block = cfg.eval_every if evaluating else cfg.steps
    n_blocks, remainder = divmod(cfg.steps, block)

    def run_block(outer, t0):
        carry, best_params, best_value, best_step = outer
        carry, values = jax.lax.scan(step, carry, t0 + jnp.arange(block))
        curve = heldout(carry[0], 0) if evaluating else jnp.float32(jnp.nan)
        if cfg.early_stopping and evaluating:
            better = curve > best_value  # NaN (a stopped critic) never wins
            best_params = jax.tree.map(lambda b, p: jnp.where(better, p, b), best_params, carry[0])
            best_value = jnp.where(better, curve, best_value)
            best_step = jnp.where(better, t0 + block, best_step)
        return (carry, best_params, best_value, best_step), (values, curve)

    # The untrained critic is checkpoint 0: a critic that never beats it on validation data is not read out.
    start_value = heldout(params, 0) if (cfg.early_stopping and evaluating) else jnp.float32(-jnp.inf)
    start_value = jnp.where(jnp.isnan(start_value), -jnp.inf, start_value)
    (carry, best_params, _, best_step), (values, curve) = jax.lax.scan(
        run_block, (carry, params, start_value, jnp.int32(0)), jnp.arange(n_blocks) * block)
    values = values.reshape(-1)
    if remainder:
        carry, tail = jax.lax.scan(step, carry, n_blocks * block + jnp.arange(remainder))
        values = jnp.concatenate([values, tail])
    if cfg.early_stopping and evaluating and n_eval_batches > 1:
        # Batch 0 chose the checkpoint; reading out on it too would bias the value upwards.
        readout_params, readout_batches = best_params, jnp.arange(1, n_eval_batches)
    else:
        readout_params, readout_batches = carry[0], jnp.arange(n_eval_batches)
    if n_eval_batches:
        heldout_batches = jax.lax.map(lambda i: heldout(readout_params, i), readout_batches)
    else:
        heldout_batches = jnp.zeros((0,), jnp.float32)
    if not (cfg.early_stopping and evaluating and n_eval_batches > 1):
        best_step = jnp.int32(cfg.steps)
    return {"train_values": values, "heldout_curve": curve, "heldout_batches": heldout_batches, "nan_step": carry[4],
            "readout_step": best_step}


@functools.partial(jax.jit, static_argnames=("cfg", "eval_batch", "critic"))
def train_critics(cfg: TrainConfig, x, y, x_test, y_test, keys, *, eval_batch: int = 0, critic: Critic | None = None):
    """Train P x S critics in one program.

    x [P, N, dx], y [P, N, dy] training pairs; x_test [P, Nt, dx], y_test [P, Nt, dy] held-out pairs
    (Nt may be 0); keys [S, 2] (uint32 PRNG keys, one per seed, the same for every problem so that a
    problem's result does not depend on its batch-mates); eval_batch: held-out batch size (0 = none);
    critic: a Critic to train in place of `cfg.make_critic()` (e.g. a benchmark's variant of the same family).

    Returns a dict of arrays (nats):
      train_values [P, S, steps]: training-set bound at each step (before the update), NaN after a stop;
      heldout_curve [P, S, steps // eval_every]: held-out bound on the first held-out batch during training;
      heldout_batches [P, S, K]: the readout critic's bound on each held-out batch (K = Nt // eval_batch, or
        K - 1 with early stopping: batch 0 selected the checkpoint);
      nan_step [P, S]: first step with a non-finite bound or gradient, -1 if none;
      readout_step [P, S]: steps taken by the critic that is read out (the early-stopping checkpoint; 0 = the
        untrained critic scored best on the validation batch).
    """
    # bf16 matmul inputs: cast the data once here, not inside every step (callers may pass bf16 already,
    # which also halves the data's device memory).
    x, y, x_test, y_test = (a.astype(DTYPES[cfg.dtype]) for a in (x, y, x_test, y_test))
    one = functools.partial(_train_one, cfg, eval_batch=eval_batch, critic=critic)
    over_seeds = jax.vmap(one, in_axes=(None, None, None, None, 0))
    return jax.vmap(over_seeds, in_axes=(0, 0, 0, 0, None))(x, y, x_test, y_test, keys)


@functools.lru_cache(maxsize=64)
def critic_parameters(cfg: TrainConfig, dx: int, dy: int) -> int:
    """Parameters of one critic (its init traced for shapes only: nothing is computed)."""
    shapes = jax.eval_shape(lambda key: cfg.make_critic().init(key, dx, dy), jax.random.key(0))
    return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))


def training_bytes(cfg: TrainConfig, n_train: int, n_test: int, dx: int, dy: int, n_seeds: int,
                   eval_batch: int = 0) -> int:
    """Working memory of `train_critics` for one problem, all its seeds: its temporaries and outputs, not the
    data it is given (the caller holds those). An upper bound of the compiled program's `memory_analysis()`
    (tests/mi/test_chunks.py), from the critic's size:

    per seed, float32 words: 8 copies of the parameters (parameters, Adam's two moments, gradients, the
    early-stopping checkpoint and the updates), the activations of one training step (both sides of a separable
    critic at every width and its B x B scores, 4 copies: values, activations and their gradients; a concat
    critic's joint and marginal rows, 2 copies) and of one held-out batch, the minibatch's rows and indices,
    and the records; plus, for bfloat16 matmuls, the bf16 copies of the data (3 of them)."""
    batch = n_train if cfg.batch_size is None else min(int(cfg.batch_size), n_train)
    hidden = cfg.hidden or ((768, 384, 192, 96, 48, 24, 12, 6, 3) if cfg.critic == "paper" else (256, 256))

    def activations(b: int) -> int:
        if cfg.critic == "separable":
            return 4 * (2 * b * (sum(hidden) + cfg.embed_dim) + b * b)
        return 2 * (2 * b * sum(hidden) + b * hidden[0])

    steps = int(cfg.steps)
    records = steps + steps // max(1, cfg.eval_every or steps) + (n_test // eval_batch if eval_batch else 0) + 4
    words = (8 * critic_parameters(cfg, dx, dy) + activations(batch) + (activations(eval_batch) if eval_batch else 0)
             + 4 * n_train + 2 * batch * (dx + dy) + records)
    data = 0
    if cfg.dtype != "float32":
        data = 3 * jnp.dtype(DTYPES[cfg.dtype]).itemsize * (n_train + n_test) * (dx + dy)
    return int(4 * n_seeds * words + data)


def seed_keys(seeds, mesh) -> jax.Array:
    """PRNG keys [S] for the critic seeds, replicated on every device of the mesh."""
    from ie_jax import sharding

    keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
    return _wrap_keys(jax.device_put(keys, sharding.replicated(mesh)))


def _wrap_keys(key_data):
    return jax.vmap(jax.random.wrap_key_data)(key_data)
