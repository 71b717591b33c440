"""Chunks of MI problems: how many problems one compiled call takes, planned here and nowhere else.

Every estimator says what one problem of a chunk needs on a device, `Estimator.bytes_per_problem(n, dx, dy)`:
its inputs, every array it keeps between its programs and the largest program's working memory, so that a
chunk of C problems needs at most C times that (per device, C / devices of them). `plan` turns a memory budget
and that cost into a chunk size: the fewest chunks that fit, of equal sizes (one compiled program serves them
all), a multiple of the device count. The sweep (`ie_jax.ie.measure.measure`) plans its chunks with it and runs each
under `planned(size)`, so the estimator inside (`ie_jax.mi.estimate_batch`) takes the sweep's chunk as it comes;
called alone, `estimate_batch` plans with it too.

The budget (`memory_budget`): what the caller gives (bytes, or a size such as "40GiB"), else
`default_memory_budget()`: on a GPU/TPU, DEFAULT_FRACTION of the memory JAX may still allocate on the first
device (its `bytes_limit` less what is in use, e.g. the model's weights), per device. The rest is the margin
for the allocator's fragmentation, for the difference between the CPU compiler's memory analysis (which the
costs are checked against, tests/mi/test_chunks.py) and the GPU's, and for small programs no cost counts. On the
CPU, CPU_MEMORY_BUDGET (at most a quarter of the host's memory) shared by the host devices; host memory is the
only limit there, so a problem larger than that default still runs, one per chunk.

What the costs are held to: `compiled_peak(fn, *args)`, the peak device memory of a sequence of jitted
programs (e.g. one chunk of `estimate_batch`) from XLA's own `memory_analysis()` of each compiled program plus
the arrays alive between them, lowered from shapes alone (`jax.ShapeDtypeStruct`: nothing is allocated, so
GPU-sized chunks can be analysed on a laptop's CPU).

An out-of-memory error that still happens (`is_out_of_memory`) makes the sweep halve its chunk and go on.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import re

import numpy as np

DEFAULT_FRACTION = 0.8
CPU_MEMORY_BUDGET = 4 << 30  # bytes for all host devices together, at most a quarter of the host's memory
_PLANNED: contextvars.ContextVar[int | None] = contextvars.ContextVar("ie_jax_planned_chunk", default=None)


class MemoryPlanError(ValueError):
    """A run that cannot fit its memory budget: one problem alone needs more. The message names the fix."""


def parse_bytes(text) -> int:
    """'8GiB', '512M', '2e9' or an int -> bytes (K/M/G/T are powers of 1024, with or without 'iB'/'B')."""
    if isinstance(text, (int, np.integer)):
        return int(text)
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)(i?B)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot read {text!r} as a memory size: use e.g. 8GiB, 512M or a number of bytes")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def _memory_stats() -> dict:
    import jax

    try:
        return jax.devices()[0].memory_stats() or {}
    except Exception:  # backends without memory statistics (CPU)
        return {}


def device_memory_limit() -> int | None:
    """Bytes JAX may allocate on the first device (GPU/TPU), None where the backend does not say (CPU)."""
    limit = _memory_stats().get("bytes_limit")
    return int(limit) if limit else None


def device_memory_in_use() -> int:
    """Bytes allocated on the first device now (0 where the backend does not say)."""
    return int(_memory_stats().get("bytes_in_use") or 0)


def device_memory_peak() -> int | None:
    """Most bytes allocated on the first device so far (None where the backend does not say)."""
    peak = _memory_stats().get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget() -> int:
    """Per device: DEFAULT_FRACTION of the memory JAX may still allocate on the first device (GPU/TPU), else
    CPU_MEMORY_BUDGET (at most a quarter of the host's memory) shared by the host devices."""
    limit = device_memory_limit()
    if limit is not None:
        return max(1, int(DEFAULT_FRACTION * (limit - device_memory_in_use())))
    import jax

    host = host_memory()
    total = CPU_MEMORY_BUDGET if host is None else min(CPU_MEMORY_BUDGET, host // 4)
    return max(1, total // max(1, jax.local_device_count()))


def memory_budget(budget=None) -> int:
    """`budget` (bytes or a size such as "40GiB") checked > 0, else `default_memory_budget()`."""
    if budget is None:
        return default_memory_budget()
    nbytes = parse_bytes(budget)
    if nbytes <= 0:
        raise ValueError(f"the memory budget must be > 0 bytes, got {budget!r}")
    return nbytes


@contextlib.contextmanager
def planned(size: int):
    """Inside the block an estimator takes its problems in chunks of `size`, as the caller planned them (the
    sweep: each of its chunks is one chunk of the estimator, not planned again)."""
    token = _PLANNED.set(int(size))
    try:
        yield
    finally:
        _PLANNED.reset(token)


def planned_chunk() -> int | None:
    """The chunk size a caller planned (`planned`), None outside one."""
    return _PLANNED.get()


def balanced_chunk(n_problems: int, max_per_chunk: int, n_devices: int = 1) -> int:
    """Problems per chunk: the fewest chunks of at most max_per_chunk, equal sizes, a multiple of n_devices.

    n_chunks = ceil(P / max_per_chunk), chunk = ceil(P / n_chunks) rounded up to the device count, so the
    padding is at most n_chunks x n_devices problems (108 problems, at most 24, 2 devices: 5 x 22 = 110).
    """
    n_chunks = math.ceil(n_problems / max(1, max_per_chunk))
    chunk = math.ceil(n_problems / max(1, n_chunks))
    return math.ceil(chunk / n_devices) * n_devices  # every device gets the same number of problems


def peak_bytes(chunk: int, bytes_per_problem: int, n_devices: int = 1, reserved: int = 0) -> int:
    """Planned peak of one device for a chunk of `chunk` problems spread over n_devices, plus `reserved`."""
    return int(reserved) + math.ceil(chunk / n_devices) * int(bytes_per_problem)


def plan(n_problems: int, bytes_per_problem: int, *, budget=None, n_devices: int = 1, reserved: int = 0,
         what: str = "one MI problem", fix: str = "") -> int:
    """Problems per chunk for n_problems problems: as many as `budget` (per device; default
    `memory_budget()`) holds beside `reserved` bytes (e.g. states kept on the device) at `bytes_per_problem`
    each, balanced (`balanced_chunk`).

    Raises MemoryPlanError, before any work, where one problem alone exceeds what the budget leaves; on the
    CPU with the default budget, which is not a limit of the machine, one problem per chunk instead."""
    if n_problems < 1:
        raise ValueError(f"need at least one problem to plan, got {n_problems}")
    explicit = budget is not None
    nbytes = memory_budget(budget)
    room = nbytes - int(reserved)
    per_problem = max(1, int(bytes_per_problem))
    most = room // per_problem if room > 0 else 0
    if most < 1:
        if not explicit and device_memory_limit() is None:
            most = 1
        else:
            held = f" beside {gib(reserved)} kept on the device" if reserved else ""
            raise MemoryPlanError(
                f"{what} needs {gib(per_problem)} of device memory, more than the {gib(nbytes)} memory budget "
                f"leaves{held}: pass a larger --memory-budget (memory_budget=) if the device has more"
                + (f" (JAX may allocate {gib(device_memory_limit())} on it)" if device_memory_limit() else "")
                + (f", or {fix}" if fix else ""))
    return balanced_chunk(n_problems, int(most) * n_devices, n_devices)


def fits(chunk: int, bytes_per_problem: int, *, budget=None, n_devices: int = 1, reserved: int = 0) -> bool:
    """Whether a chunk of `chunk` problems fits the budget (per device, default `memory_budget()`)."""
    return peak_bytes(chunk, bytes_per_problem, n_devices, reserved) <= memory_budget(budget)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device out-of-memory error of XLA (a JaxRuntimeError / XlaRuntimeError whose
    message holds RESOURCE_EXHAUSTED)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"JaxRuntimeError", "XlaRuntimeError"}) and "RESOURCE_EXHAUSTED" in str(error)


# --- What the costs are held to: the compiled programs' own memory analysis.

@dataclasses.dataclass(frozen=True)
class ProgramMemory:
    """One step of a traced sequence: a jitted program (or an eager operation, with no temp)."""

    name: str
    live_bytes: int  # arrays alive before it runs (the sequence's inputs and every earlier output)
    output_bytes: int
    temp_bytes: int  # XLA's temporary buffers of the compiled program

    @property
    def peak_bytes(self) -> int:
        return self.live_bytes + self.output_bytes + self.temp_bytes


@dataclasses.dataclass(frozen=True)
class CompiledPeak:
    steps: tuple[ProgramMemory, ...]
    input_bytes: int

    @property
    def peak_bytes(self) -> int:
        return max([self.input_bytes] + [s.peak_bytes for s in self.steps])

    def program(self, name: str) -> list[ProgramMemory]:
        return [s for s in self.steps if s.name == name]


def aval_bytes(aval) -> int:
    import jax

    dtype = aval.dtype
    itemsize = 8 if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) else np.dtype(dtype).itemsize
    return int(np.prod(aval.shape, dtype=np.int64)) * itemsize


