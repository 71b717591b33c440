"""Dense linear algebra inside jitted MI programs that never stalls the CPU backend.

Why: jaxlib 0.10's CPU LAPACK kernels (getrf, potrf, ...) split a batch of matrices into tasks on XLA's
intra-op thread pool and block the calling thread until they finish (`jax::ParallelBatchMap` ->
`BlockingCounter::Wait`). XLA runs independent operations of one program on threads of that same pool, so
when as many LAPACK calls run at once as the pool has threads (2 on a 2-core machine), every thread waits
for tasks that no free thread will ever run: the process sits at 0% CPU forever. Seen in `mi.estimate` (the
Gaussian critic's solves vmapped over shrinkages, the copula's log-determinants); reproduced in
tests/mi/test_linalg.py. jaxlib 0.11 compiles that parallel path out, but Python 3.11 has no jaxlib 0.11.

So on the CPU the [d, d] algebra runs in numpy (its own LAPACK, which never touches XLA's pool) through
`jax.pure_callback`; on GPU and TPU it stays in XLA (cuSOLVER etc.). `jax.lax.platform_dependent` picks per
compiled platform, so one traced function serves both. Matrices may carry leading batch axes, and the
functions may be vmapped (numpy's routines broadcast over stacks). The callbacks run one at a time: XLA may call
several at once from its pool, and OpenBLAS runs a call that finds its threads busy on fewer threads, which rounds
differently, so concurrent calls made results depend on timing (1 ulp, seen as a flaky selection). numpy never
calls back into XLA, so holding the lock cannot deadlock.
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np

_ONE_AT_A_TIME = threading.Lock()


def _locked(fn):
    def run(*args):
        with _ONE_AT_A_TIME:
            return fn(*args)
    return run


def _on_host(numpy_fn, out_shape_fn):
    """A jax function that runs numpy_fn (float64 algebra) in a host callback.

    The callback's result passes through JAX's dtype canonicalisation on the executing thread, where float64 is
    off unless the whole process enabled it: a float64 result therefore travels as two float32 words
    (hi + lo, about 48 bits) and is summed again in float64 inside the program."""

    def host(*args):
        shape = out_shape_fn(*args)
        if shape.dtype != np.float64:
            return jax.pure_callback(_locked(lambda *a: np.asarray(numpy_fn(*a), shape.dtype)), shape, *args,
                                     vmap_method="broadcast_all")

        @_locked
        def split(*a):
            value = np.asarray(numpy_fn(*a), np.float64)
            hi = value.astype(np.float32)
            return hi, (value - hi).astype(np.float32)

        words = jax.ShapeDtypeStruct(shape.shape, np.float32)
        hi, lo = jax.pure_callback(split, (words, words), *args, vmap_method="broadcast_all")
        return hi.astype(shape.dtype) + lo.astype(shape.dtype)

    return host


def logdet(a):
    """log |det a| of square matrices a [..., d, d] (symmetric positive definite here: the sign is +1)."""
    host = _on_host(lambda m: np.linalg.slogdet(m)[1], lambda m: jax.ShapeDtypeStruct(m.shape[:-2], m.dtype))
    return jax.lax.platform_dependent(a, cpu=host, default=lambda m: jnp.linalg.slogdet(m)[1])


def solve(a, b):
    """a^-1 b for a [..., d, d], b [..., d, k]."""
    host = _on_host(np.linalg.solve, lambda m, r: jax.ShapeDtypeStruct(r.shape, r.dtype))
    return jax.lax.platform_dependent(a, b, cpu=host, default=jnp.linalg.solve)


def inv(a):
    """a^-1 for a [..., d, d]."""
    host = _on_host(np.linalg.inv, lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype))
    return jax.lax.platform_dependent(a, cpu=host, default=jnp.linalg.inv)
