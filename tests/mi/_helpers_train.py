"""Critic training on every problem at once: one chunk on one device, as numpy arrays (the package plans chunks
in `ie_jax.mi.estimate.estimate_batch` only)."""

import jax
import numpy as np

from ie_jax import sharding
from ie_jax.mi.train import seed_keys, train_critics


def train_one_chunk(cfg, x, y, x_test, y_test, seeds):
    """`train_critics` records for x [P, N, dx] etc., every problem in one chunk."""
    eval_batch = min(int(cfg.batch_size or x_test.shape[1]), x_test.shape[1]) if x_test.shape[1] else 0
    if cfg.dtype != "float32":  # bf16 data travel as bf16, as estimate_batch sends them
        x, y, x_test, y_test = (a.astype(jax.numpy.bfloat16) for a in (x, y, x_test, y_test))
    out = train_critics(cfg, x, y, x_test, y_test, seed_keys(seeds, sharding.make_mesh(1)), eval_batch=eval_batch)
    return jax.tree.map(np.asarray, out)