def compiled_peak(fn, *args, **kwargs) -> CompiledPeak:
    """Peak device memory of `fn(*args, **kwargs)`, a sequence of jitted programs (and eager operations),
    from the compiled programs' own `memory_analysis()`.

    fn is traced once (args may be `jax.ShapeDtypeStruct`s: nothing is allocated); each jitted program it
    calls is compiled alone for the default backend at its traced shapes. Step k's peak is every array alive
    before it (fn's inputs and all earlier outputs: nothing is taken as freed, an upper bound of what the
    Python code frees) plus its outputs and its temporary buffers; the peak is the largest step's.
    """
    import jax
    from jax.extend.core import jaxpr_as_fun

    closed = jax.make_jaxpr(lambda *a: fn(*a, **kwargs))(*args)
    jaxpr = closed.jaxpr
    inputs = sum(aval_bytes(v.aval) for v in list(jaxpr.invars) + list(jaxpr.constvars))
    live, steps = inputs, []
    for eqn in jaxpr.eqns:
        outputs = sum(aval_bytes(v.aval) for v in eqn.outvars)
        temp, name = 0, eqn.primitive.name
        if name in ("jit", "pjit"):
            name = eqn.params.get("name", name)
            shapes = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars]
            with jax.enable_x64(True):  # the program's own dtypes (its float64 parts stay float64)
                compiled = jax.jit(jaxpr_as_fun(eqn.params["jaxpr"])).lower(*shapes).compile()
            temp = int(compiled.memory_analysis().temp_size_in_bytes)
        steps.append(ProgramMemory(name, live, outputs, temp))
        live += outputs
    return CompiledPeak(tuple(steps), inputs)
