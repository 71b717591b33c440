"""Sweeps across hosts on JAX's multi-controller runtime: start-up and the few host-to-host steps a sweep needs.

One process runs per host (or per GPU); every process runs the same program on the same inputs, and
`jax.devices()` then lists the devices of all processes, so `ie_jax.sharding.make_mesh()` is the global mesh.
The sweep stays the same program everywhere; what differs is only:
- `initialize`: join the processes (explicit coordinator, else JAX's own detection of TPU pods, SLURM and
  Open MPI, else one process); gloo collectives on CPU; timeouts so one failed process stops the others;
- `to_host`: arrays sharded over all hosts' devices come back whole to every process (`jax.device_get` with an
  all-gather of the results, which are small: the inputs never travel to one host);
- `broadcast_json`: process 0's value (finished chunks, the chunk size, the estimates) sent to all, so every
  process forms the same chunks although only process 0 reads and writes the run directory (`is_leader`);
- `context_problems`: states captured sharded over sequences on all hosts' devices (`capture(..., mesh=)`)
  become the MI problems, sharded over problems, by one resharding inside `jit` (no host gathers them).
With one process every function is the identity and costs nothing.
"""

from __future__ import annotations

import json

import jax
import numpy as np

DEFAULT_INIT_TIMEOUT_S = 300
DEFAULT_HEARTBEAT_TIMEOUT_S = 60


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, init_timeout_s: int = DEFAULT_INIT_TIMEOUT_S,
               heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S) -> int:
    """Join this process to a multi-process run; returns the number of processes. Call before any JAX work.

    coordinator: "HOST:PORT" of process 0 (it serves there), with num_processes and process_id (0..N-1).
    None of them: JAX's auto-detection where a multi-process cluster is present (TPU pod slice, SLURM with
    several tasks, Open MPI), else a single process (nothing to do).
    init_timeout_s: how long to wait for all processes to join; heartbeat_timeout_s: after how long without
    a heartbeat a process counts as dead, which stops the others with an error instead of a hang.
    Raises ConnectionError when the processes do not all join within init_timeout_s.
    """
    explicit = (coordinator, num_processes, process_id)
    if any(v is not None for v in explicit) and any(v is None for v in explicit):
        raise ValueError("give --coordinator HOST:PORT, --num-processes N and --process-id I together (or none of "
                         "them, for auto-detection on TPU pods, SLURM and Open MPI)")
    if jax.distributed.is_initialized():
        return jax.process_count()
    if coordinator is not None:
        _check_explicit(coordinator, num_processes, process_id)
        if num_processes == 1:
            return 1
    elif _detected_process_count() <= 1:
        return 1
    # Collectives between CPU processes (tests, CPU clusters) need gloo; GPU/TPU use their own and ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=int(init_timeout_s),
                                   heartbeat_timeout_seconds=int(heartbeat_timeout_s))
    except RuntimeError as e:
        if "must be called before" in str(e):
            raise RuntimeError("ie_jax.distributed.initialize must run before any JAX computation (first thing in "
                               "the program)") from e
        where = coordinator or "the auto-detected coordinator"
        raise ConnectionError(f"could not join the {num_processes or 'detected'}-process run at {where} within "
                           f"{init_timeout_s} s: start every process with the same --coordinator and "
                           f"--num-processes, process ids 0..N-1 ({e})") from e
    return jax.process_count()


def _check_explicit(coordinator: str, num_processes: int, process_id: int) -> None:
    host, sep, port = str(coordinator).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--coordinator must be HOST:PORT (process 0's address), got {coordinator!r}")
    if int(num_processes) < 1:
        raise ValueError(f"--num-processes must be >= 1, got {num_processes}")
    if not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"--process-id must lie in 0..{int(num_processes) - 1}, got {process_id}")


def _detected_process_count() -> int:
    """Processes of the cluster JAX's auto-detection sees (TPU pod, SLURM, Open MPI), 1 where there is none.

    Only a cluster of several processes is joined: a one-task SLURM job keeps all of its node's GPUs (JAX's
    SLURM detection would give the single process one GPU).
    """
    try:
        from jax._src import clusters  # JAX's own detection; private, hence the fallback below
    except ImportError:
        return 1
    for env in clusters.ClusterEnv._cluster_types:
        if env.opt_in_only_method or not env.is_env_present():
            continue
        try:
            return int(env.get_process_count())
        except Exception:  # e.g. a TPU VM without pod metadata: treat as one host
            return 1
    return 1


def explain_failure(error: BaseException) -> BaseException:
    """A runtime error of a multi-process run (a collective cut off because another process died) as a
    ConnectionError that says so and how to resume; any other error as it is."""
    if jax.process_count() == 1 or type(error).__name__ not in ("JaxRuntimeError", "XlaRuntimeError"):
        return error
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConnectionError(f"another process of this {jax.process_count()}-process run failed or stopped ({first}): "
                           "see its log, then start every process again with the same command to resume from the "
                           "finished chunks")


def process_count() -> int:
    return jax.process_count()


def is_leader() -> bool:
    """True on process 0, the one that reads and writes the run directory and prints."""
    return jax.process_index() == 0


def mesh_size(n_problems: int) -> int:
    """Devices for a default problem mesh: one per problem up to all of them; across hosts always all, since
    every process must hold part of the mesh it computes on."""
    n_devices = len(jax.devices())
    return n_devices if jax.process_count() > 1 else max(1, min(n_problems, n_devices))


def to_host(tree):
    """`tree` (an array or any pytree of them) as numpy on every process: `jax.device_get`, except that arrays
    spanning other processes' devices are all-gathered first (results are small; inputs never travel this way)."""
    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(jax.device_get(leaf))

    return jax.tree.map(fetch, tree)


def broadcast_json(value):
    """Process 0's `value` (anything JSON can hold, NaN included) on every process; one process: `value`."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode("utf-8"), np.uint8) if is_leader() else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.array(data.size, np.int64)))
    buffer = np.zeros(size, np.uint8)
    buffer[: data.size] = data
    return json.loads(np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes().decode("utf-8"))


def context_problems(block_input, block_output, mesh) -> tuple[jax.Array, jax.Array]:
    """Captured states as MI problems, resharded on the devices: sequences-sharded in, problems-sharded out.

    block_input, block_output: [L, B, P, d] (a `capture(..., mesh=)`: the B sequences split over the mesh).
    Returns x, y [L*P padded to a multiple of the mesh's devices, B, d]: problem l*P + p is block l's input and
    output at position p (the sweep's order of context problems); padding repeats the last problem. Every device
    then holds all B pairs of its own problems; the all-to-all between them runs inside one jitted program.
    """
    from ie_jax import sharding

    n_problems = block_input.shape[0] * block_input.shape[2]
    size = -(-n_problems // mesh.devices.size) * mesh.devices.size
    target = sharding.problem_sharding(mesh)
    return jax.jit(_as_problems, static_argnums=2, out_shardings=(target, target))(block_input, block_output, size)


def _as_problems(block_input, block_output, size):
    import jax.numpy as jnp

    def one(states):
        layers, batch, positions, hidden = states.shape
        problems = states.transpose(0, 2, 1, 3).reshape(layers * positions, batch, hidden)
        pad = jnp.repeat(problems[-1:], size - problems.shape[0], axis=0)
        return jnp.concatenate([problems, pad]) if size > problems.shape[0] else problems

    return one(block_input), one(block_output)
