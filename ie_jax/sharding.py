"""Device meshes and problem-axis sharding for batched MI estimation.

MI problems (layers x tokens x seeds of a sweep) are independent, so the leading problem axis of
`estimate_batch`'s arrays is split across devices with `jax.jit` + `NamedSharding` (the job pmap
used to do; pmap is in maintenance mode). Each device trains its own slice of critics; nothing is
communicated until the results are gathered. The problem count is padded to a multiple of the device
count and the padding dropped afterwards.

Several hosts (e.g. a TPU pod): call `jax.distributed.initialize()` on every host before building
the mesh; `make_mesh()` then spans all global devices and the same code runs on each host.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PROBLEM_AXIS = "problems"


def make_mesh(n_devices: int | None = None, *, devices=None) -> Mesh:
    """1-D mesh with axis "problems" over the first `n_devices` devices (default: all of them)."""
    devices = list(devices if devices is not None else jax.devices())
    if n_devices is not None:
        if not 1 <= n_devices <= len(devices):
            raise ValueError(f"n_devices={n_devices} but {len(devices)} devices are available")
        devices = devices[:n_devices]
    # Auto axes: explicit-sharding axes would make gathers inside the training step ambiguous.
    return Mesh(np.array(devices), (PROBLEM_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def problem_sharding(mesh: Mesh) -> NamedSharding:
    """Shard the leading (problem) axis over the mesh; the other axes stay whole on each device."""
    return NamedSharding(mesh, PartitionSpec(PROBLEM_AXIS))


def pad_problems(a, size: int):
    """Pad the leading axis to `size` by repeating the last problem (real data: no NaN/degenerate padding).

    Works where the array lives: a jax array is padded on its device, a numpy array on the host."""
    missing = size - a.shape[0]
    if missing < 0:
        raise ValueError(f"cannot pad {a.shape[0]} problems down to {size}")
    if missing == 0:
        return a
    xp = jnp if isinstance(a, jax.Array) else np
    return xp.concatenate([a, xp.repeat(a[-1:], missing, axis=0)], axis=0)


def shard_problems(a, mesh: Mesh) -> jax.Array:
    """Place [P, ...] on the mesh with P split across devices (P must divide by the device count)."""
    if a.shape[0] % mesh.devices.size:
        raise ValueError(f"{a.shape[0]} problems do not divide over {mesh.devices.size} devices: pad first")
    return jax.device_put(a, problem_sharding(mesh))
