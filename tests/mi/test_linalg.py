"""ie_jax.mi.linalg: float64 algebra equal to numpy's, no LAPACK call left in CPU programs, and no stall.

The stall (issue 26): jaxlib 0.10's CPU LAPACK kernels wait on XLA's intra-op pool for batch tasks that no
free thread of that pool will run. Before `ie_jax.mi.linalg`, the script in `STALL_SCRIPT` stopped using CPU
within its first seconds on this 2-core machine, every time; it is run in a subprocess under a watchdog that
fails when the process's CPU time stops growing, never on wall time.
"""

import os
import pathlib
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ie_jax.mi import gaussian_critic, linalg, selection

IDLE_LIMIT_S = 60  # no CPU time for this long: stalled


def _spd(rng, *shape):
    a = rng.standard_normal(shape)
    return a @ np.swapaxes(a, -1, -2) + 1e-3 * np.eye(shape[-1])


def test_float64_results_equal_numpy_batched_and_vmapped():
    rng = np.random.default_rng(0)
    a, b = _spd(rng, 3, 40, 40), rng.standard_normal((3, 40, 5))
    with jax.enable_x64(True):
        logdet, solved, inverse = jax.jit(lambda a, b: (linalg.logdet(a), linalg.solve(a, b), linalg.inv(a)))(a, b)
        vmapped = jax.jit(jax.vmap(linalg.logdet))(a)
    assert logdet.dtype == jnp.float64
    np.testing.assert_allclose(logdet, np.linalg.slogdet(a)[1], rtol=1e-12)
    np.testing.assert_allclose(vmapped, np.linalg.slogdet(a)[1], rtol=1e-12)
    np.testing.assert_allclose(solved, np.linalg.solve(a, b), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(inverse, np.linalg.inv(a), rtol=1e-9, atol=1e-12)


def test_cpu_programs_hold_no_lapack_call():
    """The programs that stalled lower to no jaxlib LAPACK kernel on the CPU (jnp.linalg would)."""
    x = jnp.zeros((2, 600, 8), jnp.float32)
    with jax.enable_x64(True):
        assert "lapack" in jax.jit(lambda m: jnp.linalg.slogdet(m)[1]).lower(jnp.eye(4)).as_text()  # the check sees it
        critic = gaussian_critic._heldout_batch.lower(x[:, :400], x[:, :400], x[:, 400:], x[:, 400:], bound="dv",
                                                      eval_batch=64, one_at_a_time=False).as_text()
        idx = np.arange(200, dtype=np.int32)
        copula = selection._copula_batch.lower(x, x, 0.0, 0.0, idx, idx + 200).as_text()
    assert "lapack" not in critic
    assert "lapack" not in copula


STALL_SCRIPT = textwrap.dedent("""
    import jax.numpy as jnp, numpy as np
    from ie_jax import mi
    from ie_jax.mi import gaussian_critic
    rng = np.random.default_rng(0)
    for i in range(60):  # the Gaussian critic, vmapped over shrinkages: stalled in its first calls before
        x = jnp.asarray(rng.standard_normal((2, 2000, 64)), jnp.float32)
        y = x + jnp.asarray(rng.standard_normal((2, 2000, 64)), jnp.float32)
        out = gaussian_critic.heldout_bounds_batch("dv", x[:, :1500], y[:, :1500], x[:, 1500:], y[:, 1500:], 128)
        np.asarray(out["heldout_batches"])
    states = rng.standard_normal((50, 64)).astype(np.float32)  # a token-like micro problem, end to end
    x = states[rng.integers(0, 50, 3000)]
    y = np.tanh(x @ rng.standard_normal((64, 64)).astype(np.float32) / 8) + x
    print("value", mi.estimate(x, y, steps=200).value, flush=True)
""")


def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, every thread


@pytest.mark.slow
@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_no_stall_under_watchdog(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}  # the real core count sizes XLA's pool
    script = tmp_path / "stall.py"
    script.write_text(STALL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    last, last_change = -1.0, time.monotonic()
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            try:
                used = _cpu_seconds(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            if used > last:
                last, last_change = used, time.monotonic()
            elif time.monotonic() - last_change > IDLE_LIMIT_S:
                pytest.fail(f"stalled: no CPU time for {IDLE_LIMIT_S} s after {used:.0f} CPU-seconds")
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    assert proc.returncode == 0, output
    assert "value" in output
